"""Figures of the chapter "Beyond the paper II" (FashionMNIST): built-in invariance against the
augmented ensemble at equal compute, and equivariant uncertainty.

Import as ``from eqlib.plots import beyond_fashion as bf``. Every function takes what the
:mod:`eqlib.experiments.beyond_fashion` helpers return (rows, intervals, scores) and returns a
Figure; ``label`` (e.g. :func:`eqlib.runner.run_label`) says which run is shown.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["accuracy_invariance_cost", "orbit_scores_examples", "variance_share_vs_members", "ood_auroc"]

_FAMILY_STYLE = (("symmetrised", "tab:purple", "D"), ("augmented", "tab:blue", "o"),
                 ("GCNN", "tab:green", "s"), ("canonicalised", "tab:orange", "^"))
_SET_TITLES = {"test": "FashionMNIST test", "mnist": "MNIST digits", "noise": "block noise"}


def _style(model: str) -> tuple[str, str]:
    for prefix, colour, marker in _FAMILY_STYLE:
        if model.startswith(prefix):
            return colour, marker
    return "tab:gray", "x"


def _err(interval: Sequence[float]) -> tuple[float, list[list[float]]]:
    est, low, high = (float(v) for v in interval)
    return est, [[max(est - low, 0.0)], [max(high - est, 0.0)]]


def accuracy_invariance_cost(rows: Sequence[Mapping], label: str = "") -> Figure:
    """Test accuracy and OSP fraction on noise of every row of
    :func:`eqlib.experiments.beyond_fashion.comparison_rows` against its training cost (GFLOP).

    Filled markers: single networks (mean over seeds/members); open markers: ensembles. Bars: 95 %
    jackknife intervals over the networks of the row.
    """
    if not rows:
        raise ValueError("rows must not be empty")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for row in rows:
        colour, marker = _style(row["model"])
        ensemble = row["networks"] > 1
        for ax, col in zip(axes, ("acc", "osp_noise")):
            est, err = _err(row[col])
            ax.errorbar([row["train_gflop"]], [est], yerr=err, color=colour, marker=marker, capsize=3, ms=7,
                        mfc="white" if ensemble else colour, ls="none")
            if col == "acc" or est < 0.999:       # the exactly invariant rows share one label
                ax.annotate(row["model"], (row["train_gflop"], est), textcoords="offset points",
                            xytext=(6, 3), fontsize=7, color=colour)
    for ax, ylabel in zip(axes, ("accuracy on upright test images", "OSP fraction on block noise")):
        ax.set_xscale("log")
        ax.set_xlabel("training cost (GFLOP, all networks of the row)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[1].annotate("at 1: built-in invariance (GCNN, canonicalised, symmetrised)", (0.02, 0.91),
                     xycoords="axes fraction", fontsize=7, va="top")
    axes[0].set_title("accuracy")
    axes[1].set_title("invariance off the data manifold")
    fig.suptitle(label, fontsize=9)
    fig.tight_layout()
    return fig


def orbit_scores_examples(scores: Mapping[str, Mapping[str, np.ndarray]], inputs: Sequence[int] = range(8),
                          member: int = 0, label: str = "") -> Figure:
    """Scores along the C4 orbit of a few inputs: a member's confidence and the ensemble's variance.

    ``scores[set]``: :func:`eqlib.experiments.beyond_fashion.orbit_scores` of the augmented
    ensemble on that set. One line per input over the four rotations; each panel's scores are
    divided by their mean over all inputs and rotations, so flat lines mean invariant and the
    two rows share a scale.
    """
    sets = list(scores)
    if not sets:
        raise ValueError("scores must name at least one set")
    inputs = list(inputs)
    fig, axes = plt.subplots(2, len(sets), figsize=(3.8 * len(sets), 5.6), squeeze=False, sharex=True)
    rows = (("member_confidence", f"member {member}: max-softmax confidence"),
            ("ensemble_variance", "ensemble: predictive variance"))
    for j, name in enumerate(sets):
        for i, (score, title) in enumerate(rows):
            values = np.asarray(scores[name][score])
            values = values[member] if values.ndim == 3 else values               # (|G|, n)
            rel = values / values.mean()
            ax = axes[i, j]
            ax.plot(np.arange(values.shape[0]), rel[:, inputs], marker="o", lw=1, ms=3)
            ax.set_title(f"{_SET_TITLES.get(name, name)}\n{title}", fontsize=9)
            ax.set_xticks(range(values.shape[0]))
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("score ÷ its mean over the set")
            if i == 1:
                ax.set_xlabel("quarter turns of the input")
    fig.suptitle(label, fontsize=9)
    fig.tight_layout()
    return fig


def variance_share_vs_members(curves: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
                              member_shares: Mapping[str, Mapping[str, Sequence[float]]],
                              label: str = "") -> Figure:
    """Within-orbit share of the ensemble's predictive variance against the ensemble size.

    ``curves[arm][set]``: :func:`eqlib.experiments.beyond_fashion.variance_share_by_size`;
    ``member_shares[arm][set]``: ``(estimate, low, high)`` of the members' max-softmax
    confidence, drawn as a band. One panel per set; arms ``C4`` (blue) and ``none`` (red).
    """
    colours = {"C4": "tab:blue", "none": "tab:red"}
    names = {"C4": "C4 augmentation", "none": "no augmentation"}
    sets = list(next(iter(curves.values())))
    fig, axes = plt.subplots(1, len(sets), figsize=(4 * len(sets), 3.8), squeeze=False, sharey=True)
    for j, name in enumerate(sets):
        ax = axes[0, j]
        for arm, by_set in curves.items():
            c = by_set[name]
            ax.errorbar(c["sizes"], c["share"], yerr=c["share_std"], color=colours.get(arm), marker="o",
                        capsize=3, label=f"ensemble variance, {names.get(arm, arm)}")
            est, low, high = (float(v) for v in member_shares[arm][name])
            ax.axhspan(low, high, color=colours.get(arm), alpha=0.15)
            ax.axhline(est, color=colours.get(arm), ls="--", lw=1,
                       label=f"member confidence, {names.get(arm, arm)}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(c["sizes"], [str(k) for k in c["sizes"]])
        ax.set_xlabel("ensemble size M")
        ax.set_title(_SET_TITLES.get(name, name), fontsize=10)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("within-orbit share of the score's variance")
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.suptitle(label, fontsize=9)
    fig.tight_layout()
    return fig


def ood_auroc(aurocs: Mapping[tuple[str, str], Sequence[float]], label: str = "") -> Figure:
    """AUROC of the ensemble's predictive variance, FashionMNIST test (in) against MNIST (out).

    ``aurocs[(arm, view)] = (estimate, low, high)`` (:func:`eqlib.experiments.beyond_fashion.ood_aurocs`):
    arms ``C4`` and ``none``, views ``upright`` and ``rotated``; 0.5 is chance.
    """
    arms = sorted({a for a, _ in aurocs}, key=lambda a: a != "C4")
    views = sorted({v for _, v in aurocs}, key=lambda v: v != "upright")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    width = 0.35
    for i, view in enumerate(views):
        for j, arm in enumerate(arms):
            est, err = _err(aurocs[(arm, view)])
            ax.bar([j + (i - 0.5) * width], [est], width, yerr=err, capsize=4,
                   color="tab:blue" if view == "upright" else "tab:cyan", edgecolor="black",
                   label=view if j == 0 else None)
    ax.axhline(0.5, color="black", ls=":", lw=1, label="chance")
    ax.set_xticks(range(len(arms)))
    names = {"C4": "C4-augmented ensemble", "none": "unaugmented ensemble"}
    ax.set_xticklabels([names.get(a, a) for a in arms])
    ax.set_ylabel("AUROC (test in, MNIST out)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(label, fontsize=9)
    fig.tight_layout()
    return fig
