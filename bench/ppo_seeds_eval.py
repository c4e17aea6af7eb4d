r"""The PPO seed study's evaluation: every seed's policy on the 2,064 benchmark targets.

Figures are aggregated over seeds x targets as rliable does (``chatir_env.eval.seed_stats``).

Hits@10 at rounds 1, 3, 5 and 10 is the mean of 0/100 per-target hits over seeds x targets; the per-target
log-rank integral (the quantity BRI averages) is reported as an IQM. Both with stratified bootstrap 95%
intervals (targets resampled within each seed). Per-seed figures are kept too.

    .venv/bin/python bench/ppo_seeds_eval.py --world shapes_oracle --policy 0=agents/policies/ppo_shapes_oracle.pt \
        --policy 1=runs/ppo_seeds/shapes_oracle-seed1/best_policy.pt --policy 2=...

``--compare template=shapes_template --compare greedy=greedy_info_gain`` adds each policy's per-target
difference from a hand-made questioner on the same targets (paired), with the same bootstrap.

``bash bench/ppo_seeds.sh`` trains seeds 1 and 2 and calls this for both worlds (bench/results/ppo_seeds_<world>.json).
"""

from __future__ import annotations

import argparse

import numpy as np
from _results import save
from _source_tree import use_source_tree

use_source_tree()

from chatir_env.agents import make_questioner  # noqa: E402
from chatir_env.agents.policy import PolicyQuestioner  # noqa: E402
from chatir_env.eval.runner import play_episodes  # noqa: E402
from chatir_env.eval.seed_stats import iqm_with_ci, mean_with_ci  # noqa: E402
from chatir_env.metrics import best_ranks, bri, hits_at_k  # noqa: E402
from chatir_env.worlds import build_world  # noqa: E402


def log_rank_integral(ranks: np.ndarray) -> np.ndarray:
    """Per target: (1/R) * sum_t (ln(best_t + 1) + ln(best_{t+1} + 1)) / 2; BRI is its mean over targets."""
    logs = np.log(best_ranks(ranks).astype(np.float64) + 1.0)
    return ((logs[:-1] + logs[1:]) / 2.0).sum(axis=0) / (len(logs) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", required=True, choices=("shapes", "shapes_oracle"))
    parser.add_argument("--policy", action="append", required=True, metavar="SEED=PATH")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=QUESTIONER",
                        help="a hand-made questioner (a short name, e.g. template=shapes_template) to compare with: "
                             "the per-target differences policy - questioner, paired on the same targets")
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--out", default=None, metavar="NAME",
                        help="results name: bench/results/NAME.json (default ppo_seeds_<world>)")
    args = parser.parse_args()
    world = build_world(args.world, split="benchmark")
    seeds, hits1, hits3, hits5, hits10, integrals, per_seed = [], [], [], [], [], [], {}
    for item in args.policy:
        seed, _, path = item.partition("=")
        questioner = PolicyQuestioner(path)
        questioner.bind_world(world)
        ranks = play_episodes(world, questioner, progress=False).ranks
        best = best_ranks(ranks)
        seeds.append(int(seed))
        hits1.append(100.0 * (best[1] < 10))
        hits3.append(100.0 * (best[3] < 10))
        hits5.append(100.0 * (best[5] < 10))
        hits10.append(100.0 * (best[10] < 10))
        integrals.append(log_rank_integral(ranks))
        h = hits_at_k(ranks)
        per_seed[seed] = {"policy": path, "hits@10_round5": float(h[5]), "hits@10_round10": float(h[10]), "bri": bri(ranks),
                          "hits@10_by_round": [float(x) for x in h]}
        print(f"{args.world} seed {seed}: Hits@10 R5 {h[5]:.1f}  R10 {h[10]:.1f}  BRI {bri(ranks):.3f}")
    aggregate = {"hits@10_round1": mean_with_ci(np.stack(hits1), reps=args.reps).as_dict(),
                 "hits@10_round3": mean_with_ci(np.stack(hits3), reps=args.reps).as_dict(),
                 "hits@10_round5": mean_with_ci(np.stack(hits5), reps=args.reps).as_dict(),
                 "hits@10_round10": mean_with_ci(np.stack(hits10), reps=args.reps).as_dict(),
                 "log_rank_integral_iqm": iqm_with_ci(np.stack(integrals), reps=args.reps).as_dict(),
                 "bri_mean": mean_with_ci(np.stack(integrals), reps=args.reps).as_dict()}
    for key, value in aggregate.items():
        print(f"{args.world} over seeds {seeds}: {key} {value['value']:.3f} [{value['ci'][0]:.3f}, {value['ci'][1]:.3f}]")
    # Paired comparisons: each seed's per-target score minus the hand-made questioner's on the same target
    # (its answers are the same oracle's), so the interval is on the difference itself.
    compared = {}
    for item in args.compare:
        name, _, spec = item.partition("=")
        other = make_questioner(spec)
        if hasattr(other, "bind_world"):
            other.bind_world(world)
        ranks = play_episodes(world, other, progress=False).ranks
        best = best_ranks(ranks)
        mine = {"hits@10_round1": hits1, "hits@10_round3": hits3, "hits@10_round5": hits5, "hits@10_round10": hits10}
        row = {key: mean_with_ci(np.stack(values) - 100.0 * (best[int(key.rsplit("round", 1)[1])] < 10)[None],
                                 reps=args.reps).as_dict() for key, values in mine.items()}
        row["bri_mean"] = mean_with_ci(np.stack(integrals) - log_rank_integral(ranks)[None], reps=args.reps).as_dict()
        row["questioner"] = {"spec": spec, "hits@10_by_round": [float(x) for x in hits_at_k(ranks)], "bri": bri(ranks)}
        compared[name] = row
        for key in ("hits@10_round3", "hits@10_round5", "hits@10_round10", "bri_mean"):
            v = row[key]
            print(f"{args.world} policy - {name}: {key} {v['value']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]")
    save(args.out or f"ppo_seeds_{args.world}",
         {"world": args.world, "seeds": seeds, "per_seed": per_seed, "aggregate": aggregate,
          "policy_minus": compared})


if __name__ == "__main__":
    main()
