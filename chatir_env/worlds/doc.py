"""`chatir worlds`: every registered world's arguments (name, default, meaning), read from the code.

    chatir worlds > docs/worlds.md          (or: python -m chatir_env.worlds.doc > docs/worlds.md)

Names and defaults come from each world builder's signature, meanings from its docstring's Args
section, so the table cannot drift from the code (a test compares docs/worlds.md with it).
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys

from .base import world_builder, world_names

_ARG_LINE = re.compile(r"^(?P<names>[A-Za-z_][\w, ]*?):\s*(?P<text>.*)$")


def args_section(docstring: str | None) -> dict[str, str]:
    """A Google-style docstring's ``Args:`` entries as ``{name: meaning}``, continuation lines joined.

    An entry naming several arguments (``device, dtype: ...``) gives each the same meaning.
    """
    lines = inspect.cleandoc(docstring or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:") + 1
    except StopIteration:
        return {}
    entries: dict[str, list[str]] = {}
    current: list[str] = []
    indent = None
    for line in lines[start:]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:  # the next section (Returns:, Raises:, ...)
            break
        indent = depth if indent is None else indent
        match = _ARG_LINE.match(line.strip())
        if depth == indent and match:
            current = [match["text"]]
            for name in match["names"].split(","):
                entries[name.strip()] = current  # shared: continuation lines reach every name
        elif current:
            current.append(line.strip())
    return {name: " ".join(text).strip() for name, text in entries.items()}


def world_arguments(name: str) -> list[tuple[str, str, str]]:
    """``(argument, default, meaning)`` for each keyword argument of world ``name``, in signature order."""
    builder = world_builder(name)
    target = builder.func if hasattr(builder, "func") else builder  # functools.partial: the docstring of its function
    meanings = args_section(target.__doc__)
    rows = []
    for arg, parameter in inspect.signature(builder).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = "(required)" if parameter.default is parameter.empty else repr(parameter.default)
        rows.append((arg, default, meanings.get(arg, "")))
    return rows


def _cell(text: str) -> str:
    return text.replace("``", "`").replace("|", "\\|")  # reST literals to Markdown; a bar would end the cell


def markdown() -> str:
    """The page: one table per registered world."""
    out = [
        "# World arguments",
        "",
        "Generated from the code by `chatir worlds > docs/worlds.md`; do not edit by hand.",
        "",
        "A world's arguments go to `build_world(name, **kwargs)`, to `gym.make(env_id, **kwargs)` beside the",
        "env's own (`max_rounds`, `reward`, `hit_bonus`, `max_question_chars`: see `ChatIREnv`), to",
        "`chatir eval --world NAME --world-arg KEY=VALUE`, and to a benchmark config's `worlds[].args`.",
        "An unknown argument is an error that lists the valid ones.",
    ]
    for name in world_names():
        builder = world_builder(name)
        target = builder.func if hasattr(builder, "func") else builder
        summary = _cell(inspect.cleandoc(target.__doc__ or "").split("\n\n")[0].replace("\n", " "))
        out += ["", f"## `{name}`", "", summary, "", "| argument | default | meaning |", "| --- | --- | --- |"]
        out += [f"| `{arg}` | `{_cell(default)}` | {_cell(meaning)} |" for arg, default, meaning in world_arguments(name)]
    return "\n".join(out) + "\n"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from the generated page (for CI)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import shapes, visdial  # noqa: F401  (register the built-in worlds)

    page = markdown()
    if args.check:
        if Path(args.check).read_text(encoding="utf-8") != page:
            print(f"{args.check} is out of date: regenerate it with `chatir worlds > {args.check}`", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    main_parser = argparse.ArgumentParser(prog="python -m chatir_env.worlds.doc", description=__doc__.splitlines()[0])
    configure(main_parser)
    sys.exit(run(main_parser.parse_args()))
