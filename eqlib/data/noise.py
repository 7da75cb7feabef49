"""Pure-noise images: out-of-distribution inputs with no structure at all."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["NOISE_KINDS", "noise_images"]

NOISE_KINDS = ("gaussian", "uniform")


def noise_images(n: int, shape: Sequence[int] = (28, 28, 1), kind: str = "gaussian", seed: int = 0, *,
                 loc: float = 0.0, scale: float = 1.0, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """``(n, *shape)`` float32 i.i.d. noise: N(loc, scale²) for ``"gaussian"``, U[low, high) for ``"uniform"``.

    Deterministic in ``seed`` (NumPy's default generator); the defaults give standard-normal
    pixels or uniform pixels in the [0, 1] range of the image loaders.
    """
    shape = tuple(int(s) for s in shape)
    if int(n) < 0 or not shape or any(s < 1 for s in shape):
        raise ValueError(f"need n >= 0 and a non-empty shape of positive sizes, got n={n}, shape={shape}")
    rng = np.random.default_rng(seed)
    size = (int(n), *shape)
    if kind == "gaussian":
        if not scale > 0:
            raise ValueError(f"gaussian noise needs scale > 0, got {scale}")
        return rng.normal(loc, scale, size).astype(np.float32)
    if kind == "uniform":
        if not high > low:
            raise ValueError(f"uniform noise needs high > low, got low={low}, high={high}")
        return rng.uniform(low, high, size).astype(np.float32)
    raise ValueError(f"kind must be one of {NOISE_KINDS}, got {kind!r}")
