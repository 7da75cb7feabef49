"""Canonicalisation for C4: rotate every input to an orientation chosen by an invariant rule.

A canonicaliser picks, for each input ``x``, a group element ``k*(x)`` such that
``k*(rot^j x) = k*(x) − j (mod 4)``; then the canonical image ``rot^{k*(x)} x`` is the same for
every element of the orbit of ``x``, and any network applied to it is invariant
(Kaba et al. 2023 learn the canonicaliser; here it is a fixed rule). The rule used here:

    k*(x) = argmax_k  s_k(x),    s_k(x) = ⟨T, rot^k(x)⟩,

with a fixed template ``T`` (:func:`direction_template`): ``T[i, j] = a·(i − c) + b·(j − c)``,
``c`` the centre of the grid. ``s_k`` is then the component of the ink's first moment along the
direction ``(a, b)`` after ``k`` quarter turns: the canonical image is the rotation that moves the
"centre of ink" as far as possible along ``(a, b)`` (default: downwards). Because
``s_k(rot^j x) = s_{k+j}(x)`` holds bit for bit (``rot90`` only permutes the pixels, and each score
is the same sum over the same array), the rule is exactly equivariant where the maximum is
unique. Where it is attained more than once (a **tie**: an image with a symmetry, or a blank one)
the tie-break — the smallest ``k`` — is not, and invariance can fail: :func:`ties` counts them.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

__all__ = ["direction_template", "orientation_scores", "canonical_rotation", "canonicalize", "ties",
           "Canonicalized"]

ORDER = 4


def _check_images(x) -> jnp.ndarray:
    x = jnp.asarray(x)
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
        raise ValueError(f"canonicalisation needs square images (n, h, h, c), got shape {x.shape}")
    return x


def direction_template(size: int, direction: tuple[float, float] = (1.0, 0.0)) -> jnp.ndarray:
    """``(size, size)`` template ``T[i, j] = a·(i − c) + b·(j − c)`` for ``direction = (a, b)``.

    ``(1, 0)`` weighs pixels by how far down they lie (row index grows downwards).
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    a, b = (float(v) for v in direction)
    if a == 0 and b == 0:
        raise ValueError(f"direction must not be zero, got {direction}")
    c = (size - 1) / 2
    i = jnp.arange(size, dtype=jnp.float32) - c
    return a * i[:, None] + b * i[None, :]


def orientation_scores(x, direction: tuple[float, float] = (1.0, 0.0)) -> jnp.ndarray:
    """``s_k(x) = ⟨T, rot^k x⟩`` summed over pixels and channels: ``x: (n, h, h, c) → (n, 4)``."""
    x = _check_images(x)
    template = direction_template(x.shape[1], direction).astype(x.dtype)[None, :, :, None]
    return jnp.stack([(template * jnp.rot90(x, k, axes=(1, 2))).sum(axis=(1, 2, 3))
                      for k in range(ORDER)], -1)


def canonical_rotation(x, direction: tuple[float, float] = (1.0, 0.0)) -> jnp.ndarray:
    """``k*(x) = argmax_k s_k(x)`` (ties: the smallest k): ``x: (n, h, h, c) → (n,)`` in 0..3."""
    return jnp.argmax(orientation_scores(x, direction), axis=-1)


def canonicalize(x, direction: tuple[float, float] = (1.0, 0.0)) -> jnp.ndarray:
    """The canonical images ``rot^{k*(x)} x``: ``(n, h, h, c) → (n, h, h, c)``."""
    x = _check_images(x)
    k = canonical_rotation(x, direction)
    rotations = jnp.stack([jnp.rot90(x, j, axes=(1, 2)) for j in range(ORDER)])   # (4, n, h, h, c)
    return jnp.take_along_axis(rotations, k[None, :, None, None, None], axis=0)[0]


def ties(x, direction: tuple[float, float] = (1.0, 0.0), rtol: float = 0.0) -> np.ndarray:
    """``(n,)`` bool: the maximal score is attained by more than one rotation.

    With ``rtol > 0`` also near-ties: a second score within ``rtol·max_k |s_k|`` of the maximum.
    """
    if rtol < 0:
        raise ValueError(f"rtol must be non-negative, got {rtol}")
    s = np.asarray(orientation_scores(x, direction), dtype=np.float64)
    top = s.max(-1, keepdims=True)
    close = s >= top - rtol * np.abs(s).max(-1, keepdims=True)
    return close.sum(-1) > 1


class Canonicalized(nn.Module):
    """``net`` applied to canonicalised inputs: ``(n, h, h, c) → net's output``, C4-invariant up to ties."""

    net: nn.Module
    direction: tuple[float, float] = (1.0, 0.0)

    @nn.compact
    def __call__(self, x):
        return self.net(canonicalize(x, self.direction))
