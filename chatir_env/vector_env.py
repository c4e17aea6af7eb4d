"""``ChatIRVectorEnv``: N ChatIR episodes stepped as one batch (``gymnasium.make_vec``)."""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from .core import DEFAULT_MAX_QUESTION_CHARS, EpisodeBatch, InvalidQuestionError
from .env import default_max_pool, episode_info
from .rewards import DEFAULT_REWARD, RewardFn
from .spaces import dialog_observation, dialog_space
from .worlds import build_world
from .worlds.base import World


class ChatIRVectorEnv(VectorEnv):
    """N ChatIR episodes stepped as one batch: ``gymnasium.make_vec("ChatIR/Shapes-v0", num_envs=64)``.

    ## Description

    One ``step(questions)`` is one answerer batch, one encoder batch and one ranking matmul for all N
    episodes, through the same ``EpisodeBatch`` core as ``ChatIREnv``; each episode is what
    ``ChatIREnv`` plays (its docstring states the description, rewards and character rule).

    ## Action Space

    ``Tuple(Text) * N``: one question per episode, as in ``ChatIREnv`` (a refused one raises
    ``InvalidQuestionError``; nothing is played then).

    ## Observation Space

    ``ChatIREnv``'s ``Dict`` batched by ``gymnasium.vector.utils.batch_space``.

    ## Rewards

    ``float64[N]``, ``ChatIREnv``'s per episode.

    ## Starting State

    Targets drawn with the env's ``np_random`` (``reset(seed=...)``), or ``reset(options={"targets": ids})``.

    ## Episode End

    All episodes last ``max_rounds`` rounds, so they end together. Autoreset is ``SAME_STEP``: the step
    that ends them returns the new episodes' first observations, with ``infos["final_obs"]`` (an object
    array of the ended episodes' observations) and ``infos["final_info"]``.

    ## Info

    ``ChatIREnv``'s keys, built the way ``VectorEnv._add_info`` builds them: one array per key (object
    arrays for ``target``, ``dialog``, ``candidates``, ``question``, ``answer``) and a boolean ``_key`` mask,
    so gymnasium's vector wrappers (``DictInfoToList``, ``RecordEpisodeStatistics``) read them.

    ## Arguments

    ``num_envs`` and ``ChatIREnv``'s arguments (``world``, ``max_rounds``, ``reward``, ``hit_bonus``,
    ``max_question_chars``, ``top_k``, ``max_pool``, ``**world_kwargs``).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 8, world: str | World = "shapes", max_rounds: int = 10,
                 reward: str = DEFAULT_REWARD, hit_bonus: float = 0.0,
                 max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS, render_mode: str | None = None,
                 top_k: int = 50, max_pool: int | None = None, **world_kwargs: Any):
        self.world = world if isinstance(world, World) else build_world(world, **world_kwargs)
        self.num_envs, self.max_rounds, self.render_mode = num_envs, max_rounds, render_mode
        self.core = EpisodeBatch(self.world, num_envs, max_rounds, RewardFn(reward, len(self.world.index), hit_bonus),
                                 max_question_chars, invalid="raise", top_k=top_k,
                                 max_pool=default_max_pool(self.world, max_pool))
        self.single_observation_space = dialog_space(max_rounds, max_question_chars)
        self.single_action_space = gym.spaces.Text(max_question_chars, min_length=1,
                                                   charset=self.single_observation_space["caption"].character_set)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._np_random = None

    def _observations(self):
        items = [dialog_observation(d, self.max_rounds, self.core.max_question_chars) for d in self.core.dialogs]
        out = create_empty_array(self.single_observation_space, self.num_envs)
        return concatenate(self.single_observation_space, items, out)

    def _infos(self, extra: Sequence[dict] | None = None) -> dict:
        infos: dict = {}
        for slot in range(self.num_envs):
            info = episode_info(self.core, slot)
            if extra is not None:
                info.update(extra[slot])
            infos = self._add_info(infos, info, slot)
        return infos

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
        for slot, action in enumerate(actions):
            if action is None:  # the core reads None as a pass; a gymnasium action must be a question
                raise InvalidQuestionError(f"a question must be a str, got NoneType (episode {slot})", "not_str")
        result = self.core.step(actions)
        round_text = [{"question": q, "answer": a} for q, a in zip(result.questions, result.answers)]
        terminated = result.done.copy()
        if terminated.all():
            final_obs = self._observations()
            final_infos = [{**episode_info(self.core, slot), **round_text[slot]} for slot in range(self.num_envs)]
            self.core.reset(range(self.num_envs), self.core.sample_targets(self.np_random, self.num_envs))
            infos = self._infos()
            for slot, single_obs in enumerate(iterate(self.observation_space, final_obs)):
                infos = self._add_info(infos, {"final_obs": single_obs, "final_info": final_infos[slot]}, slot)
        else:
            infos = self._infos(round_text)
        return self._observations(), result.rewards.copy(), terminated, np.zeros(self.num_envs, bool), infos
