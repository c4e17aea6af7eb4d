"""Every shipped trained artifact, evaluated from the files in the repository.

The two PPO policies (agents/policies/*.pt), the dual encoder (chatir_env/worlds/weights, through the
caption-only and template questioners on ``ChatIR/Shapes-v0``) and the two LM questioners
(agents/weights/shapes_lm_sft, shapes_lm_grpo, on ``ChatIR/ShapesOracle-v0``): Hits@10 per round on all
2,064 benchmark targets with 95% bootstrap intervals, and on the seeded random 256-target subset that
tests/test_artifacts.py replays. For the LM questioners it also counts the kinds of question asked in
rounds 1-5 over the 2,064 dialogs (docs/grpo.md's table).

    .venv/bin/python bench/eval_artifacts.py      # about 10 minutes on 2 cores; bench/results/artifacts.json
"""

from __future__ import annotations

import argparse
import collections
import time

from _results import save
from _source_tree import use_source_tree

use_source_tree()

from chatir_env.agents import make_questioner  # noqa: E402
from chatir_env.eval.benchmark import resolve_args  # noqa: E402
from chatir_env.eval.report import summarize_record  # noqa: E402
from chatir_env.eval.runner import play_episodes  # noqa: E402
from chatir_env.metrics import hits_at_k  # noqa: E402
from chatir_env.target_sample import sample_targets, targets_digest  # noqa: E402
from chatir_env.worlds import build_world  # noqa: E402
from chatir_env.worlds.shapes_language import QUESTION_POOL, parse_question  # noqa: E402

SUBSET, SUBSET_SEED = 256, 0
# (label, world, questioner, its arguments)
ARTIFACTS = [
    ("dual_encoder/caption_only", "shapes", "caption_only", {}),
    ("dual_encoder/template", "shapes", "shapes_template", {}),
    ("ppo_shapes", "shapes", "policy", {"policy": "package:agents/policies/ppo_shapes.pt"}),
    ("ppo_shapes_oracle", "shapes_oracle", "policy", {"policy": "package:agents/policies/ppo_shapes_oracle.pt"}),
    ("ppo_shapes_oracle_gain", "shapes_oracle", "policy", {"policy": "package:agents/policies/ppo_shapes_oracle_gain.pt"}),
    ("shapes_lm_sft", "shapes_oracle", "lm", {"model_path": "shapes_lm_sft", "batch_size": 512}),
    ("shapes_lm_grpo", "shapes_oracle", "lm", {"model_path": "shapes_lm_grpo", "batch_size": 512}),
]


def question_kinds(dialogs, rounds: int = 5) -> dict[str, int]:
    """How many of the questions asked in rounds 1..rounds fall in each pool kind ("not_in_pool": unparsable)."""
    counts: collections.Counter = collections.Counter()
    for d in dialogs:
        for q in d.questions[:rounds]:
            index = parse_question(q)
            counts["not_in_pool" if index is None else QUESTION_POOL[index].kind] += 1
    return dict(sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="evaluate only these labels (repeatable)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    worlds = {}
    rows = {}
    for label, world_name, spec, spec_args in ARTIFACTS:
        if args.only and label not in args.only:
            continue
        world = worlds.setdefault(world_name, build_world(world_name, split="benchmark"))
        row = {"world": world_name, "questioner": spec, "args": spec_args}
        subset = sample_targets(world.targets, SUBSET, SUBSET_SEED)
        for name, targets in (("full", list(world.targets)), ("subset", subset)):
            t0 = time.time()
            questioner = make_questioner(spec, **resolve_args(spec_args))
            if hasattr(questioner, "bind_world"):
                questioner.bind_world(world)
            record = play_episodes(world, questioner, targets, 10, progress=False, desc=label)
            if name == "full":
                summary = summarize_record(record, bootstrap_samples=args.bootstrap)
                row["full"] = {key: summary[key] for key in ("queries", "hits@10", "hits@10_ci95", "per_round_hits@10",
                                                             "mean_rank", "bri", "bri_ci95", "repeated_question_rate",
                                                             "invalid_questions")}
                if spec == "lm":
                    row["full"]["question_kinds_rounds_1_5"] = question_kinds(record.dialogs)
            else:
                row["subset"] = {"targets": len(targets), "seed": SUBSET_SEED, "sha256": targets_digest(targets),
                                 "hits@10": hits_at_k(record.ranks).round(4).tolist()}
            row[f"{name}_seconds"] = round(time.time() - t0, 1)
        rows[label] = row
        full, sub = row["full"]["hits@10"], row["subset"]["hits@10"]
        print(f"{label:<26} full R0/R5/R10 {full[0]:.1f}/{full[5]:.1f}/{full[10]:.1f}  "
              f"subset {sub[0]:.1f}/{sub[5]:.1f}/{sub[10]:.1f}  ({row['full_seconds']} s + {row['subset_seconds']} s)")
    save("artifacts" if not args.only else "artifacts_partial",
         {"subset": {"targets": SUBSET, "seed": SUBSET_SEED}, "artifacts": rows})


if __name__ == "__main__":
    main()
