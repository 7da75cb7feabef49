"""A tiny C4 (indeed D4) invariant regression problem for the tour and the tests.

Inputs are ``(n, size, size, 1)`` images made of a few Gaussian blobs of random sign, width and
position; the target is the intensity-weighted second moment about the image centre,

    y(x) = Σ_ij x_ij² · r_ij² / Σ_ij r_ij²,   r_ij = distance of pixel (i, j) from the centre,

which every rotation and reflection of the square leaves unchanged ("how far out is the ink?").

:func:`cross_product_data` is the equivariant counterpart for vectors: pairs ``(u, v)`` in R³
and ``u × v``, which every rotation R maps to ``R u × R v = R (u × v)``.
"""
from __future__ import annotations

import numpy as np


def _radius2(size: int) -> np.ndarray:
    c = (size - 1) / 2
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return (i - c) ** 2 + (j - c) ** 2


def second_moment(x: np.ndarray) -> np.ndarray:
    """The invariant target ``(n, h, h, 1) -> (n, 1)``."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
        raise ValueError(f"expected square images (n, h, h, c), got shape {x.shape}")
    r2 = _radius2(x.shape[1])
    return ((x ** 2).sum(-1) * r2).sum((1, 2))[:, None] / r2.sum()


def blob_images(n: int, size: int = 8, blobs: int = 2, seed: int = 0) -> np.ndarray:
    """``(n, size, size, 1)`` float32 images: sums of ``blobs`` random Gaussian bumps."""
    if n < 1 or size < 2 or blobs < 1:
        raise ValueError(f"need n ≥ 1, size ≥ 2, blobs ≥ 1; got n={n}, size={size}, blobs={blobs}")
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    centres = rng.uniform(0, size - 1, size=(n, blobs, 2))
    widths = rng.uniform(0.6, 1.8, size=(n, blobs))
    signs = rng.choice([-1.0, 1.0], size=(n, blobs))
    d2 = (i[None, None] - centres[..., 0, None, None]) ** 2 + (j[None, None] - centres[..., 1, None, None]) ** 2
    x = (signs[..., None, None] * np.exp(-d2 / (2 * widths[..., None, None] ** 2))).sum(1)
    return x[..., None].astype(np.float32)


def blob_regression(n: int, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, size, size, 1)`` and their invariant targets ``(n, 1)``, both float32."""
    x = blob_images(n, size, seed=seed)
    return x, second_moment(x).astype(np.float32)


def cross_product_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian vector pairs ``(n, 2, 3)`` and their cross products ``(n, 3)``, float32, drawn from ``rng``."""
    uv = rng.normal(size=(n, 2, 3)).astype(np.float32)
    return uv, np.cross(uv[:, 0], uv[:, 1])
