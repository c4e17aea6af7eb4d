r"""What language-model questioners ask over 10 rounds: question kinds per round and what their repeats are.

Each model plays the 2,064 benchmark targets of ``ChatIR/ShapesOracle-v0`` for 10 rounds (sampled at
temperature 1, seed 0, as the GRPO benchmark does); for rounds 1-5 and 6-10 it counts the pool kind of
every question (``not_in_pool``: unparsable, answered "i don't know") and, separately, the kinds of the
questions that repeat an earlier one of the same dialog::

    .venv/bin/python bench/lm_question_kinds.py --model grpo_5_rounds=shapes_lm_grpo \
        --model grpo_10_rounds_from_sft=runs/grpo_shapes_10_from_sft/final

Saves ``bench/results/lm_question_kinds.json``.
"""

from __future__ import annotations

import argparse
import collections

from _results import save
from _source_tree import use_source_tree

use_source_tree()

from chatir_env.agents import make_questioner  # noqa: E402
from chatir_env.eval.runner import play_episodes  # noqa: E402
from chatir_env.metrics import hits_at_k  # noqa: E402
from chatir_env.worlds import build_world  # noqa: E402
from chatir_env.worlds.shapes_language import QUESTION_POOL, parse_question  # noqa: E402


def kind(question: str) -> str:
    index = parse_question(question)
    return "not_in_pool" if index is None else QUESTION_POOL[index].kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                        help="an LM questioner: a shipped name (shapes_lm_grpo) or a model folder")
    parser.add_argument("--out", default="lm_question_kinds", metavar="NAME")
    args = parser.parse_args()
    world = build_world("shapes_oracle", split="benchmark")
    rows = {}
    for item in args.model:
        name, _, path = item.partition("=")
        questioner = make_questioner("lm", model_path=path, batch_size=512)
        record = play_episodes(world, questioner, max_rounds=10, desc=name)
        kinds = {"rounds_1_5": collections.Counter(), "rounds_6_10": collections.Counter()}
        repeats = collections.Counter()
        for dialog in record.dialogs:
            seen: set[str] = set()
            for r, question in enumerate(dialog.questions):
                kinds["rounds_1_5" if r < 5 else "rounds_6_10"][kind(question)] += 1
                key = question.strip().lower()
                if key in seen:
                    repeats[kind(question)] += 1
                seen.add(key)
        hits = hits_at_k(record.ranks)
        rows[name] = {"model": path, "hits@10_round5": float(hits[5]), "hits@10_round10": float(hits[10]),
                      "repeated_question_rate": record.repeated_question_rate,
                      **{k: dict(sorted(v.items())) for k, v in kinds.items()},
                      "repeats_by_kind": dict(sorted(repeats.items()))}
        print(f"{name}: R5 {hits[5]:.1f} R10 {hits[10]:.1f} repeats {record.repeated_question_rate:.1f}%")
        for key in ("rounds_1_5", "rounds_6_10", "repeats_by_kind"):
            print(f"  {key}: {rows[name][key]}")
    save(args.out, {"world": "shapes_oracle", "split": "benchmark", "rounds": 10, "models": rows})


if __name__ == "__main__":
    main()
