"""VisDial train worlds at full size on the CPU: build time, memory, and pooled env steps/s.

No VisDial file, images or models are needed: the script writes a synthetic file of VisDial v1.0
train's size (123,287 dialogs of 10 rounds, each with 100 answer options as in the original) and a
training index of 123,287 random 256-d unit vectors (BLIP's feature size) with content hashes, plus
a 50,000-image benchmark index for the leakage guard. The retriever is a stand-in that returns
random unit vectors, so the env figure covers the world's answers, pools and the ranking matmul over
the corpus, not BLIP's text encoder (which dominates on a real run, on a GPU).

    .venv/bin/python bench/bench_visdial_train_world.py --out bench/results/visdial_train_world_cpu.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _source_tree import use_source_tree  # noqa: E402

use_source_tree()

from chatir_env.index import ImageIndex  # noqa: E402
from chatir_env.sb3_vec_env import PooledVecEnv  # noqa: E402
from chatir_env.worlds import build_world  # noqa: E402

DIALOGS = 123_287
QUESTIONS = 376_082  # the sizes of VisDial v1.0 train's question and answer tables
ANSWERS = 337_527
DIM = 256


class RandomRetriever:
    """Random unit vectors for dialogs: the env's cost without a text encoder."""

    fingerprint = "random-256"
    device = "cpu"
    dim = DIM

    def encode_dialogs(self, dialogs):
        return torch.nn.functional.normalize(torch.randn(len(dialogs), DIM), dim=1)


def write_data(folder: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    words = ("a the is it are there red blue green white black cat dog man woman people table street car bus "
             "how many what color sunny photo image wearing holding any").split()
    questions = [" ".join(rng.choice(words, 5)) for _ in range(QUESTIONS)]
    answers = [" ".join(rng.choice(words, 3)) for _ in range(ANSWERS)]
    # Zipf-distributed question ids: a few questions are very frequent, as in VisDial ("is it sunny").
    dialogs = [{"image_id": i, "caption": "a photo of " + " ".join(rng.choice(words, 6)),
                "dialog": [{"question": int(rng.zipf(1.3) % QUESTIONS), "answer": int(rng.integers(ANSWERS)),
                            "answer_options": rng.integers(ANSWERS, size=100).tolist(), "gt_index": 0} for _ in range(10)]}
               for i in range(1, DIALOGS + 1)]
    train_file = folder / "visdial_1.0_train.json"
    train_file.write_text(json.dumps({"version": "1.0", "split": "train",
                                      "data": {"questions": questions, "answers": answers, "dialogs": dialogs}}))
    names = [f"train2014/COCO_train2014_{i:012d}.jpg" for i in range(1, DIALOGS + 1)]
    digest = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    vectors = torch.nn.functional.normalize(torch.randn(DIALOGS, DIM, generator=torch.Generator().manual_seed(seed)), dim=1)
    ImageIndex(vectors, names, RandomRetriever.fingerprint,
               {"content_sha256": [digest(n) for n in names]}).save(folder / "train")
    bench = [f"unlabeled2017/{i:012d}.jpg" for i in range(50_000)]
    ImageIndex(torch.zeros(50_000, 1), bench, "other",
               {"content_sha256": [digest("b" + n) for n in bench]}).save(folder / "bench")
    return {"train_file": str(train_file), "train_file_mb": round(train_file.stat().st_size / 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        # in a child process, so that the peak memory below is the world's, not the synthesis's
        with multiprocessing.get_context("fork").Pool(1) as pool:
            figures.update(pool.apply(write_data, (folder,)))
        figures["synthesis_s"] = round(time.perf_counter() - t0, 1)
        kwargs = {"train_file": figures["train_file"], "index": str(folder / "train"), "retriever": RandomRetriever(),
                  "benchmark_index": str(folder / "bench"), "answer_sources": ["human", "dont_know"],
                  "global_pool": 30, "max_pool": 40}
        t0 = time.perf_counter()
        world = build_world("visdial_train_replay", split="train", **kwargs)
        figures["first_world_build_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        val = build_world("visdial_train_replay", split="val", **kwargs)
        figures["validation_world_build_s"] = round(time.perf_counter() - t0, 2)
        figures["targets"] = {"train": len(world.targets), "val": len(val.targets)}
        figures["peak_rss_gb_worlds"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
        venv = PooledVecEnv(world, args.num_envs, max_pool=40, top_k=50, seed=0)
        venv.reset()
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        steps = 0
        for _ in range(20):  # two whole episodes
            venv.step(np.array([rng.choice(np.flatnonzero(m)) for m in venv.action_masks()]))
            steps += args.num_envs
        figures["pooled_env_steps_per_s"] = round(steps / (time.perf_counter() - t0), 1)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    result = {"command": "python bench/bench_visdial_train_world.py" + (f" --out {args.out}" if args.out else ""),
              "commit": commit,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), "
                         f"torch threads {args.threads}",
              "num_envs": args.num_envs, "corpus": DIALOGS, "dim": DIM, "figures": figures}
    result["figures"].pop("train_file")
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
