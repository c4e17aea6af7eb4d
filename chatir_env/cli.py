"""The `chatir` command.

Each subcommand lives in its own module, which defines

    configure(parser: argparse.ArgumentParser) -> None    # its arguments (cheap: no heavy imports)
    run(args: argparse.Namespace) -> int | None           # the work

so `chatir --help` stays fast and a new subcommand is one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "eval": ("chatir_env.eval.run_eval", "run questioners for 10 rounds on a benchmark and report per-round Hits@10"),
    "benchmark": ("chatir_env.eval.benchmark",
                  "run a list of questioners from a config and write one comparison table and plot"),
    "train": ("chatir_env.train.cli", "train a retriever, a PPO questioner or a GRPO questioner"),
    "answer": ("chatir_env.data.answer_cli",
               "answer a world's question pools into an answer store, or import recorded answers"),
    "index": ("chatir_env.data.index_cli", "encode an image corpus into an index with a retriever"),
    "eval-dialogs": ("chatir_env.eval.eval_dialogs", "the official offline benchmark over recorded dialog files"),
    "download": ("chatir_env.data.download", "fetch the released ChatIR dialog and protocol files"),
    "play": ("chatir_env.eval.play", "play a ChatIR episode in the terminal as answerer or questioner"),
    "worlds": ("chatir_env.worlds.doc", "every registered world's arguments (name, default, meaning) as a Markdown page"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatir", description="Chat-based image retrieval environments (ChatIR).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            continue  # a subcommand whose module is not part of this build
        command = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.configure(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except ConfigError as err:  # a user's typo or bad value: its message, not a traceback
        print(f"chatir {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; completed work was saved where the command supports resuming", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
