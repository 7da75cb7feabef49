"""Symmetry metrics on arrays of outputs evaluated over group orbits.

Every metric takes ``outputs_on_orbit`` of shape ``(..., |G|, n, d)``: the outputs ``f(ρ_X(g) x_i)``
for every element ``g`` (index 0 the identity) and input ``i``; leading axes (e.g. members) are
kept. Use :func:`orbit_outputs` to produce it from a function and a group.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from .groups import ActFn, Transformations


def orbit_outputs(apply_fn: Callable, x, group: Transformations, chunk: int | None = None):
    """``apply_fn: (N, ...) -> (..., N, d)`` evaluated on the orbit of ``x: (n, ...)`` → ``(..., |G|, n, d)``.

    ``chunk``: evaluate the orbits of ``chunk`` inputs at a time (``|G|·chunk`` rows per call, to
    bound memory) and return a NumPy array; without it, one call and a JAX array.
    """
    if chunk is not None:
        if chunk < 1:
            raise ValueError(f"chunk must be a positive number of inputs, got {chunk}")
        parts = [np.asarray(orbit_outputs(apply_fn, x[s:s + chunk], group)) for s in range(0, len(x), chunk)]
        return np.concatenate(parts, axis=-2)
    x = jnp.asarray(x)
    orbit = group.orbit(x)  # (|G|, n, ...)
    out = apply_fn(orbit.reshape((-1,) + x.shape[1:]))
    return out.reshape(out.shape[:-2] + (group.order, x.shape[0], out.shape[-1]))


def _check_orbit_axis(outputs, what: str):
    outputs = np.asarray(outputs)
    if outputs.ndim < 3:
        raise ValueError(f"{what} expects outputs (..., |G|, n, d), got shape {outputs.shape}")
    return outputs


class OSP(NamedTuple):
    """Orbit same prediction: how many g keep the predicted class of x."""
    counts: np.ndarray       # (..., n) in 1..|G|
    mean: np.ndarray         # (...)   mean count over inputs
    fraction: np.ndarray     # (...)   mean / |G|
    consistent: np.ndarray   # (...)   share of inputs whose whole orbit gets one class
    group_order: int


def orbit_same_prediction(outputs_on_orbit) -> OSP:
    """OSP, the orbit same prediction of Gerken & Kessel (2024): ``#{g : argmax f(ρ_X(g)x) = argmax f(x)}`` for logits ``(..., |G|, n, C)``."""
    outputs = _check_orbit_axis(outputs_on_orbit, "orbit_same_prediction")
    pred = outputs.argmax(-1)                                 # (..., |G|, n)
    counts = (pred == pred[..., :1, :]).sum(-2)               # (..., n)
    order = outputs.shape[-3]
    mean = counts.mean(-1)
    return OSP(counts, mean, mean / order, (counts == order).mean(-1), order)


def orbit_spread(outputs_on_orbit, group: Transformations | None = None, act_y: ActFn | None = None) -> np.ndarray:
    """Std of f over each orbit, ``sqrt(mean_g ‖f(gx) − mean_g' f(g'x)‖²)``: ``(..., |G|, n, d) -> (..., n)``.

    Zero exactly for an invariant f. With ``act_y`` (ρ_Y, which needs ``group`` for the inverses) the
    outputs are first aligned, ``ρ_Y(g)⁻¹ f(ρ_X(g)x)``: the *aligned* spread, zero exactly for an
    equivariant f. Only for trivial ρ_Y is the plain spread a (semi)norm of the defects
    ``f(ρ_X(g)x) − ρ_Y(g) f(x)``; an equivariant f with non-trivial ρ_Y has a plain spread > 0.
    """
    outputs = _check_orbit_axis(outputs_on_orbit, "orbit_spread")
    if act_y is not None:
        if group is None or not hasattr(group, "inverse"):
            raise ValueError("orbit_spread with act_y needs the group (a FiniteGroup, for ρ_Y(g)⁻¹ = ρ_Y(g⁻¹))")
        if outputs.shape[-3] != group.order:
            raise ValueError(f"outputs have {outputs.shape[-3]} orbit entries, {group.name} has {group.order} elements")
        outputs = np.stack([np.asarray(act_y(group.inverse(g), outputs[..., g, :, :]))
                            for g in range(group.order)], axis=-3)
    centred = outputs - outputs.mean(-3, keepdims=True)
    return np.sqrt((centred ** 2).sum(-1).mean(-2))


def equivariance_error(outputs_on_orbit, group: Transformations, act_y: ActFn | None = None) -> np.ndarray:
    """Mean over g ≠ e of ``‖f(ρ_X(g)x) − ρ_Y(g) f(x)‖``: ``(..., |G|, n, d) -> (..., n)``.

    ``act_y`` defaults to the trivial representation (then this measures invariance).
    """
    outputs = _check_orbit_axis(outputs_on_orbit, "equivariance_error")
    if outputs.shape[-3] != group.order:
        raise ValueError(f"outputs have {outputs.shape[-3]} orbit entries, {group.name} has {group.order} elements")
    if group.order == 1:
        return np.zeros(outputs.shape[:-3] + outputs.shape[-2:-1])
    f_x = outputs[..., 0, :, :]
    errors = [np.linalg.norm(outputs[..., g, :, :] - (np.asarray(act_y(g, f_x)) if act_y else f_x), axis=-1)
              for g in range(1, group.order)]
    return np.mean(errors, axis=0)


def accuracy(logits, labels) -> np.ndarray:
    """Share of correct argmax predictions: logits ``(..., n, C)``, labels ``(n,)`` → ``(...)``."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim < 2 or labels.ndim != 1:
        raise ValueError(f"accuracy expects logits (..., n, C) and labels (n,), got {logits.shape} and {labels.shape}")
    if logits.shape[-2] != labels.shape[-1]:
        raise ValueError(f"{logits.shape[-2]} predictions but {labels.shape[-1]} labels")
    return (logits.argmax(-1) == labels).mean(-1)


def ensemble_mean(member_outputs, axis: int = 0) -> np.ndarray:
    """The ensemble prediction: the mean of member outputs (logits, as in this book) over ``axis``."""
    return np.asarray(member_outputs).mean(axis)


def ensemble_sizes(requested: Sequence[int], members: int) -> np.ndarray:
    """The ensemble sizes to measure for a pool of ``members``: the requested ones that fit, plus 1 and all."""
    if members < 1:
        raise ValueError(f"members must be positive, got {members}")
    return np.asarray(sorted({int(k) for k in requested if 1 <= k <= members} | {1, members}))


def subensemble_means(member_outputs, size: int, axis: int = 0) -> np.ndarray:
    """Means of the ⌊M/k⌋ disjoint blocks of ``size`` = k consecutive members along ``axis``.

    ``member_outputs: (..., M, ...)`` with M on ``axis`` → ``(..., ⌊M/k⌋, ...)``; members left over
    after the last full block are not used. Independent sub-ensembles of one size, without resampling.
    """
    outputs = np.moveaxis(np.asarray(member_outputs), axis, 0)
    M = outputs.shape[0]
    if not 1 <= size <= M:
        raise ValueError(f"ensemble size {size} outside 1..{M}")
    blocks = M // int(size)
    means = outputs[: blocks * size].reshape((blocks, int(size)) + outputs.shape[1:]).mean(1)
    return np.moveaxis(means, 0, axis)
