r"""Can a questioner beat the greedy one on the exact world's BRI? Greedy, a two-step planner and PPO policies.

On ChatIR/ShapesOracle-v0 (the exact retriever, the 2,064 benchmark targets) the greedy information-gain
questioner finds every target within 5 rounds, so what is left to gain is speed: BRI, the mean over
targets of the per-target log-rank integral. This plays

* ``greedy``: ``greedy_info_gain`` (one question ahead),
* ``greedy-lookahead-2``: the same with ``lookahead=2`` (the best adaptive pair of questions),
* each ``--policy NAME=PATH`` (a PPO policy file; several files with one NAME prefix before ``/`` are
  training seeds of one recipe, e.g. ``bri/0=...``, ``bri/1=...``),

and reports Hits@10 at rounds 1, 3, 5 and BRI with 95% bootstrap intervals over targets, plus each one's
per-target difference from greedy's log-rank integral (paired: the same targets, the same answers) with a
95% bootstrap interval; a recipe over seeds gets rliable's stratified bootstrap over seeds x targets::

    .venv/bin/python bench/exact_world_planning.py --policy gain-bias/0=agents/policies/ppo_shapes_oracle_gain.pt \
        --policy bri/0=runs/bri_s0/best_policy.pt --policy bri/1=... --policy bri/2=...

Saves ``bench/results/exact_world_planning.json``.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from _results import save
from _source_tree import use_source_tree
from ppo_seeds_eval import log_rank_integral

use_source_tree()

from chatir_env.agents.greedy import GreedyInfoGainQuestioner  # noqa: E402
from chatir_env.agents.policy import PolicyQuestioner  # noqa: E402
from chatir_env.eval.runner import play_episodes  # noqa: E402
from chatir_env.eval.seed_stats import mean_with_ci  # noqa: E402
from chatir_env.metrics import best_ranks  # noqa: E402
from chatir_env.worlds import build_world  # noqa: E402


def figures(runs: list[np.ndarray], greedy_integral: np.ndarray, reps: int) -> dict:
    """Hits@10 at rounds 1/3/5, BRI and the paired difference from greedy over one or more seeds' rank matrices."""
    best = [best_ranks(r) for r in runs]
    integrals = np.stack([log_rank_integral(r) for r in runs])
    out = {f"hits@10_round{t}": mean_with_ci(np.stack([100.0 * (b[t] < 10) for b in best]), reps=reps).as_dict()
           for t in (1, 3, 5)}
    out["bri"] = mean_with_ci(integrals, reps=reps).as_dict()
    out["bri_minus_greedy"] = mean_with_ci(integrals - greedy_integral[None], reps=reps).as_dict()
    out["seeds"] = len(runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--no-lookahead", action="store_true", help="skip the two-step planner (the slowest row)")
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--out", default="exact_world_planning", metavar="NAME")
    args = parser.parse_args()
    world = build_world("shapes_oracle", split="benchmark")
    questioners: dict[str, list] = defaultdict(list)
    questioners["greedy"].append(GreedyInfoGainQuestioner())
    if not args.no_lookahead:
        questioners["greedy-lookahead-2"].append(GreedyInfoGainQuestioner(lookahead=2))
    for item in args.policy:
        name, _, path = item.partition("=")
        questioners[name.split("/")[0]].append(PolicyQuestioner(path))
    ranks: dict[str, list[np.ndarray]] = defaultdict(list)
    for name, members in questioners.items():
        for questioner in members:
            questioner.bind_world(world)
            ranks[name].append(play_episodes(world, questioner, desc=name).ranks)
    greedy_integral = log_rank_integral(ranks["greedy"][0])
    rows = {name: figures(runs, greedy_integral, args.reps) for name, runs in ranks.items()}
    for name, row in rows.items():
        bri, diff = row["bri"], row["bri_minus_greedy"]
        print(f"{name:20s} seeds {row['seeds']}  Hits@10 R1 {row['hits@10_round1']['value']:.1f}  "
              f"R3 {row['hits@10_round3']['value']:.1f}  R5 {row['hits@10_round5']['value']:.2f}  "
              f"BRI {bri['value']:.4f} [{bri['ci'][0]:.4f}, {bri['ci'][1]:.4f}]  "
              f"minus greedy {diff['value']:+.4f} [{diff['ci'][0]:+.4f}, {diff['ci'][1]:+.4f}]")
    save(args.out, {"world": "shapes_oracle", "split": "benchmark", "targets": len(world.targets),
                    "policies": args.policy, "rows": rows})


if __name__ == "__main__":
    main()
