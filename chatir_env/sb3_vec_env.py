"""``PooledVecEnv``: N pooled episodes stepped as one batch, as an SB3 ``VecEnv``."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from .core import EpisodeBatch
from .env import default_max_pool
from .pooled import PoolFeatures
from .rewards import DEFAULT_REWARD, RewardFn
from .worlds.base import World

# Per-episode results that PooledVecEnv puts in the info of an episode's last step, for
# ``VecMonitor(venv, info_keywords=EPISODE_INFO_KEYS)``.
EPISODE_INFO_KEYS = ("final_rank", "hit@10_round5", "hit@10_round10")


class PooledVecEnv(VecEnv):
    """N pooled ChatIR episodes of one world as one SB3 ``VecEnv`` (for MaskablePPO).

    ## Description

    Each ``step`` is one answerer batch, one encoder batch and one ranking matmul for all N episodes,
    through one ``EpisodeBatch`` core that also keeps the pools, the asked masks and the top-``top_k``
    candidates (``PooledChatIREnv`` is the same with N = 1, one episode at a time). Build it from a world::

        from chatir_env.worlds import build_world
        from stable_baselines3.common.vec_env import VecMonitor

        world = build_world("shapes_oracle", split="train")
        venv = VecMonitor(PooledVecEnv(world, num_envs=64), info_keywords=EPISODE_INFO_KEYS)

    ## Action Space

    ``Discrete(max_pool)`` per episode: the index of a question in the episode's pool; ``action_masks()``
    (``bool[N, max_pool]``, read by sb3-contrib's ``get_action_masks``, also through ``VecMonitor``) marks
    the pool questions not yet asked. A padded slot wraps around to ``action % len(pool)``.

    ## Observation Space

    ``PooledChatIREnv``'s ``Dict`` of ``Box``es, batched: ``dialog``, ``round``, ``asked``, ``gain``, ``candidates``.

    ## Rewards

    ``float32[N]``: ``ChatIREnv``'s reward (``reward``, ``hit_bonus``).

    ## Starting State

    Targets drawn uniformly from the world's targets with a generator seeded by ``seed`` (or ``venv.seed(s)``).

    ## Episode End

    All episodes have ``max_rounds`` rounds, so they end together and restart together (SB3's autoreset
    convention: the returned observation is the new episode's, the last one's is in
    ``infos[i]["terminal_observation"]``). The last step's infos hold ``final_rank``, ``hit@10_round5``
    and ``hit@10_round10`` (``EPISODE_INFO_KEYS``); episode return, length and time come from wrapping
    the env in SB3's ``VecMonitor``.

    ## Arguments

    ``world``, ``num_envs``, ``max_rounds=10``, ``reward="log_rank_delta"``, ``hit_bonus=0.0``,
    ``max_pool`` (default: the world's pool capacity), ``top_k=50`` (candidates in the features), ``seed=0``.
    """

    def __init__(self, world: World, num_envs: int, max_rounds: int = 10, reward: str = DEFAULT_REWARD,
                 hit_bonus: float = 0.0, max_pool: int | None = None, top_k: int = 50, seed: int = 0):
        if world.question_pool is None:
            raise ValueError(f"world {world.name!r} has no question pool; a pooled agent needs one")
        self.world = world
        max_pool = default_max_pool(world, max_pool)
        self.core = EpisodeBatch(world, num_envs, max_rounds, RewardFn(reward, len(world.index), hit_bonus),
                                 invalid="raise", top_k=top_k, max_pool=max_pool)
        self.features = PoolFeatures(world, max_rounds, max_pool, top_k)
        self.render_mode = None
        super().__init__(num_envs, self.features.space, spaces.Discrete(max_pool))
        self.max_rounds = max_rounds
        self.rng = np.random.default_rng(seed)
        self._actions: np.ndarray | None = None

    def seed(self, seed: int | None = None) -> Sequence[None]:
        self.rng = np.random.default_rng(seed)
        return [None] * self.num_envs

    def _start_all(self) -> dict:
        self.core.reset(range(self.num_envs), self.core.sample_targets(self.rng, self.num_envs))
        return self.features.observe(self.core)

    def reset(self) -> dict:
        if self._seeds and self._seeds[0] is not None:
            self.rng = np.random.default_rng(self._seeds[0])
        self._reset_seeds()
        return self._start_all()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self):
        questions = [self.core.pool_question(slot, int(action)) for slot, action in enumerate(self._actions.tolist())]
        result = self.core.step(questions)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if result.done.all():
            terminal = self.features.observe(self.core)
            best = np.minimum.accumulate(self.core.rank_record(), axis=0)  # [max_rounds + 1, N]
            for slot in range(self.num_envs):
                infos[slot] = {
                    "terminal_observation": {key: value[slot] for key, value in terminal.items()},
                    "final_rank": int(self.core.ranks[slot]),
                    "hit@10_round5": bool(best[min(5, self.max_rounds), slot] < 10),
                    "hit@10_round10": bool(best[-1, slot] < 10),
                    "TimeLimit.truncated": False,
                }
            obs = self._start_all()
        else:
            obs = self.features.observe(self.core)
        return obs, result.rewards.astype(np.float32), result.done.copy(), infos

    def action_masks(self) -> np.ndarray:
        """``bool[N, max_pool]``: the pool questions each episode has not asked yet."""
        return self.core.pool_masks()

    def close(self) -> None:
        pass

    # The N episodes live in one object: attribute and method calls act on it once and answer per index.

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args, indices=None, **kwargs) -> list[Any]:
        indices = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in indices]
        return [getattr(self, method_name)(*args, **kwargs) for _ in indices]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))

    def has_attr(self, attr_name: str) -> bool:
        return hasattr(self, attr_name)
