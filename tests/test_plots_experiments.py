"""The experiment chapters' figures (eqlib.plots.experiments) on tiny synthetic results.

The arrays mimic, key by key and shape by shape, what the runners of eqlib.experiments.ising,
.fashion_mnist and .histology store; every figure function must draw them into a Figure with the
expected panels, labelled axes and a title. The figures read the arrays by name through
eqlib.results: a plain dict and a ``Results`` draw the same PNG, a misspelt arm or a Results of
another experiment is rejected by name, and on the stored reference runs the drawn lines are the
stored arrays.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import io  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from eqlib import plots  # noqa: E402
from eqlib.data.histology import CLASSES  # noqa: E402
from eqlib.experiments.fashion_mnist import EVAL_SETS as FASHION_SETS  # noqa: E402
from eqlib.experiments.histology import EVAL_SETS as HISTOLOGY_SETS  # noqa: E402
from eqlib.experiments.ising import EVAL_SETS as ISING_SETS  # noqa: E402
from eqlib.groups import CyclicRotations, Dihedral4  # noqa: E402
from eqlib.plots import experiments as figures  # noqa: E402
from eqlib.results import Results, UnknownName  # noqa: E402
from eqlib.runner import stored_results  # noqa: E402

RNG = np.random.default_rng(0)
SIZES = np.array([1, 2, 4])          # K = 3 ensemble sizes
M = 4                                # members


def _positive(*shape: int) -> np.ndarray:
    return RNG.uniform(0.05, 1.0, size=shape)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _check(fig, n_axes: int, xlabels: int, ylabels: int = 1) -> None:
    """A Figure with ``n_axes`` panels, at least ``xlabels``/``ylabels`` axis labels, and a title."""
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes
    assert sum(bool(ax.get_xlabel()) for ax in fig.axes) >= xlabels
    assert sum(bool(ax.get_ylabel()) for ax in fig.axes) >= ylabels
    suptitle = fig.get_suptitle()
    assert suptitle or all(ax.get_title() for ax in fig.axes)
    assert suptitle or any(ax.get_title() for ax in fig.axes)


# ------------------------------------------------------------------------------------ Ising

ISING_CFG = {"widths": [4, 8], "plain_width": 8, "members": M, "other_temperature": 2.0,
             "cnn_channels": [3], "steps": 10}
ISING_TIMES = np.array([0, 1, 10])   # T = 3 measurement times


def _ising_arrays(cnn_ntk: bool = False) -> dict[str, np.ndarray]:
    T, K, n, G = len(ISING_TIMES), len(SIZES), 5, 4
    arrays: dict[str, np.ndarray] = {"times": ISING_TIMES}
    for key in ("mlp_w4_aug", "mlp_w8_aug", "mlp_w8_plain", "cnn_aug", "cnn_plain"):
        arrays[f"{key}/sizes"] = SIZES
        for name in ISING_SETS:
            arrays[f"{key}/member_spread/{name}"] = _positive(T, M)              # (T, M)
            arrays[f"{key}/ensemble_spread/{name}"] = _positive(T, K)            # (T, K)
            arrays[f"{key}/ensemble_orbit_output/{name}"] = RNG.normal(size=(T, G, n))
    for key in ("ntk_mlp_aug", "ntk_mlp_plain") + (("ntk_cnn_aug",) if cnn_ntk else ()):
        arrays[f"{key}/time"] = ISING_TIMES
        for name in ISING_SETS:
            arrays[f"{key}/predicted_spread/{name}"] = _positive(T, K)           # (T, K)
            arrays[f"{key}/predicted_spread_std/{name}"] = 0.1 * _positive(T, K)
            arrays[f"{key}/mean_spread/{name}"] = _positive(T, n)                # (T, n)
    return arrays


def test_ising_configurations():
    configs = np.sign(RNG.normal(size=(3, 6, 6, 1))).astype(np.float32)       # (k, L, L, 1)
    fig = plots.ising_configurations(configs, ["T = 1.50", "T = 3.50", "random"])
    _check(fig, 3, xlabels=0, ylabels=0)
    assert all("E = " in ax.get_title() for ax in fig.axes)
    assert "6×6" in fig.get_suptitle()


def test_ising_spread_over_training():
    fig = plots.ising_spread_over_training(_ising_arrays(), ISING_CFG)
    _check(fig, 4, xlabels=4)


def test_ising_finite_width():
    ratios = [{name: list(_positive(2)) for name in ISING_SETS} for _ in range(3)]
    fig = plots.ising_finite_width(*ratios, ISING_CFG)
    _check(fig, 3, xlabels=3, ylabels=3)


@pytest.mark.parametrize("cnn_ntk", [False, True])
def test_ising_cnn_spread_vs_members(cnn_ntk):
    fig = plots.ising_cnn_spread_vs_members(_ising_arrays(cnn_ntk), ISING_CFG)
    _check(fig, 1, xlabels=1)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert ("infinite width (augmented)" in labels) == cnn_ntk


# ------------------------------------------------------------------------------ FashionMNIST

FASHION_CFG = {"widths": [2, 4], "cont_width": 2, "cont_groups": ["C8"], "cont_members": 2,
               "n_epoch_eval": 8}
EPOCHS, ANGLES = 2, 8


def _fashion_arrays() -> dict[str, np.ndarray]:
    K = len(SIZES)
    arrays: dict[str, np.ndarray] = {"angles": 2 * np.pi * np.arange(ANGLES) / ANGLES}
    keys = [f"c{w}_{aug}" for w in FASHION_CFG["widths"] for aug in ("C4", "none")] + ["c2_C8"]
    for key in keys:
        arrays[f"{key}/sizes"] = SIZES
        arrays[f"{key}/epochs"] = np.arange(EPOCHS + 1)
        arrays[f"{key}/ensemble_acc/test"] = _positive(K)                        # (K,)
        arrays[f"{key}/ensemble_acc_orbit/test"] = _positive(K)
        arrays[f"{key}/so2/ensemble_agreement/test"] = _positive(ANGLES)           # (A,)
        arrays[f"{key}/so2/member_agreement/test"] = _positive(2, ANGLES)          # (M', A)
        arrays[f"{key}/so2/ensemble_acc/test"] = _positive(ANGLES)
        for name in FASHION_SETS:
            arrays[f"{key}/ensemble_osp/{name}"] = 1 + 3 * _positive(K)          # (K,)
            arrays[f"{key}/ensemble_osp_std/{name}"] = 0.1 * _positive(K)
            arrays[f"{key}/member_spread/{name}"] = _positive(M)                 # (M,)
            arrays[f"{key}/ensemble_spread/{name}"] = _positive(K)               # (K,)
            arrays[f"{key}/epoch/ensemble_osp/{name}"] = 1 + 3 * _positive(EPOCHS + 1)
            arrays[f"{key}/epoch/member_osp/{name}"] = 1 + 3 * _positive(EPOCHS + 1, M)
    return arrays


def test_fashion_mnist_orbits():
    C4 = CyclicRotations(4)
    examples = {name: RNG.uniform(size=(28, 28, 1)) for name in ("clothes", "digit", "noise")}
    fig = plots.fashion_mnist_orbits(examples, C4, "Ankle boot")
    _check(fig, 12, xlabels=0, ylabels=3)
    assert [ax.get_title() for ax in fig.axes[:4]] == list(C4.labels)


def test_fashion_mnist_accuracy_vs_members():
    fig = plots.fashion_mnist_accuracy_vs_members(_fashion_arrays(), FASHION_CFG, "quick")
    _check(fig, 1, xlabels=1)


@pytest.mark.parametrize("function", [plots.fashion_mnist_osp_vs_members,
                                      plots.fashion_mnist_spread_vs_members])
def test_fashion_mnist_vs_members_alone_and_into_axes(function):
    fig = function(_fashion_arrays(), FASHION_CFG["widths"])
    _check(fig, len(FASHION_SETS), xlabels=len(FASHION_SETS))
    assert fig.get_suptitle()
    host, axes = plt.subplots(1, len(FASHION_SETS))
    assert function(_fashion_arrays(), FASHION_CFG["widths"], axes=axes) is host
    assert not host.get_suptitle()                          # the host figure's title is its own


def test_fashion_mnist_osp_and_spread_vs_members():
    fig = plots.fashion_mnist_osp_and_spread_vs_members(_fashion_arrays(), [2, 4], "quick")
    _check(fig, 2 * len(FASHION_SETS), xlabels=len(FASHION_SETS), ylabels=2)
    assert "quick preset" in fig.get_suptitle()


def test_fashion_mnist_osp_over_epochs():
    fig = plots.fashion_mnist_osp_over_epochs(_fashion_arrays(), 4, 8)
    _check(fig, len(FASHION_SETS), xlabels=len(FASHION_SETS))


def test_fashion_mnist_so2():
    fig = plots.fashion_mnist_so2(_fashion_arrays(), 2, ["none", "C4", "C8"], 2)
    _check(fig, 2, xlabels=2, ylabels=2)
    assert all(ax.get_title() for ax in fig.axes)


def test_fashion_mnist_accuracy_vs_angle():
    fig = plots.fashion_mnist_accuracy_vs_angle(_fashion_arrays(), 2, ["none", "C4", "C8"])
    _check(fig, 1, xlabels=1)
    assert len(fig.axes[0].lines) == 3


# --------------------------------------------------------------------------------- histology

MODES = ("plain", "C4", "D4")


def test_histology_patches():
    k = len(CLASSES)
    x_train, y_train = RNG.uniform(size=(2 * k, 16, 16, 3)), np.repeat(np.arange(k), 2)
    x_val, y_val = RNG.uniform(size=(k, 16, 16, 3)), np.arange(k)
    fig = plots.histology_patches(x_train, y_train, x_val, y_val)
    _check(fig, 3 * k, xlabels=0, ylabels=3)
    assert "27 shared patches" in fig.get_suptitle()


def test_histology_crop_orbit():
    D4 = Dihedral4()
    orbit = RNG.uniform(size=(8, 16, 16, 3))                                   # (|G|, h, w, 3)
    fig = plots.histology_crop_orbit(RNG.uniform(size=(64, 64, 3)), "LYM-1.tif", orbit,
                                     D4.labels, crop=(1, 2))
    _check(fig, 9, xlabels=1, ylabels=1)
    assert fig.axes[0].get_title() == "LYM-1.tif: 4×4 crops"
    assert [ax.get_title() for ax in fig.axes[1:]] == list(D4.labels)


def test_histology_evaluation_sets():
    sets = {name: RNG.uniform(size=(3, 16, 16, 3)) for name in HISTOLOGY_SETS}
    fig = plots.histology_evaluation_sets(sets, indices=(0, 2))
    _check(fig, 2 * len(HISTOLOGY_SETS), xlabels=0, ylabels=2)


# ------------------------------------------------------------- read by name (eqlib.results)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


# every figure that reads results arrays: (experiment, synthetic arrays, draw(arrays) -> Figure)
READERS = {
    "ising_spread_over_training": ("ising", lambda: _ising_arrays(),
                                   lambda a: plots.ising_spread_over_training(a, ISING_CFG)),
    "ising_cnn_spread_vs_members": ("ising", lambda: _ising_arrays(cnn_ntk=True),
                                    lambda a: plots.ising_cnn_spread_vs_members(a, ISING_CFG)),
    "fashion_mnist_accuracy_vs_members": (
        "fashion_mnist", _fashion_arrays,
        lambda a: plots.fashion_mnist_accuracy_vs_members(a, FASHION_CFG, "quick")),
    "fashion_mnist_osp_and_spread_vs_members": (
        "fashion_mnist", _fashion_arrays,
        lambda a: plots.fashion_mnist_osp_and_spread_vs_members(a, [2, 4], "quick")),
    "fashion_mnist_osp_over_epochs": ("fashion_mnist", _fashion_arrays,
                                      lambda a: plots.fashion_mnist_osp_over_epochs(a, 4, 8)),
    "fashion_mnist_so2": ("fashion_mnist", _fashion_arrays,
                          lambda a: plots.fashion_mnist_so2(a, 2, ["none", "C4", "C8"], 2)),
    "fashion_mnist_accuracy_vs_angle": (
        "fashion_mnist", _fashion_arrays,
        lambda a: plots.fashion_mnist_accuracy_vs_angle(a, 2, ["none", "C4", "C8"])),
}


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_dict_and_results_draw_the_same_png(name):
    experiment, make, draw = READERS[name]
    arrays = make()
    as_dict = _png(draw(arrays))
    plt.close("all")
    assert _png(draw(Results(experiment, arrays))) == as_dict


def test_results_of_another_experiment_are_rejected():
    with pytest.raises(ValueError, match="expected ising results, got Results of 'fashion_mnist'"):
        plots.ising_cnn_spread_vs_members(Results("fashion_mnist", _fashion_arrays()), ISING_CFG)


def test_a_missing_arm_is_named_with_the_valid_ones():
    with pytest.raises(UnknownName, match="unknown arm 'c2_C9'.*c2_C8"):
        plots.fashion_mnist_so2(_fashion_arrays(), 2, ["none", "C4", "C9"], 2)
    arrays = {k: v for k, v in _ising_arrays().items() if not k.startswith("cnn_plain/")}
    with pytest.raises(UnknownName, match="unknown arm 'cnn_plain'.*cnn_aug"):
        plots.ising_cnn_spread_vs_members(arrays, ISING_CFG)
    wider = {**ISING_CFG, "widths": [4, 16]}
    with pytest.raises(UnknownName, match="unknown arm 'mlp_w16_aug'.*mlp_w8_aug"):
        plots.ising_spread_over_training(_ising_arrays(), wider)


def _line_data(fig: Figure, ax: int = 0) -> list[np.ndarray]:
    return [np.asarray(line.get_ydata(), dtype=float) for line in fig.axes[ax].lines]


def test_the_ising_figures_draw_the_stored_reference_arrays():
    arrays, meta = stored_results("ising", "reference")
    cfg = meta["config"]
    fig = plots.ising_cnn_spread_vs_members(arrays, cfg)
    lines = _line_data(fig)
    for j, name in enumerate(ISING_SETS):                # per set: augmented, then not augmented
        np.testing.assert_array_equal(lines[2 * j], arrays[f"cnn_aug/ensemble_spread/{name}"][-1])
        np.testing.assert_array_equal(lines[2 * j + 1], arrays[f"cnn_plain/ensemble_spread/{name}"][-1])
    assert _png(plots.ising_cnn_spread_vs_members(Results("ising", arrays, meta), cfg)) == _png(fig)
    plt.close("all")
    fig = plots.ising_spread_over_training(arrays, cfg)
    wide = f"mlp_w{max(cfg['widths'])}_aug"
    markers = [y for y in _line_data(fig, 3) if len(y) == len(arrays["times"])]
    last = len(arrays[f"{wide}/sizes"]) - 1
    assert any(np.array_equal(y, arrays[f"{wide}/ensemble_spread/gaussian"][:, last]) for y in markers)


def test_the_fashion_figures_draw_the_stored_reference_arrays():
    arrays, meta = stored_results("fashion_mnist", "reference")
    cfg = meta["config"]
    w = cfg["widths"][0]
    lines = _line_data(plots.fashion_mnist_accuracy_vs_members(arrays, cfg, "reference"))
    np.testing.assert_array_equal(lines[0], arrays[f"c{w}_C4/ensemble_acc/test"])
    np.testing.assert_array_equal(lines[1], arrays[f"c{w}_C4/ensemble_acc_orbit/test"])
    lines = _line_data(plots.fashion_mnist_osp_over_epochs(arrays, w, cfg["n_epoch_eval"]), 2)
    np.testing.assert_array_equal(lines[0], arrays[f"c{w}_C4/epoch/ensemble_osp/noise"])
    np.testing.assert_allclose(lines[1], arrays[f"c{w}_C4/epoch/member_osp/noise"].mean(-1), rtol=0)
    # the reference preset trains no SO(2) arms: the figure says so instead of a bare KeyError
    assert not cfg["cont_groups"]
    with pytest.raises(UnknownName, match=f"'so2/ensemble_agreement' of 'c{w}_none'.*not stored in this run"):
        plots.fashion_mnist_so2(arrays, w, ["none", "C4"], 2)


# ---------------------------------------------------------------------------------- coverage


def test_every_figure_is_exported_documented_and_tested():
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")}
    tested |= {"fashion_mnist_osp_vs_members", "fashion_mnist_spread_vs_members"}
    for name in figures.__all__:
        function = getattr(plots, name)
        assert function is getattr(figures, name)
        assert function.__doc__ and function.__annotations__.get("return") in ("Figure", Figure)
        assert name in tested, f"{name} has no test"
