"""The Shapes scene oracle: answers VisDial-style from the scene itself."""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import numpy as np

from ..dialog import Dialog
from .shapes_language import ANSWERS, DONT_KNOW, QUESTION_POOL, noisy_answer_index, normalize_question, parse_question


class ShapesOracle:
    """Answers pool questions exactly ("yes", "no", "two", "red", "top left", "i can't tell", ...).

    It answers "i don't know" to a question it cannot parse. With ``answer_noise`` p, an answer is replaced by
    another of that question's answers with probability p, deterministically per (target, question,
    round, seed).
    """

    def __init__(self, answer_table: np.ndarray, rows: Mapping[str, int], answer_noise: float = 0.0, seed: int = 0):
        if not 0.0 <= answer_noise < 1.0:
            raise ValueError(f"answer_noise must be in [0, 1), got {answer_noise}")
        self.table, self.rows, self.answer_noise, self.seed = answer_table, rows, answer_noise, seed
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """``"shapes-oracle-v1-noise<p>-seed<s>-<12 hex>"``.

        The noise settings and a digest of the scenes' answer table with their ids. Scene ids repeat across
        corpus sizes (``shapes-train-000001`` is another scene in a 300-scene corpus than in a 50,000-scene
        one), so the digest, not the ids, tells two corpora apart. With noise, an answer also depends on the
        round; a store keeps one answer per (scene, question), the one asked first.
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for image_id, row in sorted(self.rows.items(), key=lambda item: item[1]):
                digest.update(image_id.encode() + b"\0")
            digest.update(np.ascontiguousarray(self.table, dtype=np.int64).tobytes())
            self._fingerprint = f"shapes-oracle-v1-noise{self.answer_noise:g}-seed{self.seed}-{digest.hexdigest()[:12]}"
        return self._fingerprint

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
