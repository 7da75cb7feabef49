"""Synthetic labelled images of simple shapes: a rotation-symmetric classification task without downloads.

Each image shows one shape — ``disc``, ``ring``, ``square`` (outline), ``cross``, ``bar``, ``L``,
``T`` or ``triangle`` — at a random position, size, stroke width, brightness and orientation (any
angle; chiral shapes are mirrored at random), rendered with anti-aliased edges from its signed
distance function, plus i.i.d. Gaussian pixel noise. Returned as ``(n, size, size, 1)`` float32
images and ``(n,)`` int64 labels.

Why the task is symmetric
-------------------------
A sample is a *scene* (:class:`ShapeParams`) drawn from a distribution that is invariant under
every rotation about the image centre (uniform orientation, centre uniform on a square about the
image centre) and under reflections (random mirroring), then rendered on the pixel grid. Rendering
takes an optional extra scene rotation ``rotation`` (radians, counter-clockwise, the convention of
:func:`eqlib.groups.rotate_image`). Because the pixel grid is mapped to itself by quarter turns,

    render_shapes(p, size, θ + π/2) == rot90(render_shapes(p, size, θ))     (exactly, up to rounding)

so every class is closed under the group C4 (indeed D4) *in distribution*: the rot90 of a disc
image is a disc image of the same probability. Rotations by other angles are exact too — the scene
is re-rendered, not interpolated — which makes ``rotation=`` a clean way to probe SO(2).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

SHAPE_CLASSES: tuple[str, ...] = ("disc", "ring", "square", "cross", "bar", "L", "T", "triangle")
MIN_SIZE = 8

# Extent of each shape (largest distance of ink from its centre) in units of (radius, half-width):
# extent = a·r + b·w. Used to keep the shape inside the frame.
_EXTENT = {
    "disc": (1.0, 0.0), "ring": (1.0, 1.0), "square": (np.sqrt(2), np.sqrt(2)), "cross": (1.0, 1.0),
    "bar": (1.0, 1.5), "L": (np.sqrt(2), 0.0), "T": (np.sqrt(2), 0.0), "triangle": (1.25, 0.0),
}


class ShapeParams(NamedTuple):
    """One random scene per image; lengths in pixels, angles in radians."""

    labels: np.ndarray      # (n,) int64, index into ``classes``
    classes: tuple          # the class names
    centres: np.ndarray     # (n, 2) offset of the shape centre from the image centre (row, column)
    radii: np.ndarray       # (n,) half-extent of the shape
    widths: np.ndarray      # (n,) half stroke width
    angles: np.ndarray      # (n,) orientation of the shape
    mirror: np.ndarray      # (n,) +1 or -1 (reflected shape)
    amplitudes: np.ndarray  # (n,) brightness of the ink


def _resolve_classes(classes: Sequence[str] | None) -> tuple[str, ...]:
    if classes is None:
        return SHAPE_CLASSES
    if isinstance(classes, str):
        raise ValueError(f"classes must be a sequence of names from {SHAPE_CLASSES}, got the string {classes!r}")
    classes = tuple(classes)
    unknown = [c for c in classes if c not in SHAPE_CLASSES]
    if unknown:
        raise ValueError(f"unknown shape class(es) {unknown}; choose from {SHAPE_CLASSES}")
    if len(classes) < 1 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be a non-empty sequence of distinct names, got {classes}")
    return classes


def _check_size(size) -> int:
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(f"size must be an integer ≥ {MIN_SIZE} (pixels), got {size!r}")
    return int(size)


def sample_shape_params(n: int, size: int = 16, classes: Sequence[str] | None = None, seed: int = 0) -> ShapeParams:
    """Draw ``n`` random scenes for ``size × size`` images; the labels are balanced (counts differ by ≤ 1)."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    size, classes = _check_size(size), _resolve_classes(classes)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(classes)).astype(np.int64)
    radii = rng.uniform(0.2, 0.32, n) * size
    widths = rng.uniform(0.05, 0.075, n) * size
    angles = rng.uniform(0.0, 2 * np.pi, n)
    mirror = rng.choice([-1.0, 1.0], n)
    amplitudes = rng.uniform(0.7, 1.0, n)
    coef = np.array([_EXTENT[classes[k]] for k in labels])                         # (n, 2)
    extent = coef[:, 0] * radii + coef[:, 1] * widths
    room = np.maximum(size / 2 - 0.5 - extent, 0.0)                                 # C4-symmetric square
    centres = rng.uniform(-1.0, 1.0, (n, 2)) * room[:, None]
    return ShapeParams(labels, classes, centres, radii, widths, angles, mirror, amplitudes)


# ----------------------------------------------------------------------- signed distance functions

