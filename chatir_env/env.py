"""``ChatIREnv``: one ChatIR episode, a view over the batched core with one slot."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded

from .core import DEFAULT_MAX_QUESTION_CHARS, Candidates, EpisodeBatch, InvalidQuestionError
from .rewards import DEFAULT_REWARD, RewardFn
from .spaces import dialog_observation, dialog_space
from .worlds import build_world
from .worlds.base import World


def default_max_pool(world: World, max_pool: int | None) -> int | None:
    """The pool capacity an env keeps for ``world``: ``max_pool``, else the world's recorded one, else its first pool's size.

    None where the world has no question pool.
    """
    if world.question_pool is None or (not max_pool and not world.targets):
        return None
    if max_pool:
        return max_pool
    recorded = world.config.get("max_pool") if isinstance(world.config, dict) else None
    return int(recorded) if recorded else len(world.question_pool(world.targets[0]))


def episode_info(core: EpisodeBatch, slot: int) -> dict:
    """One episode's ``info`` (see ``ChatIREnv``'s Info section), read from the core."""
    best = int(core.best_ranks[slot])
    info = {"target": core.targets[slot], "rank": int(core.ranks[slot]), "best_rank": best,
            "hit@10": best < 10, "round": int(core.rounds[slot]), "dialog": core.dialogs[slot]}
    if core.top_k:
        info["candidates"] = core.candidates(slot)
    return info


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
    characters. Anything else raises ``InvalidQuestionError`` naming the problem (its ``reason`` says
    which in machine-readable form). Worlds with a question pool (Shapes, VisDialReplay) answer a
    question outside their language with "i don't know". ``action_space`` is a
    ``gymnasium.spaces.Text`` over printable ASCII; any Unicode text is accepted as a question.

    ## Observation Space

    ``Dict(caption: Text, questions: Tuple[Text] * R, answers: Tuple[Text] * R, round: Discrete(R + 1))``
    with R = ``max_rounds``; unplayed turns are "". The target's rank is never observed.

    Character rule: every text field holds printable ASCII only, one line. Text is NFKD-normalised
    (accents fold: "café" -> "cafe"), whitespace becomes a space, any other character outside
    printable ASCII is dropped ("★" -> ""), and fields are cut at their space's ``max_length``. The
    world, the answerer and the retriever see the exact text; ``info`` keeps it (below).

    ## Rewards

    Chosen by ``reward`` (ranks are 0-based; r = rank before the round, r' = after):

    - ``log_rank_delta`` (default): ln(r + 1) - ln(r' + 1)
    - ``rank_delta``: (r - r') / corpus size
    - ``best_log_rank_delta``: the same on the best rank so far (never negative)
    - ``log_rank_integral``: -(ln(b + 1) + ln(b' + 1)) / 2 on the best ranks b, b' before and after;
      an undiscounted return is -R x the episode's BRI

    plus ``hit_bonus`` (default 0) on the round the target first enters the top 10.
    Over an episode ``log_rank_delta`` sums to ln(r_0 + 1) - ln(r_R + 1).

    ## Starting State

    Round 0: the caption of a target drawn uniformly from the world's targets with the env's
    ``np_random`` (``reset(seed=...)``), or the one given by ``reset(options={"target": id})``.

    ## Episode End

    Terminated after ``max_rounds`` questions (default 10). No truncation. A ``step`` after the end
    raises ``gymnasium.error.ResetNeeded``.

    ## Info

    ``target``, ``rank`` (0-based), ``best_rank``, ``hit@10`` (best rank < 10), ``round``, ``dialog``
    (the exact ``Dialog``: caption and every question and answer as asked and answered, Unicode
    intact) and, with ``top_k > 0``, ``candidates``: a ``chatir_env.core.Candidates`` holding the
    ids, corpus positions and scores of the current top-``top_k`` items and the dialog vector that
    ranked them, computed by the same ranking as ``rank`` (questioners that reason about candidates,
    such as the greedy information-gain questioner and trained pooled policies, read this field
    rather than encoding the dialog again; the eval runner hands it to them in their observations).
    After a step also ``question`` and ``answer``, the exact text of the round. Keep ``info`` away
    from the policy: it holds the answer to the task.

    ## Arguments

    ``gymnasium.make("ChatIR/Shapes-v0", split="benchmark", max_rounds=10, reward="log_rank_delta",
    hit_bonus=0.0, max_question_chars=300, top_k=50, max_pool=None, **world_kwargs)``; ``world`` is a
    registered world name (built with ``world_kwargs``) or a ``World``. ``top_k``: candidates kept per
    round (0: none). ``max_pool``: for worlds with a question pool, the largest pool the env keeps
    (None: ``world.config["max_pool"]`` or the first target's pool size); ``pool()`` and
    ``asked()`` read the episode's pool and which of its questions were asked.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 1}

    def __init__(self, world: str | World = "shapes", max_rounds: int = 10, reward: str = DEFAULT_REWARD,
                 hit_bonus: float = 0.0, max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS,
                 render_mode: str | None = None, top_k: int = 50, max_pool: int | None = None, **world_kwargs: Any):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.world = world if isinstance(world, World) else build_world(world, **world_kwargs)
        self.max_rounds = max_rounds
        self.render_mode = render_mode
        self.core = EpisodeBatch(self.world, 1, max_rounds, RewardFn(reward, len(self.world.index), hit_bonus),
                                 max_question_chars,
                                 invalid="raise", top_k=top_k, max_pool=default_max_pool(self.world, max_pool))
        self.top_k, self.max_pool = self.core.top_k, self.core.max_pool
        self.observation_space = dialog_space(max_rounds, max_question_chars)
        self.action_space = gym.spaces.Text(max_length=max_question_chars, min_length=1,
                                            charset=self.observation_space["caption"].character_set)
        self._started = False

    def _observation(self) -> dict:
        return dialog_observation(self.core.dialogs[0], self.max_rounds, self.core.max_question_chars)

    def _info(self) -> dict:
        return episode_info(self.core, 0)

    def candidates(self) -> Candidates:
        """The current top-``top_k`` candidates (``info["candidates"]``); ValueError with ``top_k=0``."""
        return self.core.candidates(0)

    def pool(self) -> tuple[str, ...]:
        """The episode's question pool (empty where the world has none)."""
        view = self.core.view()
        return view.pools[0] if view.pools is not None else ()

    def asked(self) -> np.ndarray:
        """``bool[max_pool]``, read-only: which pool questions the episode asked (every copy of a repeated one)."""
        view = self.core.view()
        if view.asked is None:
            raise ValueError(f"world {self.world.name!r} has no question pool")
        return view.asked[0]

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
            raise ResetNeeded("call reset() before step()")
        if action is None:  # the core reads None as a pass; a gymnasium action must be a question
            raise InvalidQuestionError("a question must be a str, got NoneType (episode 0)", "not_str")
        result = self.core.step([action])
        terminated = bool(result.done[0])
        info = {**self._info(), "question": result.questions[0], "answer": result.answers[0]}
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
