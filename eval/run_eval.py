"""`chatir eval`: questioners for 10 rounds on one world's benchmark targets; the per-round Hits@10 table.

    chatir eval --world shapes_oracle --questioner random --questioner shapes_template --out runs/eval

A shorthand for a one-world ``chatir benchmark``; writes results.json, hits_at_10.csv and
hits_at_10.png to ``--out``.
"""

from __future__ import annotations

import argparse

from .benchmark import run_benchmark


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", default="shapes", help="registered world: shapes, shapes_oracle, visdial, visdial_replay, ...")
    parser.add_argument("--world-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a world keyword argument (repeatable), e.g. corpus_size=5000")
    parser.add_argument("--questioner", action="append", metavar="NAME",
                        help="short name or package.module:Class (repeatable); default: caption_only, random")
    parser.add_argument("--num-targets", type=int, help="a seeded random sample of n benchmark targets (recorded in results.json)")
    parser.add_argument("--target-seed", type=int, default=0, help="the seed of the --num-targets sample")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", default="runs/eval", help="output folder")
    parser.add_argument("--bootstrap", type=int, default=1000)


def _parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def run(args: argparse.Namespace) -> int:
    world_args = {}
    for item in args.world_arg:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--world-arg must look like KEY=VALUE, got {item!r}")
        world_args[key] = _parse_value(value)
    config = {
        "name": f"eval-{args.world}",
        "max_rounds": args.rounds,
        "num_targets": args.num_targets,
        "target_seed": args.target_seed,
        "worlds": [{"name": args.world, "world": args.world, "args": world_args}],
        "questioners": [{"name": q, "questioner": q} for q in (args.questioner or ["caption_only", "random"])],
        "out_dir": args.out,
    }
    return run_benchmark(config, bootstrap=args.bootstrap)
