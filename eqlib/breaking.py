"""What breaks emergent equivariance: finite ensembles, finite width, continuous groups.

Tools for the chapter *What breaks it*; all act on plain arrays.

* Finite ensembles (after Gerken & Kessel 2024, Lemma B.4): the mean f̄_M of M members fluctuates
  around the infinite-ensemble mean μ_t with covariance Σ_t/M. :func:`subensemble_violation`
  measures the symmetry violation of sub-ensembles resampled from a pool of trained members;
  :func:`predicted_subensemble_violation` draws ensemble means from N(μ_t, Σ_t/M) and measures the
  same statistic — the prediction of the lemma; :func:`defect_variance` is the variance of one
  member's equivariance defect that Σ_t predicts. The paper's Lemma B.4 itself is the Gaussian
  tail bound P(|f̄_M − μ_t| > δ) ≤ √(2/π)(σ/δ) e^{−δ²/2σ²}, σ² = Σ_t/M
  (:func:`gaussian_tail_bound`), checked on members by :func:`tail_exceedance`.
* Finite width: :func:`monte_carlo_split` splits the mean square of an ensemble average into the
  systematic part ‖E d‖² and the Monte-Carlo part tr Cov(d)/M, so the two can be told apart.
* Continuous groups (after Lemma 6.2): :func:`covering_radius` is κ = max_g min_b ‖ρ(g) − ρ(b)‖
  of a finite subset C_q of a group G, estimated on a sample of G; :func:`rotation_matrices_2d`
  builds C_q ⊂ SO(2). :func:`covering_bound_constant` is the constant A_t(x) of the bound
  ‖μ_t(ρ_X(g)x) − ρ_Y(g)μ_t(x)‖ ≤ A_t(x)·κ(g) for the one-hidden-layer ReLU NTK
  (:func:`relu_ntk`, :func:`relu_ntk_lipschitz`), computed from the training data alone and
  uniform in q for t < ∞ (it uses ‖F_t‖ ≤ ηt/|Y|, F_t = φ_t(Θ), :func:`phi_t`).
  :func:`orbit_lipschitz` *estimates* a Lipschitz constant on a sampled orbit (not a bound).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np

from .groups import ActFn, Transformations
from .metrics import orbit_spread, subensemble_statistics

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
    inputs. The draws are :func:`eqlib.metrics.subensemble_statistics` with ``subsets="random"``,
    which also gives their mean and bootstrap interval per size.
    """
    outputs = _check_orbit_outputs(member_outputs, "member_outputs (K, |G|, n, d)", 4)
    sizes = _check_sizes(sizes, upper=outputs.shape[0])
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be positive, got {num_resamples}")
    stats = subensemble_statistics(outputs, sizes, lambda means: np.asarray(violation(means)).mean(-1),
                                   subsets="random", num_resamples=num_resamples, seed=seed, num_bootstrap=0)
    return np.stack(stats.samples).astype(np.float64)                  # (len(sizes), R)


def _gaussian_fluctuation(mean: np.ndarray, covariance, num_samples: int,
                          seed: int | Sequence[int]) -> np.ndarray:
    """Centred draws ``(num_samples,) + mean.shape`` with covariance Σ ⊗ 1_d (Σ over |G|·n points)."""
    covariance = np.asarray(covariance, dtype=np.float64)
    points = mean.shape[0] * mean.shape[1]
    if covariance.shape != (points, points):
        raise ValueError(f"covariance must be ({points}, {points}) for a mean of shape {mean.shape}, "
                         f"got {covariance.shape}")
    if not np.allclose(covariance, covariance.T, atol=1e-8 * max(1.0, np.abs(covariance).max())):
        raise ValueError("covariance is not symmetric")
    if num_samples < 1:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    evals, evecs = np.linalg.eigh((covariance + covariance.T) / 2)
    if evals.min() < -1e-6 * max(1.0, evals.max()):
        raise ValueError(f"covariance is not positive semi-definite (smallest eigenvalue {evals.min():.3g})")
    root = evecs * np.sqrt(np.clip(evals, 0.0, None))                    # root @ rootᵀ = Σ
    noise = np.random.default_rng(seed).normal(size=(num_samples, points, mean.shape[-1]))
    return np.einsum("pq,sqd->spd", root, noise).reshape((num_samples,) + mean.shape)


