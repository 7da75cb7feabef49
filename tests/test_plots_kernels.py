"""The figures of the kernel chapters (eqlib.plots.kernels) on tiny synthetic inputs."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from figure_checks import close_figures, labelled_axes  # noqa: E402,F401

from eqlib import plots  # noqa: E402
from eqlib.breaking import monte_carlo_split  # noqa: E402
from eqlib.plots import kernels  # noqa: E402

RNG = np.random.default_rng(0)
WIDTHS = np.array([8, 16, 32, 64])


@pytest.fixture(autouse=True)
def _close_figures(close_figures):
    yield


def _check(fig, n_axes: int, suptitle: bool = True) -> list:
    """The figure has ``n_axes`` axes, each with x label and title, and a y label on the first."""
    return labelled_axes(fig, n_axes, suptitle=suptitle)


def test_every_function_is_exported():
    assert kernels.__all__ and len(set(kernels.__all__)) == len(kernels.__all__)
    for name in kernels.__all__:
        assert name in plots.__all__ and callable(getattr(plots, name))
        assert getattr(plots, name).__doc__.strip()


def test_kernels_at_initialisation():
    K = RNG.normal(size=(4, 4))
    K = K @ K.T
    errors = 0.5 * WIDTHS ** -0.5
    fig = plots.kernels_at_initialisation(K, K + 0.01, 100, WIDTHS, errors, (-0.5, np.log(0.5)))
    _check(fig, 2)


def test_ensemble_error_vs_width():
    keys = ("member", "mean_width", "mean_total", "cov_width", "cov_mc", "cov_total")
    errors = {k: RNG.uniform(0.01, 1, size=len(WIDTHS)) for k in keys}
    fits = {k: (-0.5, 0.0) for k in ("member", "mean_width", "cov_width")}
    fig = plots.ensemble_error_vs_width(WIDTHS, errors, fits, mc_floor=0.05, members=16,
                                        steps=10)
    axes = _check(fig, 2)
    assert axes[1].get_ylabel().strip()


def test_ensemble_over_training():
    times = np.linspace(0, 10, 11)
    cov = np.stack([np.eye(3) * (1 + t) for t in times])                   # (11, 3, 3)
    record = [0, 5, 10]
    fig = plots.ensemble_over_training(times, RNG.normal(size=(11, 3)), cov, record,
                                       RNG.normal(size=(3, 3)), np.ones((3, 3)), members=8,
                                       width=64, panels={"first": 0, "third": 2})
    _check(fig, 2)


def test_augmentation_control():
    times = np.concatenate([[0.0], np.logspace(-1, 2, 4), [np.inf]])
    tiny, large = np.full(len(times), 1e-13), np.r_[0.0, np.full(len(times) - 1, 0.1)]
    violations = {(case, name): (tiny, large) for case in ("case A", "case B")
                  for name in ("test", "far")}
    axes = _check(plots.augmentation_control(times, violations), 2)
    assert "∞" in [t.get_text() for t in axes[0].get_xticklabels()]


def test_members_vs_ensemble():
    times = [0, 3, 10]
    fig = plots.members_vs_ensemble(times, RNG.uniform(0.1, 1, size=(3, 5)), [0.2, 0.3, 0.3],
                                    [0.2, 0.25, 0.3], [0.5, 0.6, 0.7], [0.0, 1e-12, 1e-12])
    _check(fig, 1, suptitle=False)


def test_proof_diagram():
    fig = plots.proof_diagram()
    (ax,) = fig.get_axes()
    assert ax.get_title().strip() and not ax.axison
    texts = " ".join(t.get_text() for t in ax.texts)
    for phrase in ("kernel invariance", "permutation lemma", "targets permute", "test point",
                   "training index", "output space"):
        assert phrase in texts
    assert "measured" not in texts
    labelled = plots.proof_diagram([1e-16, 3e-15, 5e-16])
    assert " ".join(t.get_text() for t in labelled.axes[0].texts).count("measured") == 3
    fig.canvas.draw()                    # the mathtext parses
    labelled.canvas.draw()
    with pytest.raises(ValueError, match="3 entries"):
        plots.proof_diagram([1.0])


def test_finite_ensemble_violation():
    sizes = [1, 2, 4, 8]
    measured = RNG.uniform(0.9, 1.1, size=(4, 6)) / np.sqrt(sizes)[:, None]
    predicted = RNG.uniform(0.9, 1.1, size=(4, 7)) / np.sqrt(sizes)[:, None]
    _check(plots.finite_ensemble_violation(sizes, measured, predicted, slope=-0.5), 1,
           suptitle=False)


def test_finite_width_split():
    defect = {int(w): monte_carlo_split(RNG.normal(size=(5, 3))) for w in WIDTHS}
    distance = {int(w): monte_carlo_split(RNG.normal(loc=1 / w, size=(5, 3))) for w in WIDTHS}
    axes = _check(plots.finite_width_split(defect, distance), 2)
    assert axes[1].get_ylabel().strip()


def test_subgroup_augmentation_floor():
    sizes = [1, 2, 4]
    m = RNG.uniform(0.9, 1.1, size=(3, 4)) / np.sqrt(sizes)[:, None]
    fig = plots.subgroup_augmentation_floor(sizes, m, m, m + 0.1, m + 0.1, infinite_haar=0.1)
    _check(fig, 1, suptitle=False)
