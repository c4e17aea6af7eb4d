"""The questioner interface and the simple baselines.

A questioner is any object with

    reset(captions: list[str], pools: list[list[str]] | None = None) -> None
    ask(observations: list[dict]) -> list[str | None]

called with one entry per episode (batched). ``pools`` are the questions each episode's world can
answer (Shapes' template pool, VisDialReplay's recorded questions), for questioners that pick from
them. Returning ``None`` for an episode means "ask nothing": the dialog stays as it is (the
caption-only baseline). Configs name a questioner by short name (``QUESTIONERS``) or import path
``package.module:Class``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class CaptionOnlyQuestioner:
    """Asks nothing: every round's ranking is the caption's (ChatIR's round-0 baseline)."""

    def reset(self, captions: Sequence[str], pools: Sequence[Sequence[str]] | None = None) -> None:
        pass

    def ask(self, observations: Sequence[dict]) -> list[str | None]:
        return [None] * len(observations)


class RandomPoolQuestioner:
    """Asks a question drawn uniformly from the episode's pool, never one it asked already."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reset(self, captions: Sequence[str], pools: Sequence[Sequence[str]] | None = None) -> None:
        if pools is None:
            raise ValueError("RandomPoolQuestioner needs a question pool; this world offers none (free-text only)")
        self.pools = [list(p) for p in pools]

    def ask(self, observations: Sequence[dict]) -> list[str]:
        out = []
        for obs, pool in zip(observations, self.pools, strict=True):
            asked = set(obs["questions"][: obs["round"]])
            options = [q for q in pool if q not in asked] or pool
            out.append(options[self.rng.integers(len(options))])
        return out


class FixedOrderQuestioner:
    """Asks the same questions in the same order in every episode (a template questioner)."""

    def __init__(self, questions: Sequence[str]):
        if not questions:
            raise ValueError("FixedOrderQuestioner needs at least one question")
        self.questions = list(questions)

    def reset(self, captions: Sequence[str], pools: Sequence[Sequence[str]] | None = None) -> None:
        pass

    def ask(self, observations: Sequence[dict]) -> list[str]:
        return [self.questions[min(obs["round"], len(self.questions) - 1)] for obs in observations]


# The Shapes template questioner: what a person asks without looking at the answers.
SHAPES_TEMPLATE_QUESTIONS = (
    "how many objects are there?",
    "what is the background?",
    "what is in the center?",
    "what is in the top left?",
    "what is in the bottom right?",
    "where is the red object?",
    "where is the blue object?",
    "what color is the circle?",
    "what shape is the green object?",
    "is there anything yellow?",
)


class ShapesTemplateQuestioner(FixedOrderQuestioner):
    def __init__(self, questions: Sequence[str] = SHAPES_TEMPLATE_QUESTIONS):
        super().__init__(questions)
