"""The figures of the chapter *Beyond the paper I* (eqlib.plots.beyond_kernels) on tiny inputs."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from figure_checks import close_figures, labelled_axes  # noqa: E402,F401

from eqlib.plots import beyond_kernels as bk  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures(close_figures):
    yield


def _labelled(fig, n_axes: int) -> list:
    return labelled_axes(fig, n_axes)


def test_identity_gaps():
    times = [0.0, 10.0, np.inf]
    fig = bk.identity_gaps(times, {"invariant": [0.0, 1e-15, 2e-14], "control": [0, 1e-3, 1e-2]},
                           1e-10)
    (ax,) = _labelled(fig, 1)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "10", "∞"]
    with pytest.raises(ValueError, match="gaps"):
        bk.identity_gaps(times, {"bad": [1.0, 2.0]}, 1e-10)


def test_formulation_cost():
    fig = bk.formulation_cost([16], [2, 4, 8], [0.01, 0.08, 0.6], [0.001, 0.002, 0.004], "G")
    axes = _labelled(fig, 2)
    assert len(axes[1].get_lines()) == 3                       # measured + two guides
    fig = bk.formulation_cost([8, 16, 32], [4], [0.01, 0.08, 0.6], [0.001, 0.002, 0.004], "n")
    _labelled(fig, 2)
    with pytest.raises(ValueError, match="vary"):
        bk.formulation_cost([8], [4], [1.0], [1.0], "t")


def test_planner_validation():
    rows = np.array([[0.1, 2, 0.11, 0.1, 0.12], [0.05, 8, 0.052, 0.048, 0.056]])
    fig = bk.planner_validation({"tour": {"Σ_t": rows, "4 members": rows * 1.01},
                                 "FashionMNIST": {"4 members": rows}})
    axes = _labelled(fig, 2)
    assert axes[0].get_xscale() == "log"
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        bk.planner_validation({"x": {"y": rows[:, :3]}})
