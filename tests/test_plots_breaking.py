"""The what_breaks_it figures added for the tail bound and the covering bound, on tiny inputs."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from figure_checks import close_figures, labelled_axes  # noqa: E402,F401

from eqlib import plots  # noqa: E402
from eqlib.breaking import gaussian_tail_bound  # noqa: E402

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _close_figures(close_figures):
    yield


def _labelled(fig, n_axes: int) -> list:
    return labelled_axes(fig, n_axes, every_ylabel=True)


def test_new_functions_are_exported():
    for name in ("tail_bound_check", "covering_bound_violation"):
        assert name in plots.__all__ and getattr(plots, name).__doc__.strip()


def test_tail_bound_check():
    a = np.array([1.0, 2.0, 3.0])
    bound = gaussian_tail_bound(a)
    tails = {"GP draws": RNG.uniform(0.5, 1, size=(2, 3)) * bound,
             "trained": RNG.uniform(0.8, 2, size=(2, 3)) * bound}
    fig = plots.tail_bound_check(a, tails, [1, 4], bound)
    (ax,) = _labelled(fig, 1)
    labels = [line.get_label() for line in ax.get_lines()]
    assert "the bound (after Lemma B.4)" in labels and "trained, M = 4" in labels
    # one line per source and size, plus the bound and the exact Gaussian tail
    assert len(ax.get_lines()) == 2 + 2 * 2
    # the exact tail is drawn relative to the bound: below 1 everywhere
    exact = next(line for line in ax.get_lines() if line.get_label() == "exact Gaussian tail")
    assert np.all(exact.get_ydata() < 1)


def test_covering_bound_violation():
    times = [0.0, 10.0, np.inf]
    qs = [2, 4, 8]
    plane = {q: dict(kappa=2 * np.sin(np.pi / (2 * q)),
                     violation=np.abs(RNG.normal(size=(3, 5))) / q ** 3,
                     A=np.outer([0.0, 10.0, np.inf], np.ones(5)) * 7.0) for q in qs}
    conditioning = {q: dict(t_eff=100.0 * q ** 2, cond=50.0 * q ** 2) for q in qs + [16]}
    images = {q: dict(kappa=2 * np.sin(np.pi / (2 * q)), violation=np.array([0, 0.1, 0.2]) / q,
                      on_group=np.array([0, 0.0, 1e-9 if q == 4 else 0.1])) for q in (4, 8)}
    fig = plots.covering_bound_violation(times, plane, images, conditioning)
    left, middle, right = _labelled(fig, 3)
    assert fig._suptitle is not None and fig._suptitle.get_text().strip()
    # left: a violation line for t = 10 and t = ∞, a bound only for the finite t
    bounds = [line for line in left.get_lines()
              if line.get_linestyle() == ":" and len(line.get_ydata())]
    assert len(bounds) == 1
    np.testing.assert_allclose(bounds[0].get_ydata(), [70.0 * plane[q]["kappa"] for q in qs])
    # middle: the t = ∞ constant against q, and a reference line for every finite t > 0
    assert middle.get_xscale() == "log" and len(middle.get_lines()) >= 3
    assert any("t_eff" in line.get_label() or "λ_min" in line.get_label()
               for line in middle.get_lines())
    assert right.get_xscale() == "log"


def test_finite_ensemble_violation_credits_the_lemma_it_follows():
    sizes = [1, 2, 4]
    measured = RNG.uniform(0.1, 1, size=(3, 5))
    fig = plots.finite_ensemble_violation(sizes, measured, measured[:, :4], -0.5)
    labels = [line.get_label() for line in fig.get_axes()[0].get_lines()]
    assert any(label.startswith("after Lemma B.4") for label in labels)
