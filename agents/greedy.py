"""A retrieval-aware greedy questioner: ask what best splits the current top candidates.

In the spirit of PlugIR's candidate-grounded questions: after each round, take the retriever's top
``top_k`` corpus items for the dialog so far, look up the answer each of them would give to each
pool question, and ask the unasked question whose answer distribution over those candidates has
the highest entropy — the expected information gain about which candidate is the target, when
answers are deterministic. Candidates are weighted by the posterior ``softmax(score)`` when the
retriever's scores are log-likelihoods (the exact Shapes retriever), uniformly otherwise.

The candidates are the ones the core ranked this round (``observation["candidates"]``, handed over by
the eval runner because the questioner sets ``candidate_top_k``): nothing is encoded or scored here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..answer_entropy import information_gain


class GreedyInfoGainQuestioner:
    """Asks the pool question with the largest answer entropy over the top candidates.

    Needs a world with ``pool_answers`` (Shapes); ``bind_world`` is called by the benchmark. Each
    observation must hold ``candidates`` (a ``chatir_env.core.Candidates`` of at least ``top_k`` items),
    as the eval runner gives a questioner whose ``candidate_top_k`` is set.
    """

    def __init__(self, top_k: int = 50):
        self.top_k = top_k
        self.world = None

    @property
    def candidate_top_k(self) -> int:
        """How many of the core's top candidates each observation must carry."""
        return self.top_k

    def bind_world(self, world) -> None:
        if world.pool_answers is None:
            raise ValueError(f"GreedyInfoGainQuestioner needs a world that can answer for candidates; {world.name!r} cannot")
        self.world = world

    def reset(self, captions: Sequence[str], pools: Sequence[Sequence[str]] | None = None) -> None:
        if self.world is None:
            raise RuntimeError("GreedyInfoGainQuestioner.bind_world(world) must be called before reset()")
        self.pools = [list(p) for p in pools] if pools is not None else [list(self.world.question_pool(""))] * len(captions)

    def information_gain(self, observations: Sequence[dict]) -> np.ndarray:
        """``[n, pool]`` entropy of each pool question's answer over each episode's top candidates."""
        if any("candidates" not in o for o in observations):
            raise ValueError("GreedyInfoGainQuestioner reads observation['candidates'] (the core's top candidates); "
                             "play it with chatir_env.eval.runner.play_episodes or pass ChatIREnv's info['candidates']")
        ids = np.array([o["candidates"].ids[: self.top_k] for o in observations], dtype=object)
        scores = np.stack([o["candidates"].scores[: self.top_k] for o in observations])
        log_likelihoods = getattr(self.world.retriever, "scores_are_log_likelihoods", False)
        return information_gain(self.world, ids, scores, 1.0 if log_likelihoods else None)

    def ask(self, observations: Sequence[dict]) -> list[str]:
        gain = self.information_gain(observations)
        out = []
        for i, (obs, pool) in enumerate(zip(observations, self.pools)):
            asked = set(obs["questions"][: obs["round"]])
            g = gain[i].copy()
            g[[j for j, q in enumerate(pool) if q in asked]] = -np.inf
            out.append(pool[int(np.argmax(g))])
        return out
