"""The GRPO rollout adapter: one TRL ``rollout_func`` call plays whole ChatIR episodes in the batched core.

One GRPO rollout is one whole episode in ``EpisodeBatch``: the model writes a question, the world's
answerer answers, the answer is appended to the model's context as the next user turn, and so on for
``env.max_rounds`` rounds. The completion is every token after the prompt, questions and answers
alike; ``env_mask`` is 1 on the tokens the model sampled and 0 on the tokens the environment inserted
(answers and chat-template glue), so only the questions are trained. The reward of the completion is
the episode's return: the sum of the env's per-round rewards (``env.reward``, default
``log_rank_delta``) minus ``env.invalid_question_penalty`` for each turn whose text is empty, refused
by the env, or (with ``require_question_mark``) not a question; such a turn is a pass in the core (the
round is used up, the rank stays) and the answer "i don't know" is appended instead.

The dataset's ``prompt`` column holds target ids; the rollout renders the target's caption with the
tokenizer's chat template, so the model never sees the id. See docs/grpo.md.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pydantic import Field, field_validator

from ..agents.lm import chat_ids, decode_question, dialog_messages, eos_ids, generate_batch
from ..config import check_name
from ..core import EpisodeBatch
from ..rewards import REWARDS, RewardFn
from ..worlds.base import World
from ..worlds.schema import WorldSection
from ..worlds.shapes_language import DONT_KNOW


class EnvConfig(WorldSection):
    """The episodes a GRPO rollout plays (the ``env:`` section; the SFT stage reads its prompt fields)."""

    world: str = Field("shapes_oracle", description="registered world the episodes play in (its train split)")
    world_kwargs: dict[str, Any] = Field(
        default_factory=lambda: {"split": "train", "corpus_size": 50_000, "num_targets": None},
        description="the world's keyword arguments (`chatir worlds`); use its train split, never the benchmark")
    num_targets: int = Field(0, ge=0, description="train on a seeded random N of the world's targets (0: all)")
    max_rounds: int = Field(5, ge=1, description="questions per episode")
    reward: str = Field("log_rank_delta", description="per-round reward (chatir_env.rewards)")
    hit_bonus: float = Field(0.0, ge=0, description="added on the round the target first enters the top 10")
    invalid_question_penalty: float = Field(1.0, ge=0, description="subtracted from the return per empty, refused or "
                                                                   "non-question turn")
    repeat_penalty: float = Field(0.0, ge=0, description="subtracted from the return per question that repeats an "
                                                       "earlier one of the episode (case and surrounding spaces aside)")
    unanswered_penalty: float = Field(0.0, ge=0, description="subtracted from the return per question the answerer "
                                                           "answers \"i don't know\" (outside what it can answer)")
    require_question_mark: bool = Field(True, description="text not ending in '?' counts as a non-question")
    max_question_tokens: int = Field(16, ge=1, description="tokens the model may generate per question")
    max_question_chars: int = Field(300, ge=1, description="longer questions are refused by the env (a pass)")
    system_prompt: str = Field("", description="system message of the questioner's chat (empty: none); recorded "
                                               "with the trained model so LMQuestioner reuses it")

    @field_validator("reward")
    @classmethod
    def _reward_exists(cls, reward: str) -> str:
        return check_name("reward", reward, REWARDS)


def question_problem(text: str, require_question_mark: bool) -> str | None:
    """Why generated ``text`` is not sent to the world though the env would take it (None: it is sent).

    The env's own rules (empty, too long, control characters) are the core's, applied by
    ``EpisodeBatch.step`` under ``invalid="pass"``; this adds the rollout's one rule of its own.
    """
    if require_question_mark and text.strip() and not text.rstrip().endswith("?"):
        return "not a question"
    return None


class EpisodeRollout:
    """TRL ``rollout_func``: ``rollout(prompts, trainer) -> dict``; ``prompts`` are target ids.

    Returns ``prompt_ids``, ``completion_ids``, ``logprobs`` (sampled tokens; 0 on env tokens),
    ``env_mask`` (1 = sampled by the model, 0 = inserted by the env), and per episode
    ``episode_return``, ``env_return``, ``invalid_turns``, ``repeated_turns``, ``unanswered_turns``, ``hit``
    (best rank < 10 at the end) and ``final_rank``, which TRL hands to the reward functions.
    """

    def __init__(self, world: World, tokenizer, env: EnvConfig):
        self.world, self.tok, self.env = world, tokenizer, env
        self.reward_fn = RewardFn(env.reward, len(world.index), env.hit_bonus)
        self._suffix_cache: dict[str, list[int]] = {}
        self.eos = eos_ids(tokenizer)

    def answer_suffix_ids(self, answer: str) -> list[int]:
        """Tokens that follow the model's end-of-turn for one answer: the user turn and the next assistant header.

        TRL's trick for tool results: render a dummy chat with and without it.
        """
        if answer not in self._suffix_cache:
            dummy = [{"role": "user", "content": "dummy"}, {"role": "assistant", "content": "x"}]
            prefix = chat_ids(self.tok, dummy, add_generation_prompt=False)
            full = chat_ids(self.tok, dummy + [{"role": "user", "content": answer}], add_generation_prompt=True)
            ends = [i for i, t in enumerate(prefix) if t in self.eos]
            if ends:
                prefix = prefix[: ends[-1] + 1]
            if full[: len(prefix)] != prefix:
                raise ValueError("chat template: the dummy chat without the answer is not a prefix of the chat with it")
            self._suffix_cache[answer] = full[len(prefix):]
        return self._suffix_cache[answer]

    def __call__(self, prompts: list, trainer) -> dict[str, list]:
        model = trainer.accelerator.unwrap_model(trainer.model)
        args = trainer.args
        return self.play(model, [str(p) for p in prompts], temperature=args.temperature, top_k=args.top_k or 0,
                         top_p=args.top_p)

    def play(self, model, targets: Sequence[str], temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             do_sample: bool = True) -> dict[str, list]:
        env, n = self.env, len(targets)
        core = EpisodeBatch(self.world, n, env.max_rounds, self.reward_fn, env.max_question_chars, invalid="pass")
        core.reset(range(n), list(targets))
        prompt_ids = [chat_ids(self.tok, dialog_messages(self.world.captions[t], (), env.system_prompt or None))
                      for t in targets]
        completion = [[] for _ in range(n)]
        mask = [[] for _ in range(n)]
        logprobs = [[] for _ in range(n)]
        env_return = np.zeros(n)
        invalid = np.zeros(n, dtype=np.int64)
        repeated = np.zeros(n, dtype=np.int64)
        unanswered = np.zeros(n, dtype=np.int64)
        asked: list[set[str]] = [set() for _ in range(n)]
        questions_log: list[list[str]] = [[] for _ in range(n)]
        answers_log: list[list[str]] = [[] for _ in range(n)]
        stops = set(eos_ids(self.tok, model))  # generation stops at any of them (tokenizer's and model's)
        eos = self.eos[0]
        for round_index in range(env.max_rounds):
            contexts = [p + c for p, c in zip(prompt_ids, completion)]
            new, lps = generate_batch(model, self.tok, contexts, env.max_question_tokens, do_sample, temperature, top_k, top_p)
            questions: list[str | None] = []
            for i, (ids, lp) in enumerate(zip(new, lps)):
                completion[i] += ids
                mask[i] += [1] * len(ids)
                logprobs[i] += lp
                if not ids or ids[-1] not in stops:  # ran out of tokens: the env closes the turn
                    completion[i].append(eos)
                    mask[i].append(0)
                    logprobs[i].append(0.0)
                text = decode_question(self.tok, ids)
                questions_log[i].append(text)
                # The benchmark's repeated-question rate keys questions the same way (eval.runner).
                key = text.strip().lower()
                repeated[i] += key in asked[i]
                asked[i].add(key)
                not_a_question = question_problem(text, env.require_question_mark) is not None
                invalid[i] += not_a_question
                questions.append(None if not_a_question else text)
            # One round in the core: refused questions pass (flagged), and a pass keeps the rank.
            result = core.step(questions)
            env_return += result.rewards
            invalid += result.invalid
            # A question outside what the answerer knows costs a round; without a price of its own it is
            # also the cheapest way around the repeat penalty.
            unanswered += np.array([a == DONT_KNOW for a in result.answers]) & ~np.asarray(result.invalid, dtype=bool)
            answers = [DONT_KNOW if answer is None else answer for answer in result.answers]
            for i in range(n):
                answers_log[i].append(answers[i])
            if round_index < env.max_rounds - 1:
                for i in range(n):
                    suffix = self.answer_suffix_ids(answers[i])
                    completion[i] += suffix
                    mask[i] += [0] * len(suffix)
                    logprobs[i] += [0.0] * len(suffix)
        episode_return = (env_return - env.invalid_question_penalty * invalid - env.repeat_penalty * repeated
                          - env.unanswered_penalty * unanswered)
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion,
            "logprobs": logprobs,
            "env_mask": mask,
            "episode_return": episode_return.tolist(),
            "env_return": env_return.tolist(),
            "invalid_turns": invalid.tolist(),
            "repeated_turns": repeated.tolist(),
            "unanswered_turns": unanswered.tolist(),
            "hit": (core.best_ranks < 10).astype(float).tolist(),
            "final_rank": core.ranks.tolist(),
            "questions": questions_log,
            "answers": answers_log,
        }
