"""How much asking a question would tell: the entropy of its answers over weighted candidates.

Shared by the greedy questioner (which asks the question that maximises it) and the pooled PPO
observation (which shows it to the policy as a feature).
"""

from __future__ import annotations

import numpy as np


def answer_entropies(codes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``codes[n, K, P]`` answer codes of K candidates, ``weights[n, K]`` -> entropy ``[n, P]`` in nats."""
    n, k, p = codes.shape
    _, dense = np.unique(codes, return_inverse=True)  # any codes -> 0..A-1
    a = int(dense.max()) + 1
    dense = dense.reshape(n, k, p)
    # Sum each answer's candidate weight per (episode, question) with one bincount.
    flat = (np.arange(n)[:, None, None] * p + np.arange(p)[None, None, :]) * a + dense
    w = np.broadcast_to(weights[:, :, None], (n, k, p))
    mass = np.bincount(flat.ravel(), weights=w.ravel(), minlength=n * p * a).reshape(n, p, a)
    mass = mass / mass.sum(axis=2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(mass > 0, mass * np.log(mass), 0.0).sum(axis=2)
