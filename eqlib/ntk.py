"""The infinite-width ensemble: mean μ_t and covariance Σ_t of gradient-descent-trained networks.

For MSE loss ``L = ½·mean((f(X) − Y)²)`` and gradient descent with learning rate η for ``t`` steps
(gradient flow in the limit η → 0), an infinitely wide ensemble with centred initialisation
(E f_0 = 0) is a Gaussian process with (Θ = Θ(X, X), K = K(X, X), |Y| = number of target entries)

    μ_t(x)ᵀ    = Θ(x,X) F_t Y
    Σ_t(x,x')  = K(x,x') + Θ(x,X) F_t K F_t Θ(X,x') − [Θ(x,X) F_t K(X,x') + transpose]
    F_t        = φ_t(Θ),   φ_t(λ) = (1 − exp(−ηλt/|Y|)) / λ,   φ_t(0) = ηt/|Y|

(Lee et al. 2019; Gerken & Kessel 2024). φ_t is an entire function of λ, so F_t needs no inverse for
t < ∞; at t = ∞, φ_∞(λ) = 1/λ for λ > 0 and 0 for λ = 0: F_∞ = Θ⁺, the pseudo-inverse. Θ(X, X) is
singular whenever a training input has a non-trivial stabiliser under the augmentation group (the
augmented set then repeats a row), so this matters.

By default (``method="auto"``) the moments are computed with neural-tangents'
``predict.gradient_descent_mse_ensemble``. Neural-tangents evaluates F_t in the eigenbasis of Θ as
``expm1(−max(λ, 0)·ηt/|Y|) / |λ|`` (``_make_inv_expm1_fn`` in ``neural_tangents/_src/predict.py``):

* λ = 0 exactly: 0/0 = NaN, at every t;
* λ < 0 (a zero eigenvalue rounded down): 0 instead of ηt/|Y| for t < ∞ — harmless, since Θ(x, X)
  annihilates the null space of Θ up to rounding — and 0·∞ = NaN at t = ∞;
* tiny λ > 0 (a zero eigenvalue rounded up): right for t < ∞, 1/λ ≈ 10⁹…10¹⁶ times rounding
  noise at t = ∞.

So when the training set repeats an input, or Θ(X, X) is numerically singular (rank below ``N`` at
tolerance ``rcond``, default N·ε), eqlib evaluates the same formulas itself (``method="spectral"``:
float64 eigendecomposition of the kernel computed once per distinct input, φ_t, the pseudo-inverse
at t = ∞). This module and ``_nt`` are the only ones that touch neural-tangents.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .augment import check_same_length

__all__ = ["EnsemblePrediction", "float64", "kernels", "distinct_rows", "distinct_kernels",
           "flow_gain", "flow_matrix", "gram_rank", "ensemble_mean_cov"]

METHODS = ("auto", "neural_tangents", "spectral")


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


def _kernel_pair(kernel_fn, x1, x2, dtype):
    """The raw ``kernel_fn(x1, x2, ("nngp", "ntk"))`` namedtuple, inputs cast to ``dtype``."""
    return kernel_fn(jnp.asarray(x1, dtype), None if x2 is None else jnp.asarray(x2, dtype),
                     ("nngp", "ntk"))


def kernels(kernel_fn, x1, x2=None, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """NNGP ``K`` and NTK ``Θ`` Gram matrices ``(n1, n2)`` of a stax ``kernel_fn``."""
    with float64() if dtype == np.float64 else _nullcontext():
        k = _kernel_pair(kernel_fn, x1, x2, dtype)
        return np.asarray(k.nngp), np.asarray(k.ntk)


def distinct_rows(x) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(u,)`` of the first occurrence of each distinct sample of ``x: (N, ...)`` and the
    map ``(N,)`` from every sample to its distinct one (exact equality), so ``x == x[first][inverse]``."""
    x = np.asarray(x)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch (N, ...), got shape {x.shape}")
    _, first, inverse = np.unique(x.reshape(len(x), -1), axis=0, return_index=True,
                                  return_inverse=True)
    order = np.argsort(first)                   # keep the order of first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.reshape(-1)]


