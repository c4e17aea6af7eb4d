r"""Eval throughput of the candidate-reading questioners: turns per second of ``play_episodes``.

Runs ``greedy_info_gain`` and ``policy`` (the shipped PPO policy of each world) through the eval runner
on a seeded random subset of the Shapes benchmark targets, in both Shapes worlds, and records turns/s
with the per-round Hits@10, mean rank and a hash of every rank. With ``--compare OLD.json`` it fails
unless every questioner's ranks are identical to the old run's (same targets, same numbers).

With ``--baseline REV`` it measures this tree against the source of git revision REV in one run:
worker processes of the two trees alternate, world by world, ``--repeats`` times each, so both see the
same load; turns/s is each tree's best run, and the run fails unless both give identical ranks.

    nice -n 10 .venv/bin/python bench/bench_questioner_turns.py --out bench/results/questioner_turns.json
    nice -n 10 .venv/bin/python bench/bench_questioner_turns.py --compare bench/results/questioner_turns_before.json
    nice -n 10 .venv/bin/python bench/bench_questioner_turns.py --baseline e18d264 \
        --out bench/results/questioner_turns_paired.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _source_tree import ROOT, use_source_tree

use_source_tree()

from chatir_env.agents import make_questioner  # noqa: E402
from chatir_env.eval.runner import play_episodes  # noqa: E402
from chatir_env.metrics import hits_at_k  # noqa: E402
from chatir_env.worlds import build_world  # noqa: E402

POLICIES = {"shapes": "agents/policies/ppo_shapes.pt", "shapes_oracle": "agents/policies/ppo_shapes_oracle.pt"}


def questioner_for(name: str, world_name: str):
    if name == "policy":
        return make_questioner("policy", policy=str(ROOT / POLICIES[world_name]))
    return make_questioner(name)


def run(world_name: str, name: str, targets: list[str], world, repeats: int) -> dict:
    seconds = []
    record = None
    for _ in range(repeats):
        questioner = questioner_for(name, world_name)
        questioner.bind_world(world)
        t0 = time.perf_counter()
        record = play_episodes(world, questioner, targets, max_rounds=10, progress=False)
        seconds.append(time.perf_counter() - t0)
    turns = len(targets) * 10
    return {
        "turns": turns,
        "seconds": seconds,
        "turns_per_s": turns / min(seconds),
        "hits@10": [round(float(h), 6) for h in hits_at_k(record.ranks, 10)],
        "mean_rank": [float(m) for m in record.ranks.mean(axis=1)],
        "ranks_sha256": hashlib.sha256(np.ascontiguousarray(record.ranks, dtype=np.int64).tobytes()).hexdigest(),
    }


# Runs one tree's copy of this script with that tree first on the import path, so that the installed
# (editable) chatir_env of this checkout does not shadow the baseline's modules.
_WORKER = ("import runpy, sys; tree = sys.argv[1]; sys.path[:0] = [tree, tree + '/bench']; import chatir_env; "
           "chatir_env.__path__.append(tree); sys.argv = sys.argv[2:]; "
           "runpy.run_path(tree + '/bench/bench_questioner_turns.py', run_name='__main__')")


def paired(args, worlds: list[str], names: list[str]) -> dict:
    """Alternate worker runs of the baseline revision and of this tree; both trees' results per key."""
    work = Path(tempfile.mkdtemp(prefix="questioner_turns_"))
    baseline = work / "baseline"
    baseline.mkdir()
    archive = subprocess.run(["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
    runs: dict[str, dict[str, list[dict]]] = {}
    for world_name in worlds:
        for repeat in range(args.repeats):
            for label, tree in (("baseline", baseline), ("this tree", ROOT)):
                out = work / f"{label.replace(' ', '_')}_{world_name}_{repeat}.json"
                command = [sys.executable, "-c", _WORKER, str(tree), "bench_questioner_turns.py", "--world", world_name,
                           "--num-targets", str(args.num_targets), "--seed", str(args.seed), "--repeats", "1",
                           "--out", str(out)] + [arg for name in names for arg in ("--questioner", name)]
                if args.threads:
                    command += ["--threads", str(args.threads)]
                print(f"[{world_name} #{repeat + 1}] {label}", flush=True)
                subprocess.run(command, check=True)
                for key, row in json.loads(out.read_text())["results"].items():
                    runs.setdefault(key, {}).setdefault(label, []).append(row)
    results = {}
    for key, by_tree in runs.items():
        before, after = by_tree["baseline"], by_tree["this tree"]
        hashes = {row["ranks_sha256"] for row in before + after}
        results[key] = {
            "baseline_turns_per_s": [row["turns_per_s"] for row in before],
            "turns_per_s": [row["turns_per_s"] for row in after],
            "speedup_best": max(row["turns_per_s"] for row in after) / max(row["turns_per_s"] for row in before),
            "identical_ranks": len(hashes) == 1,
            "hits@10": after[0]["hits@10"], "baseline_hits@10": before[0]["hits@10"],
            "ranks_sha256": after[0]["ranks_sha256"],
        }
        print(f"{key}: baseline {max(results[key]['baseline_turns_per_s']):.1f}, this tree "
              f"{max(results[key]['turns_per_s']):.1f} turns/s ({results[key]['speedup_best']:.2f}x); "
              f"identical ranks: {results[key]['identical_ranks']}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=sorted(POLICIES), action="append")
    parser.add_argument("--questioner", choices=["greedy_info_gain", "policy"], action="append")
    parser.add_argument("--num-targets", type=int, default=512, help="seeded random subset of the benchmark targets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="runs per questioner; turns/s is the best one")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/questioner_turns.json")
    parser.add_argument("--compare", type=Path, help="a JSON of an earlier run whose ranks must be reproduced exactly")
    parser.add_argument("--baseline", help="a git revision to measure against in the same run (alternating worker processes)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    worlds = args.world or sorted(POLICIES)
    names = args.questioner or ["greedy_info_gain", "policy"]
    results: dict[str, dict] = {}
    for world_name in worlds if not args.baseline else []:
        world = build_world(world_name, split="benchmark")
        pick = np.random.default_rng(args.seed).choice(len(world.targets), args.num_targets, replace=False)
        targets = [world.targets[i] for i in sorted(pick)]
        play_episodes(world, make_questioner("caption_only"), targets[:8], max_rounds=1, progress=False)  # warm up
        for name in names:
            row = run(world_name, name, targets, world, args.repeats)
            results[f"{world_name}/{name}"] = row
            print(f"{world_name:14s} {name:17s} {row['turns_per_s']:8.1f} turns/s  "
                  f"Hits@10 R0 {row['hits@10'][0]:.2f} R5 {row['hits@10'][5]:.2f} R10 {row['hits@10'][10]:.2f}", flush=True)
    if args.baseline:
        results = paired(args, worlds, names)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip())
    out = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": commit + ("+dirty" if dirty else ""),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch_threads": torch.get_num_threads()},
        "num_targets": args.num_targets,
        "seed": args.seed,
        "results": results,
    }
    if args.baseline:
        out["baseline"] = subprocess.run(["git", "rev-parse", args.baseline], cwd=ROOT, capture_output=True,
                                         text=True).stdout.strip()
    if args.compare:
        old = json.loads(args.compare.read_text())["results"]
        changed = [key for key, row in results.items() if key in old and old[key]["ranks_sha256"] != row["ranks_sha256"]]
        out["compared_with"] = {"file": str(args.compare.relative_to(ROOT) if args.compare.is_absolute() else args.compare),
                                "speedup": {k: row["turns_per_s"] / old[k]["turns_per_s"]
                                            for k, row in results.items() if k in old},
                                "identical_ranks": not changed}
        for key, ratio in out["compared_with"]["speedup"].items():
            print(f"{key}: {ratio:.2f}x the turns/s of {args.compare.name}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    if args.compare and changed:
        print(f"ranks differ from {args.compare.name} for: {', '.join(changed)}", file=sys.stderr)
        return 1
    differing = [key for key, row in results.items() if args.baseline and not row["identical_ranks"]]
    if differing:
        print(f"ranks differ from {args.baseline} for: {', '.join(differing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
