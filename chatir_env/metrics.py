"""The ranking metrics of the ChatIR protocol (public API: the benchmark depends on these semantics).

* ``target_ranks``: the 0-based rank of each query's target in the corpus, as a stable descending
  sort would give it (ties go to the lower corpus index), computed with tiled matmuls, no sort.
* ``hits_at_k``: ChatIR's cumulative Hits@K per round, in percent.
* ``bri``: PlugIR's Best log Rank Integral (lower is better).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from . import cpu_matmul

# Score matrices are built a tile of queries at a time; this bounds a tile to ~256 MB of float32
# (a GEMM of ~1,000 queries x 50,000 images runs ~10% faster than one of ~300).
_TILE_ELEMENTS = 1 << 26
# Columns per block of the one-pass count in ``ranks_from_scores`` (see there).
_BLOCK = 512


def score_matrix(queries: torch.Tensor, corpus: torch.Tensor, corpus_t: torch.Tensor | None = None,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """``queries @ corpus.T``, skipping dimensions that are zero in every query.

    Sparse queries (the exact Shapes scorer's) touch few dimensions; a dimension that is zero in all
    of them adds exactly 0 to every score, so leaving it out changes no score. ``corpus_t``, a
    contiguous ``corpus.T``, makes picking those dimensions a cheap row gather. ``out``: a
    ``[Q, N]`` buffer to write into (reused across tiles instead of a fresh allocation per tile).
    """
    used = (queries != 0).any(dim=0)
    if int(used.sum()) < corpus.shape[1] // 2:
        rows = (corpus_t if corpus_t is not None else corpus.T)[used]
        return queries[:, used] @ rows if out is None else torch.mm(queries[:, used], rows, out=out)
    return cpu_matmul.matmul(queries, corpus_t if corpus_t is not None else corpus.T, out=out)


def _ranks_by_masks(scores: torch.Tensor, targets: torch.Tensor, target_score: torch.Tensor) -> torch.Tensor:
    """The definition spelled out: #strictly higher + #equal with a lower corpus index."""
    positions = torch.arange(scores.shape[1], device=scores.device)
    higher = (scores > target_score).sum(dim=1, dtype=torch.int32)
    tied_before = ((scores == target_score) & (positions[None, :] < targets[:, None])).sum(dim=1, dtype=torch.int32)
    return (higher + tied_before).long()


def _count_true(mask: torch.Tensor) -> torch.Tensor:
    """``mask[q, blocks, _BLOCK].sum((1, 2))`` as int32, eight bools at a time.

    Summing a bool tensor casts every element (several ns each on a CPU). Read as int64 words
    instead, each word holds eight 0/1 bytes; adding the ``_BLOCK / 8`` (<= 255) words of a block
    keeps every byte lane below 256, so the block's count is the sum of its result's eight bytes.
    """
    q, blocks, block = mask.shape
    if block % 8 or block // 8 > 255 or not mask.is_contiguous():
        return mask.reshape(q, -1).sum(dim=1, dtype=torch.int32)
    lanes = mask.view(torch.uint8).view(torch.int64).sum(dim=2)  # [q, blocks], eight byte lanes <= block / 8
    # Fold the lanes with integer arithmetic (casting a byte view costs more than all of this):
    # bytes -> four 16-bit lanes (<= 2 * 255) -> two 32-bit lanes (<= 4 * 255), then over blocks.
    lanes = (lanes & 0x00FF00FF00FF00FF) + ((lanes >> 8) & 0x00FF00FF00FF00FF)
    lanes = (lanes & 0x0000FFFF0000FFFF) + ((lanes >> 16) & 0x0000FFFF0000FFFF)
    total = lanes.sum(dim=1)  # two 32-bit lanes, each <= 1020 * blocks: no carry for any realistic corpus
    return ((total & 0xFFFFFFFF) + (total >> 32)).to(torch.int32)


def ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor, *, mask_buffer: torch.Tensor | None = None) -> torch.Tensor:
    """Ranks of ``targets`` in each row of a ``[Q, N]`` score matrix (stable-descending-sort ties).

    rank = #{j : s_j > s_t} + #{j < t : s_j == s_t}, counted in one pass over the scores: the
    columns are cut into blocks of ``_BLOCK``. In the blocks left of the target's block an item
    counts when ``s_j >= s_t`` (every tie there lies before the target), right of it when
    ``s_j >= nextafter(s_t, +inf)``, i.e. ``s_j > s_t`` (ties after the target do not count), and in
    the target's own block when ``s_j >= s_t``, after which the target itself and the ties after it
    within that block (a gather of ``_BLOCK`` scores per row) are taken off. Counts are int32,
    summed eight bools at a time (``_count_true``).

    Rows whose target score is zero or subnormal (where a flush-to-zero mode could make
    ``nextafter`` compare as zero) and dtypes other than float32/float64 take the plain mask path,
    which gives the same ranks. ``mask_buffer``: an optional bool buffer of at least ``Q * N``
    elements for the comparison (reused across tiles by ``target_ranks``).
    """
    q, n = scores.shape
    targets = targets.to(scores.device)
    # Read the target's score out of the same product, so it compares equal to itself bit for bit.
    target_score = scores.gather(1, targets[:, None])
    if scores.dtype not in (torch.float32, torch.float64) or q == 0:
        return _ranks_by_masks(scores, targets, target_score)
    block = _BLOCK
    full = n // block  # whole blocks; the n % block tail columns form block number `full`
    own = targets // block  # the block holding each target
    above = torch.nextafter(target_score, torch.full_like(target_score, float("inf")))
    counts = torch.zeros(q, dtype=torch.int32, device=scores.device)
    if full:
        block_ids = torch.arange(full, device=scores.device)
        thresholds = torch.where(block_ids[None, :] <= own[:, None], target_score, above)[:, :, None]  # [Q, full, 1]
        view = scores[:, : full * block].unflatten(1, (full, block))
        if mask_buffer is not None and mask_buffer.dtype == torch.bool and mask_buffer.numel() >= q * full * block:
            mask = torch.ge(view, thresholds, out=mask_buffer.view(-1)[: q * full * block].view(q, full, block))
        else:
            mask = view >= thresholds
        counts += _count_true(mask)
    if n > full * block:
        threshold = torch.where(own[:, None] >= full, target_score, above)
        counts += (scores[:, full * block :] >= threshold).sum(dim=1, dtype=torch.int32)
    # In its own block the target counted itself and every tie after it: take those off.
    after = targets[:, None] + torch.arange(1, block, device=scores.device)[None, :]  # [Q, block - 1]
    valid = after < torch.clamp((own + 1) * block, max=n)[:, None]
    tied_after = (scores.gather(1, torch.where(valid, after, targets[:, None])) == target_score) & valid
    ranks = (counts - 1 - tied_after.sum(dim=1, dtype=torch.int32)).long()
    risky = target_score[:, 0].abs() < 2 * torch.finfo(scores.dtype).tiny
    if bool(risky.any()):
        rows = torch.nonzero(risky).flatten()
        ranks[rows] = _ranks_by_masks(scores[rows], targets[rows], target_score[rows])
    return ranks


