"""A retrieval-aware greedy questioner: ask what best splits the current top candidates.

In the spirit of PlugIR's candidate-grounded questions: after each round, take the retriever's top
``top_k`` corpus items for the dialog so far, look up the answer each of them would give to each
pool question, and ask the unasked question whose answer distribution over those candidates has
the highest entropy — the expected information gain about which candidate is the target, when
answers are deterministic. Candidates are weighted by the posterior ``softmax(score)`` when the
retriever's scores are log-likelihoods (the exact Shapes retriever), uniformly otherwise.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..answer_entropy import answer_entropies
from ..spaces import observation_dialog


def candidate_weights(scores: torch.Tensor, log_likelihoods: bool) -> np.ndarray:
    if log_likelihoods:
        return torch.softmax(scores.double(), dim=1).cpu().numpy()
    return np.full(scores.shape, 1.0 / scores.shape[1])


class GreedyInfoGainQuestioner:
    """Asks the pool question with the largest answer entropy over the top candidates.

    Needs a world with ``pool_answers`` (Shapes); ``bind_world`` is called by the benchmark.
    """

    def __init__(self, top_k: int = 50):
        self.top_k = top_k
        self.world = None

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
        world = self.world
        dialogs = [observation_dialog(o) for o in observations]
        vectors = world.retriever.encode_dialogs(dialogs)
        top_scores, top_positions = world.index.top_k(vectors, self.top_k)
        ids = np.asarray(world.index.ids, dtype=object)[top_positions.cpu().numpy()]
        codes = np.stack([np.asarray(world.pool_answers(list(row))) for row in ids])
        weights = candidate_weights(top_scores, getattr(world.retriever, "scores_are_log_likelihoods", False))
        return answer_entropies(codes, weights)

    def ask(self, observations: Sequence[dict]) -> list[str]:
        gain = self.information_gain(observations)
        out = []
        for i, (obs, pool) in enumerate(zip(observations, self.pools)):
            asked = set(obs["questions"][: obs["round"]])
            g = gain[i].copy()
            g[[j for j, q in enumerate(pool) if q in asked]] = -np.inf
            out.append(pool[int(np.argmax(g))])
        return out
