"""Runs a benchmark config (``chatir benchmark``) and saves its table's figures under bench/results/.

    .venv/bin/python bench/benchmark_results.py --config shapes_demo     # `make demo`'s table: bench/results/shapes_demo.json

The run's own files (results.json, results.md, hits_at_10.csv, hits_at_10.png) go to the config's
out_dir as usual; the JSON here adds the commit, the machine and the command, and the plot is copied
beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _results import RESULTS, save
from _source_tree import use_source_tree

use_source_tree()

from chatir_env.config import load_config  # noqa: E402
from chatir_env.eval.benchmark import run_benchmark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="shapes_demo")
    parser.add_argument("--num-targets", type=int)
    args = parser.parse_args()
    config = load_config(args.config)
    if args.num_targets:
        config["num_targets"] = args.num_targets
    t0 = time.time()
    code = run_benchmark(config, progress=False)
    seconds = round(time.time() - t0, 1)
    out = Path(config.get("out_dir", f"runs/{config.get('name', 'benchmark')}"))
    results = json.loads((out / "results.json").read_text())
    name = config.get("name", Path(args.config).stem)
    shutil.copyfile(out / "hits_at_10.png", RESULTS / f"{name}_hits_at_10.png")
    config_saved = {k: v for k, v in results["config"].items() if k != "_path"}
    save(name, {"exit_code": code, "seconds": seconds, "config": config_saved, "results": results["results"]})


if __name__ == "__main__":
    main()
