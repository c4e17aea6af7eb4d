"""Pooled questioning for SB3: a Discrete action over the episode's question pool, with masks.

``PoolFeatures`` turns what the core computed (dialog vectors, top-k candidates, the asked mask) into
the pooled observation; ``PooledChatIREnv`` (one episode, a gymnasium wrapper) and ``PooledVecEnv``
(N episodes, an SB3 ``VecEnv``) show it, and ``PolicyQuestioner`` builds the same one in the eval runner.
``action_masks()`` forbids padded slots and questions already asked (sb3-contrib's MaskablePPO reads it).
"""

from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from .answer_entropy import candidate_weights, information_gain  # information_gain: what the greedy questioner maximises
from .core import Candidates, CoreView, EpisodeBatch
from .worlds.base import World

# Pooled policies weight a learned retriever's candidates by softmax(20 * cosine score): the shipped
# policies were trained on this feature, so it stays as it is (the greedy questioner weights them alike).
LEARNED_SCORE_SCALE = 20.0


class PoolFeatures:
    """Computes pooled observations for a batch of episodes of one world, from what the core computed."""

    def __init__(self, world: World, max_rounds: int, max_pool: int, top_k: int = 50):
        if world.question_pool is None:
            raise ValueError(f"world {world.name!r} has no question pool; a pooled agent needs one")
        self.world, self.max_rounds, self.max_pool, self.top_k = world, max_rounds, max_pool, top_k
        self.dim = world.retriever.dim
        self.log_likelihood_scores = getattr(world.retriever, "scores_are_log_likelihoods", False)
        self.softmax_scale = 1.0 if self.log_likelihood_scores else LEARNED_SCORE_SCALE
        box = lambda n, low=0.0, high=1.0: spaces.Box(low, high, (n,), np.float32)
        self.space = spaces.Dict({
            "dialog": box(self.dim, -1.0, 1.0),
            "round": box(max_rounds + 1),
            "asked": box(max_pool),
            "gain": box(max_pool, 0.0, 10.0),
            "candidates": box(top_k),
        })

    def observe(self, core: EpisodeBatch) -> dict:
        """Observations of all of ``core``'s episodes (a core built with ``top_k`` and ``max_pool``)."""
        view: CoreView = core.view()
        return self.features(view.vectors, view.rounds, view.candidate_scores, core.candidate_ids(), view.asked)

    def observe_candidates(self, candidates: Sequence[Candidates], rounds: Sequence[int], asked: np.ndarray) -> dict:
        """The same observations from per-episode ``Candidates`` (``info["candidates"]``), for a policy questioner."""
        return self.features(np.stack([c.dialog_vector for c in candidates]), np.asarray(rounds),
                             np.stack([c.scores for c in candidates]), np.array([c.ids for c in candidates], dtype=object),
                             asked)

    def features(self, vectors, rounds, scores, candidate_ids, asked) -> dict:
        """The observation dict from dialog vectors, rounds, candidates and asked flags.

        Shapes: dialog vectors ``[n, d]``, rounds ``[n]``, candidates ``[n, k]``, asked ``[n, >= max_pool]``.
        """
        n = len(rounds)
        # A corpus smaller than top_k gives all its items; the profile is zero-padded, as the policy saw in training.
        if scores.shape[1] < min(self.top_k, len(self.world.index)):
            raise ValueError(f"pooled features need {self.top_k} candidates per episode, got {scores.shape[1]}: raise top_k")
        scores, candidate_ids = scores[:, : self.top_k], candidate_ids[:, : self.top_k]
        dialog = torch.nn.functional.normalize(torch.from_numpy(np.array(vectors)).float(), dim=1).numpy().astype(np.float32)
        round_onehot = np.zeros((n, self.max_rounds + 1), np.float32)
        round_onehot[np.arange(n), np.minimum(rounds, self.max_rounds)] = 1.0
        gain = np.zeros((n, self.max_pool), np.float32)
        if self.world.pool_answers is not None:
            entropy = information_gain(self.world, candidate_ids, scores, self.softmax_scale)
            width = min(entropy.shape[1], self.max_pool)
            gain[:, :width] = entropy[:, :width]
        weights = candidate_weights(scores, self.softmax_scale)
        candidates = np.zeros((n, self.top_k), np.float32)
        candidates[:, : weights.shape[1]] = weights
        asked_padded = np.zeros((n, self.max_pool), np.float32)
        width = min(asked.shape[1], self.max_pool)
        asked_padded[:, :width] = asked[:, :width]
        return {"dialog": np.clip(dialog, -1, 1), "round": round_onehot, "asked": asked_padded,
                "gain": np.clip(gain, 0, 10), "candidates": candidates}