def predicted_subensemble_violation(mean, covariance, sizes: Sequence[int], num_samples: int = 256,
                                    seed: int | Sequence[int] = 0, violation: ViolationFn = orbit_spread) -> np.ndarray:
    """The statistic for ensemble means drawn from N(μ_t, Σ_t/M) (after Lemma B.4): ``-> (len(sizes), num_samples)``.

    ``mean: (|G|, n, d)`` is μ_t on the orbit points and ``covariance: (|G|·n, |G|·n)`` is Σ_t
    between them (group-element-major order, shared by the d output channels, as returned by
    :func:`eqlib.ntk.ensemble_mean_cov` for the flattened orbit). The same ``num_samples`` unit
    draws are rescaled by 1/√M for every size M, so for an equivariant μ_t the result is exactly
    proportional to 1/√M by construction.
    """
    mean = _check_orbit_outputs(mean, "mean (|G|, n, d)", 3)
    sizes = _check_sizes(sizes)
    fluctuation = _gaussian_fluctuation(mean, covariance, num_samples, seed)
    return np.stack([np.asarray(violation(mean + fluctuation / np.sqrt(size))).mean(-1) for size in sizes])


def gaussian_members(mean, covariance, num_members: int, seed: int | Sequence[int] = 0) -> np.ndarray:
    """Independent draws from the Gaussian process N(μ_t, Σ_t ⊗ 1_d) on orbit points: ``-> (M, |G|, n, d)``.

    ``mean: (|G|, n, d)`` and ``covariance: (|G|·n, |G|·n)`` as for
    :func:`predicted_subensemble_violation`: members of an infinitely wide ensemble.
    """
    mean = _check_orbit_outputs(mean, "mean (|G|, n, d)", 3).astype(np.float64)
    return mean + _gaussian_fluctuation(mean, covariance, num_members, seed)


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
    are skipped; 0 where all points coincide). This *estimates* from below the constant L(x) of
    the covering bound ``‖f(ρ_X(g)x) − ρ_Y(g) f(x)‖ ≤ (L(x)‖x‖ + ‖f(x)‖)·κ``; a bound built from it
    and checked on the same sample holds by the triangle inequality and is no evidence. For an
    honest bound with a constant computed from the training data see :func:`covering_bound_constant`.
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


# ------------------------------------------------------------------- finite ensembles: the tail bound

def defect_variance(covariance, rho_y) -> np.ndarray:
    """Variance of each entry of one member's defect predicted by Σ_t: ``-> (|G|−1, n, d)``.

    For a Gaussian process with covariance Σ_t ⊗ 1_d the defect Δ(g, x) = f(ρ_X(g)x) − ρ_Y(g)f(x)
    has covariance [Σ_t(gx, gx) + Σ_t(x, x)]·1_d − Σ_t(gx, x)(ρ_Y(g) + ρ_Y(g)ᵀ), whose diagonal
    this returns. ``covariance: (|G|·n, |G|·n)`` is Σ_t between the orbit points
    (group-element-major, element 0 the identity) and ``rho_y: (|G|, d, d)`` the matrices ρ_Y(g).
    """
    rho_y = np.asarray(rho_y, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    if rho_y.ndim != 3 or rho_y.shape[1] != rho_y.shape[2]:
        raise ValueError(f"rho_y must be (|G|, d, d), got shape {rho_y.shape}")
    order = len(rho_y)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] % order:
        raise ValueError(f"covariance must be (|G|·n, |G|·n) with |G| = {order}, got shape {cov.shape}")
    n = cov.shape[0] // order
    diag = np.diagonal(cov).reshape(order, n)                           # Σ(gx, gx)
    cross = np.diagonal(cov[:, :n].reshape(order, n, n), axis1=1, axis2=2)  # Σ(gx, x)
    rho_diag = np.diagonal(rho_y, axis1=1, axis2=2)                    # (|G|, d)
    var = (diag + diag[:1])[..., None] - 2 * cross[..., None] * rho_diag[:, None, :]
    return var[1:]


def gaussian_tail_bound(a) -> np.ndarray:
    """√(2/π)·e^{−a²/2}/a ≥ P(|Z| > a) for a standard normal Z and a > 0 (Lemma B.4 with a = δ/σ)."""
    a = np.asarray(a, dtype=np.float64)
    if np.any(~(a > 0)):
        raise ValueError(f"thresholds a = δ/σ must be positive, got {a!r}")
    return np.sqrt(2 / np.pi) * np.exp(-a ** 2 / 2) / a


