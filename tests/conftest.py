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


#: Test files that take longest (the executed book build, the Colab-like install): collected first,
#: so that with the README's ``-n 2 --dist loadfile`` (pytest-xdist) they start at once and the
#: rest of the suite runs beside them.
LONGEST_FIRST = ("test_rendered_pages.py", "test_colab.py")


def pytest_collection_modifyitems(session, config, items):
    """Move the files of :data:`LONGEST_FIRST` to the front; the order within files is kept."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))
