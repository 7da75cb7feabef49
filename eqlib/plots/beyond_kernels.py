"""Figures of the chapter *Beyond the paper I*: the group-averaged kernel and the member planner.

Every function takes arrays (or small dicts of arrays), draws one figure with pyplot and returns
it. Import as ``from eqlib.plots import beyond_kernels as bk``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

__all__ = ["identity_gaps", "formulation_cost", "planner_validation"]

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _plain_log_ticks(axis, values=None) -> None:
    """Decimal tick labels on a log axis (``values``: put the major ticks exactly there)."""
    if values is not None:
        axis.set_ticks(values)
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def identity_gaps(times: Sequence[float], gaps: Mapping[str, Sequence[float]],
                  tolerance: float) -> Figure:
    """Max |μ_t(augmented) − μ_t(Θ_G)| per case ``{label: (T,)}`` at ``times (T,)`` (∞ allowed).

    Times are plotted at their rank (t = ∞ gets its own tick); gaps on a log scale, exact zeros
    (t = 0) drawn at the bottom of the axis; the dashed line is ``tolerance``.
    """
    times = np.asarray(times, np.float64)
    fig, ax = plt.subplots(figsize=(7, 4))
    positions = np.arange(len(times))
    floor = min([tolerance * 1e-6] + [g for v in gaps.values() for g in np.asarray(v) if g > 0])
    for colour, (label, values) in zip(_COLOURS, gaps.items()):
        values = np.asarray(values, np.float64)
        if values.shape != times.shape:
            raise ValueError(f"gaps[{label!r}] has shape {values.shape}, times {times.shape}")
        ax.semilogy(positions, np.maximum(values, floor / 2), "o-", color=colour, label=label)
    ax.axhline(tolerance, color="k", ls="--", lw=1, label=f"tolerance {tolerance:g}")
    ax.set_xticks(positions, ["∞" if np.isinf(t) else f"{t:g}" for t in times])
    ax.set_xlabel("training time t (gradient steps of the augmented training)")
    ax.set_ylabel("max |μ_t(augmented) − μ_t(Θ_G)|")
    ax.set_title("Augmented infinite ensemble vs kernel regression with Θ_G")
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    return fig


def formulation_cost(sizes: Sequence[int], orders: Sequence[int], augmented: np.ndarray,
                     reduced: np.ndarray, vary: str) -> Figure:
    """Gram + eigendecomposition seconds of the two formulations, ``(S,)`` each.

    ``vary``: ``"n"`` (``sizes`` on the x axis at one |G|) or ``"G"`` (``orders`` on the x axis
    at one n). Left: both times (log–log); right: their ratio with the |G|³ and |G|² guides.
    """
    if vary not in ("n", "G"):
        raise ValueError(f"vary must be 'n' or 'G', got {vary!r}")
    sizes, orders = np.asarray(sizes), np.asarray(orders)
    augmented, reduced = np.asarray(augmented, np.float64), np.asarray(reduced, np.float64)
    x = sizes if vary == "n" else orders
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.loglog(x, augmented, "o-", label="augmented: Θ on |G|·n points")
    left.loglog(x, reduced, "s-", label="reduced: Θ_G on n points")
    label = "training points n" if vary == "n" else "group order |G|"
    left.set_xlabel(label)
    left.set_ylabel("Gram matrix + eigh (s, wall)")
    left.set_title("Cost of the two formulations")
    left.legend(fontsize=8)
    ratio = augmented / reduced
    right.loglog(x, ratio, "o-", color="tab:green", label="measured ratio")
    if vary == "G":
        right.loglog(x, ratio[0] * (x / x[0]) ** 3, ":", color="gray", label="∝ |G|³ (solve)")
        right.loglog(x, ratio[0] * (x / x[0]) ** 2, "--", color="gray", label="∝ |G|² ")
    for ax in (left, right):
        _plain_log_ticks(ax.xaxis, x)
    right.set_xlabel(label)
    right.set_ylabel("augmented / reduced time")
    right.set_title("Saving of Θ_G")
    right.legend(fontsize=8)
    fig.suptitle(f"n = {sizes[0]}" if vary == "G" else f"|G| = {orders[0]}")
    fig.tight_layout()
    return fig


def planner_validation(panels: Mapping[str, Mapping[str, np.ndarray]]) -> Figure:
    """Measured RMS orbit spread at the planned M against the target, one panel per problem.

    ``panels[title][plan]`` is an array ``(K, 5)``: rows (target, planned M, measured estimate,
    low, high). Points on the diagonal hit their target; above it, the plan was too small.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (title, plans) in zip(axes[0], panels.items()):
        everything = []
        for i, (label, rows) in enumerate(plans.items()):
            rows = np.asarray(rows, np.float64)
            if rows.ndim != 2 or rows.shape[1] != 5:
                raise ValueError(f"{title}/{label}: rows must be (K, 5), got {rows.shape}")
            shift = 1 + 0.015 * (i - (len(plans) - 1) / 2)
            err = np.abs(rows[:, 3:5] - rows[:, 2:3]).T
            ax.errorbar(rows[:, 0] * shift, rows[:, 2], yerr=err, fmt="o", capsize=3,
                        color=_COLOURS[i], label=label)
            for t, m, y in rows[:, :3]:
                ax.annotate(f"M={m:g}", (t * shift, y), textcoords="offset points",
                            xytext=(6, -10 if i else 4), fontsize=7, color=_COLOURS[i])
            everything.append(rows[:, [0, 3, 4]])
        span = np.concatenate(everything)
        lim = [span.min() * 0.85, span.max() * 1.15]
        ax.plot(lim, lim, "k--", lw=1, label="measured = target")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax.xaxis, np.unique(span[:, 0]))
        _plain_log_ticks(ax.yaxis)
        ax.set_xlabel("target RMS orbit spread τ")
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("measured RMS orbit spread at planned M (95 % CI)")
    fig.suptitle("Planned ensemble sizes, measured out of sample")
    fig.tight_layout()
    return fig