def tail_exceedance(member_outputs, mean, variance, sizes: Sequence[int], thresholds,
                    num_resamples: int = 256, seed: int = 0) -> np.ndarray:
    """How often an ensemble mean leaves μ by more than a·σ_M: ``-> (len(sizes), len(thresholds))``.

    ``member_outputs: (K, ...)`` are K members' outputs, ``mean`` (broadcastable to ``(...)``) the
    centre μ and ``variance`` (broadcastable too) one member's variance per entry, so that
    σ_M² = variance/M. For each size M, ``num_resamples`` subsets of M distinct members are averaged
    (for M = 1 every member is used once) and the share of entries with |f̄_M − μ| > a·σ_M is
    returned for every threshold a — to compare with :func:`gaussian_tail_bound`.
    """
    outputs = np.asarray(member_outputs, dtype=np.float64)
    if outputs.ndim < 2:
        raise ValueError(f"member_outputs must be (K, ...), got shape {outputs.shape}")
    sizes = _check_sizes(sizes, upper=outputs.shape[0])
    a = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if a.ndim != 1 or np.any(~(a > 0)):
        raise ValueError(f"thresholds must be a 1-d sequence of positive numbers, got {thresholds!r}")
    variance = np.broadcast_to(np.asarray(variance, dtype=np.float64), outputs.shape[1:])
    if np.any(~(variance > 0)):
        raise ValueError("variance must be positive everywhere")
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), outputs.shape[1:])
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be positive, got {num_resamples}")
    rng = np.random.default_rng(seed)
    result = np.empty((len(sizes), len(a)))
    for i, size in enumerate(sizes):
        if size == 1:
            means = outputs
        else:
            means = np.stack([outputs[rng.choice(len(outputs), size=int(size), replace=False)].mean(0)
                              for _ in range(num_resamples)])
        z = np.abs(means - mean) / np.sqrt(variance / size)
        result[i] = (z[..., None] > a).reshape(-1, len(a)).mean(0)
    return result


# ------------------------------------------------------------- continuous groups: the covering bound

def phi_t(eigenvalues, time: float, learning_rate: float, num_targets: int) -> np.ndarray:
    """The spectral function of the training flow, F_t = φ_t(Θ): ``(k,) -> (k,)``.

    φ_t(λ) = (1 − e^{−ηλt/|Y|})/λ, with φ_t(0) = ηt/|Y| (an entire function of λ), and at t = ∞
    φ_∞(λ) = 1/λ for λ > 0 and 0 for λ = 0 (the pseudo-inverse). ``num_targets`` is |Y| = N·d.
    For λ ≥ 0, 0 ≤ φ_t(λ) ≤ ηt/|Y|.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if time < 0 or learning_rate <= 0 or num_targets < 1:
        raise ValueError(f"need time ≥ 0, learning_rate > 0, num_targets ≥ 1; got {time}, "
                         f"{learning_rate}, {num_targets}")
    if np.isinf(time):
        return np.where(lam > 0, 1.0 / np.where(lam > 0, lam, 1.0), 0.0)
    scale = learning_rate * time / num_targets
    small = np.abs(lam * scale) < 1e-8
    safe = np.where(small, 1.0, lam)
    return np.where(small, scale * (1 - lam * scale / 2), -np.expm1(-scale * safe) / safe)


def _augment_first_layer(x, W_std: float, b_std: float) -> np.ndarray:
    """x̂ = (W_std·x/√D, b_std): ``(n, ...) -> (n, D + 1)``; the first layer's kernel is x̂·x̂'."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"points must be (n, ...), got shape {x.shape}")
    flat = x.reshape(len(x), -1)
    D = flat.shape[1]
    return np.concatenate([W_std * flat / math.sqrt(D), np.full((len(x), 1), float(b_std))], axis=1)


def _relu_profile(omega, W_std: float):
    """ψ(ω) = W_std²/(2π)·[sin ω + 2(π − ω) cos ω] and its derivative ψ'(ω)."""
    c = W_std ** 2 / (2 * np.pi)
    psi = c * (np.sin(omega) + 2 * (np.pi - omega) * np.cos(omega))
    dpsi = c * (-np.cos(omega) - 2 * (np.pi - omega) * np.sin(omega))
    return psi, dpsi


def relu_ntk(x1, x2=None, W_std: float = math.sqrt(2.0), b_std: float = 0.05) -> np.ndarray:
    """NTK of ``Flatten → Dense → ReLU → Dense`` (NTK parametrisation), in closed form: ``-> (n1, n2)``.

    The kernel of :func:`eqlib.models.mlp` with one hidden layer, independent of its width:
    Θ(x, x') = ‖x̂‖‖x̂'‖·ψ(ω) + b_std² with x̂ = (W_std·x/√D, b_std), ω the angle between x̂ and
    x̂', and ψ(ω) = W_std²/(2π)·[sin ω + 2(π − ω) cos ω] (arc-cosine kernels of orders 1 and 0).
    """
    a = _augment_first_layer(x1, W_std, b_std)
    b = a if x2 is None else _augment_first_layer(x2, W_std, b_std)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x1 and x2 have different input dimensions: {a.shape[1] - 1} and {b.shape[1] - 1}")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    norms = na[:, None] * nb[None, :]
    cos = np.clip(a @ b.T / norms, -1.0, 1.0)
    psi, _ = _relu_profile(np.arccos(cos), W_std)
    return norms * psi + b_std ** 2


