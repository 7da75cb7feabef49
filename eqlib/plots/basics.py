"""Figures of the book (see eqlib.plots): the tour, groups, equivariance, augmentation.

Shapes use the book's conventions: images are ``(n, H, W, c)`` (NHWC), an orbit of one image is
``(|G|, H, W, c)``, and ``|G|`` is the order of the group. Group arguments are the objects of
:mod:`eqlib.groups`; only their ``name``, ``labels``, ``order`` (and, for Cayley tables, ``table``)
are read.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..augment import permutation_matrix
from ..groups import FiniteGroup, Transformations

__all__: list[str] = [
    # the tour
    "target_orbit",
    "ensemble_spread_bars",
    # groups and representations
    "group_orbit",
    "cayley_tables",
    "representation_matrices",
    "rotation_round_trip",
    # equivariance and how to measure it
    "shape_classes",
    "osp_histograms",
    "orbit_predictions",
    # data augmentation is a permutation
    "augmented_set",
    "permutation_matrices",
    "kernel_invariance",
    "block_circulant_gram",
]

# titles of the data sets of the equivariance chapter
_DATA_TITLES = {
    "test": "shape test images",
    "blobs": "blob images (off-manifold)",
    "noise": "noise images (off-manifold)",
}


def _hide_ticks(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _image(ax: Axes, image: np.ndarray, cmap: str, vmin: float, vmax: float):
    """Draw one ``(H, W)`` or ``(H, W, 1)`` image without ticks."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., 0]
    _hide_ticks(ax)
    return ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)


def _superscript(k: int) -> str:
    return str(k).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


def _block_lines(ax: Axes, n: int, blocks: int, color: str, lw: float) -> None:
    """Lines between the ``blocks × blocks`` blocks of size ``n × n`` of a matrix."""
    for b in range(1, blocks):
        ax.axhline(b * n - 0.5, color=color, lw=lw)
        ax.axvline(b * n - 0.5, color=color, lw=lw)


# ---------------------------------------------------------------------------------- the tour


def target_orbit(orbit: np.ndarray, targets: np.ndarray, group: Transformations) -> Figure:
    """An orbit with its targets: ``orbit: (|G|, h, w, 1)``, ``targets: (|G|, 1)``."""
    targets = np.asarray(targets).reshape(len(orbit), -1)[:, 0]
    fig, axes = plt.subplots(1, len(orbit), figsize=(2 * len(orbit), 2.2))
    for g, ax in enumerate(np.atleast_1d(axes)):
        _image(ax, orbit[g], "RdBu_r", -1, 1)
        ax.set_title(f"{group.labels[g]}: y = {targets[g]:.3f}", fontsize=9)
    fig.suptitle(f"One test image and its {group.name} orbit: the target does not change")
    return fig


def ensemble_spread_bars(spread: Mapping[tuple[str, str, str], float], members: int,
                         intervals: Mapping[tuple[str, str, str], tuple[float, float]] | None = None,
                         label: str | None = None) -> Figure:
    """Orbit spread of members and ensembles; ``spread[training, data, "member" | "ensemble"]``.

    ``intervals[training, data, kind] = (low, high)`` (optional, e.g. 95 % jackknife intervals
    over members) are drawn as error bars; ``label`` (e.g. :func:`eqlib.runner.run_label`) names
    the run under the axes.
    """
    data = list(dict.fromkeys(key[1] for key in spread))
    bars = [("augmented", "member", "tab:blue"), ("augmented", "ensemble", "tab:green"),
            ("no augmentation", "member", "tab:gray"),
            ("no augmentation", "ensemble", "tab:red")]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    positions, width = np.arange(len(data)), 0.2
    for k, (training, kind, colour) in enumerate(bars):
        values = np.array([spread[training, d, kind] for d in data], dtype=float)
        errors = None
        if intervals is not None:
            bounds = np.array([intervals[training, d, kind] for d in data], dtype=float)  # (D, 2)
            errors = np.clip(np.stack([values - bounds[:, 0], bounds[:, 1] - values]), 0, None)
        ax.bar(positions + (k - 1.5) * width, values, width, label=f"{kind} ({training})",
               color=colour, yerr=errors, capsize=3 if errors is not None else 0,
               error_kw={"elinewidth": 1, "ecolor": "black"})
    ax.set_xticks(positions, [f"{d} images" for d in data])
    ax.set_xlabel("inputs on which the orbit spread is measured")
    ax.set_ylabel("orbit spread of the output\n(std over the 4 rotations)")
    ax.set_title(f"Members vs ensemble of M = {members} MLPs (lower = more invariant)")
    ax.legend(fontsize=8)
    if label:
        fig.text(0.5, -0.04, f"run: {label}" + ("; bars: 95 % jackknife intervals over members"
                                                 if intervals is not None else ""),
                 ha="center", va="top", fontsize=7, color="0.3")
    return fig


