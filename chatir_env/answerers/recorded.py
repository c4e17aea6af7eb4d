"""Answers from the released ChatIR dialog files: BLIP2's recorded answer to a recorded question.

The four BLIP2-answered files (ChatGPT, FLAN-Alpaca-XXL, Human, Unanswered ChatGPT) hold, for each of
the 2,064 VisDial val targets, 10 questions each with BLIP2's answer: about 40 (question, answer)
pairs per target. ``RecordedAnswerer`` looks a question up for its target; ``question_pool(target)``
lists the questions a pooled questioner may choose from (``ChatIR/VisDialReplay-v0``).

Matching: questions are matched on ``question_key`` (the question without a made-up "Answer: ..."
tail, whitespace collapsed, case-folded), so "Is it sunny?" and "is it  sunny?" are one question.
When two files hold the same question for a target with different answers, the file listed first
wins (``answers_for`` returns all of them).

Answers are returned exactly as recorded (``clean=False``, the default): a pooled questioner that
replays one file's questions in order rebuilds that file's dialogs, and their ``Dialog.text()``,
character for character. ``clean=True`` strips "Answer:" markers and extra whitespace.

Turns that cannot be split into question and answer (no "?" and no other boundary; a few hundred,
all in FLAN and Unanswered) are left out of the table and the pool.

Unknown question (not recorded for that target): with ``on_unknown="fallback"`` (the default) the
answer is ``UNKNOWN_ANSWER`` = "i don't know", VisDial's own idiom for an unanswerable question, and
``unknown_count`` counts how often that happened; ``on_unknown="error"`` raises ``UnknownQuestionError``
naming the target and the question. An unknown target is always an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

from ..data.chatir_files import (
    BLIP2_DIALOG_FILES,
    SEARCH_SPACE_FILE,
    clean_answer,
    clean_question,
    load_dialog_file,
    load_search_space,
    question_key,
    split_turn,
)
from ..dialog import Dialog
from ..protocols import check_answer_batch

UNKNOWN_ANSWER = "i don't know"


class UnknownQuestionError(KeyError):
    """A question with no recorded answer for its target."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class RecordedTurn:
    question: str  # as recorded (exact)
    answer: str  # as recorded (exact)
    source: str  # the file it came from
    entry: int  # its entry index in that file
    turn: int  # 1-based turn number in that dialog


class RecordedAnswerer:
    """Answer (target, question) from recorded dialogs; see the module docstring for the rules."""

    def __init__(
        self,
        records: dict[str, Sequence[tuple[str, Dialog]]],
        *,
        on_unknown: Literal["fallback", "error"] = "fallback",
        clean: bool = False,
        fallback: str = UNKNOWN_ANSWER,
    ):
        if on_unknown not in ("fallback", "error"):
            raise ValueError(f"on_unknown must be 'fallback' or 'error', got {on_unknown!r}")
        self.on_unknown = on_unknown
        self.clean = clean
        self.fallback = fallback
        self.unknown_count = 0
        self.sources = list(records)
        self._table: dict[str, dict[str, list[RecordedTurn]]] = {}
        self._pool: dict[str, list[str]] = {}
        self.captions: dict[str, str] = {}
        for source, dialogs in records.items():
            for entry, (target, dialog) in enumerate(dialogs):
                self.captions.setdefault(target, dialog.caption)
                per_target = self._table.setdefault(target, {})
                pool = self._pool.setdefault(target, [])
                for t, (q, a) in enumerate(dialog.turns, start=1):
                    if not _answerable(q, a):
                        continue
                    key = question_key(q)
                    if not key:
                        continue
                    if key not in per_target:
                        per_target[key] = []
                        pool.append(q)
                    per_target[key].append(RecordedTurn(q, a, source, entry, t))

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike], *, corpus=None, **kwargs) -> "RecordedAnswerer":
        """Build from dialog files, in priority order."""
        records = {Path(p).name: load_dialog_file(p, corpus=corpus) for p in paths}
        return cls(records, **kwargs)

    @classmethod
    def from_data_dir(
        cls, data_dir: str | os.PathLike, files: Sequence[str] = BLIP2_DIALOG_FILES, *, check_corpus: bool = True, **kwargs
    ) -> "RecordedAnswerer":
        """The four BLIP2-answered files of a release folder (``chatir download``)."""
        data_dir = Path(data_dir)
        corpus = set(load_search_space(data_dir / SEARCH_SPACE_FILE)) if check_corpus else None
        return cls.from_files([data_dir / f for f in files], corpus=corpus, **kwargs)

    # --- lookups -----------------------------------------------------------------------------------

    @property
    def targets(self) -> list[str]:
        return list(self._table)

    def _turns(self, target: str) -> dict[str, list[RecordedTurn]]:
        try:
            return self._table[target]
        except KeyError:
            raise UnknownQuestionError(
                f"target {target!r} has no recorded dialogs in {', '.join(self.sources)}"
            ) from None

    def answers_for(self, target: str, question: str) -> list[RecordedTurn]:
        """Every recorded turn asking ``question`` about ``target`` (first file first)."""
        return list(self._turns(target).get(question_key(question), []))

    def question_pool(self, target: str) -> list[str]:
        """The distinct recorded questions for ``target`` (exact strings, file order then turn order)."""
        self._turns(target)
        return list(self._pool[target])

    def pool_entries(self, target: str) -> list[RecordedTurn]:
        """The pool with each question's (first) recorded answer and where it came from."""
        turns = self._turns(target)
        return [turns[question_key(q)][0] for q in self._pool[target]]

    def answer_one(self, target: str, question: str) -> str:
        found = self.answers_for(target, question)
        if not found:
            if self.on_unknown == "error":
                raise UnknownQuestionError(
                    f"no recorded answer to {question!r} for target {target!r} "
                    f"({len(self._pool[target])} recorded questions; see question_pool)"
                )
            self.unknown_count += 1
            return self.fallback
        answer = found[0].answer
        return clean_answer(answer) if self.clean else answer

    def answer(self, targets: Sequence[str], dialogs: Sequence[Dialog], questions: Sequence[str]) -> list[str]:
        check_answer_batch(targets, dialogs, questions)
        return [self.answer_one(t, q) for t, q in zip(targets, questions)]


def _answerable(question: str, answer: str) -> bool:
    # A turn split_turn could not split comes back as (whole turn, ""): re-split to tell.
    return bool(answer) or split_turn(question).answerable


__all__ = ["RecordedAnswerer", "RecordedTurn", "UnknownQuestionError", "UNKNOWN_ANSWER", "clean_question"]
