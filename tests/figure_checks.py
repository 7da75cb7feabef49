"""Shared checks for the figure tests (``tests/test_plots_*.py``): a figure's axes are labelled."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


@pytest.fixture
def close_figures():
    """Close every figure after the test (use with ``pytest.mark.usefixtures`` or autouse)."""
    yield
    plt.close("all")


def labelled_axes(fig, n_axes: int, *, every_ylabel: bool = False, suptitle: bool = False) -> list:
    """Assert ``fig`` has ``n_axes`` axes, each with an x label and a title, a y label on the first
    (on every axis with ``every_ylabel``) and, with ``suptitle``, a figure title; return the axes."""
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert len(axes) == n_axes
    for ax in axes:
        assert ax.get_xlabel().strip() and ax.get_title().strip()
        assert ax.get_ylabel().strip() or not every_ylabel
    assert axes[0].get_ylabel().strip()
    if suptitle:
        assert fig._suptitle is not None and fig._suptitle.get_text().strip()
    return axes