def distinct_kernels(kernel_fn, x1, x2=None, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`kernels`, but evaluated once per distinct sample of ``x2`` (``x1`` if None).

    Repeated samples — an augmented set whose inputs have non-trivial stabilisers — then get
    *exactly* equal rows and columns. (neural-tangents evaluates the ReLU NTK through an
    arc-cosine of the cosine between two inputs; for two copies of one input that cosine can round
    to 1 − ε, and the entry moves by ~1e-9 relative, which turns an exact zero eigenvalue of
    Θ(X, X) into ±1e-9.)
    """
    if x2 is None:
        first, inverse = distinct_rows(x1)
        K, theta = kernels(kernel_fn, np.asarray(x1)[first], dtype=dtype)
        return K[np.ix_(inverse, inverse)], theta[np.ix_(inverse, inverse)]
    first, inverse = distinct_rows(x2)
    K, theta = kernels(kernel_fn, x1, np.asarray(x2)[first], dtype=dtype)
    return K[:, inverse], theta[:, inverse]


def _default_rcond(n: int) -> float:
    return n * np.finfo(np.float64).eps


def gram_rank(theta, rcond: float | None = None) -> int:
    """Numerical rank of a symmetric PSD Gram matrix ``(N, N)``: eigenvalues > rcond·λ_max.

    ``rcond`` defaults to ``N·ε`` (float64 ε), numpy's ``matrix_rank`` tolerance.
    """
    theta = np.asarray(theta, np.float64)
    if theta.ndim != 2 or theta.shape[0] != theta.shape[1]:
        raise ValueError(f"theta must be a square matrix, got shape {theta.shape}")
    lam = np.linalg.eigvalsh(theta)
    rcond = _default_rcond(len(theta)) if rcond is None else rcond
    return int(np.sum(lam > rcond * max(lam.max(initial=0.0), 0.0)))


def flow_gain(eigenvalues, t: float, learning_rate: float, num_targets: int,
              discrete: bool = False, rcond: float | None = None) -> np.ndarray:
    """φ_t(λ) on the eigenvalues ``(N,)`` of Θ(X, X), so that F_t = V diag(φ_t(λ)) Vᵀ = φ_t(Θ).

    Gradient flow: ``φ_t(λ) = (1 − exp(−ηλt/|Y|))/λ`` with ``φ_t(0) = ηt/|Y|`` (entire in λ).
    ``discrete=True``, t gradient-descent steps: ``φ_t(λ) = (1 − (1 − ηλ/|Y|)^t)/λ`` with
    ``φ_t(0) = ηt/|Y|`` (a polynomial in λ for integer t). ``t = ∞``: ``1/λ`` for λ > rcond·λ_max
    and 0 otherwise, the pseudo-inverse (``rcond`` defaults to N·ε). Eigenvalues below zero are
    rounding errors of a PSD matrix and are treated as zero. ``|Y| = num_targets``.
    """
    lam = np.asarray(eigenvalues, np.float64)
    if lam.ndim != 1:
        raise ValueError(f"eigenvalues must be 1-d, got shape {lam.shape}")
    t = float(t)
    if np.isnan(t) or t < 0:
        raise ValueError(f"the training time must be ≥ 0, got {t}")
    if not learning_rate > 0 or not num_targets > 0:
        raise ValueError(f"learning_rate and num_targets must be positive, got {learning_rate} "
                         f"and {num_targets}")
    lam = np.maximum(lam, 0.0)
    positive = lam > 0
    if np.isinf(t):
        rcond = _default_rcond(len(lam)) if rcond is None else rcond
        keep = lam > rcond * lam.max(initial=0.0)
        return np.where(keep, 1.0 / np.where(keep, lam, 1.0), 0.0)
    rate = learning_rate * lam / num_targets                                 # ηλ/|Y|
    if discrete:
        small = rate < 1
        log_part = np.log1p(-np.where(small, rate, 0.0))
        growth = np.where(small, -np.expm1(t * log_part), 1.0 - (1.0 - rate) ** t)
    else:
        growth = -np.expm1(-rate * t)                                        # 1 − e^{−ηλt/|Y|}
    return np.where(positive, growth / np.where(positive, lam, 1.0),
                    learning_rate * t / num_targets)


def flow_matrix(theta, t: float, learning_rate: float, num_targets: int, discrete: bool = False,
                rcond: float | None = None) -> np.ndarray:
    """F_t = φ_t(Θ) ``(N, N)`` for a symmetric PSD ``theta: (N, N)`` (see :func:`flow_gain`)."""
    theta = np.asarray(theta, np.float64)
    if theta.ndim != 2 or theta.shape[0] != theta.shape[1]:
        raise ValueError(f"theta must be a square matrix, got shape {theta.shape}")
    lam, vecs = np.linalg.eigh(theta)
    gain = flow_gain(lam, t, learning_rate, num_targets, discrete, rcond)
    return (vecs * gain) @ vecs.T


def ensemble_mean_cov(kernel_fn, x_train, y_train, x_test, times: Sequence[float] | float,
                      learning_rate: float = 1.0, diag_reg: float = 0.0, dtype=np.float64,
                      method: str = "auto", rcond: float | None = None) -> EnsemblePrediction:
    """μ_t and Σ_t of the infinite ensemble on ``x_test: (n, ...)`` at ``times`` (in gradient steps).

    ``x_train: (N, ...)``, ``y_train: (N, d)``; ``times`` may include ``np.inf`` (the kernel
    regression limit, F_∞ = Θ⁺). Returns arrays with a leading time axis (length 1 for a scalar
    ``t``). ``method``: ``"neural_tangents"``; ``"spectral"`` (eqlib's own float64 evaluation of
    F_t = φ_t(Θ) from the kernels of the distinct training inputs, pseudo-inverse at t = ∞ with
    tolerance ``rcond``, default N·ε); ``"auto"``: spectral when the training set repeats an input
    or Θ(X, X) is numerically singular, neural-tangents otherwise (module docstring).
    """
    from ._nt import nt

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
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
    if method != "neural_tangents":
        first, inverse = distinct_rows(x_train)
        if method == "spectral" or len(first) < len(x_train):
            return _spectral_mean_cov(kernel_fn, x_train, y_train, x_test, ts, learning_rate,
                                      diag_reg, dtype, rcond)
    with float64() if dtype == np.float64 else _nullcontext():
        xd, xt, yd = (jnp.asarray(x_train, dtype), jnp.asarray(x_test, dtype),
                      jnp.asarray(y_train, dtype))
        k_dd = _kernel_pair(kernel_fn, xd, None, dtype)     # computed once, shared with nt
    if method == "auto" and gram_rank(_regularised(k_dd.ntk, diag_reg), rcond) < len(x_train):
        return _spectral_mean_cov(kernel_fn, x_train, y_train, x_test, ts, learning_rate,
                                  diag_reg, dtype, rcond)

    def cached_kernel_fn(x1, x2=None, get=None, **kwargs):
        if x1 is xd and x2 is None and not kwargs and get == ("nngp", "ntk"):
            return k_dd
        return kernel_fn(x1, x2, get, **kwargs)

    with float64() if dtype == np.float64 else _nullcontext():
        predict = nt.predict.gradient_descent_mse_ensemble(
            cached_kernel_fn, xd, yd, learning_rate=learning_rate, diag_reg=diag_reg)
        out = predict(jnp.asarray(ts, dtype), xt, "ntk", compute_cov=True)
        return EnsemblePrediction(np.asarray(out.mean), np.asarray(out.covariance))


def _regularised(theta, diag_reg: float) -> np.ndarray:
    """Θ + diag_reg·(tr Θ / N)·1, neural-tangents' relative diagonal regulariser."""
    theta = np.asarray(theta, np.float64)
    if not diag_reg:
        return theta
    return theta + diag_reg * np.trace(theta) / len(theta) * np.eye(len(theta))


def _spectral_mean_cov(kernel_fn, x_train, y_train, x_test, ts, learning_rate, diag_reg, dtype,
                       rcond) -> EnsemblePrediction:
    """The module docstring's formulas in float64 numpy from one eigendecomposition of Θ."""
    K_dd, theta = distinct_kernels(kernel_fn, x_train, dtype=np.float64)
    K_td, Th_td = distinct_kernels(kernel_fn, x_test, x_train, dtype=np.float64)
    K_tt, _ = kernels(kernel_fn, x_test, dtype=np.float64)
    y = np.asarray(y_train, np.float64)
    lam, vecs = np.linalg.eigh(_regularised(theta, diag_reg))
    th_v = Th_td @ vecs                                          # Θ(x, X) V, (n, N)
    means, covs = [], []
    for t in ts:
        gain = flow_gain(lam, t, learning_rate, y.size, rcond=rcond)
        B = (th_v * gain) @ vecs.T                               # Θ(x, X) F_t, (n, N)
        cross = B @ K_td.T                                       # Θ(x, X) F_t K(X, x')
        means.append(B @ y)
        covs.append(K_tt + B @ K_dd @ B.T - cross - cross.T)
    return EnsemblePrediction(np.stack(means).astype(dtype), np.stack(covs).astype(dtype))


@contextmanager
def _nullcontext():
    yield
