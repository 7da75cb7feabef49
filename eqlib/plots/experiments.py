"""Figures of the experiment chapters: Ising, FashionMNIST, histology (see eqlib.plots).

Every function takes the arrays a chapter already has — mostly the ``arrays`` and ``config`` of
:func:`eqlib.runner.chapter_results` — and returns a ``matplotlib.figure.Figure``. Those that
read a results file take its arrays as the plain dict or as an :class:`eqlib.results.Results`;
either way they read them by name through the experiment's schema, so a misspelt or renamed arm
or metric raises an :class:`~eqlib.results.UnknownName` (a ``KeyError``) that lists the valid
names. The chapters compute and assert; these functions only draw. Functions whose figure is a row of panels accept
``axes=`` to draw into an existing row (the FashionMNIST chapter stacks two of them).
"""
from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from ..data.histology import CLASS_DESCRIPTIONS, CLASSES
from ..data.ising import ising_energy
from ..experiments.fashion_mnist import EVAL_SETS as FASHION_SETS
from ..experiments.fashion_mnist import covering_kappa
from ..experiments.histology import EVAL_SETS as HISTOLOGY_SETS
from ..experiments.ising import EVAL_SETS as ISING_SETS
from ..groups import FiniteGroup
from ..results import Arm, Results

__all__ = [
    # Ising
    "ising_configurations",
    "ising_spread_over_training",
    "ising_finite_width",
    "ising_cnn_spread_vs_members",
    # FashionMNIST
    "fashion_mnist_orbits",
    "fashion_mnist_accuracy_vs_members",
    "fashion_mnist_osp_vs_members",
    "fashion_mnist_spread_vs_members",
    "fashion_mnist_osp_and_spread_vs_members",
    "fashion_mnist_osp_over_epochs",
    "fashion_mnist_so2",
    "fashion_mnist_accuracy_vs_angle",
    # histology
    "histology_patches",
    "histology_crop_orbit",
    "histology_evaluation_sets",
]

Arrays = Mapping[str, np.ndarray] | Results
Config = Mapping[str, Any]


def _results(arrays: Arrays, experiment: str) -> Results:
    """The arrays of an ``experiment`` results file, read by name (:class:`eqlib.results.Results`).

    A plain dict gets its arms from the prefixes of its keys; a ``Results`` of another experiment
    is rejected.
    """
    if isinstance(arrays, Results):
        if arrays.experiment != experiment:
            raise ValueError(f"expected {experiment} results, got Results of {arrays.experiment!r}")
        return arrays
    return Results(experiment, arrays)


