"""Finite width against infinite width: empirical kernels, ensemble moments, coupled trajectories, power laws.

The pieces the book uses to measure how a finite ensemble of finite-width networks approaches the
infinite-width Gaussian process of :mod:`eqlib.ntk`:

* :func:`empirical_ntk` — the NTK ``Θ̂_θ(x, x') = ⟨∂_θ f(x), ∂_θ f(x')⟩`` of one finite network
  (a Jacobian contraction with ``jax.jacobian``; no neural-tangents), which converges to the
  analytic Θ as the width grows (Jacot et al. 2018);
* :func:`ensemble_moments` — the empirical mean and (unbiased) covariance of member outputs, the
  finite-M estimate of ``(μ_t, Σ_t)``;
* :func:`ntk_trajectories` — for each member, the infinite-width training trajectory started from
  *that member's own* initial function ``f_0``:

      g_t(x) = f_0(x) + Θ(x,X) F_t (Y − f_0(X)),   F_t = φ_t(Θ),  φ_t(λ) = (1 − e^{−ηλt/|Y|})/λ

  (``φ_t(λ) = (1 − (1 − ηλ/|Y|)^t)/λ`` for ``discrete=True``, gradient descent in steps of η; the
  pseudo-inverse at t = ∞; :func:`eqlib.ntk.flow_gain`). With ``f_0 ~ GP(0, K)`` the ``g_t`` are
  exact samples of the infinite ensemble ``GP(μ_t, Σ_t)`` (of its discrete-time version for
  ``discrete=True``); with a fixed, non-random ``f_0 = m`` it is the training trajectory of one
  linearised network started from ``m`` (fine-tuning in the kernel picture). A trained member
  and its "twin" ``g_t`` share their randomness, so ``f_t − g_t`` measures the width error without
  the Monte-Carlo error of a finite ensemble (a control variate);
* :func:`fit_power_law` — the slope of a straight line on log–log axes.

Conventions as in :mod:`eqlib.ntk`: MSE loss ``½·mean((f − y)²)``, time ``t`` in gradient steps,
``|Y|`` the number of target entries.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .augment import check_same_length
from .ntk import distinct_kernels, flow_gain

__all__ = ["empirical_ntk", "ensemble_moments", "ntk_trajectories", "fit_power_law"]


def empirical_ntk(module: nn.Module, params: Any, x1, x2=None, channels: bool = False) -> np.ndarray:
    """Empirical NTK ``(n1, n2)`` of one network: ``x1: (n1, ...)``, ``x2: (n2, ...)`` (default ``x1``).

    ``Θ̂(x, x') = (1/d) Σ_j Σ_p ∂f_j(x)/∂θ_p · ∂f_j(x')/∂θ_p``, summed over every parameter ``p`` of
    ``params`` (one member's pytree, not a stacked ensemble) and averaged over the ``d`` output
    channels (whose kernels coincide in the infinite-width limit). For ``d = 1`` this is exactly
    ``J(x1) J(x2)ᵀ``. With ``channels=True`` the matrix-valued kernel ``(n1, n2, d, d)``,
    ``Θ̂_{jj'}(x, x') = Σ_p ∂f_j(x)/∂θ_p · ∂f_{j'}(x')/∂θ_p``, whose channel trace over d is the
    default. Returned in float64 (the contraction itself runs in the parameters' dtype).
    """
    x1 = jnp.asarray(x1)
    x2 = None if x2 is None else jnp.asarray(x2)
    if x1.ndim < 2 or (x2 is not None and (x2.ndim < 2 or x1.shape[1:] != x2.shape[1:])):
        raise ValueError(f"x1 and x2 must be batches (n, ...) of equally shaped samples, got {tuple(x1.shape)} "
                         f"and {None if x2 is None else tuple(x2.shape)}")
    if not jax.tree_util.tree_leaves(params):
        raise ValueError("params has no leaves: nothing to differentiate")
    out_shape = jax.eval_shape(module.apply, params, x1[:1]).shape
    if len(out_shape) != 2:
        raise ValueError(f"the module must return outputs (n, d), got shape {out_shape} for one sample")
    theta = _empirical_ntk_fn(module, bool(channels))(params, x1, x2)
    return np.asarray(theta, dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _empirical_ntk_fn(module: nn.Module, channels: bool = False):
    """A jit-compiled ``(params, x1, x2) -> Θ̂`` for one module (compiled once per shape)."""

    def jac(params, x):
        tree = jax.jacobian(lambda p: module.apply(p, x))(params)   # leaves (n, d, *param_shape)
        return jnp.concatenate([leaf.reshape(leaf.shape[0], leaf.shape[1], -1)
                                for leaf in jax.tree_util.tree_leaves(tree)], axis=-1)  # (n, d, P)

    @jax.jit
    def fn(params, x1, x2):
        j1 = jac(params, x1)
        j2 = j1 if x2 is None else jac(params, x2)
        if channels:
            return jnp.einsum("adp,bep->abde", j1, j2)
        return jnp.einsum("adp,bdp->ab", j1, j2) / j1.shape[1]

    return fn


def ensemble_moments(outputs) -> tuple[np.ndarray, np.ndarray]:
    """Empirical mean ``(n, d)`` and covariance ``(n, n)`` of member outputs ``(M, n, d)``, M ≥ 2.

    The covariance is the unbiased sample covariance over members, averaged over the ``d`` output
    channels — the estimate of Σ_t, which the infinite ensemble shares across channels.
    """
    out = np.asarray(outputs, dtype=np.float64)
    if out.ndim != 3:
        raise ValueError(f"outputs must be (M, n, d), got shape {out.shape}")
    if out.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 members, got M = {out.shape[0]}")
    mean = out.mean(0)
    centred = out - mean
    cov = np.einsum("mad,mbd->ab", centred, centred) / ((out.shape[0] - 1) * out.shape[2])
    return mean, cov


def ntk_trajectories(kernel_fn, x_train, y_train, x_test, f0_train, f0_test,
                     times: Sequence[float] | float, learning_rate: float = 1.0,
                     discrete: bool = False) -> np.ndarray:
    """Infinite-width trajectories ``(T, M, n_test, d)`` of M members from their initial outputs.

    ``x_train: (N, ...)``, ``y_train: (N, d)``, ``x_test: (n_test, ...)``; ``f0_train: (M, N, d)`` and
    ``f0_test: (M, n_test, d)`` are the members' outputs at initialisation. Returns
    ``g_t = f_0(x) + Θ(x,X) F_t (Y − f_0(X))`` (module docstring) at each time (gradient steps;
    ``np.inf`` allowed), with ``F_t = φ_t(Θ)`` of gradient flow (as :func:`eqlib.ntk.ensemble_mean_cov`)
    or, with ``discrete``, of gradient descent with step η (:func:`eqlib.ntk.flow_gain`); a singular
    Θ(X, X) (repeated training inputs) is allowed, with the pseudo-inverse at t = ∞. With
    ``f_0 = 0`` it is the mean μ_t. Computed in float64 from the analytic NTK of ``kernel_fn``,
    evaluated once per distinct training input (:func:`eqlib.ntk.distinct_kernels`).
    """
    x_train, x_test, y_train = np.asarray(x_train), np.asarray(x_test), np.asarray(y_train, np.float64)
    check_same_length(x_train, y_train)
    if y_train.ndim != 2:
        raise ValueError(f"y_train must be (N, d), got shape {y_train.shape}")
    if x_test.ndim < 1 or x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(f"x_test samples have shape {x_test.shape[1:]}, training samples {x_train.shape[1:]}")
    f0_train, f0_test = np.asarray(f0_train, np.float64), np.asarray(f0_test, np.float64)
    N, d = y_train.shape
    if f0_train.ndim != 3 or f0_train.shape[1:] != (N, d):
        raise ValueError(f"f0_train must be (M, {N}, {d}), got shape {f0_train.shape}")
    if f0_test.shape != (f0_train.shape[0], len(x_test), d):
        raise ValueError(f"f0_test must be ({f0_train.shape[0]}, {len(x_test)}, {d}), got shape {f0_test.shape}")
    ts = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if ts.ndim != 1 or np.any(np.isnan(ts)) or np.any(ts < 0):
        raise ValueError(f"training times must be ≥ 0, got {ts}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")

    _, theta = distinct_kernels(kernel_fn, x_train)
    _, theta_test = distinct_kernels(kernel_fn, x_test, x_train)             # (n_test, N)
    lam, vecs = np.linalg.eigh(theta)
    rate = learning_rate * np.maximum(lam, 0.0) / y_train.size               # η λ / |Y|
    if discrete and np.any(np.isfinite(ts)) and rate.max() >= 2:
        raise ValueError(f"gradient descent diverges: η λ_max / |Y| = {rate.max():.3g} ≥ 2")
    residual = y_train[None] - f0_train                                      # (M, N, d)
    coeffs = np.einsum("kn,mkd->mnd", vecs, residual)                        # eigenbasis
    test_vecs = theta_test @ vecs                                            # (n_test, N)
    out = []
    for t in ts:
        gain = flow_gain(lam, t, learning_rate, y_train.size, discrete=discrete)  # φ_t(λ)
        out.append(f0_test + test_vecs @ (coeffs * gain[None, :, None]))    # (M, n_test, d)
    return np.stack(out)


def fit_power_law(x, y) -> tuple[float, float]:
    """Least-squares fit of ``log y = slope · log x + intercept``; ``x, y: (k,)`` positive, k ≥ 2."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
        raise ValueError(f"x and y must be 1-d of equal length ≥ 2, got shapes {x.shape} and {y.shape}")
    if np.any(x <= 0) or np.any(y <= 0) or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"a power law needs positive finite values, got x = {x}, y = {y}")
    if np.ptp(np.log(x)) == 0:
        raise ValueError(f"x must take at least two distinct values, got {x}")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return float(slope), float(intercept)
