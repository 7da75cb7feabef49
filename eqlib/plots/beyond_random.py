"""Figures of the section *Random versus systematic augmentation* (beyond the paper).

Import as ``from eqlib.plots import beyond_random as br``. Every function takes small dicts of
arrays keyed by evaluation set (and by scheme, ``"systematic"`` / ``"random"``), draws one figure
with pyplot — one panel per evaluation set — and returns it.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["spread_over_training", "spread_vs_members", "ratio_over_training"]

MODES = ("systematic", "random")
_COLOURS = {"systematic": "tab:blue", "random": "tab:orange"}


def _check_sets(measured: Mapping, predicted: Mapping) -> list[str]:
    sets = list(measured)
    if not sets:
        raise ValueError("need at least one evaluation set")
    if set(predicted) != set(sets):
        raise ValueError(f"measured and predicted must have the same sets, got {sets} and "
                         f"{list(predicted)}")
    return sets


def _interval(values, length: int, what: str) -> np.ndarray:
    """``(length, 3)``: estimate, low, high."""
    v = np.asarray(values, np.float64)
    if v.shape != (length, 3):
        raise ValueError(f"{what} must be ({length}, 3) (estimate, low, high), got {v.shape}")
    return v


def spread_over_training(epochs: Sequence[float], measured: Mapping[str, Mapping[str, np.ndarray]],
                         predicted: Mapping[str, Mapping[str, np.ndarray]], members: int,
                         problem: str) -> Figure:
    """RMS orbit spread of the M-ensemble vs training time, both schemes, measured and predicted.

    ``measured[set][mode]: (T, 3)`` estimate, low, high; ``predicted[set][mode]: (T,)`` the
    infinite-width prediction for M = ``members`` (lines); ``epochs: (T,)``.
    """
    epochs = np.asarray(epochs, np.float64)
    sets = _check_sets(measured, predicted)
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.8), squeeze=False)
    for ax, s in zip(axes[0], sets):
        for mode in MODES:
            m = _interval(measured[s][mode], len(epochs), f"measured[{s!r}][{mode!r}]")
            c = _COLOURS[mode]
            ax.errorbar(epochs, m[:, 0], yerr=[m[:, 0] - m[:, 1], m[:, 2] - m[:, 0]], fmt="o",
                        ms=4, capsize=2, color=c, label=f"{mode}: measured, M = {members}")
            ax.plot(epochs, np.asarray(predicted[s][mode], np.float64), "-", color=c, lw=1.2,
                    label=f"{mode}: infinite width")
        ax.set_xlabel("training time (epochs of |G|·n gradient evaluations)")
        ax.set_title(f"{s}")
        ax.set_ylim(bottom=0)
    axes[0, 0].set_ylabel("RMS orbit spread of the ensemble mean")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{problem}: the two schemes' ensembles are about equally invariant over training")
    fig.tight_layout()
    return fig


def spread_vs_members(sizes: Sequence[int], measured: Mapping[str, Mapping[str, np.ndarray]],
                      predicted: Mapping[str, Mapping[str, np.ndarray]], epoch: int,
                      problem: str) -> Figure:
    """RMS orbit spread vs ensemble size M (log-log) at the end of training, with 1/√M predictions.

    ``measured[set][mode]: (K, 3)`` over disjoint sub-ensembles (estimate, low, high);
    ``predicted[set][mode]: (K,)``; ``sizes: (K,)``.
    """
    sizes = np.asarray(sizes, np.float64)
    sets = _check_sets(measured, predicted)
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.8), squeeze=False)
    for ax, s in zip(axes[0], sets):
        for k, mode in enumerate(MODES):
            m = _interval(measured[s][mode], len(sizes), f"measured[{s!r}][{mode!r}]")
            c = _COLOURS[mode]
            shift = sizes * (1.06 if k else 1 / 1.06)          # side by side, not on top
            ax.errorbar(shift, m[:, 0], yerr=[m[:, 0] - m[:, 1], m[:, 2] - m[:, 0]], fmt="o",
                        ms=4, capsize=2, color=c, label=f"{mode}: measured")
            ax.plot(sizes, np.asarray(predicted[s][mode], np.float64), "-", color=c, lw=1.2,
                    label=f"{mode}: infinite width ∝ 1/√M")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ensemble size M (members)")
        ax.set_title(f"{s}, after {epoch} epochs")
    axes[0, 0].set_ylabel("RMS orbit spread of the ensemble mean")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{problem}: both schemes shrink like 1/√M, with the same prefactor")
    fig.tight_layout()
    return fig


def ratio_over_training(epochs: Sequence[float], member: Mapping[str, np.ndarray],
                        ensemble: Mapping[str, np.ndarray], predicted: Mapping[str, np.ndarray],
                        members: int, problem: str) -> Figure:
    """Random over systematic orbit spread vs training time: member mean, ensemble, infinite width.

    ``member[set]``, ``ensemble[set]: (T, 3)`` estimate, low, high (paired jackknife);
    ``predicted[set]: (T, 2)`` the infinite-width ratio and its Monte-Carlo standard error.
    """
    epochs = np.asarray(epochs, np.float64)
    sets = _check_sets(member, predicted)
    if set(ensemble) != set(sets):
        raise ValueError(f"ensemble must have the sets {sets}, got {list(ensemble)}")
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.8), squeeze=False)
    for ax, s in zip(axes[0], sets):
        p = np.asarray(predicted[s], np.float64)
        if p.shape != (len(epochs), 2):
            raise ValueError(f"predicted[{s!r}] must be ({len(epochs)}, 2), got {p.shape}")
        ax.fill_between(epochs, p[:, 0] - 2 * p[:, 1], p[:, 0] + 2 * p[:, 1], color="0.8",
                        label="infinite width (±2 s.e.)")
        ax.plot(epochs, p[:, 0], "k-", lw=1)
        for values, label, fmt, dx in ((member[s], "members (mean ratio)", "s", -0.8),
                                       (ensemble[s], f"ensemble, M = {members}", "o", 0.8)):
            v = _interval(values, len(epochs), f"{label} [{s!r}]")
            ax.errorbar(epochs + dx, v[:, 0], yerr=[v[:, 0] - v[:, 1], v[:, 2] - v[:, 0]],
                        fmt=fmt, ms=4, capsize=2, label=label)
        ax.axhline(1.0, color="0.4", ls=":", lw=1)
        ax.set_xlabel("training time (epochs of |G|·n gradient evaluations)")
        ax.set_title(s)
    axes[0, 0].set_ylabel("orbit spread: random / systematic")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{problem}: random augmentation adds a little orbit spread, most on training inputs")
    fig.tight_layout()
    return fig
