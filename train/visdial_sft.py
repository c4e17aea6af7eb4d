"""SFT rows for an LM questioner from VisDial v1.0 train's human questions (the warm start before GRPO).

Each row is one turn of a training dialog: the prompt is the chat an LM questioner sees at that turn
(``dialog_messages``: [system], the caption, then the earlier human questions and their recorded
human answers), the completion is the human question asked next. Rows come from the ``train``
split of a VisDial training world only, so neither the held-out validation slice nor (through the
world's leakage guard) any benchmark image is trained on. The same ``{"prompt", "completion"}``
rows as the Shapes warm start (``chatir_env.train.shapes_lm.shapes_sft_examples``), for TRL's
``SFTTrainer``; the SFT stage reads them with ``data.source: visdial_train`` (configs/sft_visdial_train.yaml).

The answers in the prompts are VisDial's people's ("yes, he is"), not BLIP2's ("yes"): the style the
questioner then meets in GRPO and at test time is BLIP2's (see docs/visdial.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..agents.lm import dialog_messages


def visdial_sft_examples(world_kwargs: dict[str, Any], num_examples: int | None = None, max_rounds: int = 10,
                         seed: int = 0, system_prompt: str | None = None, world: str = "visdial_train_replay") -> list[dict]:
    """Prompt-completion chats from the human dialogs of a VisDial training world's ``train`` split.

    Args:
        world_kwargs: the training world's arguments (``train_file``, ``index``, ``retriever_model``,
            ``benchmark_index``, ...); ``split`` is forced to ``"train"``.
        num_examples: rows drawn (target and turn uniformly, with a seeded generator); None: every
            turn of every train-split dialog, in order.
        max_rounds: turns considered per dialog (the first ``max_rounds``).
        seed: the draw's seed.
        system_prompt: the system message (the one GRPO and ``LMQuestioner`` will use).
        world: ``visdial_train_replay`` (no answerer model is loaded) or ``visdial_train``.

    Returns:
        ``[{"prompt": [messages], "completion": [{"role": "assistant", "content": question}]}, ...]``.
    """
    from ..worlds import build_world
    from ..worlds.visdial_train import training_dialogs

    kwargs = {**world_kwargs, "split": "train"}
    if world == "visdial_train_replay":
        kwargs.setdefault("answer_sources", ["human", "dont_know"])  # rows need no answer store
    built = build_world(world, **kwargs)
    records = training_dialogs(built.config["train_file"], built.index).records
    dialogs = [records[t] for t in built.targets]

    def row(dialog, k: int) -> dict:
        turns = dialog.turns[:k]
        return {"prompt": dialog_messages(dialog.caption, turns, system_prompt),
                "completion": [{"role": "assistant", "content": dialog.turns[k][0]}]}

    if num_examples is None:
        return [row(d, k) for d in dialogs for k in range(min(max_rounds, d.round))]
    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < num_examples:
        dialog = dialogs[int(rng.integers(len(dialogs)))]
        if dialog.round:
            rows.append(row(dialog, int(rng.integers(min(max_rounds, dialog.round)))))
    return rows


__all__ = ["visdial_sft_examples"]