def target_ranks(queries: torch.Tensor, corpus: torch.Tensor, targets: torch.Tensor, *,
                 corpus_t: torch.Tensor | None = None) -> torch.Tensor:
    """0-based rank of ``corpus[targets[q]]`` among all corpus items for query ``q``.

    rank = #items scoring strictly higher + #items scoring equally with a lower corpus index.

    Args:
        queries: ``[Q, d]`` query vectors.
        corpus: ``[N, d]`` corpus vectors (same dtype and device as ``queries``).
        targets: ``[Q]`` corpus positions of the targets.
        corpus_t: optionally ``corpus.T`` made contiguous, which speeds up sparse queries.

    Returns:
        ``LongTensor[Q]`` on the queries' device.
    """
    if queries.ndim != 2 or corpus.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise ValueError(
            f"target_ranks needs queries [Q, d] and corpus [N, d] with the same d, "
            f"got {tuple(queries.shape)} and {tuple(corpus.shape)}"
        )
    targets = torch.as_tensor(targets, dtype=torch.long, device=queries.device)
    if targets.shape != (queries.shape[0],):
        raise ValueError(f"targets must have shape [{queries.shape[0]}], got {tuple(targets.shape)}")
    n = corpus.shape[0]
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= n):
        bad = targets[(targets < 0) | (targets >= n)][0].item()
        raise IndexError(f"target position {bad} is outside the corpus of {n} items")
    if not torch.isfinite(queries).all():
        rows = torch.nonzero(~torch.isfinite(queries).all(dim=1)).flatten().tolist()
        raise ValueError(f"query vectors {rows[:10]} contain NaN or inf; the model produced invalid embeddings")
    if corpus.dtype != queries.dtype:
        corpus = corpus.to(queries.dtype)

    tile = max(1, min(queries.shape[0], _TILE_ELEMENTS // max(n, 1)))
    tile = -(-queries.shape[0] // -(-queries.shape[0] // tile)) if queries.shape[0] else 1  # even tiles: no thin last one
    out = torch.empty(queries.shape[0], dtype=torch.long, device=queries.device)
    # One score buffer and one mask buffer for every tile: a fresh 64 MB allocation per tile costs
    # page faults and zeroing on the order of the counting itself.
    scores_buffer = torch.empty(tile * n, dtype=queries.dtype, device=queries.device)
    mask_buffer = torch.empty(tile * n, dtype=torch.bool, device=queries.device)
    for start in range(0, queries.shape[0], tile):
        rows = min(tile, queries.shape[0] - start)
        scores = score_matrix(queries[start : start + rows], corpus, corpus_t, out=scores_buffer[: rows * n].view(rows, n))
        out[start : start + rows] = ranks_from_scores(scores, targets[start : start + rows], mask_buffer=mask_buffer)
    return out


def _as_rank_matrix(ranks) -> np.ndarray:
    ranks = ranks.detach().cpu().numpy() if isinstance(ranks, torch.Tensor) else np.asarray(ranks)
    if ranks.ndim != 2:
        raise ValueError(f"ranks must be [rounds + 1, queries], got shape {ranks.shape}")
    if ranks.size and ranks.min() < 0:
        raise ValueError("ranks are 0-based and cannot be negative")
    return ranks


def best_ranks(ranks) -> np.ndarray:
    """``best[t, q] = min_{s <= t} ranks[s, q]``: the cumulative view of the protocol."""
    return np.minimum.accumulate(_as_rank_matrix(ranks), axis=0)


def hits_at_k(ranks, k: int = 10) -> np.ndarray:
    """ChatIR's cumulative Hits@K per round, in percent.

    ``ranks`` is ``[R + 1, Q]`` (round 0 = caption only). Query q is a hit at round t if its target
    ranked below ``k`` at any round s <= t.
    """
    best = best_ranks(ranks)
    if best.shape[1] == 0:
        raise ValueError("hits_at_k needs at least one query")
    return (best < k).mean(axis=1) * 100.0


def per_round_hits_at_k(ranks, k: int = 10) -> np.ndarray:
    """Non-cumulative Hits@K at each round, in percent: shows a retriever that gets worse with rounds."""
    ranks = _as_rank_matrix(ranks)
    return (ranks < k).mean(axis=1) * 100.0


def bri(ranks) -> float:
    """PlugIR's Best log Rank Integral over ``[R + 1, Q]`` ranks (R >= 1); lower is better.

    best_t = min_{s <= t} rank_s;  BRI = mean_q (1/R) * sum_{t=0}^{R-1} (ln(best_t + 1) + ln(best_{t+1} + 1)) / 2
    """
    best = best_ranks(ranks).astype(np.float64)
    rounds = best.shape[0] - 1
    if rounds < 1:
        raise ValueError("bri needs at least one round after the caption (ranks of shape [R + 1, Q], R >= 1)")
    logs = np.log(best + 1.0)
    trapezoids = (logs[:-1] + logs[1:]) / 2.0
    return float(trapezoids.sum(axis=0).mean() / rounds)


def bootstrap_ci(
    ranks,
    statistic: Callable[[np.ndarray], np.ndarray | float],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of ``statistic`` over targets (columns of ``ranks``)."""
    ranks = _as_rank_matrix(ranks)
    rng = np.random.default_rng(seed)
    q = ranks.shape[1]
    draws = np.stack([np.asarray(statistic(ranks[:, rng.integers(0, q, q)])) for _ in range(samples)])
    alpha = (1.0 - confidence) / 2.0
    return np.quantile(draws, alpha, axis=0), np.quantile(draws, 1.0 - alpha, axis=0)


def summarize(ranks, k: int = 10, *, bootstrap_samples: int = 1000, seed: int = 0) -> dict:
    """Every figure a benchmark table shows, with 95% bootstrap intervals over targets."""
    ranks = _as_rank_matrix(ranks)
    hits = hits_at_k(ranks, k)
    lo, hi = bootstrap_ci(ranks, lambda r: hits_at_k(r, k), samples=bootstrap_samples, seed=seed)
    summary = {
        "k": k,
        "queries": int(ranks.shape[1]),
        "rounds": int(ranks.shape[0] - 1),
        f"hits@{k}": hits.tolist(),
        f"hits@{k}_ci95": [lo.tolist(), hi.tolist()],
        f"per_round_hits@{k}": per_round_hits_at_k(ranks, k).tolist(),
        "mean_rank": ranks.mean(axis=1).tolist(),
        "median_rank": np.median(ranks, axis=1).tolist(),
    }
    if ranks.shape[0] > 1:
        summary["bri"] = bri(ranks)
        blo, bhi = bootstrap_ci(ranks, bri, samples=bootstrap_samples, seed=seed)
        summary["bri_ci95"] = [float(blo), float(bhi)]
    return summary