# ------------------------------------------------------------------ groups and representations


def group_orbit(orbit: np.ndarray, group: Transformations) -> Figure:
    """The orbit of one image, one panel per group element: ``orbit: (|G|, h, w)``."""
    orbit = np.asarray(orbit)
    fig, axes = plt.subplots(1, len(orbit), figsize=(1.375 * len(orbit), 1.9))
    for g, ax in enumerate(np.atleast_1d(axes)):
        _image(ax, orbit[g], "Greys", 0, 1)
        ax.set_title(f"g = {group.labels[g]}", fontsize=9)
    title = f"The orbit of a {orbit.shape[1]}×{orbit.shape[2]} image under {group.name}"
    if any(label.startswith("s") for label in group.labels):
        title += " (sr = reflect left–right, then rotate counter-clockwise)"
    fig.suptitle(title)
    return fig


def _cayley(ax: Axes, group: FiniteGroup) -> None:
    n, labels = group.order, group.labels
    ax.imshow(group.table, cmap="tab10" if n <= 10 else "tab20", vmin=0,
              vmax=9 if n <= 10 else 19)
    for g in range(n):
        for h in range(n):
            ax.text(h, g, labels[group.table[g, h]], ha="center", va="center",
                    fontsize=7 if n > 4 else 9)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("h (applied first)")
    ax.set_ylabel("g (applied second)")
    ax.set_title(f"{group.name}: cell (g, h) = g∘h")


def cayley_tables(*groups: FiniteGroup) -> Figure:
    """Side by side, the Cayley table ``table: (|G|, |G|)`` of each group, coloured by element."""
    ratios = [max(1.0, group.order / 5) for group in groups]
    fig, axes = plt.subplots(1, len(groups), figsize=(11, 5.2),
                             gridspec_kw={"width_ratios": ratios})
    for ax, group in zip(np.atleast_1d(axes), groups):
        _cayley(ax, group)
    fig.suptitle("Cayley tables (one colour per element): "
                 "each element once in every row and column")
    fig.tight_layout()
    return fig


def representation_matrices(rho: np.ndarray, group: Transformations) -> Figure:
    """The matrices ρ(g) of a permutation representation: ``rho: (|G|, D, D)``, 0/1 entries."""
    rho = np.asarray(rho)
    dim = rho.shape[1]
    side = int(round(np.sqrt(dim)))
    fig, axes = plt.subplots(1, len(rho), figsize=(3 * len(rho), 3.4))
    for g, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(rho[g], cmap="Greys", vmin=0, vmax=1)
        ax.set_xticks(range(dim))
        ax.set_yticks(range(dim))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("input pixel j (row-major)")
        if g == 0:
            ax.set_ylabel("output pixel i (row-major)")
        ax.set_title(f"ρ({group.labels[g]}), trace = {np.trace(rho[g]):.0f}", fontsize=10)
    image = f"a {side}×{side} image" if side * side == dim else f"{dim} pixels"
    fig.suptitle(f"{group.name} on {image}: every ρ(g) is a {dim}×{dim} permutation matrix "
                 "(black = 1)")
    fig.tight_layout()
    return fig


