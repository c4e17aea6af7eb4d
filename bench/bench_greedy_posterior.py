"""The greedy information-gain questioner before and after weighting its candidates by a calibrated posterior.

On the learned Shapes world (the shipped dual encoder), ``weighting=uniform`` (every top-50 candidate alike)
against ``weighting=posterior`` (``softmax(score * logit_scale)``, the InfoNCE inverse temperature stored in
the weights), both in one ``chatir eval`` over the full benchmark; then the exact world's greedy (log-likelihood
posterior at scale 1), whose figures the change must leave as they were. Writes each setting's Hits@10 per
round with 95% bootstrap intervals, BRI and mean rank per round, with the commit, machine and command::

    nice -n 10 .venv/bin/python bench/bench_greedy_posterior.py --out bench/results/greedy_posterior.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = {
    "shapes": ["--world", "shapes",
               "--questioner", "greedy_info_gain", "--questioner-arg", "weighting=uniform",
               "--questioner", "greedy_info_gain", "--questioner-arg", "weighting=posterior"],
    "shapes_oracle": ["--world", "shapes_oracle", "--questioner", "greedy_info_gain"],
}


def chatir_eval(args: list[str], out: Path, num_targets: int | None) -> tuple[dict, str, float]:
    """Runs ``chatir eval`` in a subprocess; its results.json rows, the command, and its wall seconds."""
    cmd = [sys.executable, "-m", "chatir_env.cli", "eval", *args, "--out", str(out)]
    if num_targets:
        cmd += ["--num-targets", str(num_targets)]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    seconds = time.perf_counter() - start
    rows = json.loads((out / "results.json").read_text())["results"]
    shown = "chatir " + " ".join(shlex.quote(a) for a in cmd[3:] if not a.startswith(str(out)))
    return rows, shown.replace(" --out", ""), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/results/greedy_posterior.json")
    parser.add_argument("--num-targets", type=int, help="only the first n benchmark targets (a quick look; default all)")
    args = parser.parse_args()

    report: dict = {"runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for world, eval_args in RUNS.items():
            rows, command, seconds = chatir_eval(eval_args, Path(tmp) / world, args.num_targets)
            for name, s in rows.items():
                report["runs"][name] = {
                    "eval_command": command, "eval_seconds": round(seconds, 1), "targets": s["queries"],
                    "hits@10": s["hits@10"], "hits@10_ci95": s["hits@10_ci95"], "bri": s["bri"], "bri_ci95": s.get("bri_ci95"),
                    "mean_rank": s["mean_rank"], "median_rank": s["median_rank"],
                    "repeated_question_rate": s.get("repeated_question_rate"),
                }
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": commit + ("+dirty" if dirty else ""),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "niceness": os.nice(0)},
        "num_targets": args.num_targets or "all",
        **report,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for name, r in report["runs"].items():
        hits, (lo, hi) = r["hits@10"], r["hits@10_ci95"]
        cells = "  ".join(f"R{i} {hits[i]:.1f} [{lo[i]:.1f}, {hi[i]:.1f}]" for i in (0, 1, 3, 5, 10) if i < len(hits))
        print(f"{name}: {cells}  BRI {r['bri']:.3f}  mean rank R10 {r['mean_rank'][-1]:.1f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
