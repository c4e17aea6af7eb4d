"""``ChatIRVectorEnv``: N ChatIR episodes stepped as one batch (``gymnasium.make_vec``).

    envs = gymnasium.make_vec("ChatIR/Shapes-v0", num_envs=64)   # vector_entry_point: this class

One ``step(questions)`` is one answerer batch, one encoder batch and one ranking matmul for all N
episodes, through the same ``EpisodeBatch`` core as ``ChatIREnv`` (whose docstring states the
spaces, rewards and episode end; they are the same per episode). All episodes last ``max_rounds``
rounds, so they end together; autoreset is ``SAME_STEP``: the step that ends them returns the new
episodes' first observations, and ``infos["final_obs"]`` / ``infos["final_info"]`` hold the ends.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array

from .core import DEFAULT_MAX_QUESTION_CHARS, EpisodeBatch
from .rewards import DEFAULT_REWARD, RewardFn
from .spaces import dialog_observation, dialog_space
from .worlds import build_world
from .worlds.base import World


class ChatIRVectorEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 8, world: str | World = "shapes", max_rounds: int = 10,
                 reward: str = DEFAULT_REWARD, hit_bonus: float = 0.0,
                 max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS, render_mode: str | None = None, **world_kwargs: Any):
        self.world = world if isinstance(world, World) else build_world(world, **world_kwargs)
        self.num_envs, self.max_rounds, self.render_mode = num_envs, max_rounds, render_mode
        self.core = EpisodeBatch(self.world, num_envs, max_rounds, RewardFn(reward, len(self.world.index), hit_bonus), max_question_chars)
        self.single_observation_space = dialog_space(max_rounds, max_question_chars)
        self.single_action_space = gym.spaces.Text(max_question_chars, min_length=1, charset=self.single_observation_space["caption"].character_set)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._np_random = None

    def _observations(self):
        items = [dialog_observation(d, self.max_rounds, self.core.max_question_chars) for d in self.core.dialogs]
        out = create_empty_array(self.single_observation_space, self.num_envs)
        return concatenate(self.single_observation_space, items, out)

    def _infos(self) -> dict:
        best = self.core.best_ranks.copy()
        return {"target": np.array(self.core.targets, dtype=object), "rank": self.core.ranks.copy(),
                "best_rank": best, "hit@10": best < 10, "round": self.core.rounds.copy()}

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict | None = None):
        super().reset(seed=seed if not isinstance(seed, (list, tuple)) else seed[0])
        targets = (options or {}).get("targets")
        if targets is None:
            targets = self.core.sample_targets(self.np_random, self.num_envs)
        elif len(targets) != self.num_envs:
            raise ValueError(f"options['targets'] needs {self.num_envs} target ids, got {len(targets)}")
        self.core.reset(range(self.num_envs), list(targets))
        return self._observations(), self._infos()

    def step(self, actions: Sequence[str]):
        actions = list(actions)
        if len(actions) != self.num_envs:
            raise ValueError(f"step needs {self.num_envs} questions, got {len(actions)}")
        result = self.core.step(actions)
        infos = {**self._infos(), "answer": np.array(result.answers, dtype=object)}
        terminated = result.done.copy()
        if terminated.all():
            infos = {"final_obs": self._observations(), "final_info": infos}
            self.core.reset(range(self.num_envs), self.core.sample_targets(self.np_random, self.num_envs))
            infos.update(self._infos())
        return self._observations(), result.rewards.copy(), terminated, np.zeros(self.num_envs, bool), infos