def rotation_round_trip(image: np.ndarray, returned: np.ndarray,
                        errors: Mapping[tuple[int, int], np.ndarray], sigmas: Sequence[float],
                        sigma: float, steps: int = 8) -> Figure:
    """Interpolated round trips: ``image, returned: (1, h, w, 1)``, ``errors[k, size]: (s,)``."""
    # curves that are exactly zero (exact groups such as C4) cannot be drawn on the log axis
    image, returned = np.asarray(image), np.asarray(returned)
    h, w = image.shape[1:3]
    fig = plt.figure(figsize=(12, 3.6))
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 1.7])
    angle = f"{360 / steps:g}°"
    panels = [(image, f"x ({h}×{w}, σ = {sigma:g} px)"),
              (returned, f"ρ(r{angle}){_superscript(steps)} x"), (returned - image, "difference")]
    for i, (img, title) in enumerate(panels):
        ax = fig.add_subplot(grid[i])
        _image(ax, img[0], "RdBu_r", -1, 1)
        ax.set_title(title, fontsize=10)
    ax = fig.add_subplot(grid[3])
    sizes = sorted({size for _, size in errors})
    for (k, size), e in errors.items():
        if np.all(np.asarray(e) == 0):
            continue
        ax.plot(sigmas, e, marker="o" if k == 8 else "s", ls="-" if k == 8 else "--",
                color=f"C{sizes.index(size)}", label=f"C{k}: {k} × {360 / k:g}°, {size}×{size}")
    ax.set_xlabel("smoothness σ of the image (pixels)")
    ax.set_ylabel("relative error ‖ρ(r)ᵏx − x‖ / ‖x‖")
    ax.set_title("k rotations by 360°/k (the identity in $C_k$)", fontsize=10)
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.suptitle(f"Interpolated rotations lose detail: {steps} turns by {angle} "
                 "(left), and the error falls as the image gets smoother (right)")
    fig.tight_layout()
    return fig


# -------------------------------------------------------------- equivariance and how to measure it


def shape_classes(x: np.ndarray, y: np.ndarray, x_rotated: np.ndarray,
                  class_names: Sequence[str], rotation: str = "r90°") -> Figure:
    """One image per class and its rotation: ``x, x_rotated: (n, h, w, 1)``, ``y: (n,)``."""
    x, y, x_rotated = np.asarray(x), np.asarray(y), np.asarray(x_rotated)
    fig, axes = plt.subplots(2, len(class_names), figsize=(1.5 * len(class_names), 3.4),
                             squeeze=False)
    for k, name in enumerate(class_names):
        i = int(np.flatnonzero(y == k)[0])
        for row, (img, tag) in enumerate([(x[i], ""), (x_rotated[i], f" ({rotation})")]):
            _image(axes[row, k], img, "gray", -0.2, 1.2)
            axes[row, k].set_title(name + tag, fontsize=9)
    h, w = x.shape[1:3]
    fig.suptitle(f"Shapes ({h}×{w} px): one test image per class (top) "
                 f"and its rotation {rotation} (bottom)")
    return fig


