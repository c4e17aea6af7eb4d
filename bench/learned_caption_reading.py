r"""Where the learned Shapes encoder misreads captions: caption-only Hits@10 by what the caption mentions.

The 2,064 benchmark targets of the 50,000-scene corpus, ranked by their caption alone, by the exact
retriever and by one or more learned encoders (``--weights NAME=PATH``, e.g. the stage-1 and stage-2
weights). Targets are grouped by the size of the objects their caption mentions (whether or not it
names the size): a small object is drawn with a radius of about 3 pixels at 36 x 36, so if the encoder's
eyes are the limit, captions about small objects suffer most. Also grouped by the number of mentions
and whether the caption names the background or the count. Hits@10 with 95% bootstrap intervals::

    .venv/bin/python bench/learned_caption_reading.py --weights stage1=runs/retriever_shapes/shapes_dual.safetensors \
        --weights shipped=shapes_dual

Saves ``bench/results/learned_caption_reading.json``.
"""

from __future__ import annotations

import argparse

import numpy as np
from _results import save
from _source_tree import use_source_tree

use_source_tree()

from chatir_env.dialog import Dialog  # noqa: E402
from chatir_env.metrics import bootstrap_ci, target_ranks  # noqa: E402
from chatir_env.worlds import build_world  # noqa: E402
from chatir_env.worlds.shapes import CAPTION_SEED, SPLIT_SEEDS, scene_corpus  # noqa: E402
from chatir_env.worlds.shapes_language import caption_facts_and_slots  # noqa: E402


def caption_only_ranks(world) -> np.ndarray:
    queries = world.retriever.encode_dialogs([Dialog(world.captions[t]) for t in world.targets])
    positions = world.index.positions(world.targets)
    return target_ranks(queries, world.index.embeddings, positions).numpy()


def hits(ranks: np.ndarray) -> dict:
    lo, hi = bootstrap_ci(ranks[None], lambda r: float(100.0 * (r[0] < 10).mean()), samples=1000, seed=0)
    return {"hits@10": float(100.0 * (ranks < 10).mean()), "ci95": [float(lo), float(hi)], "targets": int(len(ranks))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--out", default="learned_caption_reading", metavar="NAME")
    args = parser.parse_args()
    worlds = {"exact": build_world("shapes_oracle", split="benchmark")}
    for item in args.weights or ["shipped=shapes_dual"]:
        name, _, path = item.partition("=")
        worlds[name] = build_world("shapes", split="benchmark", weights=path)
    scenes, _, ids, _ = scene_corpus("benchmark", 50_000)
    rows = {image_id: i for i, image_id in enumerate(ids)}
    groups: dict[str, list[bool]] = {k: [] for k in (
        "mentions a small object", "mentions only large objects", "one mention", "two mentions",
        "names the background", "names the count")}
    for t in worlds["exact"].targets:
        i = rows[t]
        facts, slots = caption_facts_and_slots(scenes, i, CAPTION_SEED + SPLIT_SEEDS["benchmark"])
        small = any(scenes.size[i, j] == 0 for j in slots)
        groups["mentions a small object"].append(small)
        groups["mentions only large objects"].append(not small)
        groups["one mention"].append(len(slots) == 1)
        groups["two mentions"].append(len(slots) == 2)
        groups["names the background"].append(facts.background is not None)
        groups["names the count"].append(facts.count is not None)
    masks = {k: np.array(v) for k, v in groups.items()}
    table = {}
    for name, world in worlds.items():
        ranks = caption_only_ranks(world)
        table[name] = {"all": hits(ranks), **{k: hits(ranks[m]) for k, m in masks.items()}}
    for group in ["all", *masks]:
        line = "  ".join(f"{name} {table[name][group]['hits@10']:5.1f}" for name in table)
        print(f"{group:28s} ({table['exact'][group]['targets']:4d} targets)  {line}")
    save(args.out, {"split": "benchmark", "corpus_size": 50_000, "weights": args.weights or ["shipped=shapes_dual"],
                    "caption_only_hits@10": table})


if __name__ == "__main__":
    main()
