import math

import numpy as np
import pytest
import torch

from chatir_env.metrics import best_ranks, bootstrap_ci, bri, hits_at_k, per_round_hits_at_k, summarize, target_ranks


def test_target_ranks_hand_computed_with_ties():
    corpus = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    query = torch.tensor([[1.0, 0.0]])  # scores: 1, 0, 1, 0.5
    ranks = [target_ranks(query, corpus, torch.tensor([t])).item() for t in range(4)]
    # item 2 ties item 0 and comes after it; item 3 is behind both; item 1 is last
    assert ranks == [0, 3, 1, 2]


def test_target_ranks_matches_stable_descending_sort():
    gen = torch.Generator().manual_seed(0)
    # small integer vectors make many exact ties
    corpus = torch.randint(-2, 3, (3_000, 8), generator=gen).float()
    queries = torch.randint(-2, 3, (257, 8), generator=gen).float()
    targets = torch.randint(0, 3_000, (257,), generator=gen)
    scores = queries @ corpus.T
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    expected = (order == targets[:, None]).nonzero()[:, 1]
    assert torch.equal(target_ranks(queries, corpus, targets), expected)


def test_target_ranks_sparse_queries_take_the_same_ranks():
    gen = torch.Generator().manual_seed(1)
    corpus = torch.randint(0, 2, (500, 64), generator=gen).float()
    queries = torch.zeros(40, 64)
    queries[:, :5] = torch.randint(-3, 4, (40, 5), generator=gen).float()  # 5 of 64 dims used
    targets = torch.randint(0, 500, (40,), generator=gen)
    order = torch.sort(queries @ corpus.T, dim=1, descending=True, stable=True).indices
    assert torch.equal(target_ranks(queries, corpus, targets), (order == targets[:, None]).nonzero()[:, 1])


def test_target_ranks_rejects_bad_input():
    corpus = torch.eye(3)
    with pytest.raises(IndexError, match="outside the corpus"):
        target_ranks(torch.eye(3)[:1], corpus, torch.tensor([3]))
    with pytest.raises(ValueError, match="same d"):
        target_ranks(torch.ones(1, 2), corpus, torch.tensor([0]))
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(torch.tensor([[float("nan"), 0.0, 0.0]]), corpus, torch.tensor([0]))


def test_hits_at_k_is_cumulative():
    ranks = np.array([[12, 3, 50],
                      [9, 20, 11],
                      [30, 1, 10]])
    # round 0: only query 1; round 1: query 0 joins (9 < 10) and query 1 keeps its earlier hit;
    # round 2: query 0 stays a hit though its rank fell to 30; query 2 at rank 10 is not a hit
    np.testing.assert_allclose(hits_at_k(ranks, k=10), [100 / 3, 200 / 3, 200 / 3])
    np.testing.assert_allclose(per_round_hits_at_k(ranks, k=10), [100 / 3, 100 / 3, 100 / 3])
    np.testing.assert_array_equal(best_ranks(ranks)[:, 0], [12, 9, 9])


def test_bri_hand_computed():
    # best ranks 3, 1, 1: ((ln 4 + ln 2) / 2 + (ln 2 + ln 2) / 2) / 2 = 1.25 ln 2
    assert bri(np.array([[3], [1], [7]])) == pytest.approx(1.25 * math.log(2))
    # mean over queries
    assert bri(np.array([[3, 0], [1, 0], [7, 0]])) == pytest.approx(0.625 * math.log(2))
    with pytest.raises(ValueError, match="at least one round"):
        bri(np.array([[3, 4]]))


def test_bootstrap_interval_hand_computed_cases():
    # Two queries, one hit and one miss: a resample holds 0, 1 or 2 hits with probabilities 1/4, 1/2, 1/4, so
    # Hits@10 is 0, 50 or 100; the 2.5% and 97.5% quantiles are 0 and 100, the 30% and 70% ones both 50.
    ranks = np.array([[0, 50]])
    lo, hi = bootstrap_ci(ranks, hits_at_k, samples=4000, seed=1)
    assert (lo[0], hi[0]) == (0.0, 100.0)
    lo, hi = bootstrap_ci(ranks, hits_at_k, samples=4000, confidence=0.4, seed=1)
    assert (lo[0], hi[0]) == (50.0, 50.0)


def test_bootstrap_interval_width_matches_the_binomial_and_resamples_whole_targets():
    # 300 targets, half hits at round 0, all hits from round 1: the normal approximation gives a 95%
    # half-width of 1.96 * sqrt(0.25 / 300) * 100 = 5.66 points at round 0 and none at round 1. Resampling
    # targets (columns) keeps each target's rounds together, so round 1 stays exactly 100.
    ranks = np.array([[0] * 150 + [40] * 150, [0] * 300])
    lo, hi = bootstrap_ci(ranks, hits_at_k, samples=2000, seed=3)
    assert 2 * 5.66 * 0.9 < hi[0] - lo[0] < 2 * 5.66 * 1.1
    assert abs((lo[0] + hi[0]) / 2 - 50.0) < 1.0
    assert (lo[1], hi[1]) == (100.0, 100.0)
    lo2, hi2 = bootstrap_ci(ranks, hits_at_k, samples=2000, seed=3)
    np.testing.assert_array_equal(lo, lo2)
    np.testing.assert_array_equal(hi, hi2)
    s = summarize(ranks, bootstrap_samples=50)
    assert s["queries"] == 300 and s["rounds"] == 1 and s["hits@10"] == [50.0, 100.0]
