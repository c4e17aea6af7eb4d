"""Answers per second of `chatir answer` on this machine: the Shapes oracle and tiny random BLIP2s.

Each case runs the command's own code path (``run_answer``: work list, batches, one committed
transaction per batch) into a fresh store and reports the rate the command prints: answers written
per second of the answering loop, after the world and (single-process) the model are built. With
``--ray`` it adds the same tiny BLIP2 on Ray Data with 2 CPU actors; its time includes starting the
actors and loading the model in each, which a job of millions of answers amortises.

    .venv/bin/python bench/bench_answer.py --ray --out bench/results/answer_cpu.json

Tiny BLIP2s answer random tokens: the figures measure the pipeline (image rendering, processor,
generate, store), not BLIP2's real cost; GPU figures for the real architecture come from
bench/gpu_check.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _source_tree import ROOT, use_source_tree  # noqa: E402

use_source_tree()

import torch  # noqa: E402

from chatir_env.cli import build_parser  # noqa: E402
from chatir_env.data.answer_cli import run_answer  # noqa: E402


def commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout
        return out + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def one_case(name: str, argv: list[str]) -> dict:
    args = build_parser().parse_args(["answer", *argv, "--no-progress"])
    started = time.perf_counter()
    stats = run_answer(args)
    return {"case": name, "argv": argv, "answered": stats["answered"], "loop_s": round(stats["seconds"], 3),
            "answers_per_s": round(stats["answers_per_s"], 1) if stats["answers_per_s"] else None,
            "wall_s_with_setup": round(time.perf_counter() - started, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results here (JSON)")
    parser.add_argument("--blip2-answers", type=int, default=128, help="answers per tiny-BLIP2 case")
    parser.add_argument("--batch-sizes", default="1,8,32", help="tiny-BLIP2 batch sizes")
    parser.add_argument("--ray", action="store_true", help="also the tiny BLIP2 on Ray Data with 2 CPU actors")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in this process (default 1: on a shared 2-core machine two spinning threads "
                             "made a tiny generate 35x slower)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from chatir_env.answerers.blip2 import Blip2Answerer
    from chatir_env.testing import tiny_blip2

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shapes = ["--world", "shapes_oracle", "--world-arg", "corpus_size=2000", "--world-arg", "num_targets=100"]
        results.append(one_case("shapes_oracle", [*shapes, "--store", str(tmp / "oracle.sqlite"), "--batch-size", "256"]))
        blip_world = ["--world", "shapes_oracle", "--world-arg", "corpus_size=2000", "--world-arg", "num_targets=50"]
        for kind in ("opt", "t5"):
            model_dir = tmp / f"blip2-{kind}"
            Blip2Answerer(*tiny_blip2(kind, seed=0), lambda _: None, device="cpu").save_pretrained(model_dir)
            for batch in [int(b) for b in args.batch_sizes.split(",")]:
                argv = [*blip_world, "--answerer-model", str(model_dir), "--answerer-arg", "device=cpu",
                        "--answerer-arg", f"batch_size={batch}", "--batch-size", str(max(batch, 32)),
                        "--limit", str(args.blip2_answers), "--store", str(tmp / f"{kind}-{batch}.sqlite")]
                results.append(one_case(f"tiny_blip2_{kind}_batch{batch}", argv))
                print(json.dumps(results[-1]), flush=True)
            if args.ray:
                argv = [*blip_world, "--answerer-model", str(model_dir), "--answerer-arg", "device=cpu",
                        "--answerer-arg", "batch_size=32", "--batch-size", "32", "--limit", str(args.blip2_answers),
                        "--store", str(tmp / f"{kind}-ray.sqlite"),
                        "--engine", "ray", "--workers", "2", "--worker-cpus", "0.5"]
                import ray

                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
                try:
                    results.append(one_case(f"tiny_blip2_{kind}_ray_2_cpu_actors", argv))
                finally:
                    ray.shutdown()
                print(json.dumps(results[-1]), flush=True)

    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": commit(),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_at_end": list(os.getloadavg())},
        "units": {"answers_per_s": "answers committed per second of the answering loop",
                  "loop_s": "seconds of the answering loop", "wall_s_with_setup": "seconds including world and model set-up"},
        "results": results,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
