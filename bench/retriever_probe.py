"""The learned Shapes encoder against the exact scorer on the retriever trainer's held-out probe.

The probe (``chatir_env.worlds.shapes_training.ShapesRetrievalProbe``, the one the trainer logs): 5,000
held-out scenes, 500 targets, each with 10 random balanced pool questions answered by the noiseless
oracle; Hits@10 (non-cumulative) after 0, 5 and 10 of them. Both retrievers rank through
``encode_images`` / ``encode_dialogs`` and ``target_ranks``.

    .venv/bin/python bench/retriever_probe.py          # about a minute; bench/results/retriever_probe.json
"""

from __future__ import annotations

import argparse

import numpy as np
from _results import save
from _source_tree import use_source_tree

use_source_tree()

from chatir_env.metrics import target_ranks  # noqa: E402
from chatir_env.worlds.shapes import DEFAULT_WEIGHTS, _learned_retriever, weights_path  # noqa: E402
from chatir_env.worlds.shapes_retrievers import ShapesExactRetriever  # noqa: E402
from chatir_env.worlds.shapes_training import ShapesRetrievalProbe  # noqa: E402


def probe_figures(retriever, probe: ShapesRetrievalProbe) -> dict:
    images = retriever.encode_images(probe.scenes)
    out = {}
    for r, dialogs in probe.dialogs.items():
        ranks = target_ranks(retriever.encode_dialogs(dialogs).to(images.dtype), images, probe.targets).numpy()
        out[f"hits10_round{r}"] = round(float((ranks < 10).mean() * 100), 2)
        out[f"mean_log_rank_round{r}"] = round(float(np.log1p(ranks).mean()), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="the learned encoder (default: the shipped one)")
    args = parser.parse_args()
    probe = ShapesRetrievalProbe()
    figures = {"exact": probe_figures(ShapesExactRetriever(0.0), probe),
               "learned": probe_figures(_learned_retriever(args.weights, "cpu"), probe)}
    figures["learned_over_exact_round10"] = round(figures["learned"]["hits10_round10"] / figures["exact"]["hits10_round10"], 3)
    for name in ("exact", "learned"):
        print(f"{name:<8} Hits@10 R0/R5/R10: " + "/".join(f"{figures[name][f'hits10_round{r}']:.1f}" for r in (0, 5, 10)))
    save("retriever_probe", {"probe": "ShapesRetrievalProbe(corpus_size=5000, num_targets=500, seed=99)",
                             "weights": str(weights_path(args.weights).name), **figures})


if __name__ == "__main__":
    main()
