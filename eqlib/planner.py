"""How many members does an ensemble need? Predict M for a target orbit spread.

The statistic is the **RMS orbit spread** of an M-member ensemble mean f̄_M on ``n`` evaluation
inputs, ``r(M) = sqrt(E mean_i spread(f̄_M)_i²)`` with :func:`eqlib.metrics.orbit_spread`.
Since ``spread(f)_i² = ‖P f_i‖²/|G|`` is a quadratic form (P removes the orbit mean), for M
independent, identically distributed members with mean μ (any distribution with a variance)

    r(M)² = a + b/M,    a = mean_i spread(μ)_i²,    b = mean_i E spread(f − μ)_i²       (1)

— the *floor* a that more members cannot remove and the *scale* b of one member's fluctuation.
The smallest ensemble that reaches a target τ is ``M = ⌈b / (τ² − a)⌉`` when τ² > a, and none
when τ² ≤ a (:func:`required_members`). Two ways to get (a, b):

* **infinite width** (:func:`plan_from_kernel`): the members are N(μ_t, Σ_t) (Gerken & Kessel
  2024, after Lemma B.4); a and b follow from μ_t and Σ_t on the orbits of the evaluation inputs,
  with no training (:func:`spread_model_from_moments`);
* **a few trained members** (:func:`plan_from_members`): k members give unbiased estimates
  ``â = O``, ``b̂ = D − O`` with ``D`` the mean squared orbit-centred output of one member and
  ``O`` the mean over pairs of distinct members of their inner product
  (:func:`spread_model_from_members`); ``r̂²(M) = O + (D − O)/M`` is then also exactly the average
  of ``mean_i spread²`` over *all* M-member sub-ensembles of those k members. A delete-one
  jackknife over members (Student-t quantile with k − 1 degrees of freedom, as k is small) gives
  an interval for r²(M) at every M, and so an interval for the required M
  (:func:`rms_spread_interval`). The plan itself uses ``max(â, 0)``: a ≥ 0, and a negative
  estimate would plan too few members.

(1) needs no Gaussianity; only the independence of the members. What it cannot see is finite-width
bias: members whose variance differs from Σ_t make the infinite-width plan miss (the chapter
measures by how much).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy import stats

from .augment import augment_full_orbit
from .groups import ActFn, FiniteGroup
from .ntk import ensemble_mean_cov

__all__ = ["SpreadModel", "Plan", "SpreadInterval", "rms_spread", "required_members",
           "spread_model_from_moments", "spread_model_from_members", "rms_spread_interval",
           "plan_from_kernel", "plan_from_members", "disjoint_rms_spreads"]


class SpreadModel(NamedTuple):
    """``r(M)² = floor + scale/M`` (equation (1) of the module docstring)."""
    floor: float    # a: mean_i spread(μ)_i², what infinitely many members keep
    scale: float    # b: mean_i E spread(f − μ)_i², one member's fluctuation


class Plan(NamedTuple):
    """A predicted ensemble size (``math.inf``: the target lies below the floor or beyond
    ``max_members``) with a ``level`` interval ``[low, high]`` (equal to it for a kernel plan)."""
    members: float
    low: float
    high: float
    target: float
    model: SpreadModel
    level: float


class SpreadInterval(NamedTuple):
    """r(M) for each size in ``sizes`` with its interval (square roots of the r² interval)."""
    sizes: np.ndarray      # (S,)
    estimate: np.ndarray   # (S,)
    low: np.ndarray        # (S,)
    high: np.ndarray       # (S,)
    level: float


def _check_target(target: float) -> float:
    target = float(target)
    if not target > 0 or math.isinf(target):
        raise ValueError(f"the target RMS orbit spread must be a positive number, got {target}")
    return target


def rms_spread(model: SpreadModel, sizes) -> np.ndarray:
    """``r(M) = sqrt(a + b/M)`` for every M in ``sizes`` (positive integers): ``(S,) -> (S,)``."""
    sizes = np.asarray(sizes)
    if np.any(sizes < 1):
        raise ValueError(f"ensemble sizes must be ≥ 1, got {sizes}")
    return np.sqrt(np.maximum(model.floor + model.scale / sizes, 0.0))


def required_members(model: SpreadModel, target: float) -> float:
    """The smallest M ≥ 1 with ``r(M) ≤ target``, ``⌈b/(τ² − a)⌉``; ``math.inf`` if τ² ≤ a."""
    target = _check_target(target)
    if model.scale < 0:
        raise ValueError(f"the fluctuation scale b must be ≥ 0, got {model.scale}")
    room = target ** 2 - model.floor
    if room <= 0:
        return math.inf
    return float(max(1, math.ceil(model.scale / room - 1e-12)))


def _orbit_centred(outputs: np.ndarray, centre: bool) -> np.ndarray:
    """``(..., |G|, n, d) -> (..., n, |G|·d)``: outputs minus their orbit mean, per input."""
    if centre:
        outputs = outputs - outputs.mean(-1, keepdims=True)
    u = outputs - outputs.mean(-3, keepdims=True)
    u = np.moveaxis(u, -3, -2)                                       # (..., n, |G|, d)
    return u.reshape(u.shape[:-2] + (-1,))


def spread_model_from_moments(mean, covariance, num_outputs: int | None = None) -> SpreadModel:
    """(a, b) from μ_t ``mean: (|G|, n, d)`` and Σ_t ``covariance: (|G|·n, |G|·n)`` on the orbits.

    Σ_t is shared by the ``d`` output channels (as :func:`eqlib.ntk.ensemble_mean_cov` returns it,
    group-element-major index ``g·n + i``): ``b = d · mean_i tr(P Σ_i)/|G|``.
    """
    mean = np.asarray(mean, np.float64)
    if mean.ndim != 3:
        raise ValueError(f"mean must be (|G|, n, d), got shape {mean.shape}")
    order, n, d = mean.shape
    cov = np.asarray(covariance, np.float64)
    if cov.shape != (order * n, order * n):
        raise ValueError(f"covariance must be ({order * n}, {order * n}) for mean {mean.shape}, "
                         f"got {cov.shape}")
    blocks = np.einsum("gihi->igh", cov.reshape(order, n, order, n))     # (n, |G|, |G|)
    centred_trace = np.trace(blocks, axis1=1, axis2=2) - blocks.sum((1, 2)) / order
    floor = float((_orbit_centred(mean, False) ** 2).sum(-1).mean() / order)
    return SpreadModel(floor, float(d * centred_trace.mean() / order))


class _MemberSums(NamedTuple):
    """Sufficient statistics of k members' orbit-centred outputs u_m (all / 1/|G|, mean over i)."""
    own: np.ndarray       # (k,) mean_i ‖u_m‖²/|G|
    with_sum: np.ndarray  # (k,) mean_i <u_m, Σ_l u_l>/|G|
    total: float          # mean_i ‖Σ_l u_l‖²/|G|