def _colours() -> list[str]:
    """The colours of the current property cycle."""
    return plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _log2_size_axis(ax: Axes, sizes: Sequence[int]) -> None:
    """Log₂ x axis labelled with the ensemble sizes themselves."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(sizes), [str(int(k)) for k in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("ensemble size M (members)")


def _row_of_axes(n: int, figsize: tuple[float, float], axes: Sequence[Axes] | None,
                 **kwargs: Any) -> tuple[Figure, Sequence[Axes]]:
    """``n`` new axes in a row, or the given ones and their figure."""
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=figsize, **kwargs)
        return fig, axes
    return axes[0].figure, axes


def _stores(res: Results, arm: str, metric: str, set_name: str | None = None) -> bool:
    """True if the run has arm ``arm`` and stores its ``metric`` (a misspelt metric raises)."""
    return arm in res.arms and res.arm(arm).has(metric, set_name)


# ------------------------------------------------------------------------------------ Ising


def _ising_set_titles(cfg: Config) -> dict[str, str]:
    """Panel titles of the Ising evaluation sets."""
    return {"test": "test (training T)", "other_T": f"other T = {cfg['other_temperature']}",
            "random": "random spins", "gaussian": "Gaussian inputs"}


def ising_configurations(configs: np.ndarray, titles: Sequence[str]) -> Figure:
    """Lattices ``configs: (k, L, L, 1)`` side by side, each titled with its label and energy."""
    L = configs.shape[1]
    energies = ising_energy(configs)
    fig, axes = plt.subplots(1, len(configs), figsize=(12, 2.3))
    for ax, s, title, energy in zip(np.atleast_1d(axes), configs, titles, energies):
        ax.imshow(s[..., 0], cmap="RdBu_r", vmin=-1.5, vmax=1.5)
        ax.set_title(f"{title}\nE = {energy:.0f} J", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"Inputs on the {L}×{L} periodic lattice (red +1, blue −1): "
                 "aligned when cold, disordered when hot")
    return fig


def ising_spread_over_training(arrays: Arrays, cfg: Config) -> Figure:
    """Orbit spread of the widest MLP's members ``(T, M)`` and ensembles ``(T, K)`` over time."""
    res = _results(arrays, "ising")
    wide = res.arm(f"mlp_w{max(cfg['widths'])}_aug")
    plain = res.arm(f"mlp_w{cfg['plain_width']}_plain")
    times, sizes = res.array("times"), wide.sizes()
    titles = _ising_set_titles(cfg)
    last = len(sizes) - 1
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), sharey=True)
    for ax, name in zip(axes, ISING_SETS):
        members = wide.member_spread(name)                                          # (T, M)
        ax.errorbar(times, members.mean(1), yerr=members.std(1), fmt="o", color="tab:blue",
                    capsize=2, label="members (mean ± std)")
        for mode, trained, colour, marker, k in (("aug", wide, "tab:blue", None, 0),
                                                 ("aug", wide, "tab:green", "s", last),
                                                 ("plain", plain, "tab:red", "^", last)):
            ntk = res.arm(f"ntk_mlp_{mode}")
            p = ntk.predicted_spread(name)[:, k]
            s = ntk.predicted_spread_std(name)[:, k]
            ax.plot(times, p, "-", color=colour, lw=1)
            ax.fill_between(times, p - s, p + s, color=colour, alpha=0.2, lw=0)
            if marker:
                label = f"ensemble M = {sizes[k]}"
                if mode == "plain":
                    label += " (no augmentation)"
                ax.plot(times, trained.ensemble_spread(name)[:, k], marker, color=colour,
                        label=label)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_yscale("log")
        ax.set_xlabel("training time t (gradient steps)")
        ax.set_title(titles[name], fontsize=10)
    axes[0].set_ylabel("orbit spread s (standardised energy)")
    axes[0].plot([], [], "k-", lw=1, label="infinite width: mean ± std")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"MLP width {max(cfg['widths'])}: measured orbit spread (markers) "
                 "vs the NTK prediction (lines, bands)")
    fig.tight_layout()
    return fig