def relu_profile_sup(W_std: float = math.sqrt(2.0), grid: int = 100_001) -> float:
    """An upper bound of sup_ω √(ψ(ω)² + ψ'(ω)²) over [0, π]: grid maximum plus a rigorous margin.

    d/dω √(ψ² + ψ'²) is bounded by |ψ| + |ψ''| ≤ W_std²(4 + 4π)/(2π), so between grid points the
    function exceeds the grid maximum by at most that times half the spacing.
    """
    omega = np.linspace(0.0, np.pi, grid)
    psi, dpsi = _relu_profile(omega, W_std)
    slope = W_std ** 2 * (4 + 4 * np.pi) / (2 * np.pi)
    return float(np.sqrt(psi ** 2 + dpsi ** 2).max() + slope * (np.pi / (grid - 1)) / 2)


def relu_ntk_lipschitz(points, W_std: float = math.sqrt(2.0), b_std: float = 0.05) -> np.ndarray:
    """ℓ(z) with |Θ(x, z) − Θ(x', z)| ≤ ℓ(z)·‖x − x'‖ for all x, x' (:func:`relu_ntk`): ``(n, ...) -> (n,)``.

    Θ(·, z) − b_std² is F(x̂) with F(v) = ‖v‖‖ẑ‖ψ(∠(v, ẑ)) positively homogeneous of degree 1 and
    |∇F| = ‖ẑ‖·√(ψ² + ψ'²) off the line through ẑ; x ↦ x̂ is affine with Lipschitz constant
    W_std/√D. Hence ℓ(z) = ‖ẑ‖ · sup √(ψ² + ψ'²) · W_std/√D.
    """
    hat = _augment_first_layer(points, W_std, b_std)
    D = hat.shape[1] - 1
    return np.linalg.norm(hat, axis=1) * relu_profile_sup(W_std) * W_std / math.sqrt(D)


def covering_bound_constant(x, x_train, y_train, times, learning_rate: float = 1.0,
                            W_std: float = math.sqrt(2.0), b_std: float = 0.05) -> np.ndarray:
    """A_t(x) of ‖μ_t(ρ_X(g)x) − ρ_Y(g)μ_t(x)‖ ≤ A_t(x)·κ(g): ``(n, ...) -> (len(times), n)``.

    For the one-hidden-layer ReLU NTK (:func:`relu_ntk`), the augmented training set
    ``x_train: (N, ...)``, ``y_train: (N, d)`` (full augmentation with a finite subgroup C_q) and
    κ(g) = min_{b ∈ C_q} max(‖ρ_X(g) − ρ_X(b)‖, ‖ρ_Y(g) − ρ_Y(b)‖):

        A_t(x) = (ηt/|Y|) · ‖Y‖₂ · (‖ℓ‖₂ ‖x‖ + ‖Θ(X, x)‖₂),

    with ℓ_k = :func:`relu_ntk_lipschitz` of X_k and |Y| = N·d. It uses ‖F_t‖ ≤ ηt/|Y| and involves
    neither the test rotations nor the eigenvalues of Θ, and it is bounded uniformly in q; it is
    ∞ at t = ∞, where no such bound follows.
    """
    X = np.asarray(x_train, dtype=np.float64)
    Y = np.asarray(y_train, dtype=np.float64)
    if Y.ndim != 2 or len(Y) != len(X):
        raise ValueError(f"y_train must be (N, d) with N = {len(X)}, got shape {Y.shape}")
    ts = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if ts.ndim != 1 or np.any(np.isnan(ts)) or np.any(ts < 0):
        raise ValueError(f"times must be ≥ 0, got {times!r}")
    x = np.asarray(x, dtype=np.float64)
    ell = relu_ntk_lipschitz(X, W_std, b_std)                                   # (N,)
    theta_xX = relu_ntk(x, X, W_std, b_std)                                     # (n, N)
    norm_x = np.linalg.norm(x.reshape(len(x), -1), axis=1)
    per_unit = np.linalg.norm(Y, 2) / Y.size * (np.linalg.norm(ell) * norm_x
                                                + np.linalg.norm(theta_xX, axis=1))
    with np.errstate(invalid="ignore"):
        scale = np.where(np.isinf(ts), np.inf, learning_rate * ts)
        return np.where(per_unit[None] > 0, scale[:, None] * per_unit[None], 0.0)