def _member_sums(member_outputs, centre: bool) -> _MemberSums:
    outputs = np.asarray(member_outputs, np.float64)
    if outputs.ndim != 4:
        raise ValueError(f"member_outputs must be (k, |G|, n, d), got shape {outputs.shape}")
    if outputs.shape[0] < 2:
        raise ValueError(f"need at least 2 members to estimate a variance, got {outputs.shape[0]}")
    u = _orbit_centred(outputs, centre)                                   # (k, n, |G|·d)
    norm = u.shape[1] * outputs.shape[1]
    total = u.sum(0)                                                      # (n, |G|·d)
    return _MemberSums(np.einsum("kij,kij->k", u, u) / norm,
                       np.einsum("kij,ij->k", u, total) / norm, float((total ** 2).sum() / norm))


def _model(own_sum: float, total: float, k: int) -> SpreadModel:
    """â = O, b̂ = D − O from Σ_m ‖u_m‖² and ‖Σ_m u_m‖² of k members."""
    diag = own_sum / k
    off = (total - own_sum) / (k * (k - 1))
    return SpreadModel(float(off), float(diag - off))


def _leave_one_out(sums: _MemberSums) -> list[SpreadModel]:
    k, own = len(sums.own), sums.own.sum()
    return [_model(own - sums.own[m], sums.total - 2 * sums.with_sum[m] + sums.own[m], k - 1)
            for m in range(k)]


def spread_model_from_members(member_outputs, centre: bool = False) -> SpreadModel:
    """Unbiased (â, b̂) from k ≥ 2 members ``member_outputs: (k, |G|, n, d)`` (module docstring).

    ``centre``: first subtract each output's mean over its ``d`` entries (for logits, whose
    softmax ignores a common shift). â can come out slightly negative when the floor is ~0.
    """
    sums = _member_sums(member_outputs, centre)
    return _model(sums.own.sum(), sums.total, len(sums.own))