def osp_histograms(summary: Mapping[tuple[str, str], Mapping], group: Transformations,
                   titles: Mapping[str, str] | None = None) -> Figure:
    """Share of inputs per OSP value; ``summary[model, data]['counts']: (M, n)``."""
    titles = {**_DATA_TITLES, **(titles or {})}
    models = list(dict.fromkeys(m for m, _ in summary))
    data = list(dict.fromkeys(d for _, d in summary))
    values = np.arange(1, group.order + 1)
    colours = ["tab:gray", "tab:blue", "tab:green", "tab:purple", "tab:orange"]
    width = 0.8 / len(models)
    fig, axes = plt.subplots(1, len(data), figsize=(4 * len(data), 3.4), sharey=True,
                             squeeze=False)
    for ax, d in zip(axes[0], data):
        for k, (m, colour) in enumerate(zip(models, colours)):
            counts = np.asarray(summary[m, d]["counts"]).ravel()
            share = np.array([(counts == c).mean() for c in values])
            label = (f"{m} (mean {summary[m, d]['osp']:.2f}, "
                     f"chance {summary[m, d]['chance']:.2f})")
            ax.bar(values + (k - (len(models) - 1) / 2) * width, share, width, color=colour,
                   label=label)
        ax.set_xticks(values)
        ax.set_xlabel("OSP(x): rotations with the same prediction")
        ax.set_title(titles.get(d, d), fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    axes[0, 0].set_ylabel("share of inputs")
    fig.suptitle(f"Orbit same prediction of a CNN under {group.name} (|G| = {group.order}), "
                 "pooled over the members")
    fig.tight_layout()
    return fig


def orbit_predictions(orbit: np.ndarray, predicted: np.ndarray, true_class: int,
                      class_names: Sequence[str], group: Transformations) -> Figure:
    """An orbit and its predicted classes: ``orbit: (|G|, h, w, 1)``, ``predicted: (|G|,)``."""
    predicted = np.asarray(predicted)
    osp = int((predicted == predicted[0]).sum())
    fig, axes = plt.subplots(1, len(orbit), figsize=(2 * len(orbit), 2.4))
    for g, ax in enumerate(np.atleast_1d(axes)):
        _image(ax, orbit[g], "gray", -0.2, 1.2)
        ax.set_title(f"{group.labels[g]}: '{class_names[predicted[g]]}'", fontsize=9,
                     color="black" if predicted[g] == true_class else "tab:red")
    fig.suptitle(f"A '{class_names[true_class]}' and its orbit: the trained CNN's predictions "
                 f"(OSP = {osp})", fontsize=10)
    return fig


# ------------------------------------------------------------- data augmentation is a permutation


def augmented_set(x: np.ndarray, y: np.ndarray, n: int, group: Transformations) -> Figure:
    """Augmented set and targets: ``x: (|G|·n, h, w, 1)``, ``y: (|G|·n, 2)`` (row, col)."""
    x, y = np.asarray(x), np.asarray(y)
    centre = (np.array(x.shape[1:3]) - 1) / 2
    fig, axes = plt.subplots(n, group.order, figsize=(2 * group.order, 2.2 * n), squeeze=False)
    for h in range(group.order):
        for i in range(n):
            k = h * n + i
            ax = axes[i, h]
            _image(ax, x[k], "RdBu_r", -1, 1)
            r, c = y[k] + centre
            ax.plot(c, r, "k+", ms=12, mew=2)
            ax.set_title(f"k = {k}: h = {group.labels[h]}, i = {i}", fontsize=8)
    fig.suptitle("Augmented set, group-element-major (+ marks the target: the centre of mass)")
    return fig


def permutation_matrices(perms: np.ndarray, n: int, group: Transformations) -> Figure:
    """The matrices Π(g) of ``perms: (|G|, N)``, where ``perms[g][k] = π_g(k)``."""
    perms = np.asarray(perms)
    size = perms.shape[1]
    fig, axes = plt.subplots(1, len(perms), figsize=(2.75 * len(perms), 3.2))
    for g, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(permutation_matrix(perms[g]), cmap="Greys", vmin=0, vmax=1)
        _block_lines(ax, n, group.order, "tab:red", 0.8)
        ax.set_title(f"Π({group.labels[g]})")
        ax.set_xlabel("column l (source index)")
        ax.set_xticks(range(size))
        ax.set_yticks(range(size))
        ax.tick_params(labelsize=7)
    np.atleast_1d(axes)[0].set_ylabel("row k (target index)")
    fig.suptitle(f"Permutation matrices of {group.name} on an augmented set of n = {n} images "
                 f"(N = {size})")
    fig.tight_layout()
    return fig


def kernel_invariance(violation: Mapping[str, Sequence[float]], eps: np.ndarray,
                      eps_violation: np.ndarray, groups: Mapping[str, str] | None = None,
                      tolerance: float = 1e-8) -> Figure:
    """Kernel violations: ``violation[name]: (2,)``, ``eps: (m,)``, ``eps_violation: (m, 2)``."""
    # (NNGP, NTK) relative violations per architecture, and for the preprocessing A = 1 + εB
    eps, eps_violation = np.asarray(eps), np.asarray(eps_violation)
    names = list(violation)
    compatible = sum(max(violation[k]) <= tolerance for k in names)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.5, 1]})
    ax = axes[0]
    pos = np.arange(len(names))
    floor = 1e-17  # exact zeros are drawn at this height on the log axis
    for j, (label, colour) in enumerate((("NNGP K", "tab:blue"), ("NTK Θ", "tab:orange"))):
        ax.barh(pos + (j - 0.5) * 0.38, [max(violation[k][j], floor) for k in names], 0.38,
                label=label, color=colour)
    ax.axvline(tolerance, color="k", ls="--", lw=1, label=f"tolerance {tolerance:g}")
    ax.set_xscale("log")
    ticks = [f"{k} ({groups[k]})" if groups and k in groups else k for k in names]
    ax.set_yticks(pos, ticks, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("relative kernel violation  max |k(gx, gx′) − k(x, x′)| / max |k|")
    ax.set_ylabel("architecture (group)")
    ax.set_title(f"Kernel invariance: {compatible} compatible, {len(names) - compatible} broken")
    ax.legend(fontsize=8, loc="upper right")
    ax = axes[1]
    ax.loglog(eps, eps_violation[:, 0], "o-", label="NNGP K")
    ax.loglog(eps, eps_violation[:, 1], "s-", label="NTK Θ")
    ax.loglog(eps, eps_violation[0, 1] * eps / eps[0], "k:", label="slope 1")
    ax.set_xlabel("ε  (preprocessing A = 1 + εB; dimensionless)")
    ax.set_ylabel("relative kernel violation")
    ax.set_title("MLP after a non-orthogonal map, under C4")
    ax.legend(fontsize=8)
    fig.suptitle("Kernels are invariant only for compatible architectures and orthogonal "
                 "representations")
    fig.tight_layout()
    return fig


def block_circulant_gram(theta: np.ndarray, theta_broken: np.ndarray, residual: np.ndarray,
                         n: int, group: Transformations) -> Figure:
    """Invariant and broken NTK Gram matrices and a residual, each ``(|G|·n, |G|·n)``."""
    panels = ((theta, "MLP (invariant): block-circulant", "viridis"),
              (theta_broken, "MLP after x ↦ Ax (not invariant)", "viridis"),
              (residual, "x ↦ Ax: deviation from block-circulant", "RdBu_r"))
    ticks = (np.arange(group.order) + 0.5) * n - 0.5
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, (M, title, cmap) in zip(axes, panels):
        M = np.asarray(M)
        lim = np.abs(M).max()
        limits = {"vmin": -lim, "vmax": lim} if cmap == "RdBu_r" else {}
        im = ax.imshow(M, cmap=cmap, **limits)
        _block_lines(ax, n, group.order, "w" if cmap == "viridis" else "k", 1)
        ax.set_xticks(ticks, [f"h′={label}" for label in group.labels], fontsize=7)
        ax.set_yticks(ticks, [f"h={label}" for label in group.labels], fontsize=7)
        ax.set_xlabel("column index k′ = h′·n + j")
        ax.set_ylabel("row index k = h·n + i")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8, label="NTK value (dimensionless)")
    fig.suptitle(f"NTK Gram matrix on a {group.name}-augmented set (n = {n}, "
                 f"N = {group.order * n}), group-element-major")
    fig.tight_layout()
    return fig
