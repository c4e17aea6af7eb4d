"""Where `make demo`'s time goes: wall and CPU time of each world build and each benchmark row.

Runs `chatir benchmark --config shapes_demo` in-process with an empty encoded-corpus cache (a fresh
temporary CHATIR_CACHE unless --keep-cache), timing every world build (scene sampling, corpus encoding
or cache load) and every row (one questioner on one world) with both ``time.perf_counter`` (wall) and
``time.process_time`` (CPU of this process: less sensitive to other jobs on a shared machine), and the
report writing. ``--cprofile`` also saves the top functions by cumulative time.

    nice -n 10 .venv/bin/python bench/profile_demo.py --out bench/results/demo_profile.json
    .venv/bin/python bench/profile_demo.py --num-targets 200 --out /tmp/quick.json     # a quick look
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _source_tree import ROOT, use_source_tree

use_source_tree()


class Timings:
    """Wraps functions so each call appends (label, wall s, CPU s) to ``rows``."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.start_wall, self.start_cpu = time.perf_counter(), time.process_time()

    def wrap(self, function, label_of):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.rows.append({"step": label_of(*args, **kwargs),
                                  "wall_s": round(time.perf_counter() - wall, 2),
                                  "cpu_s": round(time.process_time() - cpu, 2),
                                  "ended_at_wall_s": round(time.perf_counter() - self.start_wall, 2)})
        return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="shapes_demo")
    parser.add_argument("--num-targets", type=int, help="override the config's num_targets")
    parser.add_argument("--keep-cache", action="store_true", help="use the usual encoded-corpus cache instead of an empty one")
    parser.add_argument("--cprofile", action="store_true", help="also record the top functions by cumulative time")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()

    # The code that runs is the code at the start: later commits to the tree must not be credited with it.
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    load_at_start = os.getloadavg()
    if not args.keep_cache:
        os.environ["CHATIR_CACHE"] = tempfile.mkdtemp(prefix="chatir-profile-cache-")
    from chatir_env import worlds
    from chatir_env.config import load_config
    from chatir_env.eval import benchmark, report, runner

    timings = Timings()
    worlds.build_world = timings.wrap(worlds.build_world, lambda name, **kw: f"build world {name}")
    runner.play_episodes = timings.wrap(runner.play_episodes, lambda world, questioner, *a, desc="", **kw: f"play {desc}")
    report.write_results = timings.wrap(report.write_results, lambda *a, **kw: "write results")

    config = load_config(args.config)
    config["out_dir"] = tempfile.mkdtemp(prefix="chatir-profile-out-")
    if args.num_targets:
        config["num_targets"] = args.num_targets
    profiler = cProfile.Profile() if args.cprofile else None
    if profiler:
        profiler.enable()
    status = benchmark.run_benchmark(config, progress=False)
    if profiler:
        profiler.disable()
    total_wall, total_cpu = time.perf_counter() - timings.start_wall, time.process_time() - timings.start_cpu

    table = json.loads((Path(config["out_dir"]) / "results.json").read_text())
    out = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "commit": commit + ("+uncommitted changes" if dirty else ""),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "load_average_at_start": load_at_start,
                    "load_average_at_end": os.getloadavg()},
        "encoded_corpus_cache": "kept" if args.keep_cache else "empty (fresh temporary CHATIR_CACHE)",
        "exit_status": status,
        "total_wall_s": round(total_wall, 1), "total_cpu_s": round(total_cpu, 1),
        "steps": timings.rows,
        # the figures the table prints, to check a faster run gives the same numbers
        "results": {run: {"hits@10": [round(h, 1) for h in row["hits@10"]], "bri": round(row["bri"], 3),
                          "mean_rank": round(row["mean_rank"][-1], 1)} for run, row in table["results"].items()},
    }
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        out["cprofile_top40_cumulative"] = text.getvalue().splitlines()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "cprofile_top40_cumulative"}, indent=2))


if __name__ == "__main__":
    main()
