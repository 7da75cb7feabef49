"""The figures of the random-versus-systematic section (eqlib.plots.beyond_random)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from figure_checks import close_figures, labelled_axes  # noqa: E402,F401

from eqlib.plots import beyond_random as br  # noqa: E402

RNG = np.random.default_rng(0)
EPOCHS = np.arange(0, 50, 10)
SIZES = np.array([1, 2, 4, 8])
SETS = ("test", "noise")


@pytest.fixture(autouse=True)
def _close_figures(close_figures):
    yield


def _interval(length: int) -> np.ndarray:
    est = RNG.uniform(0.1, 1, size=length)
    return np.stack([est, 0.9 * est, 1.1 * est], -1)


def _check(fig, n_axes: int) -> list:
    return labelled_axes(fig, n_axes, suptitle=True)


def test_every_function_is_exported_and_documented():
    assert set(br.__all__) == {"spread_over_training", "spread_vs_members", "ratio_over_training"}
    for name in br.__all__:
        assert getattr(br, name).__doc__.strip()


def test_spread_over_training_draws_both_schemes_per_set():
    measured = {s: {m: _interval(len(EPOCHS)) for m in br.MODES} for s in SETS}
    predicted = {s: {m: RNG.uniform(size=len(EPOCHS)) for m in br.MODES} for s in SETS}
    axes = _check(br.spread_over_training(EPOCHS, measured, predicted, 64, "toy"), 2)
    # two prediction lines per panel, carrying the predicted values
    lines = [l for l in axes[0].get_lines() if l.get_linestyle() == "-"
             and len(l.get_xdata()) == len(EPOCHS)]
    ys = [np.asarray(l.get_ydata()) for l in lines]
    assert any(np.allclose(y, predicted["test"]["random"]) for y in ys)


def test_spread_vs_members_is_log_log():
    measured = {s: {m: _interval(len(SIZES)) for m in br.MODES} for s in SETS}
    predicted = {s: {m: 1 / np.sqrt(SIZES) for m in br.MODES} for s in SETS}
    axes = _check(br.spread_vs_members(SIZES, measured, predicted, 100, "toy"), 2)
    assert all(ax.get_xscale() == "log" and ax.get_yscale() == "log" for ax in axes)


def test_ratio_over_training():
    member = {s: _interval(len(EPOCHS)) for s in SETS}
    ensemble = {s: _interval(len(EPOCHS)) for s in SETS}
    predicted = {s: np.stack([np.ones(len(EPOCHS)), 0.01 * np.ones(len(EPOCHS))], -1)
                 for s in SETS}
    _check(br.ratio_over_training(EPOCHS, member, ensemble, predicted, 64, "toy"), 2)


def test_bad_shapes_are_rejected():
    measured = {"test": {m: _interval(3) for m in br.MODES}}
    predicted = {"test": {m: np.ones(3) for m in br.MODES}}
    with pytest.raises(ValueError, match=r"\(5, 3\)"):
        br.spread_over_training(EPOCHS, measured, predicted, 4, "toy")
    with pytest.raises(ValueError, match="same sets"):
        br.spread_vs_members(SIZES, {"test": {}}, {"noise": {}}, 1, "toy")
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        br.ratio_over_training(EPOCHS, {"test": _interval(5)}, {"test": _interval(5)},
                               {"test": np.ones((5, 3))}, 4, "toy")
