"""Pooled questioning for SB3: a Discrete action over the episode's question pool, with masks.

SB3 cannot act in a Text space, so a pooled agent picks the index of a question in its episode's
pool (Shapes: the 121 template questions; VisDialReplay: the ~40 recorded questions of the target,
padded to ``max_pool``). ``action_masks()`` forbids padded slots and questions already asked
(sb3-contrib's MaskablePPO reads it).

Observation (``Dict`` of ``Box``es; the target's rank is never part of it):

- ``dialog``: the retriever's vector of the dialog so far, L2-normalised, ``[d]``
- ``round``: one-hot of the round, ``[max_rounds + 1]``
- ``asked``: 1 for pool slots already asked, ``[max_pool]``
- ``gain``: per pool slot, the entropy (nats) of its answers over the current top-``top_k``
  candidates (zero where the world cannot answer for candidates), ``[max_pool]``
- ``candidates``: the top-``top_k`` candidates' softmax-normalised score profile, sorted, ``[top_k]``
"""

from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from .answer_entropy import answer_entropies  # the quantity the greedy questioner maximises
from .core import EpisodeBatch
from .dialog import Dialog
from .worlds.base import World


class PoolFeatures:
    """Computes pooled observations for a batch of episodes of one world."""

    def __init__(self, world: World, max_rounds: int, max_pool: int, top_k: int = 50):
        if world.question_pool is None:
            raise ValueError(f"world {world.name!r} has no question pool; a pooled agent needs one")
        self.world, self.max_rounds, self.max_pool, self.top_k = world, max_rounds, max_pool, top_k
        self.dim = world.retriever.dim
        self.log_likelihood_scores = getattr(world.retriever, "scores_are_log_likelihoods", False)
        box = lambda n, low=0.0, high=1.0: spaces.Box(low, high, (n,), np.float32)
        self.space = spaces.Dict({
            "dialog": box(self.dim, -1.0, 1.0),
            "round": box(max_rounds + 1),
            "asked": box(max_pool),
            "gain": box(max_pool, 0.0, 10.0),
            "candidates": box(top_k),
        })

    def pool(self, target: str) -> list[str]:
        pool = list(self.world.question_pool(target))
        if len(pool) > self.max_pool:
            raise ValueError(f"target {target!r} has {len(pool)} pool questions, more than max_pool={self.max_pool}")
        return pool

    def observe(self, core: EpisodeBatch, pools: Sequence[list[str]], asked: np.ndarray) -> dict:
        """Observations of all of ``core``'s episodes (``core.keep_top_k`` must be ``top_k``)."""
        return self.features(core.vectors, core.rounds, core.top_scores, core.top_positions, pools, asked)

    def observe_dialogs(self, dialogs: Sequence[Dialog], pools: Sequence[list[str]], asked: np.ndarray) -> dict:
        """The same observations computed from dialogs alone (for a trained policy as a questioner)."""
        vectors = self.world.retriever.encode_dialogs(list(dialogs))
        top_scores, top_positions = self.world.index.top_k(vectors, self.top_k)
        rounds = np.array([d.round for d in dialogs])
        return self.features(vectors, rounds, top_scores, top_positions, pools, asked)

    def features(self, vectors, rounds, top_scores, top_positions, pools, asked) -> dict:
        n = len(pools)
        dialog = torch.nn.functional.normalize(vectors.float(), dim=1).cpu().numpy().astype(np.float32)
        round_onehot = np.zeros((n, self.max_rounds + 1), np.float32)
        round_onehot[np.arange(n), np.minimum(rounds, self.max_rounds)] = 1.0
        weights = torch.softmax(top_scores.double() * (1.0 if self.log_likelihood_scores else 20.0), dim=1).cpu().numpy()
        gain = np.zeros((n, self.max_pool), np.float32)
        if self.world.pool_answers is not None:
            ids = np.asarray(self.world.index.ids, dtype=object)[top_positions.cpu().numpy()]
            codes = np.stack([np.asarray(self.world.pool_answers(list(row))) for row in ids])
            entropy = answer_entropies(codes, weights)
            width = min(entropy.shape[1], self.max_pool)
            gain[:, :width] = entropy[:, :width]
        candidates = np.zeros((n, self.top_k), np.float32)
        candidates[:, : weights.shape[1]] = weights
        return {"dialog": np.clip(dialog, -1, 1), "round": round_onehot, "asked": asked.astype(np.float32),
                "gain": np.clip(gain, 0, 10), "candidates": candidates}


def pool_action(action: int, pool_size: int) -> int:
    """The pool index an action asks: padded slots wrap around (masks keep a masked agent off them)."""
    if action < 0:
        raise ValueError(f"action {action} is negative")
    return action % pool_size


def pool_masks(pools: Sequence[list[str]], asked: np.ndarray, max_pool: int) -> np.ndarray:
    masks = np.zeros((len(pools), max_pool), bool)
    for i, pool in enumerate(pools):
        masks[i, : len(pool)] = True
    return masks & ~asked.astype(bool)


class PooledChatIREnv(gym.Wrapper):
    """A ``ChatIREnv`` whose action is the index of a question in the episode's pool.

    ## Action Space
    ``Discrete(max_pool)``; ``action_masks()`` marks the useful ones (in the pool, not yet asked).
    An agent that ignores the masks may repeat a question (same answer, the rank barely moves); an
    action on a padded slot (past the end of the episode's pool) wraps around to ``action % len(pool)``.

    ## Observation Space
    See the module docstring (``PoolFeatures``): dialog vector, round, asked mask, per-question
    answer entropy over the top candidates, the top candidates' score profile.

    Rewards, starting state and episode end are the wrapped env's.
    """

    def __init__(self, env: gym.Env, max_pool: int | None = None, top_k: int = 50):
        super().__init__(env)
        base = env.unwrapped
        self.core: EpisodeBatch = base.core
        self.core.keep_top_k = top_k
        world = base.world
        max_pool = max_pool or len(world.question_pool(world.targets[0]))
        self.features = PoolFeatures(world, base.max_rounds, max_pool, top_k)
        self.observation_space = self.features.space
        self.action_space = spaces.Discrete(max_pool)
        self._pool: list[str] = []
        self._asked = np.zeros((1, max_pool), bool)

    def _obs(self) -> dict:
        obs = self.features.observe(self.core, [self._pool], self._asked)
        return {k: v[0] for k, v in obs.items()}

    def action_masks(self) -> np.ndarray:
        return pool_masks([self._pool], self._asked, self.features.max_pool)[0]

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        self._pool = self.features.pool(info["target"])
        self._asked[:] = False
        return self._obs(), info

    def step(self, action):
        a = pool_action(int(action), len(self._pool))
        self._asked[0, a] = True
        _, reward, terminated, truncated, info = self.env.step(self._pool[a])
        return self._obs(), reward, terminated, truncated, info
