"""`chatir eval`: questioners for 10 rounds on one world's benchmark targets; the per-round Hits@10 table.

    chatir eval --world shapes_oracle --questioner random --questioner shapes_template --out runs/eval
    chatir eval --world shapes --questioner llm --questioner-arg backend=openai --questioner-arg model=gpt-4o-mini

A shorthand for a one-world ``chatir benchmark``; writes results.json, hits_at_10.csv and
hits_at_10.png to ``--out``. ``--questioner-arg KEY=VALUE`` goes to the ``--questioner`` before it (each
questioner gets its own); values are read as YAML (``3``, ``0.5``, ``true``, ``[a, b]``, text).
"""

from __future__ import annotations

import argparse

from .benchmark import run_benchmark

DEFAULT_QUESTIONERS = ("caption_only", "random")


class _QuestionerAction(argparse.Action):
    """``--questioner`` starts a questioner; ``--questioner-arg`` adds to the last one started."""

    def __call__(self, parser, namespace, value, option_string=None):
        questioners = list(getattr(namespace, self.dest, None) or [])
        if option_string == "--questioner":
            questioners.append((value, []))
        elif not questioners:
            parser.error(f"--questioner-arg {value}: give the --questioner it belongs to first")
        else:
            questioners[-1][1].append(value)
        setattr(namespace, self.dest, questioners)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", default="shapes", help="registered world: shapes, shapes_oracle, visdial, visdial_replay, "
                        "... (`chatir worlds` lists them with their arguments)")
    parser.add_argument("--world-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a world keyword argument (repeatable), e.g. corpus_size=5000")
    parser.add_argument("--questioner", dest="questioners", action=_QuestionerAction, metavar="NAME",
                        help="short name or package.module:Class (repeatable); default: " + ", ".join(DEFAULT_QUESTIONERS))
    parser.add_argument("--questioner-arg", dest="questioners", action=_QuestionerAction, metavar="KEY=VALUE",
                        help="a keyword argument of the --questioner before it (repeatable), e.g. seed=1")
    parser.add_argument("--num-targets", type=int,
                        help="a seeded random sample of n benchmark targets (recorded in results.json)")
    parser.add_argument("--target-seed", type=int, default=0, help="the seed of the --num-targets sample")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", default="runs/eval", help="output folder")
    parser.add_argument("--bootstrap", type=int, default=1000)


def questioner_entries(questioners: list[tuple[str, list[str]]] | None) -> list[dict]:
    """Benchmark questioner entries from ``(name, ["KEY=VALUE", ...])`` pairs; labels name their arguments."""
    from ..config import parse_key_values

    entries = []
    for name, items in questioners or [(q, []) for q in DEFAULT_QUESTIONERS]:
        args = parse_key_values(items, option="--questioner-arg")
        label = name + (f"({', '.join(f'{k}={v}' for k, v in args.items())})" if args else "")
        entries.append({"name": label, "questioner": name, "args": args})
    return entries


def run(args: argparse.Namespace) -> int:
    from ..config import parse_key_values

    config = {
        "name": f"eval-{args.world}",
        "max_rounds": args.rounds,
        "num_targets": args.num_targets,
        "target_seed": args.target_seed,
        "worlds": [{"name": args.world, "world": args.world, "args": parse_key_values(args.world_arg, option="--world-arg")}],
        "questioners": questioner_entries(args.questioners),
        "out_dir": args.out,
        # Errors name the option that set a field, not a config file.
        "_overrides": {"worlds[0].world": "--world", "worlds[0].args": "--world-arg", "questioners": "--questioner",
                       "max_rounds": "--rounds", "num_targets": "--num-targets"},
    }
    return run_benchmark(config, bootstrap=args.bootstrap)
