"""The figures of the tour, groups, equivariance and augmentation chapters, on tiny inputs.

Each function of eqlib.plots.basics must return one Figure whose axes are labelled (a title
on every panel; axis labels on every panel that is not an image) and which says what to see.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from eqlib import plots  # noqa: E402
from eqlib.augment import orbit_permutations  # noqa: E402
from eqlib.groups import CyclicRotations, Dihedral4, representation_matrix  # noqa: E402
from eqlib.plots import basics  # noqa: E402

C4, D4 = CyclicRotations(4), Dihedral4()


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _main_axes(fig: Figure) -> list:
    """The figure's panels, without colour bars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _check(fig: Figure, panels: int, *, plotted: int = 0) -> None:
    """One Figure of ``panels`` titled panels; the last ``plotted`` of them are not images.

    Every plotted panel has an x label, the first of them a y label (the others may share it).
    """
    assert isinstance(fig, Figure)
    axes = _main_axes(fig)
    assert len(axes) == panels, [ax.get_title() for ax in axes]
    assert all(ax.get_title() for ax in axes), "every panel needs a title"
    if len(axes) > 1:
        assert fig.get_suptitle(), "a suptitle says what to see"
    if plotted:
        assert all(ax.get_xlabel() for ax in axes[-plotted:])
        assert axes[-plotted].get_ylabel()


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_every_function_is_exported_and_tested():
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")}
    assert set(basics.__all__) <= tested, set(basics.__all__) - tested
    assert set(basics.__all__) <= set(plots.__all__)


def test_target_orbit():
    orbit = _rng().normal(size=(4, 5, 5, 1))
    fig = plots.target_orbit(orbit, np.ones((4, 1)), C4)
    _check(fig, 4)
    assert "C4" in fig.get_suptitle()


def test_ensemble_spread_bars():
    spread = {(training, data, kind): v for v, (training, data, kind) in enumerate(
        (t, d, k) for t in ("augmented", "no augmentation") for d in ("test", "noise")
        for k in ("member", "ensemble"))}
    fig = plots.ensemble_spread_bars(spread, members=3)
    _check(fig, 1, plotted=1)
    ax = fig.axes[0]
    assert len(ax.patches) == 8 and "M = 3" in ax.get_title()


def test_group_orbit():
    orbit = np.asarray(D4.orbit(_rng().normal(size=(1, 4, 4, 1))))[:, 0, ..., 0]
    fig = plots.group_orbit(orbit, D4)
    _check(fig, 8)
    assert "4×4" in fig.get_suptitle()


def test_cayley_tables():
    fig = plots.cayley_tables(C4, D4)
    _check(fig, 2, plotted=2)
    assert len(fig.axes[1].texts) == 64  # one label per cell


def test_representation_matrices():
    rho = np.stack([representation_matrix(C4, g, (2, 2, 1)) for g in range(4)])
    fig = plots.representation_matrices(rho, C4)
    _check(fig, 4)
    assert all(ax.get_xlabel() for ax in fig.axes) and fig.axes[0].get_ylabel()
    assert "2×2" in fig.get_suptitle()


def test_rotation_round_trip():
    image = _rng().normal(size=(1, 6, 6, 1))
    sigmas = [0.5, 1.0, 2.0]
    errors = {(4, 6): np.zeros(3), (8, 6): np.array([0.5, 0.2, 0.1]),
              (8, 8): np.array([0.4, 0.1, 0.05]), (16, 6): np.array([0.6, 0.3, 0.2])}
    fig = plots.rotation_round_trip(image, 0.9 * image, errors, sigmas, sigma=1.0)
    _check(fig, 4, plotted=1)
    assert len(fig.axes[3].lines) == 3  # the exact group (all zeros) is not drawn
    assert fig.axes[3].get_yscale() == "log"


def test_shape_classes():
    x = _rng().normal(size=(6, 5, 5, 1))
    y = np.array([0, 1, 2, 0, 1, 2])
    fig = plots.shape_classes(x, y, np.rot90(x, axes=(1, 2)), ["a", "b", "c"])
    _check(fig, 6)


def test_osp_histograms():
    rng = _rng()
    summary = {(m, d): {"counts": rng.integers(1, 5, size=(2, 7)), "osp": 3.0, "chance": 1.5}
               for m in ("untrained", "trained", "group-averaged")
               for d in ("test", "blobs", "noise")}
    fig = plots.osp_histograms(summary, C4)
    _check(fig, 3, plotted=3)
    assert fig.axes[0].get_ylabel()
    assert len(fig.axes[0].patches) == 3 * 4  # three models, OSP values 1..4


def test_orbit_predictions():
    orbit = _rng().normal(size=(4, 5, 5, 1))
    fig = plots.orbit_predictions(orbit, np.array([1, 1, 0, 1]), 1, ["a", "b"], C4)
    _check(fig, 4)
    assert "OSP = 3" in fig.get_suptitle()
    assert fig.axes[2].title.get_color() != fig.axes[0].title.get_color()  # wrong: red


def test_augmented_set():
    n = 2
    x = np.asarray(C4.orbit(_rng().normal(size=(n, 4, 4, 1)))).reshape(-1, 4, 4, 1)
    fig = plots.augmented_set(x, np.zeros((4 * n, 2)), n, C4)
    _check(fig, 4 * n)


def test_permutation_matrices():
    fig = plots.permutation_matrices(orbit_permutations(C4, 2), 2, C4)
    _check(fig, 4)
    assert all(ax.get_xlabel() for ax in fig.axes) and fig.axes[0].get_ylabel()


def test_kernel_invariance():
    violation = {"ok": [1e-16, 0.0], "broken": [0.1, 0.2]}
    eps = np.logspace(-3, 0, 4)
    fig = plots.kernel_invariance(violation, eps, np.stack([eps, eps], 1),
                                  {"ok": "D4", "broken": "C4"})
    _check(fig, 2, plotted=2)
    assert "1 compatible, 1 broken" in fig.axes[0].get_title()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["ok (D4)", "broken (C4)"]


def test_block_circulant_gram():
    n = 2
    theta = _rng().normal(size=(4 * n, 4 * n))
    fig = plots.block_circulant_gram(theta, theta, theta - theta.mean(), n, C4)
    _check(fig, 3, plotted=3)
    assert len(fig.axes) == 6  # and a colour bar each
