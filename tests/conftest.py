"""Small fixtures shared by the eqlib unit tests (kept tiny: the whole unit suite runs in about a minute)."""
from __future__ import annotations

import jax
import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded NumPy generator for each test."""
    return np.random.default_rng(0)


@pytest.fixture
def restore_x64():
    """Restore ``jax_enable_x64`` after a test that toggles it, whatever the test does."""
    previous = jax.config.jax_enable_x64
    yield previous
    jax.config.update("jax_enable_x64", previous)
