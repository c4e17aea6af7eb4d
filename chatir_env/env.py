"""``ChatIREnv``: one ChatIR episode, a view over the batched core with one slot."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from .core import DEFAULT_MAX_QUESTION_CHARS, EpisodeBatch
from .rewards import DEFAULT_REWARD, RewardFn
from .spaces import dialog_observation, dialog_space
from .worlds import build_world
from .worlds.base import World


class ChatIREnv(gym.Env):
    """Chat-based image retrieval: ask questions about a hidden image until the retriever finds it.

    ## Description

    A target image is drawn from the world's targets and the agent is shown its caption. Each step
    the agent asks one question in free text; the world's answerer answers it about the target, the
    dialog-retrieval encoder re-encodes the whole dialog (caption, then "question answer" turns), and
    the corpus is re-ranked. The agent is rewarded for moving the target up the ranking. This is the
    protocol of ChatIR (Levy et al., NeurIPS 2023): 10 rounds, scored by Hits@10 per round.

    ## Action Space

    A question: a ``str`` of 1 to ``max_question_chars`` characters (default 300) without control
    characters. Anything else raises ``InvalidQuestionError`` naming the problem. Worlds with a
    question pool (Shapes, VisDialReplay) answer a question outside their language with
    "i don't know". ``action_space`` is a ``gymnasium.spaces.Text`` over printable ASCII.

    ## Observation Space

    ``Dict(caption: Text, questions: Tuple[Text] * R, answers: Tuple[Text] * R, round: Discrete(R + 1))``
    with R = ``max_rounds``; unplayed turns are "". The target's rank is never observed.

    ## Rewards

    Chosen by ``reward`` (ranks are 0-based; r = rank before the round, r' = after):

    - ``log_rank_delta`` (default): ln(r + 1) - ln(r' + 1)
    - ``rank_delta``: (r - r') / corpus size
    - ``best_log_rank_delta``: the same on the best rank so far (never negative)

    plus ``hit_bonus`` (default 0) on the round the target first enters the top 10.
    Over an episode ``log_rank_delta`` sums to ln(r_0 + 1) - ln(r_R + 1).

    ## Starting State

    Round 0: the caption of a target drawn uniformly from the world's targets with the env's
    ``np_random`` (``reset(seed=...)``), or the one given by ``reset(options={"target": id})``.

    ## Episode End

    Terminated after ``max_rounds`` questions (default 10). No truncation.

    ## Info

    ``target``, ``rank`` (0-based), ``best_rank``, ``hit@10`` (best rank < 10), ``round``, and, after a
    step, ``answer``. Keep ``info`` away from the policy: it holds the answer to the task.

    ## Arguments

    ``gymnasium.make("ChatIR/Shapes-v0", split="benchmark", max_rounds=10, reward="log_rank_delta",
    hit_bonus=0.0, max_question_chars=300, **world_kwargs)``; ``world`` is a registered world name
    (built with ``world_kwargs``) or a ``World``.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1}

    def __init__(self, world: str | World = "shapes", max_rounds: int = 10, reward: str = DEFAULT_REWARD,
                 hit_bonus: float = 0.0, max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS,
                 render_mode: str | None = None, **world_kwargs: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.world = world if isinstance(world, World) else build_world(world, **world_kwargs)
        self.max_rounds = max_rounds
        self.render_mode = render_mode
        self.core = EpisodeBatch(self.world, 1, max_rounds, RewardFn(reward, len(self.world.index), hit_bonus), max_question_chars)
        self.observation_space = dialog_space(max_rounds, max_question_chars)
        self.action_space = gym.spaces.Text(max_length=max_question_chars, min_length=1, charset=self.observation_space["caption"].character_set)
        self._started = False

    def _observation(self) -> dict:
        return dialog_observation(self.core.dialogs[0], self.max_rounds, self.core.max_question_chars)

    def _info(self) -> dict:
        best = int(self.core.best_ranks[0])
        return {"target": self.core.targets[0], "rank": int(self.core.ranks[0]), "best_rank": best,
                "hit@10": best < 10, "round": int(self.core.rounds[0])}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        target = (options or {}).get("target")
        if target is None:
            target = self.core.sample_targets(self.np_random, 1)[0]
        self.core.reset([0], [target])
        self._started = True
        return self._observation(), self._info()

    def step(self, action: str):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        result = self.core.step([action])
        terminated = bool(result.done[0])
        info = {**self._info(), "answer": result.answers[0]}
        return self._observation(), float(result.rewards[0]), terminated, False, info

    def render(self):
        if self.render_mode == "ansi":
            d = self.core.dialogs[0]
            lines = [f"caption: {d.caption}"] + [f"  Q{i + 1}: {q}  A: {a}" for i, (q, a) in enumerate(d.turns)]
            return "\n".join(lines + [f"target rank {self.core.ranks[0]} (best {self.core.best_ranks[0]})"])
        if self.render_mode == "rgb_array":
            if self.world.image is None:
                return np.zeros((64, 64, 3), dtype=np.uint8)
            return np.asarray(self.world.image(self.core.targets[0]).convert("RGB"))
        return None
