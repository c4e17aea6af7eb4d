"""Rewards for one round, from the target's rank before and after it (0-based ranks).

All take numpy arrays, so one call scores a whole batch of episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import check_name

REWARDS = ("rank_delta", "log_rank_delta", "best_log_rank_delta", "log_rank_integral")
DEFAULT_REWARD = "log_rank_delta"


@dataclass(frozen=True)
class RewardFn:
    """``reward(prev_rank, new_rank, prev_best, new_best)`` for a batch of episodes.

    * ``rank_delta``: (prev - new) / corpus size, in [-1, 1].
    * ``log_rank_delta`` (default): ln(prev + 1) - ln(new + 1); a move from 1000 to 100 is worth
      as much as one from 10 to 0.
    * ``best_log_rank_delta``: the same on the best rank so far, so never negative: a question
      is not punished for an answer that the retriever reads badly.
    * ``log_rank_integral``: -(ln(prev_best + 1) + ln(new_best + 1)) / 2, the round's trapezoid of the
      best log rank, so an undiscounted episode return is exactly -R x the target's BRI: it rewards
      finding the target early, where the delta rewards (whose returns telescope to the first and last
      ranks) are indifferent to when a gain comes.
    * ``hit_bonus``: added on the round the target first enters the top ``hit_k``.
    """

    name: str = DEFAULT_REWARD
    corpus_size: int = 1
    hit_bonus: float = 0.0
    hit_k: int = 10

    def __post_init__(self) -> None:
        check_name("reward", self.name, REWARDS)  # a ValueError naming the rewards and the closest one
        if self.corpus_size < 1:
            raise ValueError(f"corpus_size must be positive, got {self.corpus_size}")

    def __call__(self, prev_rank, new_rank, prev_best, new_best) -> np.ndarray:
        prev_rank, new_rank, prev_best, new_best = (
            np.asarray(x, dtype=np.float64) for x in (prev_rank, new_rank, prev_best, new_best))
        if self.name == "rank_delta":
            reward = (prev_rank - new_rank) / self.corpus_size
        elif self.name == "log_rank_delta":
            reward = np.log1p(prev_rank) - np.log1p(new_rank)
        elif self.name == "log_rank_integral":
            reward = -(np.log1p(prev_best) + np.log1p(new_best)) / 2
        else:
            reward = np.log1p(prev_best) - np.log1p(new_best)
        if self.hit_bonus:
            first_hit = (prev_best >= self.hit_k) & (new_best < self.hit_k)
            reward = reward + self.hit_bonus * first_hit
        return reward

