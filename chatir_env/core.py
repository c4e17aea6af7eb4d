"""The batched core that every ChatIR env is a view over.

One ``step`` plays one round of N episodes: one answerer batch, one encoder batch, one ranking
matmul. ``ChatIREnv`` drives it with N = 1 and the vector env with N = num_envs, so the two cannot
drift apart.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .dialog import Dialog
from .rewards import RewardFn
from .worlds.base import World

DEFAULT_MAX_QUESTION_CHARS = 300


class InvalidQuestionError(ValueError):
    """A question the env refuses: not a string, empty, too long, or with control characters."""


def validate_question(question, max_chars: int = DEFAULT_MAX_QUESTION_CHARS, episode: int | None = None) -> str:
    where = "" if episode is None else f" (episode {episode})"
    if not isinstance(question, str):
        raise InvalidQuestionError(f"a question must be a str, got {type(question).__name__}: {question!r:.80}{where}")
    text = question.strip()
    if not text:
        raise InvalidQuestionError(f"empty question{where}: ask something, e.g. 'is it sunny?'")
    if len(text) > max_chars:
        raise InvalidQuestionError(f"question of {len(text)} characters is longer than max_question_chars={max_chars}{where}: {text[:60]!r}...")
    for pos, ch in enumerate(text):
        if unicodedata.category(ch) == "Cc":
            raise InvalidQuestionError(f"question contains control character U+{ord(ch):04X} at position {pos}{where}: {text[:60]!r}")
    return text


@dataclass
class RoundResult:
    answers: list[str]
    ranks: np.ndarray       # int64[N], 0-based
    rewards: np.ndarray     # float64[N]
    done: np.ndarray        # bool[N]: the episode just played its last round


class EpisodeBatch:
    """State of N concurrent episodes over one world: targets, dialogs, ranks, best ranks, rounds."""

    def __init__(self, world: World, num_episodes: int, max_rounds: int = 10, reward: RewardFn | None = None,
                 max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS):
        if num_episodes < 1:
            raise ValueError(f"num_episodes must be at least 1, got {num_episodes}")
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        self.world, self.n, self.max_rounds = world, num_episodes, max_rounds
        self.reward_fn = reward or RewardFn(corpus_size=len(world.index))
        self.max_question_chars = max_question_chars
        self.targets: list[str] = [""] * num_episodes
        self.target_positions = torch.zeros(num_episodes, dtype=torch.long)
        self.dialogs: list[Dialog] = [Dialog("")] * num_episodes
        self.ranks = np.zeros(num_episodes, dtype=np.int64)
        self.best_ranks = np.zeros(num_episodes, dtype=np.int64)
        self.rounds = np.zeros(num_episodes, dtype=np.int64)
        self.vectors: torch.Tensor | None = None  # the latest dialog vectors, [N, d]
        # With keep_top_k > 0, each ranking also keeps every episode's top candidates (for pooled
        # agents' features), from the same score matrix.
        self.keep_top_k = 0
        self.top_scores: torch.Tensor | None = None
        self.top_positions: torch.Tensor | None = None

    def sample_targets(self, rng: np.random.Generator, count: int) -> list[str]:
        if not self.world.targets:
            raise ValueError(f"world {self.world.name!r} has no targets to draw from; pass one with reset(options={{'target': id}})")
        return [self.world.targets[i] for i in rng.integers(0, len(self.world.targets), count)]

    def _rank(self, slots: Sequence[int]) -> np.ndarray:
        vectors = self.world.retriever.encode_dialogs([self.dialogs[i] for i in slots])
        if self.vectors is None:
            self.vectors = torch.zeros((self.n, vectors.shape[1]), dtype=vectors.dtype, device=vectors.device)
        self.vectors[list(slots)] = vectors
        targets = self.target_positions[list(slots)]
        if not self.keep_top_k:
            return self.world.index.ranks(vectors, targets).cpu().numpy()
        ranks, (scores, positions) = self.world.index.ranks_and_top_k(vectors, targets, self.keep_top_k)
        if self.top_scores is None:
            self.top_scores = torch.zeros((self.n, scores.shape[1]), dtype=scores.dtype)
            self.top_positions = torch.zeros((self.n, scores.shape[1]), dtype=torch.long)
        self.top_scores[list(slots)] = scores.cpu()
        self.top_positions[list(slots)] = positions.cpu()
        return ranks.cpu().numpy()

    def reset(self, slots: Sequence[int], targets: Sequence[str]) -> None:
        """Start new episodes in ``slots`` with the given target ids (round 0: the caption alone)."""
        slots = list(slots)
        positions = self.world.index.positions(targets)  # raises UnknownTargetError naming the id
        for slot, target, position in zip(slots, targets, positions.tolist(), strict=True):
            if target not in self.world.captions:
                raise KeyError(f"target {target!r} has no caption in world {self.world.name!r}")
            self.targets[slot] = target
            self.target_positions[slot] = position
            self.dialogs[slot] = Dialog(self.world.captions[target])
        ranks = self._rank(slots)
        self.ranks[slots] = ranks
        self.best_ranks[slots] = ranks
        self.rounds[slots] = 0

    def step(self, questions: Sequence[str], slots: Sequence[int] | None = None) -> RoundResult:
        """Ask ``questions[i]`` in episode ``slots[i]`` (all episodes by default)."""
        slots = list(range(self.n)) if slots is None else list(slots)
        if len(questions) != len(slots):
            raise ValueError(f"got {len(questions)} questions for {len(slots)} episodes")
        over = [s for s in slots if self.rounds[s] >= self.max_rounds]
        if over:
            raise RuntimeError(f"episodes {over} already played max_rounds={self.max_rounds}; reset them first")
        clean = [validate_question(q, self.max_question_chars, s) for q, s in zip(questions, slots)]
        dialogs = [self.dialogs[s] for s in slots]
        answers = self.world.answerer.answer([self.targets[s] for s in slots], dialogs, clean)
        for s, q, a, d in zip(slots, clean, answers, dialogs):
            self.dialogs[s] = d.with_turn(q, a)
        new = self._rank(slots)
        prev, prev_best = self.ranks[slots], self.best_ranks[slots]
        best = np.minimum(prev_best, new)
        rewards = self.reward_fn(prev, new, prev_best, best)
        self.ranks[slots], self.best_ranks[slots] = new, best
        self.rounds[slots] += 1
        return RoundResult(list(answers), new, rewards, self.rounds[slots] >= self.max_rounds)