def _box(x, y, a, b):
    """Signed distance to the axis-parallel box |x| ≤ a, |y| ≤ b."""
    dx, dy = np.abs(x) - a, np.abs(y) - b
    outside = np.hypot(np.maximum(dx, 0.0), np.maximum(dy, 0.0))
    return outside + np.minimum(np.maximum(dx, dy), 0.0)


def _triangle(x, y, r):
    """Signed distance to the filled equilateral triangle with circumradius ``r`` (apex towards +y)."""
    k = np.sqrt(3.0)
    side = r * k / 2                      # half the side length
    px, py = np.abs(x) - side, y + r / 2
    fold = px + k * py > 0
    px, py = np.where(fold, (px - k * py) / 2, px), np.where(fold, (-k * px - py) / 2, py)
    px = px - np.clip(px, -2 * side, 0.0)
    return -np.hypot(px, py) * np.sign(py)


def _sdf(name: str, x, y, r, w):
    if name == "disc":
        return np.hypot(x, y) - r
    if name == "ring":
        return np.abs(np.hypot(x, y) - r) - w
    if name == "square":
        return np.abs(_box(x, y, r, r)) - w
    if name == "cross":
        return np.minimum(_box(x, y, r, w), _box(x, y, w, r))
    if name == "bar":
        return _box(x, y, r, 1.5 * w)
    if name == "L":
        return np.minimum(_box(x + r - w, y, w, r), _box(x, y + r - w, r, w))
    if name == "T":
        return np.minimum(_box(x, y - r + w, r, w), _box(x, y, w, r))
    if name == "triangle":
        return _triangle(x, y, 1.25 * r)
    raise ValueError(f"unknown shape {name!r}")


def render_shapes(params: ShapeParams, size: int, rotation: float | np.ndarray = 0.0) -> np.ndarray:
    """Noise-free images ``(n, size, size, 1)`` float32 of the scenes, each rotated by ``rotation``.

    ``rotation`` (radians, counter-clockwise about the image centre): a number or an ``(n,)`` array.
    ``rotation = π/2`` gives exactly ``np.rot90(·, 1, axes=(1, 2))`` of ``rotation = 0``.
    """
    size = _check_size(size)
    n = len(params.labels)
    rotation = np.asarray(rotation, dtype=np.float64)
    if rotation.ndim > 1 or (rotation.ndim == 1 and rotation.shape[0] != n):
        raise ValueError(f"rotation must be a number or an array of shape ({n},), got shape {rotation.shape}")
    if not np.all(np.isfinite(rotation)):
        raise ValueError(f"rotation must be finite, got {rotation}")
    rotation = np.broadcast_to(rotation, (n,))
    c = (size - 1) / 2
    i, j = np.meshgrid(np.arange(size) - c, np.arange(size) - c, indexing="ij")
    cos, sin = np.cos(rotation)[:, None, None], np.sin(rotation)[:, None, None]
    # the pixel (u, v) of the rotated scene shows the point R(θ)ᵀ(u, v) of the scene (as rotate_image)
    su, sv = cos * i + sin * j, -sin * i + cos * j
    du, dv = su - params.centres[:, 0, None, None], sv - params.centres[:, 1, None, None]
    ca, sa = np.cos(params.angles)[:, None, None], np.sin(params.angles)[:, None, None]
    x = ca * du + sa * dv
    y = (-sa * du + ca * dv) * params.mirror[:, None, None]
    images = np.empty((n, size, size), dtype=np.float64)
    for k, name in enumerate(params.classes):
        sel = params.labels == k
        if sel.any():
            d = _sdf(name, x[sel], y[sel], params.radii[sel, None, None], params.widths[sel, None, None])
            images[sel] = np.clip(0.5 - d, 0.0, 1.0)          # one-pixel anti-aliased edge
    images *= params.amplitudes[:, None, None]
    return images[..., None].astype(np.float32)


def shape_images(n: int, size: int = 16, classes: Sequence[str] | None = None, noise: float = 0.1,
                 seed: int = 0, rotation: float | np.ndarray = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Labelled shape images: ``x: (n, size, size, 1)`` float32 and ``labels: (n,)`` int64.

    ``labels[i]`` indexes ``classes`` (default: all of :data:`SHAPE_CLASSES`). ``noise`` is the std of
    the i.i.d. Gaussian pixel noise; ``rotation`` rotates each scene (not the noise) about the image
    centre. The same ``seed`` gives the same scenes and the same noise whatever ``rotation`` is.
    """
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number ≥ 0, got {noise!r}")
    params = sample_shape_params(n, size, classes, seed)
    x = render_shapes(params, size, rotation)
    noise_rng = np.random.default_rng([seed, 1])
    x = x + (noise * noise_rng.standard_normal(x.shape)).astype(np.float32)
    return x, params.labels
