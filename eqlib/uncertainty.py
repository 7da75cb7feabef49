"""Uncertainty of ensembles: predictive variance, its behaviour on orbits, and OOD detection.

* :func:`predictive_variance` — the disagreement of the members: ``Σ_c Var_m p_c``, the variance
  over members of the softmax probabilities summed over the classes;
* :func:`mutual_information` — the other usual disagreement score, ``H(p̄) − mean_m H(p_m)``;
* :func:`max_softmax` — a single network's own confidence;
* :func:`within_orbit_share` — how much of a score's variance lies *along* orbits (0 for an
  invariant score), with :func:`within_orbit_share_interval` bootstrapping over the inputs;
* :func:`auroc` — the area under the ROC curve of a score separating "in" from "out" inputs
  (the Mann–Whitney statistic, ties counted one half), and :func:`bootstrap_auroc`.
"""
from __future__ import annotations

import numpy as np

from .metrics import Interval

__all__ = ["softmax", "predictive_variance", "mutual_information", "max_softmax", "within_orbit_share",
           "within_orbit_share_interval", "auroc", "bootstrap_auroc"]


def softmax(logits) -> np.ndarray:
    """Softmax over the last axis, in float64: ``(..., C) → (..., C)``."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _members(logits, axis: int) -> np.ndarray:
    p = softmax(logits)
    if p.ndim < 2:
        raise ValueError(f"member logits need a member axis and a class axis, got shape {p.shape}")
    axis %= p.ndim
    if axis == p.ndim - 1:
        raise ValueError("the member axis must not be the class axis (the last)")
    if p.shape[axis] < 2:
        raise ValueError(f"need at least 2 members on axis {axis}, got {p.shape[axis]}")
    return np.moveaxis(p, axis, 0)


def predictive_variance(member_logits, axis: int = 0) -> np.ndarray:
    """``Σ_c Var_m softmax(z_m)_c`` (population variance over the M members on ``axis``).

    ``member_logits: (..., M, ..., C)`` → the array without the member and class axes. It lies in
    ``[0, 1)``; zero iff all members give the same probabilities.
    """
    return _members(member_logits, axis).var(0).sum(-1)


def mutual_information(member_logits, axis: int = 0) -> np.ndarray:
    """``H(mean_m p_m) − mean_m H(p_m)`` in nats (the BALD score): ``(..., M, ..., C) → (...)``."""
    p = _members(member_logits, axis)

    def entropy(q):
        return -(q * np.log(np.clip(q, 1e-300, None))).sum(-1)

    return entropy(p.mean(0)) - entropy(p).mean(0)


def max_softmax(logits) -> np.ndarray:
    """A network's own confidence, the largest softmax probability: ``(..., C) → (...)``."""
    return softmax(logits).max(-1)


def within_orbit_share(scores_on_orbit) -> np.ndarray:
    """Share of a score's variance that lies along orbits: ``(..., |G|, n) → (...)`` in [0, 1].

    ``E_x Var_g s(g·x) / Var_{x,g} s(g·x)`` over the ``|G|·n`` values: 0 for a score that is
    invariant (constant on every orbit), 1 for one whose orbit means are all equal. Unlike a
    spread in the score's own units it compares scores on different scales (a probability, a
    variance).
    """
    s = np.asarray(scores_on_orbit, dtype=np.float64)
    if s.ndim < 2 or s.shape[-2] < 2 or s.shape[-1] < 2:
        raise ValueError(f"scores_on_orbit must be (..., |G|, n) with |G|, n ≥ 2, got shape {s.shape}")
    within = s.var(-2).mean(-1)
    total = s.reshape(s.shape[:-2] + (-1,)).var(-1)
    return np.where(total > 0, within / np.where(total > 0, total, 1.0), 0.0)


def within_orbit_share_interval(scores_on_orbit, num_bootstrap: int = 1000, seed: int = 0,
                                level: float = 0.95) -> Interval:
    """:func:`within_orbit_share` averaged over leading axes (e.g. members), with a percentile
    bootstrap over the ``n`` inputs (orbits resampled whole): ``(..., |G|, n)`` → scalar Interval."""
    s = np.asarray(scores_on_orbit, dtype=np.float64)
    point = float(within_orbit_share(s).mean())
    n = s.shape[-1]
    rng = np.random.default_rng(seed)
    boot = np.array([within_orbit_share(s[..., rng.integers(0, n, n)]).mean() for _ in range(num_bootstrap)])
    low, high = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)])
    return Interval(np.asarray(point), np.asarray(low), np.asarray(high), level)


def _scores(values, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array of scores, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains non-finite scores")
    return v


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..N, tied values sharing the mean of their ranks."""
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    first = np.r_[True, sorted_v[1:] != sorted_v[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(v)]
    mean_rank = (starts + ends + 1) / 2                 # mean of ranks starts+1 … ends
    ranks = np.empty(len(v))
    ranks[order] = mean_rank[group]
    return ranks


def auroc(scores_in, scores_out) -> float:
    """Area under the ROC curve for "a higher score means out": ``P(s_out > s_in) + ½ P(s_out = s_in)``.

    ``scores_in: (n_in,)``, ``scores_out: (n_out,)``. Computed from ranks (the Mann–Whitney U
    statistic, tied values sharing their mean rank) in O(N log N); 0.5 is chance, 1 perfect.
    """
    a, b = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    ranks = _average_ranks(np.concatenate([a, b]))
    u = ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2
    return float(u / (len(a) * len(b)))


def bootstrap_auroc(scores_in, scores_out, num_bootstrap: int = 1000, seed: int = 0,
                    level: float = 0.95) -> Interval:
    """:func:`auroc` with a percentile bootstrap interval, in and out inputs resampled independently."""
    a, b = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    if num_bootstrap < 1 or not 0 < level < 1:
        raise ValueError(f"need num_bootstrap ≥ 1 and 0 < level < 1, got {num_bootstrap}, {level}")
    rng = np.random.default_rng(seed)
    boot = np.array([auroc(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
                     for _ in range(num_bootstrap)])
    low, high = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)])
    return Interval(np.asarray(auroc(a, b)), np.asarray(low), np.asarray(high), level)
