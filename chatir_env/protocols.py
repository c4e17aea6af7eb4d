"""The three roles of a ChatIR round, as structural types: any object with these methods plugs in."""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import torch

from .dialog import Dialog


@runtime_checkable
class Retriever(Protocol):
    """Maps corpus items and dialogs into one space where a dot product scores a match.

    Both encoders return L2-normalised rows, except exact scorers whose dot product is a
    log-likelihood (Shapes' oracle retriever). ``fingerprint`` names the weights, so an index built
    by one retriever is never ranked against another's dialog vectors.
    """

    fingerprint: str
    dim: int
    device: torch.device

    def encode_images(self, items: Sequence[Any]) -> torch.Tensor: ...

    def encode_dialogs(self, dialogs: Sequence[Dialog]) -> torch.Tensor: ...


@runtime_checkable
class Answerer(Protocol):
    """Answers one question per episode about that episode's target (a corpus id)."""

    def answer(self, targets: Sequence[str], dialogs: Sequence[Dialog], questions: Sequence[str]) -> list[str]: ...


@runtime_checkable
class Questioner(Protocol):
    """Asks one question per episode. ``reset`` starts new episodes; ``ask`` is called once a round.

    Observations are the env's observation dicts (see ``ChatIREnv``);
    ``chatir_env.spaces.observation_dialog`` turns one back into a ``Dialog``. ``pools`` are the
    questions each episode's world can answer, for questioners that pick from them; returning None
    for an episode asks nothing that round.
    """

    def reset(self, captions: Sequence[str], pools: Sequence[Sequence[str]] | None = None) -> None: ...

    def ask(self, observations: Sequence[dict]) -> list[str | None]: ...


def check_answer_batch(targets: Sequence[str], dialogs: Sequence[Dialog] | None, questions: Sequence[str], *,
                       dialogs_optional: bool = False) -> None:
    """Refuse an ``Answerer.answer`` batch whose targets, dialogs and questions differ in number.

    Args:
        targets: one target id per episode.
        dialogs: one dialog per episode (``None`` allowed only with ``dialogs_optional``).
        questions: one question per episode.
        dialogs_optional: the answerer ignores dialogs, so ``None`` stands for "none given".

    Raises:
        ValueError: the counts differ (the message gives all three).
    """
    if dialogs is None and not dialogs_optional:
        raise ValueError("answer needs one dialog per episode, got None")
    if len(targets) != len(questions) or (dialogs is not None and len(dialogs) != len(targets)):
        raise ValueError(
            f"answer needs one target, dialog and question per episode, got {len(targets)}, "
            f"{'no' if dialogs is None else len(dialogs)}, {len(questions)}"
        )
