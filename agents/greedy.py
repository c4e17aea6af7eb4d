"""A retrieval-aware greedy questioner: ask what best splits the current top candidates.

In the spirit of PlugIR's candidate-grounded questions: after each round, take the retriever's top
``top_k`` corpus items for the dialog so far, look up the answer each of them would give to each
pool question, and ask the unasked question whose answer distribution over those candidates has
the highest entropy — the expected information gain about which candidate is the target, when
answers are deterministic. Candidates are weighted by a posterior over them, ``softmax(score / T)``:
T = 1 for the exact Shapes retriever (its scores are log-likelihoods), and for a learned dual encoder
the InfoNCE temperature it was trained with (``1 / retriever.logit_scale``), the calibration its loss
fitted; ``weighting="uniform"`` weights the top candidates alike instead.

The candidates are the ones the core ranked this round (``observation["candidates"]``, handed over by
the eval runner because the questioner sets ``candidate_top_k``): nothing is encoded or scored here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..answer_entropy import candidate_weights, information_gain, two_step_information


class GreedyInfoGainQuestioner:
    """Asks the pool question with the largest answer entropy over the top candidates.

    Needs a world with ``pool_answers`` (Shapes); ``bind_world`` is called by the benchmark. Each
    observation must hold ``candidates`` (a ``chatir_env.core.Candidates`` of at least ``top_k`` items),
    as the eval runner gives a questioner whose ``candidate_top_k`` is set.

    Candidate weighting (``weighting``):

    * ``"posterior"`` (default): ``softmax(score / T)`` over the top ``top_k``. T is ``temperature`` when
      given; otherwise 1 when the retriever's scores are log-likelihoods (``scores_are_log_likelihoods``,
      the exact Shapes retriever, whose posterior this is exactly), else ``1 / retriever.logit_scale``,
      the inverse of the InfoNCE logit scale a dual encoder was trained with (``ShapesLearnedRetriever``
      reads it from the shipped weights). A retriever with neither needs ``temperature``.
    * ``"uniform"``: every top candidate weighs ``1 / top_k`` (the learned world's weighting before the
      posterior; ``temperature`` must then be left unset).

    ``lookahead=2`` plans two questions ahead instead: it asks the question whose answer, followed by the
    best second question for that answer, tells most (``two_step_information``); a reference for how much
    planning beyond one question can gain.

    Args:
        top_k: how many of the core's top candidates to weigh.
        weighting: ``"posterior"`` or ``"uniform"``.
        temperature: the softmax temperature T (> 0) of ``"posterior"``, overriding the retriever's.
        lookahead: questions planned ahead, 1 (greedy) or 2.

    Raises:
        ValueError: an unknown ``weighting``, a ``lookahead`` other than 1 or 2, a non-positive
            ``temperature``, or a ``temperature`` with
            ``"uniform"``; at ``bind_world``, a world without ``pool_answers`` or a ``"posterior"``
            weighting with no temperature to be had.
    """

    WEIGHTINGS = ("posterior", "uniform")

    def __init__(self, top_k: int = 50, weighting: str = "posterior", temperature: float | None = None,
                 lookahead: int = 1):
        if lookahead not in (1, 2):
            raise ValueError(f"GreedyInfoGainQuestioner lookahead must be 1 or 2, got {lookahead!r}")
        if weighting not in self.WEIGHTINGS:
            raise ValueError(f"GreedyInfoGainQuestioner weighting must be one of {self.WEIGHTINGS}, got {weighting!r}")
        if temperature is not None:
            if weighting == "uniform":
                raise ValueError("GreedyInfoGainQuestioner: temperature applies to weighting='posterior' only")
            if not float(temperature) > 0:
                raise ValueError(f"GreedyInfoGainQuestioner temperature must be > 0, got {temperature!r}")
        self.top_k = top_k
        self.lookahead = lookahead
        self.weighting = weighting
        self.temperature = None if temperature is None else float(temperature)
        self.world = None
        self.softmax_scale: float | None = None

    @property
    def candidate_top_k(self) -> int:
        """How many of the core's top candidates each observation must carry."""
        return self.top_k

    def bind_world(self, world) -> None:
        """Binds the world whose ``pool_answers`` it reads, and fixes the candidate weighting for its retriever."""
        if world.pool_answers is None:
            raise ValueError(f"GreedyInfoGainQuestioner needs a world that can answer for candidates; {world.name!r} cannot")
        self.softmax_scale = self.resolve_softmax_scale(world.retriever)
        self.world = world

    def resolve_softmax_scale(self, retriever) -> float | None:
        """The ``softmax_scale`` (1 / T) handed to ``information_gain`` for this retriever; None is uniform.

        Raises:
            ValueError: ``"posterior"`` weighting, no ``temperature``, and a retriever whose scores are
                neither log-likelihoods nor come with a ``logit_scale``.
        """
        if self.weighting == "uniform":
            return None
        if self.temperature is not None:
            return 1.0 / self.temperature
        if getattr(retriever, "scores_are_log_likelihoods", False):
            return 1.0
        logit_scale = getattr(retriever, "logit_scale", None)
        if logit_scale is None:
            raise ValueError(f"GreedyInfoGainQuestioner: retriever {type(retriever).__name__} has no logit_scale and "
                             "its scores are not log-likelihoods; pass temperature=T or weighting='uniform'")
        return float(logit_scale)

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
        return information_gain(self.world, ids, scores, self.softmax_scale)

    def ask(self, observations: Sequence[dict]) -> list[str]:
        if self.lookahead == 2:
            return self._ask_two_ahead(observations)
        gain = self.information_gain(observations)
        out = []
        for i, (obs, pool) in enumerate(zip(observations, self.pools)):
            asked = set(obs["questions"][: obs["round"]])
            g = gain[i].copy()
            g[[j for j, q in enumerate(pool) if q in asked]] = -np.inf
            out.append(pool[int(np.argmax(g))])
        return out

    def _ask_two_ahead(self, observations: Sequence[dict]) -> list[str]:
        out = []
        for obs, pool in zip(observations, self.pools):
            ids = list(obs["candidates"].ids[: self.top_k])
            codes = np.asarray(self.world.pool_answers(ids))[:, : len(pool)]
            weights = candidate_weights(np.asarray(obs["candidates"].scores[: self.top_k])[None], self.softmax_scale)[0]
            asked = set(obs["questions"][: obs["round"]])
            allowed = np.array([q not in asked for q in pool])
            value = two_step_information(codes, weights, allowed)
            # Among equal plans, ask the more informative question first: a question that tells
            # nothing ties with a good one whenever one more question settles the rest.
            first = information_gain(self.world, np.array([ids], dtype=object),
                                     np.asarray(obs["candidates"].scores[: self.top_k])[None], self.softmax_scale)[0]
            best = np.flatnonzero(value >= value.max() - 1e-9)
            out.append(pool[int(best[np.argmax(first[best])])])
        return out
