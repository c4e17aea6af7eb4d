"""Does the stable tie rule bias the exact Shapes world's benchmark? Hits@10 under it vs random tie-breaking.

``chatir_env.metrics.target_ranks`` breaks score ties by corpus index (a stable descending sort). The
exact scorer ties many scenes with the target, so this plays every demo questioner on
``ChatIR/ShapesOracle-v0``'s 2,064 benchmark targets once, then ranks each round's dialog twice: by the
stable rule, and by random tie-breaking, a random order of the corpus drawn once per draw and kept over
the ten rounds (the mean of ``--draws`` draws). The dialogs are those of the stable run, so the
comparison isolates the metric's tie rule.

It also compares a 300-target subset's caption-only Hits@10, the first 300 targets in corpus order (what
``--num-targets`` took before) and a seeded random sample (what it takes now), with the full benchmark's.

    .venv/bin/python bench/bench_tie_rule.py            # about 5 minutes on 2 cores; bench/results/tie_rule.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _results import save
from _source_tree import use_source_tree

use_source_tree()

from chatir_env.agents import make_questioner  # noqa: E402
from chatir_env.config import load_config  # noqa: E402
from chatir_env.dialog import Dialog  # noqa: E402
from chatir_env.eval.benchmark import resolve_args  # noqa: E402
from chatir_env.eval.runner import play_episodes  # noqa: E402
from chatir_env.metrics import bootstrap_ci, bri, hits_at_k, score_matrix  # noqa: E402
from chatir_env.target_sample import sample_targets, targets_digest  # noqa: E402
from chatir_env.worlds import build_world  # noqa: E402

TILE = 256


def tie_ranks(world, dialogs: list[Dialog], positions: torch.Tensor,
              priorities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable ranks, random-tie ranks under each row of ``priorities`` ([draws, N]), and tie counts.

    rank = #strictly higher + #tied items ahead of the target: ahead = a lower corpus index (stable) or
    a lower priority (random). Returns ``stable[Q]``, ``random[draws, Q]`` and ``ties[Q]`` (tied items
    other than the target).
    """
    queries = world.retriever.encode_dialogs(dialogs).to(world.index.embeddings.dtype)
    corpus = world.index.embeddings
    n_draws = priorities.shape[0]
    stable = np.zeros(len(dialogs), dtype=np.int64)
    random = np.zeros((n_draws, len(dialogs)), dtype=np.int64)
    ties = np.zeros(len(dialogs), dtype=np.int64)
    for start in range(0, len(dialogs), TILE):
        rows = slice(start, start + TILE)
        scores = score_matrix(queries[rows], corpus)
        target = positions[rows]
        own = scores.gather(1, target[:, None])
        higher = (scores > own).sum(dim=1).numpy()
        row, col = (t.numpy() for t in torch.nonzero(scores == own, as_tuple=True))
        tgt = target.numpy()[row]
        others = col != tgt
        row, col, tgt = row[others], col[others], tgt[others]
        count = len(scores)
        ties[rows] = np.bincount(row, minlength=count)
        stable[rows] = higher + np.bincount(row, weights=col < tgt, minlength=count).astype(np.int64)
        for d in range(n_draws):
            ahead = priorities[d, col] < priorities[d, tgt]
            random[d, rows] = higher + np.bincount(row, weights=ahead, minlength=count).astype(np.int64)
    return stable, random, ties


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=10, help="random tie-breaking draws to average")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--subset", type=int, default=300, help="size of the subset compared with the full benchmark")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--corpus-size", type=int, default=50_000)
    parser.add_argument("--out", default="tie_rule", help="name of the JSON under bench/results/")
    args = parser.parse_args()

    world = build_world("shapes_oracle", split="benchmark", corpus_size=args.corpus_size)
    targets = list(world.targets)
    positions = world.index.positions(targets)
    priorities = np.stack([np.random.default_rng(1000 + d).permutation(len(world.index)) for d in range(args.draws)])
    demo = load_config("shapes_demo")
    rows = {}
    for q in demo["questioners"]:
        if q.get("worlds") and "exact" not in q["worlds"]:
            continue
        name = q.get("name", q["questioner"])
        t0 = time.time()
        questioner = make_questioner(q["questioner"], **resolve_args(q.get("args")))
        if hasattr(questioner, "bind_world"):
            questioner.bind_world(world)
        record = play_episodes(world, questioner, targets, args.rounds, progress=False)
        if record.passes and record.passes != len(targets) * args.rounds or record.invalid_questions:
            raise SystemExit(f"{name}: {record.passes} passes and {record.invalid_questions} invalid questions; "
                             "the dialogs then no longer tell which turn belongs to which round")
        stable = np.zeros((args.rounds + 1, len(targets)), dtype=np.int64)
        random = np.zeros((args.draws, args.rounds + 1, len(targets)), dtype=np.int64)
        ties = np.zeros((args.rounds + 1, len(targets)), dtype=np.int64)
        for t in range(args.rounds + 1):
            dialogs = [Dialog(d.caption, d.turns[:t]) for d in record.dialogs]
            stable[t], random[:, t], ties[t] = tie_ranks(world, dialogs, positions, priorities)
        if not np.array_equal(stable, record.ranks):  # the recomputation must reproduce what the benchmark measured
            differing = int((stable != record.ranks).sum())
            raise SystemExit(f"{name}: recomputed stable ranks differ from the run's in {differing} cells")
        hits_stable = hits_at_k(stable)
        hits_random = np.stack([hits_at_k(random[d]) for d in range(args.draws)])
        diff = hits_random.mean(axis=0) - hits_stable
        rows[name] = {
            "hits@10_stable": hits_stable.round(2).tolist(),
            "hits@10_random_mean": hits_random.mean(axis=0).round(2).tolist(),
            "hits@10_random_sd": hits_random.std(axis=0, ddof=1).round(2).tolist(),
            "random_minus_stable": diff.round(2).tolist(),
            "max_abs_difference": float(np.abs(diff).max().round(2)),
            "bri_stable": round(bri(stable), 4),
            "bri_random_mean": round(float(np.mean([bri(random[d]) for d in range(args.draws)])), 4),
            "median_ties_with_target": np.median(ties, axis=1).tolist(),
            "seconds": round(time.time() - t0, 1),
        }
        shown = [r for r in (0, 5, 10) if r <= args.rounds]
        print(f"{name:<18} R{'/R'.join(map(str, shown))} stable {'/'.join(f'{hits_stable[r]:.1f}' for r in shown)}  "
              f"random {'/'.join(f'{hits_random.mean(0)[r]:.1f}' for r in shown)}  "
              f"max |diff| {np.abs(diff).max():.2f}  median ties R0 {np.median(ties[0]):.0f}")
        if name == "caption-only":
            caption_ranks = stable

    def subset_figures(ids: list[str]) -> dict:
        cols = [targets.index(i) for i in ids]
        r = caption_ranks[:1, cols]
        lo, hi = bootstrap_ci(r, hits_at_k, samples=args.bootstrap)
        return {"hits@10_round0": round(float(hits_at_k(r)[0]), 2), "ci95": [round(float(lo[0]), 2), round(float(hi[0]), 2)],
                "sha256": targets_digest(ids)}

    full = subset_figures(targets)
    first = subset_figures(targets[: args.subset])
    sampled = subset_figures(sample_targets(targets, args.subset, 0))
    inside = sampled["ci95"][0] <= full["hits@10_round0"] <= sampled["ci95"][1]
    subsets = {"full": full, f"first_{args.subset}": first, f"random_{args.subset}_seed0": sampled,
               "full_figure_inside_random_subset_interval": inside,
               "random_subset_figure_inside_full_interval": full["ci95"][0] <= sampled["hits@10_round0"] <= full["ci95"][1]}
    print(f"caption-only R0: full {full['hits@10_round0']:.1f} {full['ci95']}; "
          f"first {args.subset} {first['hits@10_round0']:.1f} {first['ci95']}; "
          f"random {args.subset} {sampled['hits@10_round0']:.1f} {sampled['ci95']} (full inside: {inside})")
    verdict = max(r["max_abs_difference"] for r in rows.values())
    save(args.out, {"world": "shapes_oracle", "corpus_size": len(world.index), "targets": len(targets),
                    "draws": args.draws, "rows": rows, "largest_row_difference_points": verdict,
                    "subset_caption_only": subsets})


if __name__ == "__main__":
    main()