def ising_finite_width(member_ratio: Mapping[str, Sequence[float]],
                       ensemble_ratio: Mapping[str, Sequence[float]],
                       distance_ratio: Mapping[str, Sequence[float]], cfg: Config) -> Figure:
    """Measured / predicted spreads and distance from μ_t, each ``{set: (widths,)}``, vs width."""
    widths, M_max = list(cfg["widths"]), cfg["members"]
    titles = _ising_set_titles(cfg)
    markers = dict(zip(ISING_SETS, "osD^"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for name in ISING_SETS:
        for ax, values in zip(axes, (member_ratio[name], ensemble_ratio[name],
                                     distance_ratio[name])):
            ax.plot(widths, values, marker=markers[name], label=titles[name])
    panel_titles = ["orbit spread of single members",
                    f"orbit spread of ensembles\n(mean ratio over M = 1 … {M_max})",
                    f"distance of the M = {M_max} ensemble from μ_t"]
    for ax, title in zip(axes, panel_titles):
        ax.axhline(1, color="k", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden width of the MLP")
        ax.set_ylabel("measured / infinite-width prediction")
        ax.set_title(title, fontsize=10)
    for ax in axes[:2]:
        ax.set_ylim(0.7, 1.3)
    axes[2].legend(fontsize=8)
    fig.suptitle("Finite-width MLPs against the infinite-width prediction "
                 f"(t = {cfg['steps']}): the ratios approach one as the width grows")
    fig.tight_layout()
    return fig


def ising_cnn_spread_vs_members(arrays: Arrays, cfg: Config) -> Figure:
    """Final orbit spread of CNN ensembles ``(K,)`` against M, with and without augmentation."""
    res = _results(arrays, "ising")
    aug, plain = res.arm("cnn_aug"), res.arm("cnn_plain")
    sizes, times = aug.sizes(), res.array("times")
    titles = _ising_set_titles(cfg)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, colour in zip(ISING_SETS, plt.cm.tab10(np.arange(4))):
        ax.plot(sizes, aug.ensemble_spread(name)[-1], "o-", color=colour,
                label=f"{titles[name]}, augmented")
        ax.plot(sizes, plain.ensemble_spread(name)[-1], "^--", color=colour,
                alpha=0.6, label=f"{titles[name]}, no augmentation")
    ax.plot(sizes, aug.ensemble_spread("gaussian")[-1, 0] / np.sqrt(sizes), "k:", lw=1,
            label="slope −1/2")
    if _stores(res, "ntk_cnn_aug", "time"):    # the full preset predicts the CNN ensembles too
        ntk = res.arm("ntk_cnn_aug")
        for name in ISING_SETS:
            ax.plot(sizes, ntk.predicted_spread(name)[-1], "-", color="gray", lw=0.8)
        ax.plot([], [], "-", color="gray", lw=0.8, label="infinite width (augmented)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("ensemble size M (members)")
    ax.set_ylabel(f"orbit spread of the ensemble at t = {times[-1]}")
    ax.set_title(f"CNN ensembles (3×3 convolution, {cfg['cnn_channels'][0]} channels, circular "
                 "padding):\n1/√M with augmentation, a floor without")
    ax.legend(fontsize=6.5, ncol=2)
    return fig


# ------------------------------------------------------------------------------ FashionMNIST

_FASHION_SET_TITLES = {"test": "FashionMNIST test", "mnist": "MNIST (off manifold)",
                       "noise": "noise (far off)"}


def _aug_text(aug: str) -> str:
    """``"C4 augmentation"``, or ``"no augmentation"`` for ``"none"``."""
    return "no augmentation" if aug == "none" else f"{aug} augmentation"


def _width_aug_series(res: Results, widths: Sequence[int]) -> Iterator[tuple[Arm, dict[str, Any]]]:
    """``(arm, style)`` per width (one colour) and augmentation (C4 solid, none dotted)."""
    for w, colour in zip(widths, _colours()):
        for aug, ls in {"C4": "-", "none": ":"}.items():
            yield res.arm(f"c{w}_{aug}"), {"ls": ls, "color": colour, "label": f"c={w}, {_aug_text(aug)}"}


def fashion_mnist_orbits(examples: Mapping[str, np.ndarray], group: FiniteGroup,
                         first_class: str) -> Figure:
    """The orbits of images ``{name: (28, 28, 1)}`` under ``group``, one row per image."""
    fig, axes = plt.subplots(len(examples), group.order, figsize=(6.4, 5.2), squeeze=False)
    for r, (row, (name, image)) in enumerate(zip(axes, examples.items())):
        orbit = np.asarray(group.orbit(image[None]))[:, 0]                    # (|G|, 28, 28, 1)
        for g, ax in enumerate(row):
            ax.imshow(orbit[g, ..., 0], cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if g == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title(group.labels[g], fontsize=9)
    fig.suptitle(f"{group.name} orbits of {len(examples)} inputs "
                 f"(the first is a '{first_class}'): each row should get one class", fontsize=10)
    return fig


def fashion_mnist_accuracy_vs_members(arrays: Arrays, cfg: Config, preset: str) -> Figure:
    """Ensemble accuracy ``(K,)`` on upright and rotated test images against the ensemble size."""
    res = _results(arrays, "fashion_mnist")
    widths = cfg["widths"]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for w, colour in zip(widths, ["tab:blue", "tab:orange"]):
        for aug, marker in (("C4", "o"), ("none", "s")):
            arm = res.arm(f"c{w}_{aug}")
            ax.plot(arm.sizes(), arm.ensemble_acc("test"), "-" + marker,
                    color=colour, label=f"c={w}, {aug}: upright test")
            ax.plot(arm.sizes(), arm.ensemble_acc_orbit("test"), ":" + marker,
                    color=colour, label=f"c={w}, {aug}: rotated test")
    ax.axhline(0.1, color="gray", lw=0.6, ls="--")
    _log2_size_axis(ax, res.arm(f"c{max(widths)}_C4").sizes())
    ax.set_ylabel("test accuracy (chance 0.1)")
    ax.set_title(f"Ensemble accuracy ({preset} preset): more members, more accurate;\n"
                 "without augmentation worse on rotated images")
    ax.legend(fontsize=7, ncol=2)
    return fig


def fashion_mnist_osp_vs_members(arrays: Arrays, widths: Sequence[int],
                                 axes: Sequence[Axes] | None = None) -> Figure:
    """Ensemble OSP ``(K,)`` ± std over disjoint blocks against M, one panel per set."""
    res = _results(arrays, "fashion_mnist")
    own = axes is None
    fig, axes = _row_of_axes(len(FASHION_SETS), (12, 3.4), axes, sharey=True)
    for ax, name in zip(axes, FASHION_SETS):
        for arm, style in _width_aug_series(res, widths):
            sizes = arm.sizes()
            ax.errorbar(sizes, arm.ensemble_osp(name),
                        arm.ensemble_osp_std(name), marker="o", ms=4, capsize=2,
                        **style)
        ax.axhline(4, color="k", lw=0.6)
        ax.axhline(1.3, color="gray", lw=0.6, ls="--")
        _log2_size_axis(ax, sizes)
        ax.set_title(_FASHION_SET_TITLES[name])
    axes[0].set_ylabel("OSP (rotations of 4 with the same class)")
    axes[0].legend(fontsize=7)
    if own:                                 # a figure of its own: say what to see
        fig.suptitle("OSP against the ensemble size: it climbs towards 4 with augmentation")
        fig.tight_layout()
    return fig


def fashion_mnist_spread_vs_members(arrays: Arrays, widths: Sequence[int],
                                    axes: Sequence[Axes] | None = None) -> Figure:
    """Orbit spread of ensemble logits ``(K,)`` over the members' rms against M, per set."""
    res = _results(arrays, "fashion_mnist")
    own = axes is None
    fig, axes = _row_of_axes(len(FASHION_SETS), (12, 3.4), axes, sharey=True)
    for ax, name in zip(axes, FASHION_SETS):
        sizes = None
        for arm, style in _width_aug_series(res, widths):
            sizes = arm.sizes()
            ref = np.sqrt((arm.member_spread(name) ** 2).mean())
            ax.plot(sizes, arm.ensemble_spread(name) / ref, marker="o", ms=4,
                    **style)
        ax.plot(sizes, 1 / np.sqrt(sizes), "k--", lw=0.8, label="1/√M")
        ax.set_yscale("log")
        ticks = [t for t in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
                 if t >= 0.7 / np.sqrt(max(sizes))]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.yaxis.set_minor_locator(NullLocator())
        _log2_size_axis(ax, sizes)
        ax.set_title(_FASHION_SET_TITLES[name])
    axes[0].set_ylabel("orbit spread of the logits\n(ensemble / members, rms)")
    axes[0].legend(fontsize=7)
    if own:                                 # a figure of its own: say what to see
        fig.suptitle("Relative orbit spread against the ensemble size: "
                     "close to 1/√M with augmentation only")
        fig.tight_layout()
    return fig


def fashion_mnist_osp_and_spread_vs_members(arrays: Arrays, widths: Sequence[int],
                                            preset: str) -> Figure:
    """Ensemble OSP ``(K,)`` above its relative orbit spread ``(K,)`` against M, per set."""
    fig, axes = plt.subplots(2, len(FASHION_SETS), figsize=(12, 6.6), sharex=True)
    fig.suptitle("OSP (top) and orbit spread (bottom) against the ensemble size "
                 f"({preset} preset)")
    res = _results(arrays, "fashion_mnist")
    fashion_mnist_osp_vs_members(res, widths, axes=axes[0])
    fashion_mnist_spread_vs_members(res, widths, axes=axes[1])
    for ax in axes[0]:
        ax.set_xlabel("")
    fig.tight_layout()
    return fig


def fashion_mnist_osp_over_epochs(arrays: Arrays, width: int, n_images: int,
                                  axes: Sequence[Axes] | None = None) -> Figure:
    """Ensemble OSP ``(E+1,)`` and mean member OSP ``(E+1, M)`` after every epoch, per set."""
    res = _results(arrays, "fashion_mnist")
    arms = [res.arm(f"c{width}_C4"), res.arm(f"c{width}_none")]
    own = axes is None
    fig, axes = _row_of_axes(len(FASHION_SETS), (12, 3.4), axes, sharey=True)
    for ax, name in zip(axes, FASHION_SETS):
        for arm, colour in zip(arms, _colours()):
            epochs = arm.epochs()
            ax.plot(epochs, arm.get("epoch/ensemble_osp", name), "-o", color=colour, ms=4,
                    label=f"{arm.name}: ensemble")
            ax.plot(epochs, arm.get("epoch/member_osp", name).mean(-1), "--",
                    color=colour, label=f"{arm.name}: members (mean)")
        ax.axhline(4, color="k", lw=0.6)
        ax.set_xticks(arms[0].epochs())
        ax.set_xlabel("training epoch (0 = initialisation)")
        ax.set_title(_FASHION_SET_TITLES[name])
    axes[0].set_ylabel("OSP (of 4 rotations)")
    axes[0].legend(fontsize=7)
    if own:
        fig.suptitle(f"OSP during training, width c = {width}, {n_images} images per set: "
                     "with augmentation the ensemble stays near 4 at every epoch")
        fig.tight_layout()
    return fig


def fashion_mnist_so2(arrays: Arrays, width: int, groups: Sequence[str], members: int,
                      name: str = "test", axes: Sequence[Axes] | None = None) -> Figure:
    """Agreement with the upright class ``(A,)``, members ``(M', A)``, by angle; mean by κ."""
    res = _results(arrays, "fashion_mnist")
    own = axes is None
    fig, axes = _row_of_axes(2, (12, 3.8), axes, gridspec_kw={"width_ratios": [2, 1]})
    degrees = np.degrees(res.array("angles"))
    kappas, ens, mem = [], [], []
    for aug, colour in zip(groups, _colours()):
        arm = res.arm(f"c{width}_{aug}")
        e = arm.get("so2/ensemble_agreement", name)
        m = arm.get("so2/member_agreement", name)
        axes[0].plot(degrees, e, "-", color=colour, label=_aug_text(aug))
        axes[0].plot(degrees, m.mean(0), ":", color=colour)
        kappas.append(covering_kappa(1 if aug == "none" else int(aug[1:])))
        ens.append(e.mean())
        mem.append(m.mean())
    axes[0].set_xlabel("rotation angle θ (degrees)")
    axes[0].set_ylabel("share predicted as at θ = 0")
    axes[0].set_xticks(np.arange(0, 361, 45))
    axes[0].plot([], [], "k-", label="ensemble")
    axes[0].plot([], [], "k:", label="members (mean)")
    axes[0].set_ylim(0, 1.3)
    axes[0].legend(fontsize=7, ncol=3, loc="upper center")
    axes[0].set_title("Agreement with the upright prediction, FashionMNIST test "
                      f"(M = {members}, c = {width})")
    axes[1].plot(kappas, ens, "o-", label="ensemble")
    axes[1].plot(kappas, mem, "s--", label="members (mean)")
    for k, v, aug in zip(kappas, ens, groups):
        axes[1].annotate(aug, (k, v), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes[1].set_xlabel("κ = 2 sin(π/2k) of the augmentation group C_k")
    axes[1].set_ylabel(f"SO(2) OSP fraction ({len(degrees)} angles)")
    axes[1].set_title(f"Averaged over the {len(degrees)} angles")
    axes[1].legend(fontsize=8)
    if own:
        fig.suptitle("Any augmentation keeps the prediction under far more rotations; "
                     "finer groups (smaller κ) fill the dips")
        fig.tight_layout()
    return fig


def fashion_mnist_accuracy_vs_angle(arrays: Arrays, width: int, groups: Sequence[str]) -> Figure:
    """Ensemble accuracy on rotated test images ``(A,)`` against the angle, per augmentation."""
    res = _results(arrays, "fashion_mnist")
    fig, ax = plt.subplots(figsize=(8, 3))
    for aug in groups:
        ax.plot(np.degrees(res.array("angles")), res.arm(f"c{width}_{aug}").get("so2/ensemble_acc", "test"),
                label=_aug_text(aug))
    ax.set_xticks(np.arange(0, 361, 45))
    ax.set_xlabel("rotation angle θ of the test images (degrees)")
    ax.set_ylabel("ensemble accuracy")
    ax.set_title("Ensemble accuracy on rotated test images, per augmentation group")
    ax.legend(fontsize=8)
    return fig


# --------------------------------------------------------------------------------- histology

_HISTOLOGY_SET_NAMES = {"test": "held-out tissue", "noise": "uniform noise",
                        "jitter": "colour-jittered tissue", "fashion": "FashionMNIST"}
_HISTOLOGY_MODES = ("plain", "C4", "D4")
_HISTOLOGY_MODE_NAMES = {"plain": "no augmentation", "C4": "$C_4$ augmentation",
                         "D4": "$D_4$ augmentation"}
_HISTOLOGY_COLOURS = {"plain": "tab:gray", "C4": "tab:blue", "D4": "tab:green"}


def histology_patches(x_train: np.ndarray, y_train: np.ndarray, x_held_out: np.ndarray,
                      y_held_out: np.ndarray) -> Figure:
    """One column per class: its training patches ``(n, H, W, 3)`` above its first held-out one."""
    per_class = int(np.bincount(y_train, minlength=len(CLASSES)).max())
    rows = per_class + 1
    fig, axes = plt.subplots(rows, len(CLASSES), figsize=(13, 4.9), squeeze=False)
    for c, name in enumerate(CLASSES):
        column = [x for x, y in zip(x_train, y_train) if y == c] + [x_held_out[y_held_out == c][0]]
        for r, image in enumerate(column):
            axes[r, c].imshow(image)
        for ax in axes[:, c]:
            ax.set_xticks([])
            ax.set_yticks([])
        description = "\n".join(textwrap.wrap(CLASS_DESCRIPTIONS[name], 16))
        axes[0, c].set_title(f"{name}\n{description}", fontsize=8)
    for r, label in enumerate([f"training {k + 1}" for k in range(per_class)] + ["held out"]):
        axes[r, 0].set_ylabel(label, fontsize=9)
    side = x_train.shape[1]
    fig.suptitle(f"The {len(x_train) + len(x_held_out)} shared patches "
                 f"(each {side} px = {side // 2} µm): "
                 f"{per_class} training patches and one held-out patch per class")
    fig.tight_layout()
    return fig


def histology_crop_orbit(patch: np.ndarray, patch_name: str, orbit: np.ndarray,
                         labels: Sequence[str], crop: tuple[int, int] = (3, 3)) -> Figure:
    """A patch ``(H, W, 3)`` cut into crops, and the orbit ``(|G|, h, w, 3)`` of crop ``crop``."""
    side = orbit.shape[1]
    n = patch.shape[0] // side
    columns = (len(orbit) + 1) // 2
    fig = plt.figure(figsize=(12, 4))
    grid = fig.add_gridspec(2, 2 + columns)
    ax = fig.add_subplot(grid[:, :2])
    ax.imshow(patch)
    for k in range(1, n):
        ax.axhline(side * k - 0.5, color="w", lw=0.6)
        ax.axvline(side * k - 0.5, color="w", lw=0.6)
    row, col = crop
    ax.add_patch(plt.Rectangle((col * side - 0.5, row * side - 0.5), side, side, fill=False,
                               ec="yellow", lw=2))
    ax.set_title(f"{patch_name}: {n}×{n} crops", fontsize=9)
    ax.set_xlabel("x (px; 2 px = 1 µm)")
    ax.set_ylabel("y (px)")
    for g, image in enumerate(orbit):
        ax = fig.add_subplot(grid[g // columns, 2 + g % columns])
        ax.imshow(image)
        ax.set_title(labels[g], fontsize=8)
        ax.axis("off")
    fig.suptitle(f"One training patch cut into {side}×{side} crops, and the orbit of the yellow "
                 f"crop: {len(orbit)} equally plausible crops of one tissue")
    return fig


def histology_evaluation_sets(sets: Mapping[str, np.ndarray],
                              indices: Sequence[int] = (0, 200)) -> Figure:
    """Images ``indices`` of each evaluation set ``{name: (n, h, w, 3)}``, one column per set."""
    fig, axes = plt.subplots(len(indices), len(HISTOLOGY_SETS), figsize=(8, 4.3), squeeze=False)
    for j, name in enumerate(HISTOLOGY_SETS):
        for r, i in enumerate(indices):
            axes[r, j].imshow(sets[name][i])
            axes[r, j].set_xticks([])
            axes[r, j].set_yticks([])
        axes[0, j].set_title(_HISTOLOGY_SET_NAMES[name], fontsize=9)
    side = sets[HISTOLOGY_SETS[0]].shape[1]
    for r in range(len(indices)):
        axes[r, 0].set_ylabel(f"{side} px")
    fig.suptitle(f"The four evaluation sets ({len(indices)} images each): "
                 "held-out tissue, and three sets unlike it")
    fig.tight_layout()
    return fig


