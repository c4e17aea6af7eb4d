"""The Shapes scene oracle: answers VisDial-style from the scene itself."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..dialog import Dialog
from .shapes_language import ANSWERS, DONT_KNOW, QUESTION_POOL, noisy_answer_index, normalize_question, parse_question


class ShapesOracle:
    """Answers pool questions exactly ("yes", "no", "two", "red", "top left", "i can't tell", ...),
    and "i don't know" to a question it cannot parse. With ``answer_noise`` p, an answer is replaced by
    another of that question's answers with probability p, deterministically per (target, question,
    round, seed)."""

    def __init__(self, answer_table: np.ndarray, rows: Mapping[str, int], answer_noise: float = 0.0, seed: int = 0):
        if not 0.0 <= answer_noise < 1.0:
            raise ValueError(f"answer_noise must be in [0, 1), got {answer_noise}")
        self.table, self.rows, self.answer_noise, self.seed = answer_table, rows, answer_noise, seed

    def answer_options(self, question: str) -> tuple[str, ...] | None:
        """The answers this oracle can give to ``question``, or None when it cannot parse the question.

        They are the Shapes language's whole answer set for that question: the exact retriever reads
        no other answer (anything else is no evidence) and the learned encoder was trained on these
        only, so a person answering in the world's place is told when an answer falls outside them.
        """
        q = parse_question(question)
        return None if q is None else QUESTION_POOL[q].answers

    def answer(self, targets: Sequence[str], dialogs: Sequence[Dialog], questions: Sequence[str]) -> list[str]:
        out = []
        for target, dialog, question in zip(targets, dialogs, questions, strict=True):
            q = parse_question(question)
            if q is None:
                out.append(DONT_KNOW)
                continue
            true = int(self.table[self.rows[target], q])
            key = (target, normalize_question(question), dialog.round, self.seed)
            out.append(ANSWERS[noisy_answer_index(true, q, key, self.answer_noise)])
        return out
