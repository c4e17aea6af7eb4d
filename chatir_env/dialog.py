"""The dialog: a caption plus (question, answer) turns, and the query string ChatIR ranks by."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Dialog:
    """An immutable dialog about one image.

    ``text()`` is the query string of ChatIR's official evaluation: the caption, then each turn as
    "question answer", joined by ", " (``", ".join(dialog[: round + 1])`` over the released files).
    """

    caption: str
    turns: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.caption, str):
            raise TypeError(f"Dialog caption must be a str, got {type(self.caption).__name__}")
        turns = tuple((str(q), str(a)) for q, a in self.turns)
        object.__setattr__(self, "turns", turns)

    @property
    def round(self) -> int:
        """How many question-answer turns the dialog holds (0 = caption only)."""
        return len(self.turns)

    @property
    def questions(self) -> tuple[str, ...]:
        return tuple(q for q, _ in self.turns)

    @property
    def answers(self) -> tuple[str, ...]:
        return tuple(a for _, a in self.turns)

    def with_turn(self, question: str, answer: str) -> "Dialog":
        return Dialog(self.caption, self.turns + ((question, answer),))

    def truncated(self, rounds: int) -> "Dialog":
        """The dialog as it stood after ``rounds`` turns."""
        return Dialog(self.caption, self.turns[:rounds])

    def turn_strings(self) -> list[str]:
        """Each turn as ChatIR's files hold it: "question answer"."""
        return [" ".join(part for part in (q, a) if part) for q, a in self.turns]

    def text(self, sep: str = ", ") -> str:
        return sep.join([self.caption, *self.turn_strings()])
