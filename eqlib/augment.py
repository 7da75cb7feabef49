"""Full-orbit data augmentation and the index permutations π_g it induces (the permutation lemma).

The augmented set stacks the orbit group-element-major: index ``k = h·n + i`` holds
``(ρ_X(h) x_i, ρ_Y(h) y_i)``. Applying ``g`` maps it to index ``π_g(k) = (g∘h)·n + i``, so

    ρ_X(g) X_aug[k] = X_aug[π_g(k)]   and   ρ_Y(g) Y_aug[k] = Y_aug[π_g(k)].
"""
from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from .groups import ActFn, FiniteGroup


class AugmentedData(NamedTuple):
    x: jnp.ndarray            # (|G|·n, ...) inputs
    y: jnp.ndarray            # (|G|·n, ...) targets
    permutations: np.ndarray  # (|G|, |G|·n) int: permutations[g] = π_g


def check_same_length(x, y) -> None:
    """Raise ValueError unless inputs and targets have the same number of samples."""
    if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of samples, got shapes {tuple(x.shape)} and {tuple(y.shape)}")


def orbit_permutations(group: FiniteGroup, n: int) -> np.ndarray:
    """π_g for every g on a full orbit of ``n`` points: ``(|G|, |G|·n)`` with ``π_g(h·n+i) = (g∘h)·n+i``."""
    i = np.arange(n)
    return np.stack([(group.table[g][:, None] * n + i[None, :]).reshape(-1) for g in range(group.order)])


def permutation_matrix(perm: np.ndarray) -> np.ndarray:
    """The matrix Π with ``(Π v)_k = v_{π(k)}``: ``(N,) -> (N, N)``; a kernel Gram matrix is invariant iff ΠΘΠᵀ = Θ."""
    perm = np.asarray(perm)
    if sorted(perm.tolist()) != list(range(len(perm))):
        raise ValueError(f"not a permutation of 0..{len(perm) - 1}: {perm}")
    return np.eye(len(perm))[perm]


def augment_full_orbit(x, y, group: FiniteGroup, act_y: ActFn | None = None, check: bool | None = None,
                       atol: float = 1e-5) -> AugmentedData:
    """Augment ``(x: (n, ...), y: (n, ...))`` with every group element; see the module docstring.

    ``act_y`` is ρ_Y (default: trivial, i.e. invariant targets). With ``check`` (default: when the
    group acts exactly) the permutation identities are verified numerically; a failure means the
    action is not a representation of the group and raises ValueError.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    check_same_length(x, y)
    act_y = _identity if act_y is None else act_y
    xs = jnp.concatenate([group.act(h, x) for h in range(group.order)])
    ys = jnp.concatenate([act_y(h, y) for h in range(group.order)])
    perms = orbit_permutations(group, x.shape[0])
    if group.exact if check is None else check:
        for g in range(group.order):
            for name, arr, act in (("ρ_X", xs, group.act), ("ρ_Y", ys, act_y)):
                err = float(jnp.max(jnp.abs(act(g, arr) - arr[perms[g]]))) if arr.size else 0.0
                if err > atol * max(1.0, float(jnp.max(jnp.abs(arr)))):
                    raise ValueError(
                        f"{name}({group.labels[g]}) does not permute the augmented set (max deviation {err:.3g}): "
                        f"the action is not a representation of {group.name}")
    return AugmentedData(xs, ys, perms)


def _identity(g: int, y):
    return y
