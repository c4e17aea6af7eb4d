"""Results over training seeds, as rliable reports them: IQM with a stratified-bootstrap interval.

rliable is Agarwal et al., "Deep Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS 2021:
the interquartile mean (IQM) of all seed x target scores, with a percentile interval from a stratified bootstrap.

IQM suits continuous per-target scores (a target's log-rank integral, its final rank). For a 0/100 hit
per target the trimmed mean is no Hits@10 (with 70% hits the middle half holds 90% hits), so Hits@10
over seeds is the plain mean with the same bootstrap: ``mean_with_ci``.

rliable 1.2.0 imports ``arch``, which fails to import beside pandas 3, so this is the same computation
on numpy. It reproduces rliable's figures: IQM is ``scipy.stats.trim_mean(scores, 0.25)`` over the
flattened scores (rliable's ``aggregate_iqm``; written out below on numpy, since scipy is not otherwise
a dependency), and the bootstrap draws its indices exactly as
rliable's ``StratifiedBootstrap`` does (``numpy.random.choice`` with replacement, one full index array
per replicate, from a ``RandomState``), so with the same seed the intervals agree to the last digit
(tests/test_seed_stats.py holds rliable's own output on fixed data).

The strata are the training seeds: each replicate resamples the targets within every seed, which is
rliable's ``get_interval_estimates`` applied to ``scores.T`` (rliable's runs are our targets, its
tasks our seeds). The interval says how much the figure would move on another draw of benchmark
targets for these trained questioners; with three seeds, resampling the seeds themselves would say
little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Replicates per batch of the vectorised bootstrap: bounds its index array to ~reps_per_batch x S x T int64.
_BATCH = 256


@dataclass(frozen=True)
class SeedAggregate:
    """An aggregate over seeds x targets (IQM or mean) with its stratified-bootstrap interval."""

    value: float
    low: float
    high: float
    seeds: int
    targets: int
    reps: int
    confidence: float
    statistic: str = "iqm"

    def as_dict(self) -> dict:
        return {"statistic": self.statistic, "value": self.value, "ci": [self.low, self.high], "seeds": self.seeds,
                "targets": self.targets, "reps": self.reps, "confidence": self.confidence}


def _trim_mean_rows(values: np.ndarray) -> np.ndarray:
    """``scipy.stats.trim_mean(values, 0.25, axis=1)``: drop ``int(0.25 * n)`` scores from each end of a row."""
    n = values.shape[1]
    cut = int(0.25 * n)
    middle = np.partition(values, (cut, n - cut - 1), axis=1)[:, cut : n - cut]
    return middle.mean(axis=1)


def iqm(scores) -> float:
    """Interquartile mean of all scores (the middle 50% after sorting), rliable's ``aggregate_iqm``."""
    return float(_trim_mean_rows(np.asarray(scores, dtype=np.float64).reshape(1, -1))[0])


def iqm_with_ci(scores, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> SeedAggregate:
    """IQM of ``scores[seeds, targets]`` and its stratified-bootstrap percentile interval.

    See ``aggregate_with_ci`` for the arguments; this is it with ``statistic="iqm"``.
    """
    return aggregate_with_ci(scores, statistic="iqm", reps=reps, confidence=confidence, seed=seed)


def mean_with_ci(scores, *, reps: int = 2000, confidence: float = 0.95, seed: int = 0) -> SeedAggregate:
    """Mean of ``scores[seeds, targets]`` (e.g. 100 * hit: Hits@10 over seeds and targets), same bootstrap."""
    return aggregate_with_ci(scores, statistic="mean", reps=reps, confidence=confidence, seed=seed)


def aggregate_with_ci(scores, *, statistic: str = "iqm", reps: int = 2000, confidence: float = 0.95,
                      seed: int = 0) -> SeedAggregate:
    """An aggregate of ``scores[seeds, targets]`` and its stratified-bootstrap percentile interval.

    Each replicate draws, for every seed independently, as many targets as there are, with replacement,
    from that seed's scores, and takes the IQM of the whole resampled matrix.

    Args:
        scores: ``[seeds, targets]`` per-target scores of each training seed (e.g. a target's log-rank
            integral, or 100 * hit at round 10 for ``statistic="mean"``).
        statistic: ``"iqm"`` (rliable's ``aggregate_iqm``) or ``"mean"`` (``aggregate_mean``).
        reps: bootstrap replicates.
        confidence: the interval's coverage.
        seed: seeds the ``numpy.random.RandomState`` the indices come from (rliable draws from numpy's
            global one: ``numpy.random.seed(seed)`` there gives the same interval).

    Returns:
        The aggregate, the interval's ends, and what they
        were computed over.

    Raises:
        ValueError: ``scores`` is not a non-empty 2-D array of finite numbers, or ``reps`` < 1, or
            ``confidence`` is outside (0, 1), or ``statistic`` is unknown.
    """
    if statistic not in ("iqm", "mean"):
        raise ValueError(f"statistic must be 'iqm' or 'mean', got {statistic!r}")
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(f"scores must be a non-empty [seeds, targets] matrix, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("scores contain NaN or inf")
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    n_seeds, n_targets = values.shape
    by_target = values.T  # rliable's layout: [runs, tasks]; here runs = targets, tasks (strata) = seeds
    columns = np.arange(n_seeds)[None, None, :]
    rng = np.random.RandomState(seed)
    replicates = np.empty(reps)
    for start in range(0, reps, _BATCH):
        batch = min(_BATCH, reps - start)
        # One choice() call per replicate in rliable; a single call for the batch draws the same stream.
        rows = rng.choice(n_targets, (batch, n_targets, n_seeds), replace=True)
        resampled = by_target[rows, columns].reshape(batch, -1)
        replicates[start : start + batch] = _trim_mean_rows(resampled) if statistic == "iqm" else resampled.mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.percentile(replicates, [100 * tail, 100 * (1.0 - tail)])
    point = iqm(values) if statistic == "iqm" else float(values.mean())
    return SeedAggregate(point, float(low), float(high), n_seeds, n_targets, reps, confidence, statistic)
