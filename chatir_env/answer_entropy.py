"""How much asking a question would tell: the entropy of its answers over weighted candidates.

One function, ``information_gain``, serves the greedy questioner (which asks the question that
maximises it) and the pooled PPO observation (which shows it to the policy as a feature); they differ
only in how candidates are weighted, which each passes as ``softmax_scale``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


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


def candidate_weights(scores: np.ndarray, softmax_scale: float | None) -> np.ndarray:
    """``float64[n, K]`` weights of K candidates per episode from their retrieval scores.

    Args:
        scores: ``[n, K]`` scores, best first.
        softmax_scale: ``softmax(scale * scores)`` (1.0 turns the exact scorer's log-likelihoods into the
            posterior; a dual encoder's InfoNCE logit scale, ``1 / T``, its cosines into the posterior its
            training calibrated); None weights every candidate alike.

    Returns:
        Rows summing to 1.
    """
    scores = np.asarray(scores)
    if softmax_scale is None:
        return np.full(scores.shape, 1.0 / scores.shape[1])
    return torch.softmax(torch.from_numpy(np.array(scores)).double() * softmax_scale, dim=1).numpy()


def information_gain(world, candidate_ids: np.ndarray | Sequence[Sequence[str]], scores: np.ndarray,
                     softmax_scale: float | None) -> np.ndarray:
    """``float64[n, P]``: the entropy (nats) of each pool question's answers over each episode's candidates.

    The expected information gain about which candidate is the target, when answers are deterministic.

    Args:
        world: a world with ``pool_answers`` (the answer code each corpus item gets to each pool question).
        candidate_ids: ``[n, K]`` corpus ids of each episode's candidates (``EpisodeBatch.candidate_ids``).
        scores: ``[n, K]`` their scores.
        softmax_scale: how candidates are weighted (see ``candidate_weights``).

    Raises:
        ValueError: the world cannot answer for candidates.
    """
    if world.pool_answers is None:
        raise ValueError(f"world {world.name!r} cannot answer pool questions for candidates (no pool_answers)")
    codes = np.stack([np.asarray(world.pool_answers(list(row))) for row in candidate_ids])
    return answer_entropies(codes, candidate_weights(scores, softmax_scale))


def two_step_information(codes: np.ndarray, weights: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``float64[P]``: per first question q, the expected information of asking q and then the best second question.

    H(q) + sum_a p(a) max_q' H(q' | q = a) over one episode's K weighted candidates: the value of q to a
    questioner that plans two questions ahead (the greedy one values q by H(q) alone). Questions not
    ``allowed`` (already asked) are neither first nor second choices and get -inf.

    Args:
        codes: ``[K, P]`` the answer code each candidate gets to each pool question.
        weights: ``[K]`` candidate weights (summing to 1).
        allowed: ``bool[P]`` the questions that may still be asked.
    """
    k, p = codes.shape
    # One id per (question, answer) pair, question-major: pair // span is the question.
    codes = np.asarray(codes, dtype=np.int64)
    span = int(np.ptp(codes)) + 1
    pairs, c = np.unique(codes - codes.min() + np.arange(p)[None, :] * span, return_inverse=True)
    c = c.reshape(k, p)
    # Pairs sort by question, so each question's answers are one contiguous run of columns.
    starts = np.searchsorted(pairs // span, np.arange(p))

    def entropies(mass: np.ndarray) -> np.ndarray:  # [G, C] answer masses (rows sum to 1 per question) -> [G, P]
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.add.reduceat(np.where(mass > 0, mass * np.log(mass), 0.0), starts, axis=1)

    w = np.asarray(weights, dtype=np.float64)
    first = entropies(np.bincount(c.ravel(), weights=np.repeat(w, p), minlength=len(pairs))[None])[0]
    second_allowed = np.where(allowed, 0.0, -np.inf)
    value = np.full(p, -np.inf)
    for q in np.flatnonzero(allowed):
        _, group = np.unique(c[:, q], return_inverse=True)
        g = int(group.max()) + 1
        mass = np.bincount((group[:, None] * len(pairs) + c).ravel(), weights=np.repeat(w, p),
                           minlength=g * len(pairs)).reshape(g, len(pairs))
        group_weight = np.bincount(group, weights=w, minlength=g)
        # A group can weigh nothing (candidates whose posterior underflowed): it adds nothing either.
        share = mass / np.where(group_weight > 0, group_weight, 1.0)[:, None]
        best_second = (entropies(share) + second_allowed).max(axis=1)
        value[q] = first[q] + float(group_weight @ np.where(np.isfinite(best_second), best_second, 0.0))
    return value