def rms_spread_interval(member_outputs, sizes: Sequence[int], level: float = 0.95,
                        centre: bool = False) -> SpreadInterval:
    """r(M) from k members for each M in ``sizes``, with a delete-one jackknife interval.

    ``member_outputs: (k, |G|, n, d)``. The estimate of r²(M) is ``O + (D − O)/M``, the average
    of ``mean_i spread²`` over all M-member sub-ensembles of the k members (for M ≤ k: an exact
    identity). Its jackknife standard error over members, times the Student-t quantile with
    k − 1 degrees of freedom, gives the r² interval (clipped at 0), then square roots.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    sizes = np.asarray(sizes)
    if sizes.ndim != 1 or len(sizes) == 0 or np.any(sizes < 1):
        raise ValueError(f"sizes must be a non-empty 1-d sequence of positive integers, got {sizes}")
    sums = _member_sums(member_outputs, centre)
    k = len(sums.own)
    if k < 3:
        raise ValueError(f"the jackknife needs at least 3 members, got {k}")

    def r2(model: SpreadModel) -> np.ndarray:
        return model.floor + model.scale / sizes

    point = r2(_model(sums.own.sum(), sums.total, k))
    loo = np.stack([r2(model) for model in _leave_one_out(sums)])         # (k, S)
    se = np.sqrt((k - 1) / k * ((loo - loo.mean(0)) ** 2).sum(0))
    q = stats.t.ppf(0.5 + level / 2, k - 1)
    root = lambda v: np.sqrt(np.maximum(v, 0.0))
    return SpreadInterval(sizes, root(point), root(point - q * se), root(point + q * se), level)


def plan_from_members(member_outputs, target: float, level: float = 0.95, centre: bool = False,
                      max_members: int = 4096) -> Plan:
    """The ensemble size for ``target`` from a few trained members ``(k, |G|, n, d)``, k ≥ 3.

    ``members``: the smallest M with ``max(â, 0) + b̂/M ≤ target²`` — the floor a is ≥ 0 by
    definition, so a negative estimate (noise, when the true floor is ~0) is replaced by 0, which
    would otherwise plan too few members; ``low`` / ``high``: the smallest M whose jackknife
    interval's lower / upper end is ≤ target (widened to contain ``members``; ``math.inf`` if
    none up to ``max_members``).
    """
    target = _check_target(target)
    sizes = np.arange(1, int(max_members) + 1)
    spread = rms_spread_interval(member_outputs, sizes, level, centre)
    model = spread_model_from_members(member_outputs, centre)
    point = required_members(model._replace(floor=max(model.floor, 0.0)), target)

    def first(values: np.ndarray) -> float:
        hits = np.flatnonzero(values <= target)
        return float(sizes[hits[0]]) if len(hits) else math.inf

    point = point if point <= max_members else math.inf
    low, high = min(first(spread.low), point), max(first(spread.high), point)
    return Plan(point, low, high, target, model, level)


def plan_from_kernel(kernel_fn, x_train, y_train, x_eval, group: FiniteGroup, time: float,
                     target: float, learning_rate: float = 1.0, augment: bool = True,
                     act_y: ActFn | None = None, method: str = "auto") -> Plan:
    """The ensemble size for ``target`` predicted by the infinite-width ensemble, no training.

    Trains (in closed form) on ``x_train: (n, ...)``, ``y_train: (n, d)`` — the full-orbit
    augmented set when ``augment`` — for ``time`` gradient steps at ``learning_rate`` (MSE, the
    conventions of :func:`eqlib.ntk.ensemble_mean_cov`), evaluates μ_t and Σ_t on the orbits of
    ``x_eval: (m, ...)`` and returns :func:`required_members` of the resulting (a, b). Only for
    invariant targets the floor is the orbit spread of μ_t (``act_y`` only augments).
    ``method`` is passed to :func:`eqlib.ntk.ensemble_mean_cov`.
    """
    x_train, y_train = np.asarray(x_train), np.asarray(y_train)
    if y_train.ndim != 2:
        raise ValueError(f"y_train must be (n, d), got shape {y_train.shape}")
    if augment:
        x_train, y_train = (np.asarray(a) for a in augment_full_orbit(x_train, y_train, group,
                                                                        act_y)[:2])
    x_eval = np.asarray(x_eval)
    orbit = np.asarray(group.orbit(x_eval)).reshape((-1,) + x_eval.shape[1:])
    pred = ensemble_mean_cov(kernel_fn, x_train, y_train, orbit, [time],
                             learning_rate=learning_rate, method=method)
    mean = np.asarray(pred.mean[0]).reshape(group.order, len(x_eval), -1)
    model = spread_model_from_moments(mean, pred.covariance[0])
    members = required_members(model, target)
    return Plan(members, members, members, _check_target(target), model, 1.0)


def disjoint_rms_spreads(member_outputs, size: int, centre: bool = False) -> np.ndarray:
    """RMS orbit spread of each of the ⌊K/M⌋ disjoint M-member ensembles.

    ``member_outputs: (K, |G|, n, d) -> (⌊K/M⌋,)``.

    Independent ensembles of one size from a pool (consecutive blocks of members): what a user
    who trains one ensemble of that size would see, one draw each.
    """
    outputs = np.asarray(member_outputs, np.float64)
    if outputs.ndim != 4:
        raise ValueError(f"member_outputs must be (K, |G|, n, d), got shape {outputs.shape}")
    if not 1 <= size <= outputs.shape[0]:
        raise ValueError(f"ensemble size {size} outside 1..{outputs.shape[0]}")
    blocks = outputs.shape[0] // size
    means = outputs[: blocks * size].reshape((blocks, size) + outputs.shape[1:]).mean(1)
    u = _orbit_centred(means, centre)                                     # (B, n, |G|·d)
    return np.sqrt((u ** 2).sum(-1).mean(-1) / outputs.shape[1])
