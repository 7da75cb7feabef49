"""The augmented infinite ensemble as kernel regression with a group-averaged kernel Θ_G.

Full-orbit augmentation stacks the training set group-element-major (:mod:`eqlib.augment`):
``X_aug[h·n + i] = ρ_X(h) x_i`` and ``Y_aug[h·n + i] = ρ_Y(h) y_i``. When the NTK is invariant,
``Θ(ρ_X(g)x, ρ_X(g)x') = Θ(x, x')`` for all g, and ρ_Y is orthogonal, the augmented Gram matrix is
*group-circulant*, ``Θ(X_aug, X_aug)[(h, i), (h', j)] = T_{h⁻¹h'}[i, j]`` with
``T_g = Θ(X, ρ_X(g) X)``, and the mean of the infinite ensemble trained on the augmented set
(:func:`eqlib.ntk.ensemble_mean_cov`) equals kernel regression on the ``n`` original points with

    Θ_G(x, x') = Σ_g Θ(x, ρ_X(g) x') ρ_Y(g)      (d×d; Σ_g Θ(x, ρ_X(g)x') if ρ_Y = 1)
    μ_t(x)     = Σ_ij Θ_G(x, x_i) [φ_{t/|G|}(Θ_G(X, X))]_ij y_j,
    φ_s(λ)     = (1 − e^{−ηλs/(n·d)})/λ

— the same learning rate η, the reduced problem's loss averaged over its ``n·d`` target entries,
and the time divided by |G| (equivalently: the averaged kernel Θ_G/|G| at the same time t). The
proof is in the chapter *Beyond the paper I*; :func:`group_kernel_regression` implements the right
hand side and :func:`augmented_kernel_regression` the left one (the augmented Gram matrix of size
|G|·n, an eigendecomposition costing O(|G|³n³) against O(n³) for Θ_G).
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from .groups import FiniteGroup
from .ntk import float64, flow_matrix, kernels

__all__ = ["orbit_stack", "group_blocks", "group_kernel", "kernel_invariance_defect",
           "group_circulant", "reduced_time", "group_kernel_regression",
           "augmented_kernel_regression", "formulation_costs"]

KernelFn = Callable


def orbit_stack(x, group: FiniteGroup) -> np.ndarray:
    """The orbit of ``x: (n, ...)`` stacked group-element-major: ``(|G|·n, ...)``, index ``g·n + i``.

    Computed with JAX's double precision on, so a float64 ``x`` keeps its precision.
    """
    x = np.asarray(x)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch (n, ...), got shape {x.shape}")
    with float64():                      # jnp would round float64 inputs to float32 otherwise
        return np.concatenate([np.asarray(group.act(g, x)) for g in range(group.order)])


def group_blocks(kernel_fn: KernelFn, x1, x2, group: FiniteGroup) -> np.ndarray:
    """``T_g = Θ(x1, ρ_X(g) x2)`` for every g, in float64: ``(n1, ...), (n2, ...) -> (|G|, n1, n2)``.

    One kernel call on ``x1`` against the stacked orbit of ``x2``.
    """
    x1, x2 = np.asarray(x1, np.float64), np.asarray(x2, np.float64)
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"x1 samples have shape {x1.shape[1:]}, x2 samples {x2.shape[1:]}")
    _, theta = kernels(kernel_fn, x1, orbit_stack(x2, group))
    return np.moveaxis(theta.reshape(len(x1), group.order, len(x2)), 1, 0)


def _check_rho_y(rho_y, group: FiniteGroup) -> np.ndarray | None:
    if rho_y is None:
        return None
    rho = np.asarray(rho_y, np.float64)
    if rho.ndim != 3 or rho.shape[0] != group.order or rho.shape[1] != rho.shape[2]:
        raise ValueError(f"rho_y must be (|G|, d, d) = ({group.order}, d, d), got shape {rho.shape}")
    eye = np.eye(rho.shape[1])
    defect = np.abs(np.einsum("gab,gcb->gac", rho, rho) - eye).max()
    if defect > 1e-8:
        raise ValueError(f"rho_y must be orthogonal matrices (max |ρρᵀ − 1| = {defect:.3g})")
    return rho


def group_kernel(kernel_fn: KernelFn, x1, x2, group: FiniteGroup, rho_y=None) -> np.ndarray:
    """Θ_G(x, x') = Σ_g Θ(x, ρ_X(g)x') ρ_Y(g), float64.

    ``x1: (n1, ...)``, ``x2: (n2, ...)``. Without ``rho_y`` (invariant task): ``(n1, n2)``. With
    ``rho_y: (|G|, d, d)`` (ρ_Y(g) for every g, orthogonal): ``(n1, d, n2, d)``, block
    ``[i, :, j, :] = Σ_g Θ(x1_i, ρ_X(g) x2_j) ρ_Y(g)``.
    """
    rho = _check_rho_y(rho_y, group)
    blocks = group_blocks(kernel_fn, x1, x2, group)
    if rho is None:
        return blocks.sum(0)
    return np.einsum("gij,gab->iajb", blocks, rho)


def kernel_invariance_defect(kernel_fn: KernelFn, x, group: FiniteGroup) -> float:
    """``max_{g,i,j} |Θ(ρ(g)x_i, ρ(g)x_j) − Θ(x_i, x_j)| / max |Θ|`` on ``x: (n, ...)``.

    0 for an invariant kernel (up to rounding)."""
    _, theta = kernels(kernel_fn, orbit_stack(np.asarray(x, np.float64), group))
    n = len(x)
    b = theta.reshape(group.order, n, group.order, n)
    diag = np.stack([b[g, :, g, :] for g in range(group.order)])
    return float(np.abs(diag - b[0, :, 0, :]).max() / np.abs(theta).max())


def group_circulant(blocks, group: FiniteGroup) -> np.ndarray:
    """Assemble ``A[(h, i), (h', j)] = T_{h⁻¹h'}[i, j]``: ``(|G|, n, n) -> (|G|·n, |G|·n)``.

    For an invariant kernel this is Θ(X_aug, X_aug) of the full-orbit augmented set.
    """
    blocks = np.asarray(blocks)
    if blocks.ndim != 3 or blocks.shape[0] != group.order:
        raise ValueError(f"blocks must be (|G|, n1, n2) with |G| = {group.order}, got {blocks.shape}")
    inv = np.array([group.inverse(h) for h in range(group.order)])
    index = group.table[inv[:, None], np.arange(group.order)[None, :]]       # h⁻¹h'
    out = blocks[index]                                                       # (|G|, |G|, n1, n2)
    return out.transpose(0, 2, 1, 3).reshape(group.order * blocks.shape[1], -1)


def reduced_time(t: float, group_order: int) -> float:
    """The time of the reduced (Θ_G, n points) flow that matches ``t`` steps of augmented training."""
    if group_order < 1:
        raise ValueError(f"group_order must be positive, got {group_order}")
    return float(t) / group_order


def _times(times) -> np.ndarray:
    ts = np.atleast_1d(np.asarray(times, np.float64))
    if ts.ndim != 1 or np.any(np.isnan(ts)) or np.any(ts < 0):
        raise ValueError(f"training times must be ≥ 0, got {times!r}")
    return ts


def _targets(x_train, y_train, d_expected: int | None) -> np.ndarray:
    y = np.asarray(y_train, np.float64)
    if y.ndim != 2 or len(y) != len(x_train):
        raise ValueError(f"y_train must be (n, d) with n = {len(x_train)}, got shape {y.shape}")
    if d_expected is not None and y.shape[1] != d_expected:
        raise ValueError(f"rho_y acts on {d_expected}-dim outputs, y_train has {y.shape[1]}")
    return y


def group_kernel_regression(kernel_fn: KernelFn, x_train, y_train, x_test, group: FiniteGroup,
                            times: Sequence[float] | float, learning_rate: float = 1.0,
                            rho_y=None, rcond: float | None = None) -> np.ndarray:
    """μ_t on ``x_test: (m, ...)`` from the reduced problem: ``-> (T, m, d)``.

    Kernel regression with Θ_G (:func:`group_kernel`) on ``x_train: (n, ...)``, ``y_train: (n, d)``
    (unaugmented), F = φ_{t/|G|}(Θ_G(X, X)) with ``n·d`` target entries (module docstring).
    ``times`` are in gradient steps *of the augmented training* (``np.inf``: the pseudo-inverse).
    Float64 throughout.
    """
    rho = _check_rho_y(rho_y, group)
    y = _targets(x_train, y_train, None if rho is None else rho.shape[1])
    n, d = y.shape
    ts = _times(times)
    if rho is None:
        gram = np.kron(group_kernel(kernel_fn, x_train, x_train, group), np.eye(d))
        cross = np.kron(group_kernel(kernel_fn, x_test, x_train, group), np.eye(d))
    else:
        gram = group_kernel(kernel_fn, x_train, x_train, group, rho).reshape(n * d, n * d)
        cross = group_kernel(kernel_fn, x_test, x_train, group, rho).reshape(-1, n * d)
    gram = (gram + gram.T) / 2                               # symmetric in exact arithmetic
    out = [cross @ flow_matrix(gram, reduced_time(t, group.order), learning_rate, n * d,
                               rcond=rcond) @ y.reshape(-1) for t in ts]
    return np.stack(out).reshape(len(ts), -1, d)


def augmented_kernel_regression(kernel_fn: KernelFn, x_train, y_train, x_test, group: FiniteGroup,
                                times: Sequence[float] | float, learning_rate: float = 1.0,
                                rho_y=None, rcond: float | None = None) -> np.ndarray:
    """μ_t on ``x_test: (m, ...)`` from the augmented problem directly: ``-> (T, m, d)``.

    Builds the ``|G|·n`` augmented set (targets ρ_Y(h) y_i), its Gram matrix and F_t = φ_t(Θ)
    with ``|G|·n·d`` target entries, as :func:`eqlib.ntk.ensemble_mean_cov` does for the mean
    (no covariance). The costly formulation, kept for :func:`formulation_costs`.
    """
    rho = _check_rho_y(rho_y, group)
    y = _targets(x_train, y_train, None if rho is None else rho.shape[1])
    x_aug = orbit_stack(np.asarray(x_train, np.float64), group)
    y_aug = (np.tile(y, (group.order, 1)) if rho is None
             else np.concatenate([y @ rho[h].T for h in range(group.order)]))
    _, gram = kernels(kernel_fn, x_aug)
    _, cross = kernels(kernel_fn, np.asarray(x_test, np.float64), x_aug)
    out = [cross @ flow_matrix(gram, t, learning_rate, y_aug.size, rcond=rcond) @ y_aug
           for t in _times(times)]
    return np.stack(out)


def formulation_costs(kernel_fn: KernelFn, x_train, group: FiniteGroup, repeats: int = 2
                      ) -> dict[str, float]:
    """Wall seconds (best of ``repeats``) to build and diagonalise the two Gram matrices.

    ``augmented_gram``: the NTK Θ(X_aug, X_aug), ``(|G|·n)²`` entries; ``augmented_solve``: its
    ``eigh``; ``group_gram``: Θ_G(X, X) from one ``n × |G|·n`` kernel evaluation;
    ``group_solve``: its ``eigh`` (invariant task, d = 1). ``x_train: (n, ...)``. The kernel is
    jit-compiled per input shape (float64) and the first repeat includes that compilation, so
    take ``repeats ≥ 2`` for a warm time.
    """
    import jax

    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
    x = np.asarray(x_train, np.float64)
    x_aug = orbit_stack(x, group)
    best: dict[str, float] = {}

    def clock(name, fn):
        start = time.perf_counter()
        value = fn()
        best[name] = min(best.get(name, np.inf), time.perf_counter() - start)
        return value

    with float64():
        ntk = jax.jit(lambda a, b: kernel_fn(a, b, "ntk"))
        n = len(x)
        for _ in range(repeats):
            big = clock("augmented_gram", lambda: np.asarray(ntk(x_aug, x_aug)))
            clock("augmented_solve", lambda: np.linalg.eigh(big))
            small = clock("group_gram", lambda: np.asarray(ntk(x, x_aug)).reshape(
                n, group.order, n).sum(1))
            clock("group_solve", lambda: np.linalg.eigh(small))
    return best
