"""Benchmark subsets: a seeded random sample of a world's targets, never its first N.

A world lists its targets in corpus order, and ``chatir_env.metrics.target_ranks`` breaks score ties
by corpus index. Under the exact Shapes scorer many scenes tie with the target (a median of 44 from the
caption alone), so the first N targets, which hold the lowest corpus indices, win their ties: on the
first 300 the caption alone reached 56.7% Hits@10 against 35.9% on all 2,064. A random sample keeps a
subset's figures estimates of the full benchmark's.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

DEFAULT_TARGET_SEED = 0


def sample_targets(targets: Sequence[str], num_targets: int | None, seed: int = DEFAULT_TARGET_SEED) -> list[str]:
    """A seeded random sample of ``num_targets`` of ``targets``, kept in their original order.

    Args:
        targets: the benchmark's target ids (a world's ``targets``).
        num_targets: how many to keep; None, 0 or at least ``len(targets)`` keeps them all (unsampled).
        seed: the sample's seed; the same seed and targets always give the same sample.

    Returns:
        The chosen ids, in the order they have in ``targets``.

    Raises:
        ValueError: ``num_targets`` is negative.
    """
    targets = list(targets)
    if num_targets is not None and num_targets < 0:
        raise ValueError(f"num_targets must be positive (or 0/None for all {len(targets)} targets), got {num_targets}")
    if not num_targets or num_targets >= len(targets):
        return targets
    chosen = np.random.default_rng(seed).choice(len(targets), num_targets, replace=False)
    return [targets[i] for i in sorted(chosen)]


def targets_digest(targets: Sequence[str]) -> str:
    """SHA-256 of the target ids in order (one per line): names a sample in results.json in 64 characters."""
    return hashlib.sha256("\n".join(targets).encode("utf-8")).hexdigest()


def sample_record(all_targets: Sequence[str], chosen: Sequence[str], seed: int) -> dict:
    """What results.json records about a run's targets: how many of how many, the seed and the ids' digest.

    The ids themselves are listed when the run used a sample (at most the benchmark's size).
    """
    record = {"num_targets": len(chosen), "of": len(all_targets), "sampled": len(chosen) < len(all_targets),
              "seed": seed, "sha256": targets_digest(chosen)}
    if record["sampled"]:
        record["ids"] = list(chosen)
    return record
