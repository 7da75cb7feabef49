"""The infinite-width ensemble: mean μ_t and covariance Σ_t of gradient-descent-trained networks.

For MSE loss ``L = ½·mean((f(X) − Y)²)`` and gradient descent with learning rate η for ``t`` steps
(gradient flow in the limit η → 0), an infinitely wide ensemble is a Gaussian process with
(Θ = Θ(X, X), T_t = 1 − exp(−η Θ t / |Y|), |Y| = number of target entries)

    μ_t(x)     = Θ(x,X) Θ⁻¹ T_t Y
    Σ_t(x,x')  = K(x,x') + Θ(x,X)Θ⁻¹T_t K(X,X) T_tΘ⁻¹Θ(X,x') − [Θ(x,X)Θ⁻¹T_t K(X,x') + transpose]

(Lee et al. 2019; Gerken & Kessel 2024, eq. for the NTK ensemble). Computed with neural-tangents'
``predict.gradient_descent_mse_ensemble``; this is the only module besides ``_nt`` that touches it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .augment import check_same_length


class EnsemblePrediction(NamedTuple):
    mean: np.ndarray        # (T, n, d)  μ_t(x)
    covariance: np.ndarray  # (T, n, n)  Σ_t(x, x'), shared by the d output channels


@contextmanager
def float64():
    """Run the enclosed JAX computations in double precision (restores the previous setting)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


def kernels(kernel_fn, x1, x2=None, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """NNGP ``K`` and NTK ``Θ`` Gram matrices ``(n1, n2)`` of a stax ``kernel_fn``."""
    with float64() if dtype == np.float64 else _nullcontext():
        k = kernel_fn(jnp.asarray(x1, dtype), None if x2 is None else jnp.asarray(x2, dtype), ("nngp", "ntk"))
        return np.asarray(k.nngp), np.asarray(k.ntk)


def ensemble_mean_cov(kernel_fn, x_train, y_train, x_test, times: Sequence[float] | float,
                      learning_rate: float = 1.0, diag_reg: float = 0.0, dtype=np.float64) -> EnsemblePrediction:
    """μ_t and Σ_t of the infinite ensemble on ``x_test: (n, ...)`` at ``times`` (in gradient steps).

    ``x_train: (N, ...)``, ``y_train: (N, d)``; ``times`` may include ``np.inf`` (the kernel
    regression limit). Returns arrays with a leading time axis (length 1 for a scalar ``t``).
    """
    from ._nt import nt

    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    y_train = np.asarray(y_train)
    check_same_length(x_train, y_train)
    if y_train.ndim != 2:
        raise ValueError(f"y_train must be (N, d), got shape {y_train.shape}")
    if x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(f"x_test samples have shape {x_test.shape[1:]}, training samples {x_train.shape[1:]}")
    ts = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if np.any(ts < 0) or np.any(np.isnan(ts)):
        raise ValueError(f"training times must be ≥ 0, got {ts}")
    with float64() if dtype == np.float64 else _nullcontext():
        predict = nt.predict.gradient_descent_mse_ensemble(
            kernel_fn, jnp.asarray(x_train, dtype), jnp.asarray(y_train, dtype),
            learning_rate=learning_rate, diag_reg=diag_reg)
        out = predict(jnp.asarray(ts, dtype), jnp.asarray(x_test, dtype), "ntk", compute_cov=True)
        return EnsemblePrediction(np.asarray(out.mean), np.asarray(out.covariance))


@contextmanager
def _nullcontext():
    yield
