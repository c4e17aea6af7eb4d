"""Play a questioner through the ChatIR protocol on a world's targets, batched, and keep every rank."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from ..core import EpisodeBatch, InvalidQuestionError, validate_question
from ..dialog import Dialog
from ..spaces import dialog_observation
from ..worlds.base import World


@dataclass
class EpisodeRecord:
    """Every rank of every target: ``ranks[t, q]`` is target q's 0-based rank after round t."""

    targets: list[str]
    ranks: np.ndarray
    dialogs: list[Dialog]
    invalid_questions: int = 0
    passes: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def repeated_question_rate(self) -> float:
        """Share of asked questions that repeat an earlier question of the same dialog, in percent."""
        asked = repeats = 0
        for d in self.dialogs:
            seen: set[str] = set()
            for q in d.questions:
                key = q.strip().lower()
                repeats += key in seen
                seen.add(key)
                asked += 1
        return 100.0 * repeats / asked if asked else 0.0


def play_episodes(
    world: World,
    questioner,
    targets: Sequence[str] | None = None,
    max_rounds: int = 10,
    batch_size: int = 512,
    max_question_chars: int = 300,
    progress: bool = True,
    desc: str = "episodes",
) -> EpisodeRecord:
    """Run ``questioner`` for ``max_rounds`` on each target (the world's benchmark targets by default).

    A question that the env would refuse (empty, too long, not a string) is counted in
    ``invalid_questions`` and that episode skips the round, instead of ending the run; a
    questioner that returns None for an episode passes (the caption-only baseline).
    """
    targets = list(world.targets if targets is None else targets)
    ranks = np.zeros((max_rounds + 1, len(targets)), dtype=np.int64)
    dialogs: list[Dialog] = []
    invalid = passes = 0
    bar = tqdm(total=len(targets) * max_rounds, desc=desc, unit="turn", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(targets), batch_size):
        batch = targets[start : start + batch_size]
        core = EpisodeBatch(world, len(batch), max_rounds, max_question_chars=max_question_chars)
        core.reset(range(len(batch)), batch)
        pools = [list(world.question_pool(t)) for t in batch] if world.question_pool else None
        questioner.reset([world.captions[t] for t in batch], pools)
        ranks[0, start : start + len(batch)] = core.ranks
        for r in range(1, max_rounds + 1):
            observations = [dialog_observation(d, max_rounds, max_question_chars) for d in core.dialogs]
            # The runner counts rounds, not the dialog: a pass leaves the dialog one turn short.
            for obs in observations:
                obs["round_index"] = r - 1
            questions = questioner.ask(observations)
            if len(questions) != len(batch):
                raise ValueError(f"questioner returned {len(questions)} questions for {len(batch)} episodes")
            slots, asked = [], []
            for slot, q in enumerate(questions):
                if q is None:
                    passes += 1
                    continue
                try:
                    asked.append(validate_question(q, max_question_chars, slot))
                    slots.append(slot)
                except InvalidQuestionError:
                    invalid += 1
            if slots:
                core.step(asked, slots)
            ranks[r, start : start + len(batch)] = core.ranks
            bar.update(len(batch))
        dialogs.extend(core.dialogs)
    bar.close()
    return EpisodeRecord(targets, ranks, dialogs, invalid, passes)
