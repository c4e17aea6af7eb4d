"""The one-pass blocked count of ``metrics.ranks_from_scores`` against a stable descending sort.

Ties are made on purpose (small integer vectors), with corpus sizes around the block size, targets
in the tail columns, block sizes that take the eight-at-a-time count and ones that do not, zero
target scores (the mask path) and half precision.
"""

from __future__ import annotations

import pytest
import torch

import chatir_env.metrics as metrics
from chatir_env.metrics import ranks_from_scores, target_ranks


def stable_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return (order == targets[:, None]).nonzero()[:, 1]


@pytest.mark.parametrize("block", [1, 3, 8, 16, 24, 512, 2048])
@pytest.mark.parametrize("n", [1, 7, 16, 17, 100, 1031])
def test_blocked_count_matches_stable_sort(monkeypatch, block, n):
    monkeypatch.setattr(metrics, "_BLOCK", block)
    gen = torch.Generator().manual_seed(block * 1000 + n)
    corpus = torch.randint(-2, 3, (n, 4), generator=gen).float()
    queries = torch.randint(-2, 3, (41, 4), generator=gen).float()
    targets = torch.randint(0, n, (41,), generator=gen)
    targets[0] = n - 1  # a target in the last column
    assert torch.equal(target_ranks(queries, corpus, targets), stable_ranks(queries @ corpus.T, targets))


def test_zero_target_scores_and_other_dtypes():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randint(-1, 2, (64, 1500), generator=gen).float()  # many zeros: ties at 0
    targets = torch.randint(0, 1500, (64,), generator=gen)
    expected = stable_ranks(scores, targets)
    assert torch.equal(ranks_from_scores(scores, targets), expected)
    assert torch.equal(ranks_from_scores(scores.double(), targets), expected)
    assert torch.equal(ranks_from_scores(scores.half(), targets), expected)
    assert torch.equal(ranks_from_scores(-scores, targets), stable_ranks(-scores, targets))


def test_many_tiles_and_a_reused_buffer(monkeypatch):
    """Tiles of uneven fill reuse one score buffer and one mask buffer; results must not leak."""
    monkeypatch.setattr(metrics, "_TILE_ELEMENTS", 3 * 1000)
    gen = torch.Generator().manual_seed(4)
    corpus = torch.nn.functional.normalize(torch.randn(1000, 8, generator=gen), dim=1)
    corpus[500] = corpus[10]  # an exact duplicate: a tie for whichever of the two is the target
    queries = torch.nn.functional.normalize(torch.randn(10, 8, generator=gen), dim=1)
    targets = torch.tensor([10, 500, 0, 999, 3, 4, 5, 6, 7, 8])
    # the expected ranks from products of the same 3-query tiles (the same floating-point sums)
    expected = torch.cat([stable_ranks(queries[i : i + 3] @ corpus.T, targets[i : i + 3]) for i in range(0, 10, 3)])
    assert torch.equal(target_ranks(queries, corpus, targets), expected)
    assert target_ranks(queries[:0], corpus, targets[:0]).shape == (0,)
