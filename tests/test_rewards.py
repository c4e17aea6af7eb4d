import math

import numpy as np
import pytest

from chatir_env.rewards import RewardFn


def test_rank_rewards_on_known_rank_changes():
    prev, new = np.array([99, 9, 0]), np.array([9, 99, 0])
    best_prev, best_new = np.array([99, 4, 0]), np.array([9, 4, 0])
    np.testing.assert_allclose(RewardFn("rank_delta", corpus_size=100)(prev, new, best_prev, best_new), [0.9, -0.9, 0.0])
    np.testing.assert_allclose(RewardFn("log_rank_delta")(prev, new, best_prev, best_new), [math.log(10), -math.log(10), 0.0])
    np.testing.assert_allclose(RewardFn("best_log_rank_delta")(prev, new, best_prev, best_new), [math.log(10), 0.0, 0.0])


def test_log_rank_integral_returns_minus_rounds_times_bri():
    from chatir_env.metrics import bri

    # best ranks 99 -> 9 -> 9 -> 0 (the rank itself goes 99, 9, 20, 0: a bad answer does not count)
    ranks = np.array([[99], [9], [20], [0]])
    best = np.minimum.accumulate(ranks, axis=0)
    fn = RewardFn("log_rank_integral")
    rewards = [fn(ranks[t], ranks[t + 1], best[t], best[t + 1])[0] for t in range(3)]
    np.testing.assert_allclose(rewards, [-(math.log(100) + math.log(10)) / 2, -math.log(10), -math.log(10) / 2])
    assert sum(rewards) == pytest.approx(-3 * bri(ranks))


def test_hit_bonus_only_on_first_entry_into_top_k():
    fn = RewardFn("log_rank_delta", hit_bonus=1.0)
    # 15 -> 5 enters the top 10 (bonus); 5 -> 3 was already in (no bonus); 12 -> 11 does not enter
    r = fn([15, 5, 12], [5, 3, 11], [15, 5, 12], [5, 3, 11])
    np.testing.assert_allclose(r, [math.log(16 / 6) + 1.0, math.log(6 / 4), math.log(13 / 12)])


def test_unknown_reward_is_named():
    with pytest.raises(ValueError, match="unknown reward 'hits'"):
        RewardFn("hits")
