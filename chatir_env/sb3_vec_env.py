"""``PooledVecEnv``: N pooled episodes stepped as one batch, as an SB3 ``VecEnv``.

Each ``step`` is one answerer batch, one encoder batch and one ranking matmul for all N episodes
(the single env does the same with N = 1). All episodes have ``max_rounds`` rounds, so they end
together and restart together (SB3's autoreset convention: the returned observation is the new
episode's, the last one's is in ``infos[i]["terminal_observation"]``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from .core import EpisodeBatch
from .pooled import PoolFeatures, pool_action, pool_masks
from .rewards import DEFAULT_REWARD, RewardFn
from .worlds.base import World


class PooledVecEnv(VecEnv):
    def __init__(self, world: World, num_envs: int, max_rounds: int = 10, reward: str = DEFAULT_REWARD,
                 hit_bonus: float = 0.0, max_pool: int | None = None, top_k: int = 50, seed: int = 0):
        self.world = world
        max_pool = max_pool or len(world.question_pool(world.targets[0]))
        self.core = EpisodeBatch(world, num_envs, max_rounds, RewardFn(reward, len(world.index), hit_bonus))
        self.features = PoolFeatures(world, max_rounds, max_pool, top_k)
        self.core.keep_top_k = top_k
        from gymnasium import spaces

        self.render_mode = None
        super().__init__(num_envs, self.features.space, spaces.Discrete(max_pool))
        self.max_rounds = max_rounds
        self.rng = np.random.default_rng(seed)
        self._pools: list[list[str]] = [[] for _ in range(num_envs)]
        self._asked = np.zeros((num_envs, max_pool), bool)
        self._returns = np.zeros(num_envs)
        self._first_ranks = np.zeros(num_envs, np.int64)
        self._rank_history: list[np.ndarray] = []
        self._actions: np.ndarray | None = None

    # --- VecEnv API ------------------------------------------------------------------------------

    def seed(self, seed: int | None = None) -> Sequence[None]:
        self.rng = np.random.default_rng(seed)
        return [None] * self.num_envs

    def _start_all(self) -> dict:
        targets = self.core.sample_targets(self.rng, self.num_envs)
        self.core.reset(range(self.num_envs), targets)
        self._pools = [self.features.pool(t) for t in targets]
        self._asked[:] = False
        self._returns[:] = 0.0
        self._rank_history = [self.core.ranks.copy()]
        return self._observe()

    def _observe(self) -> dict:
        return self.features.observe(self.core, self._pools, self._asked)

    def reset(self) -> dict:
        if self._seeds and self._seeds[0] is not None:
            self.rng = np.random.default_rng(self._seeds[0])
        self._reset_seeds()
        return self._start_all()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self):
        questions = []
        for i, action in enumerate(self._actions.tolist()):
            a = pool_action(int(action), len(self._pools[i]))
            self._asked[i, a] = True
            questions.append(self._pools[i][a])
        result = self.core.step(questions)
        self._returns += result.rewards
        self._rank_history.append(self.core.ranks.copy())
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if result.done.all():
            terminal = self._observe()
            ranks = np.stack(self._rank_history)  # [R + 1, N]
            best = np.minimum.accumulate(ranks, axis=0)
            for i in range(self.num_envs):
                infos[i] = {
                    "terminal_observation": {k: v[i] for k, v in terminal.items()},
                    "episode": {"r": float(self._returns[i]), "l": self.max_rounds, "t": 0.0},
                    "final_rank": int(ranks[-1, i]),
                    "hit@10_round5": bool(best[min(5, self.max_rounds), i] < 10),
                    "hit@10_round10": bool(best[-1, i] < 10),
                    "TimeLimit.truncated": False,
                }
            obs = self._start_all()
        else:
            obs = self._observe()
        return obs, result.rewards.astype(np.float32), result.done.copy(), infos

    def action_masks(self) -> np.ndarray:
        return pool_masks(self._pools, self._asked, self.features.max_pool)

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args, indices=None, **kwargs) -> list[Any]:
        idx = self._indices(indices)
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in idx]
        return [getattr(self, method_name)(*args, **kwargs) for _ in idx]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def has_attr(self, attr_name: str) -> bool:
        return hasattr(self, attr_name)

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)
