"""Play a questioner through the ChatIR protocol on a world's targets, batched, and keep every rank."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core import EpisodeBatch
from ..dialog import Dialog
from ..progress import progress as progress_bar
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

    Rounds are played by ``EpisodeBatch`` with ``invalid="pass"``: a question the env would refuse
    (empty, too long, not a string) is counted in ``invalid_questions`` and that episode skips the
    round, instead of ending the run; a questioner that returns None for an episode passes (the
    caption-only baseline). Either way the round is used up.

    Observations are ``ChatIREnv``'s, plus ``round_index`` (the round being played, passes included)
    and, for a questioner with a ``candidate_top_k`` attribute > 0, ``candidates``: the episode's
    ``chatir_env.core.Candidates`` from the ranking the core just did (what ``ChatIREnv`` puts in
    ``info["candidates"]``), so the questioner never encodes the dialog or scores the corpus itself.
    """
    targets = list(world.targets if targets is None else targets)
    ranks = np.zeros((max_rounds + 1, len(targets)), dtype=np.int64)
    dialogs: list[Dialog] = []
    invalid = passes = 0
    top_k = int(getattr(questioner, "candidate_top_k", 0) or 0)
    bar = progress_bar(total=len(targets) * max_rounds, desc=desc, unit="turn", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(targets), batch_size):
        batch = targets[start : start + batch_size]
        core = EpisodeBatch(world, len(batch), max_rounds, max_question_chars=max_question_chars, invalid="pass", top_k=top_k)
        core.reset(range(len(batch)), batch)
        pools = [list(world.question_pool(t)) for t in batch] if world.question_pool else None
        questioner.reset([world.captions[t] for t in batch], pools)
        for round_index in range(max_rounds):
            observations = [dialog_observation(d, max_rounds, max_question_chars) for d in core.dialogs]
            for slot, obs in enumerate(observations):
                # The runner counts rounds, not the dialog: a pass leaves the dialog one turn short.
                obs["round_index"] = round_index
                if top_k:
                    obs["candidates"] = core.candidates(slot)
            questions = questioner.ask(observations)
            if len(questions) != len(batch):
                raise ValueError(f"questioner returned {len(questions)} questions for {len(batch)} episodes")
            result = core.step(list(questions))
            invalid += int(result.invalid.sum())
            passes += int((result.passed & ~result.invalid).sum())
            bar.update(len(batch))
        ranks[:, start : start + len(batch)] = core.rank_record()
        dialogs.extend(core.dialogs)
    bar.close()
    return EpisodeRecord(targets, ranks, dialogs, invalid, passes)
