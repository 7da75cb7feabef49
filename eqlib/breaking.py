"""What breaks emergent equivariance: finite ensembles, finite width, continuous groups.

Tools for the chapter *What breaks it*; all act on plain arrays.

* Finite ensembles (Gerken & Kessel 2024, Lemma B.4): the mean of M members fluctuates around the
  infinite-ensemble mean μ_t with covariance Σ_t/M. :func:`subensemble_violation` measures the
  symmetry violation of sub-ensembles resampled from a pool of trained members;
  :func:`predicted_subensemble_violation` draws ensemble means from N(μ_t, Σ_t/M) and measures the
  same statistic — the prediction of the lemma.
* Finite width: :func:`monte_carlo_split` splits the mean square of an ensemble average into the
  systematic part ‖E d‖² and the Monte-Carlo part tr Cov(d)/M, so the two can be told apart.
* Continuous groups (Lemma 6.2): :func:`covering_radius` is κ = max_g min_b ‖ρ(g) − ρ(b)‖ of a
  finite subset B of a group G, estimated on a sample of G; :func:`rotation_matrices_2d` builds
  C_k ⊂ SO(2).
  :func:`orbit_lipschitz` measures the constant the bound C(x)·κ needs.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np

from .groups import ActFn, Transformations
from .metrics import orbit_spread

ViolationFn = Callable[[np.ndarray], np.ndarray]  # (..., |G|, n, d) -> (..., n)


def _check_sizes(sizes: Sequence[int], upper: int | None = None) -> np.ndarray:
    sizes = np.asarray(sizes)
    if sizes.ndim != 1 or len(sizes) == 0 or not np.issubdtype(sizes.dtype, np.integer) or np.any(sizes < 1):
        raise ValueError(f"sizes must be a non-empty 1-d sequence of positive integers, got {sizes!r}")
    if upper is not None and np.any(sizes > upper):
        raise ValueError(f"ensemble sizes {sizes.tolist()} exceed the {upper} available members")
    return sizes


def _check_orbit_outputs(arr: np.ndarray, what: str, rank: int) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != rank:
        raise ValueError(f"{what} must have rank {rank}, got shape {arr.shape}")
    return arr


def subensemble_violation(member_outputs, sizes: Sequence[int], num_resamples: int = 64, seed: int = 0,
                          violation: ViolationFn = orbit_spread) -> np.ndarray:
    """Violation of M-member sub-ensembles drawn from a pool: ``(K, |G|, n, d) -> (len(sizes), num_resamples)``.

    ``member_outputs[m, g, i]`` is ``f_m(ρ_X(g) x_i)``. For each size M, ``num_resamples`` subsets of
    M distinct members are drawn, their outputs averaged, and ``violation`` (default: the orbit
    spread; use :func:`eqlib.metrics.equivariance_error` for non-trivial ρ_Y) is averaged over the
    inputs.
    """
    outputs = _check_orbit_outputs(member_outputs, "member_outputs (K, |G|, n, d)", 4)
    sizes = _check_sizes(sizes, upper=outputs.shape[0])
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be positive, got {num_resamples}")
    rng = np.random.default_rng(seed)
    result = np.empty((len(sizes), num_resamples))
    for a, size in enumerate(sizes):
        means = np.stack([outputs[rng.choice(len(outputs), size=int(size), replace=False)].mean(0)
                          for _ in range(num_resamples)])             # (R, |G|, n, d)
        result[a] = np.asarray(violation(means)).mean(-1)
    return result


def predicted_subensemble_violation(mean, covariance, sizes: Sequence[int], num_samples: int = 256,
                                    seed: int | Sequence[int] = 0, violation: ViolationFn = orbit_spread) -> np.ndarray:
    """The same statistic for ensemble means drawn from N(μ_t, Σ_t/M) (Lemma B.4): ``-> (len(sizes), num_samples)``.

    ``mean: (|G|, n, d)`` is μ_t on the orbit points and ``covariance: (|G|·n, |G|·n)`` is Σ_t
    between them (group-element-major order, shared by the d output channels, as returned by
    :func:`eqlib.ntk.ensemble_mean_cov` for the flattened orbit).
    """
    mean = _check_orbit_outputs(mean, "mean (|G|, n, d)", 3)
    covariance = np.asarray(covariance, dtype=np.float64)
    points = mean.shape[0] * mean.shape[1]
    if covariance.shape != (points, points):
        raise ValueError(f"covariance must be ({points}, {points}) for a mean of shape {mean.shape}, "
                         f"got {covariance.shape}")
    if not np.allclose(covariance, covariance.T, atol=1e-8 * max(1.0, np.abs(covariance).max())):
        raise ValueError("covariance is not symmetric")
    sizes = _check_sizes(sizes)
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    evals, evecs = np.linalg.eigh((covariance + covariance.T) / 2)
    if evals.min() < -1e-6 * max(1.0, evals.max()):
        raise ValueError(f"covariance is not positive semi-definite (smallest eigenvalue {evals.min():.3g})")
    root = evecs * np.sqrt(np.clip(evals, 0.0, None))                    # root @ rootᵀ = Σ
    noise = np.random.default_rng(seed).normal(size=(num_samples, points, mean.shape[-1]))
    fluctuation = np.einsum("pq,sqd->spd", root, noise).reshape((num_samples,) + mean.shape)
    return np.stack([np.asarray(violation(mean + fluctuation / np.sqrt(size))).mean(-1) for size in sizes])


def member_defects(outputs_on_orbit, group: Transformations, act_y: ActFn | None = None) -> np.ndarray:
    """Equivariance defects ``f(ρ_X(g)x) − ρ_Y(g) f(x)`` for g ≠ e: ``(..., |G|, n, d) -> (..., |G|−1, n, d)``.

    Linear in f, so the defect of an ensemble mean is the mean of the members' defects. Element 0
    of ``group`` must be the identity (as for every group in :mod:`eqlib.groups`).
    """
    outputs = np.asarray(outputs_on_orbit)
    if outputs.ndim < 3 or outputs.shape[-3] != group.order:
        raise ValueError(f"outputs must be (..., {group.order}, n, d) for {group.name}, got shape {outputs.shape}")
    f_x = outputs[..., 0, :, :]
    moved = [np.asarray(act_y(g, f_x)) if act_y is not None else f_x for g in range(1, group.order)]
    return outputs[..., 1:, :, :] - np.stack(moved, axis=-3)


class MonteCarloSplit(NamedTuple):
    """Mean square of an ensemble average, split into its systematic and Monte-Carlo parts (per entry)."""
    total: float               # mean over entries of (1/M Σ_m d_m)²
    fluctuation: float         # mean over entries of Var(d)/M (sample variance, ddof = 1)
    systematic: float          # total − fluctuation: unbiased estimate of the mean of (E d)²
    systematic_stderr: float   # jackknife standard error of ``systematic`` (over members)


def monte_carlo_split(samples) -> MonteCarloSplit:
    """Split the mean square of the average of M i.i.d. samples ``(M, ...)``, M ≥ 2.

    E[(mean_m d_m)²] = (E d)² + Var(d)/M entrywise; the difference of the two sample estimates is
    an unbiased estimate of the systematic part (E d)² — zero for a quantity that vanishes in
    expectation, however noisy the ensemble.
    """
    d = np.asarray(samples, dtype=np.float64)
    if d.ndim < 1 or d.shape[0] < 2:
        raise ValueError(f"need at least 2 samples along axis 0, got shape {d.shape}")
    d = d.reshape(d.shape[0], -1)
    M = d.shape[0]

    def split(x: np.ndarray) -> tuple[float, float]:
        total = float((x.mean(0) ** 2).mean())
        fluct = float(x.var(0, ddof=1).mean() / len(x))
        return total, fluct

    total, fluct = split(d)
    if M >= 3:
        loo = np.array([np.subtract(*split(np.delete(d, m, axis=0))) for m in range(M)])
        stderr = float(np.sqrt((M - 1) / M * ((loo - loo.mean()) ** 2).sum()))
    else:
        stderr = float("nan")
    return MonteCarloSplit(total, fluct, total - fluct, stderr)


def rotation_matrices_2d(angles) -> np.ndarray:
    """Rotation matrices ``(k, 2, 2)`` of SO(2) for ``angles: (k,)`` in radians (counter-clockwise)."""
    angles = np.asarray(angles, dtype=np.float64)
    if angles.ndim != 1 or not np.all(np.isfinite(angles)):
        raise ValueError(f"angles must be a 1-d array of finite numbers, got {angles!r}")
    c, s = np.cos(angles), np.sin(angles)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def covering_radius(group_mats, sample_mats, ord: int | str = 2) -> float:
    """κ = max over samples s of min over b of ‖ρ(s) − ρ(b)‖: ``(B, D, D), (S, D, D) -> float``.

    With ``sample_mats`` a fine sample of the continuous group G, this estimates from below how well
    the finite set B covers G (Lemma 6.2). ``ord`` is the matrix norm (default: operator 2-norm).
    """
    group_mats = np.asarray(group_mats, dtype=np.float64)
    sample_mats = np.asarray(sample_mats, dtype=np.float64)
    if group_mats.ndim != 3 or sample_mats.ndim != 3 or group_mats.shape[1:] != sample_mats.shape[1:] \
            or group_mats.shape[1] != group_mats.shape[2]:
        raise ValueError(f"need (B, D, D) and (S, D, D) matrices, got {group_mats.shape} and {sample_mats.shape}")
    if len(group_mats) == 0 or len(sample_mats) == 0:
        raise ValueError("covering_radius needs at least one group element and one sample")
    diff = sample_mats[:, None] - group_mats[None]                      # (S, B, D, D)
    dist = np.linalg.norm(diff, ord=ord, axis=(-2, -1))                 # (S, B)
    return float(dist.min(1).max())


def orbit_lipschitz(values_on_orbit, points_on_orbit) -> np.ndarray:
    """Lipschitz constant of f restricted to each orbit: ``(|S|, n, d), (|S|, n, ...) -> (n,)``.

    ``values_on_orbit[s, i] = f(ρ_X(s) x_i)`` and ``points_on_orbit[s, i] = ρ_X(s) x_i``; returns
    ``max_{s ≠ s'} ‖f(ρ(s)x) − f(ρ(s')x)‖ / ‖ρ(s)x − ρ(s')x‖`` per input (pairs of coinciding points
    are skipped; 0 where all points coincide). This is the constant L(x) of Lemma 6.2's bound
    ``‖f(ρ_X(g)x) − ρ_Y(g) f(x)‖ ≤ (L(x)‖x‖ + ‖f(x)‖)·κ`` for g, b in the sample.
    """
    values = np.asarray(values_on_orbit, dtype=np.float64)
    points = np.asarray(points_on_orbit, dtype=np.float64)
    if values.ndim != 3 or points.ndim < 3 or values.shape[:2] != points.shape[:2]:
        raise ValueError(f"need values (|S|, n, d) and points (|S|, n, ...) on the same orbit, got shapes "
                         f"{values.shape} and {points.shape}")
    points = points.reshape(points.shape[:2] + (-1,))
    dv = np.linalg.norm(values[:, None] - values[None], axis=-1)        # (S, S, n)
    dx = np.linalg.norm(points[:, None] - points[None], axis=-1)
    scale = max(float(np.abs(points).max()), 1e-300)
    ratio = np.where(dx > 1e-12 * scale, dv / np.where(dx > 1e-12 * scale, dx, 1.0), 0.0)
    return ratio.max(axis=(0, 1))
