"""The seed-study statistics against rliable's own output (recorded once; rliable does not import beside pandas 3)."""

import numpy as np
import pytest

from chatir_env.eval.seed_stats import iqm, iqm_with_ci, mean_with_ci

# Recorded with rliable 1.2.0 (arch 7.2, pandas 2.3, numpy 2.x) in a separate virtualenv:
#
#   import numpy as np
#   from rliable import library as rly, metrics
#   hits = np.random.default_rng(7).integers(0, 2, (3, 40)) * 100.0        # [seeds, targets]
#   ranks = np.floor(np.random.default_rng(8).exponential(30.0, (3, 25)))
#   for name, x in (("hits", hits), ("ranks", ranks)):
#       for seed in (0, 5):
#           np.random.seed(seed)
#           point, ci = rly.get_interval_estimates({"a": x.T}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=500)
#           print(name, seed, repr(float(point["a"][0])), repr(ci["a"][:, 0].tolist()))
#   np.random.seed(0)   # and the mean, for mean_with_ci
#   point, ci = rly.get_interval_estimates({"a": hits.T}, lambda s: np.array([metrics.aggregate_mean(s)]), reps=500)
RLIABLE = {
    ("hits", 0): (58.333333333333336, [41.666666666666664, 75.0]),
    ("hits", 5): (58.333333333333336, [40.0, 75.0]),
    ("ranks", 0): (18.256410256410255, [14.089102564102564, 24.23333333333333]),
    ("ranks", 5): (18.256410256410255, [13.897435897435898, 24.06474358974359]),
}


def fixed_scores(name: str) -> np.ndarray:
    if name == "hits":
        return np.random.default_rng(7).integers(0, 2, (3, 40)) * 100.0
    return np.floor(np.random.default_rng(8).exponential(30.0, (3, 25)))


@pytest.mark.parametrize("name,seed", sorted(RLIABLE))
def test_matches_rliable_on_fixed_data(name, seed):
    expected_iqm, expected_ci = RLIABLE[(name, seed)]
    estimate = iqm_with_ci(fixed_scores(name), reps=500, seed=seed)
    assert estimate.value == pytest.approx(expected_iqm, abs=1e-12)
    assert [estimate.low, estimate.high] == pytest.approx(expected_ci, abs=1e-12)


def test_mean_matches_rliable_on_fixed_data():
    estimate = mean_with_ci(fixed_scores("hits"), reps=500, seed=0)
    assert estimate.value == pytest.approx(54.166666666666664, abs=1e-12)
    assert [estimate.low, estimate.high] == pytest.approx([45.833333333333336, 62.5], abs=1e-12)


def test_iqm_by_hand():
    # 8 scores: a quarter (2) cut from each end of the sorted list leaves 3, 4, 5, 6
    assert iqm([[8, 1, 7, 2], [3, 6, 4, 5]]) == 4.5
    # 10 scores: int(2.5) = 2 cut from each end; outliers do not move it
    assert iqm([[1000, -1000, 1, 2, 3], [4, 5, 6, 7, 8]]) == pytest.approx(np.mean([2, 3, 4, 5, 6, 7]))


def test_identical_seeds_give_a_point_interval_and_strata_are_kept():
    # Every target of seed 0 scores 0 and every target of seed 1 scores 100: resampling targets within each
    # seed keeps half the scores at 0 and half at 100 in every replicate, so the interval collapses to 50.
    # (Resampling across seeds would mix them and widen it.)
    scores = np.array([[0.0] * 20, [100.0] * 20])
    estimate = iqm_with_ci(scores, reps=200)
    assert estimate.value == 50.0 and estimate.low == 50.0 and estimate.high == 50.0


@pytest.mark.parametrize("bad,match", [(np.zeros(5), "seeds, targets"), (np.full((2, 3), np.nan), "NaN")])
def test_bad_scores_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        iqm_with_ci(bad)