def pool_masks(pools: Sequence[Sequence[str]], asked: np.ndarray, max_pool: int) -> np.ndarray:
    """``bool[n, max_pool]``: pool slots in each episode's pool that it has not asked yet."""
    masks = np.zeros((len(pools), max_pool), bool)
    for i, pool in enumerate(pools):
        masks[i, : len(pool)] = True
    width = min(asked.shape[1], max_pool)
    masks[:, :width] &= ~asked[:, :width].astype(bool)
    return masks


class PooledChatIREnv(gym.Wrapper):
    """A ``ChatIREnv`` whose action is the index of a question in the episode's pool.

    ## Description

    SB3 cannot act in a Text space, so a pooled agent picks the index of a question in its episode's
    pool (Shapes: the 121 template questions; VisDialReplay: the ~40 recorded questions of the target,
    padded to ``max_pool``). The wrapper reads the wrapped env's public accessors only: ``pool()``,
    ``asked()`` and ``candidates()`` of ``ChatIREnv`` (the env must keep at least ``top_k`` candidates
    and a pool of at least ``max_pool``).

    ## Action Space

    ``Discrete(max_pool)``; ``action_masks()`` marks the useful ones (in the pool, not yet asked).
    An agent that ignores the masks may repeat a question (same answer, the rank barely moves); an
    action on a padded slot (past the end of the episode's pool) wraps around to ``action % len(pool)``.

    ## Observation Space

    ``Dict`` of ``Box``es (the target's rank is never part of it):

    - ``dialog``: the retriever's vector of the dialog so far, L2-normalised, ``[d]``
    - ``round``: one-hot of the round, ``[max_rounds + 1]``
    - ``asked``: 1 for pool slots already asked, ``[max_pool]`` (every copy of a repeated question)
    - ``gain``: per pool slot, the entropy (nats) of its answers over the current top-``top_k``
      candidates weighted by ``softmax(score)`` (exact scorer) or ``softmax(20 * score)`` (learned
      retrievers); zero where the world cannot answer for candidates, ``[max_pool]``
    - ``candidates``: those candidate weights, best first, ``[top_k]``

    ## Rewards, Starting State, Episode End, Info

    The wrapped ``ChatIREnv``'s.

    ## Arguments

    ``env``: a ``ChatIREnv`` (possibly wrapped); ``max_pool``: the action count (default: the env's
    pool capacity); ``top_k``: candidates the features read (default 50).
    """

    def __init__(self, env: gym.Env, max_pool: int | None = None, top_k: int = 50):
        super().__init__(env)
        world = env.get_wrapper_attr("world")
        capacity = env.get_wrapper_attr("max_pool")
        if capacity is None:
            raise ValueError(f"world {world.name!r} has no question pool; a pooled agent needs one")
        max_pool = max_pool or capacity
        kept = env.get_wrapper_attr("top_k")
        if kept < top_k:
            raise ValueError(f"the wrapped env keeps {kept} candidates per round, fewer than top_k={top_k}: "
                             f"build it with top_k={top_k}")
        self.features = PoolFeatures(world, env.get_wrapper_attr("max_rounds"), max_pool, top_k)
        self.observation_space = self.features.space
        self.action_space = spaces.Discrete(max_pool)
        self._round = 0

    def _obs(self, info: dict) -> dict:
        obs = self.features.observe_candidates([info["candidates"]], [info["round"]],
                                               self.env.get_wrapper_attr("asked")()[None])
        return {k: v[0] for k, v in obs.items()}

    def action_masks(self) -> np.ndarray:
        """``bool[max_pool]``: the pool questions not yet asked."""
        pool = self.env.get_wrapper_attr("pool")()
        return pool_masks([pool], self.env.get_wrapper_attr("asked")()[None], self.features.max_pool)[0]

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        return self._obs(info), info

    def step(self, action):
        if int(action) < 0:
            raise ValueError(f"action {action} is negative")
        pool = self.env.get_wrapper_attr("pool")()
        _, reward, terminated, truncated, info = self.env.step(pool[int(action) % len(pool)])
        return self._obs(info), reward, terminated, truncated, info
