"""`chatir benchmark --config FILE`: several questioners on the same targets, one table and one plot.

Config (YAML)::

    name: shapes_demo
    max_rounds: 10
    num_targets: 2064            # a seeded random sample of n benchmark targets of each world (null: all)
    target_seed: 0               # the sample's seed (recorded in results.json with the ids' SHA-256)
    worlds:                      # each: a label, a registered world, and its keyword arguments
      - {name: learned, world: shapes}
      - {name: exact, world: shapes_oracle, args: {answer_noise: 0.0}}
    questioners:                 # each: a label, a short name or package.module:Class, its arguments
      - {name: random, questioner: random, args: {seed: 0}}
      - {name: ppo, questioner: policy, args: {policy: "package:agents/policies/ppo_shapes_oracle.pt"}, worlds: [exact]}
    out_dir: runs/shapes_demo

A questioner that raises is reported and skipped; the others' results are still written. Results are
rewritten (atomically) after every run, so an interrupted benchmark keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

from ..config import ConfigError, load_config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="benchmark YAML (a path, or a packaged config name such as shapes_demo)")
    parser.add_argument("--out-dir", help="override the config's out_dir")
    parser.add_argument("--num-targets", type=int, help="override num_targets: a seeded random sample (e.g. a quick look with 200)")
    parser.add_argument("--target-seed", type=int, help="override target_seed, the seed of the --num-targets sample")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")


def resolve_args(args: dict) -> dict:
    """``package:relative/path`` values point into the installed chatir_env package."""
    root = Path(__file__).resolve().parent.parent
    out = {}
    for key, value in (args or {}).items():
        if isinstance(value, str) and value.startswith("package:"):
            value = str(root / value.removeprefix("package:"))
        out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.out_dir:
        config["out_dir"] = args.out_dir
    if args.num_targets:
        config["num_targets"] = args.num_targets
    if args.target_seed is not None:
        config["target_seed"] = args.target_seed
    return run_benchmark(config, bootstrap=args.bootstrap)


def run_benchmark(config: dict, bootstrap: int = 1000, progress: bool = True) -> int:
    from ..agents import make_questioner
    from ..target_sample import DEFAULT_TARGET_SEED, sample_record, sample_targets
    from ..worlds import build_world
    from .report import format_table, summarize_record, write_results
    from .runner import play_episodes

    where = config.get("_path", "config")
    for key in ("worlds", "questioners"):
        if not isinstance(config.get(key), list) or not config[key]:
            raise ConfigError(f"{where}: '{key}' must be a non-empty list")
    max_rounds = int(config.get("max_rounds", 10))
    num_targets = config.get("num_targets")
    target_seed = int(config.get("target_seed", DEFAULT_TARGET_SEED))
    samples: dict[str, dict] = {}
    out_dir = Path(config.get("out_dir", f"runs/{config.get('name', 'benchmark')}"))
    rows: dict[str, dict] = {}
    failures: dict[str, str] = {}
    for w in config["worlds"]:
        if "world" not in w:
            raise ConfigError(f"{where}: each world needs a 'world' field, got {w}")
        label = w.get("name", w["world"])
        t0 = time.time()
        world = build_world(w["world"], **(w.get("args") or {}))
        # A random sample, never the first n: targets are in corpus order and ties go to the lower index.
        targets = sample_targets(world.targets, num_targets, target_seed)
        samples[label] = sample_record(world.targets, targets, target_seed)
        print(f"[{label}] world {w['world']}: {len(world.index)} corpus items, {len(targets)} targets ({time.time() - t0:.1f}s to build)")
        for q in config["questioners"]:
            if "questioner" not in q:
                raise ConfigError(f"{where}: each questioner needs a 'questioner' field, got {q}")
            if q.get("worlds") and label not in q["worlds"]:
                continue
            run_name = f"{label}/{q.get('name', q['questioner'])}"
            try:
                questioner = make_questioner(q["questioner"], **resolve_args(q.get("args")))
                if hasattr(questioner, "bind_world"):
                    questioner.bind_world(world)
                t0 = time.time()
                record = play_episodes(world, questioner, targets, max_rounds, progress=progress, desc=run_name)
                rows[run_name] = summarize_record(record, bootstrap_samples=bootstrap)
                rows[run_name]["seconds"] = round(time.time() - t0, 1)
                stats = getattr(questioner, "stats", None)
                if isinstance(stats, dict):  # e.g. an LLM questioner's retries, fallbacks, backend errors
                    rows[run_name]["questioner_stats"] = json.loads(json.dumps(stats, default=str))
                    if stats.get("fallbacks") or stats.get("backend_errors"):
                        print(f"[{run_name}] questioner stats: {stats.get('fallbacks', 0)} fallback questions, "
                              f"{stats.get('backend_errors', 0)} backend errors (in results.json)")
            except Exception as err:  # one broken questioner must not cost the others' results
                failures[run_name] = f"{type(err).__name__}: {err}"
                print(f"[{run_name}] FAILED: {failures[run_name]}")
                traceback.print_exc()
            write_results(out_dir, rows, {**config, "target_samples": samples, "failures": failures}, title=config.get("name", ""))
    print()
    print(format_table(rows))
    print(f"\nwrote {out_dir}/results.json, hits_at_10.csv, hits_at_10.png")
    if failures:
        print("failed runs: " + json.dumps(failures, indent=2))
        return 1
    return 0
