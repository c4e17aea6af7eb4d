"""``ReplayAnswerer``: recorded ChatIR answers chosen by the dialog so far (the VisDialReplay world's answerer)."""

from __future__ import annotations

import re
from typing import Sequence

from ..data.chatir_files import question_key
from ..dialog import Dialog
from ..protocols import check_answer_batch
from .recorded import RecordedAnswerer, RecordedTurn

_CONTROL_RUN = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def sanitize_question(question: str) -> str:
    """Each run of control characters (line breaks, tabs) becomes one space."""
    return _CONTROL_RUN.sub(" ", question)


def _spaces(text: str) -> str:
    return " ".join(text.split())


class ReplayAnswerer(RecordedAnswerer):
    """A :class:`RecordedAnswerer` that reads the dialog so far to pick among recorded answers.

    The same question (matched on ``question_key``) may be recorded several times for one target
    with different answers: by two questioners, or twice in one dialog. ``answer`` chooses:

    1. recorded turns whose question is the asked one up to whitespace (a pool question with its
       line breaks made spaces is still its recorded self) before merely case-equal ones;
    2. the source (file) most consistent with the dialog so far: the one whose recordings give the
       dialog's earlier answers to its earlier questions most often (ties: file order);
    3. within that source, the n-th recording of the question when the dialog already asked it n
       times (so a recorded dialog that repeats a question gets its second answer the second time).

    Asking one file's questions in order therefore rebuilds that file's dialogs exactly (all 2,064
    Human dialogs do; checked in tests/test_visdial_envs.py).

    With ``answer_store`` (an ``AnswerStore``), a question the files did not record for its target
    is looked up there (one batch per call) before the fallback: answers ``chatir answer`` added
    for new questions serve the replay world through the same store as the training worlds.
    """

    def __init__(self, records, *, answer_store=None, **kwargs):
        super().__init__(records, **kwargs)
        self.answer_store = answer_store

    def answer(self, targets: Sequence[str], dialogs: Sequence[Dialog], questions: Sequence[str]) -> list[str]:
        check_answer_batch(targets, dialogs, questions)
        stored: list[str | None] = [None] * len(targets)
        if self.answer_store is not None:
            unrecorded = [i for i, (t, q) in enumerate(zip(targets, questions)) if not self.answers_for(t, q)]
            for i, answer in zip(unrecorded, self.answer_store.get_many([(targets[i], questions[i]) for i in unrecorded])):
                stored[i] = answer
        return [self.answer_in_dialog(t, d, q, s) for t, d, q, s in zip(targets, dialogs, questions, stored)]

    def answer_in_dialog(self, target: str, dialog: Dialog | None, question: str, stored: str | None = None) -> str:
        found = self.answers_for(target, question)
        if not found:
            return stored if stored is not None else self.answer_one(target, question)  # the fallback / error path
        same = [f for f in found if _spaces(f.question) == _spaces(question)]
        found = same or found
        turns = dialog.turns if dialog is not None else ()
        chosen = self._choose(target, turns, question, found)
        return self._format(chosen)

    def _format(self, turn: RecordedTurn) -> str:
        from ..data.chatir_files import clean_answer

        return clean_answer(turn.answer) if self.clean else turn.answer

    def _choose(self, target: str, turns, question: str, found: list[RecordedTurn]) -> RecordedTurn:
        sources = list(dict.fromkeys(f.source for f in found))
        if len(sources) > 1 and turns:
            score = dict.fromkeys(sources, 0)
            for q, a in turns:
                agreeing = {r.source for r in self.answers_for(target, q) if r.answer == a}
                for s in agreeing & score.keys():
                    score[s] += 1
            best = max(score.values())
            sources = [s for s in sources if score[s] == best]
        mine = sorted((f for f in found if f.source == sources[0]), key=lambda f: f.turn)
        key = question_key(question)
        asked_before = sum(question_key(q) == key for q, _ in turns)
        return mine[min(asked_before, len(mine) - 1)]
