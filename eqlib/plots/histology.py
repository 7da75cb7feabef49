"""Figures of the histology chapter (quick run beside the stored reference run, intervals).

Every function takes the arrays of a results file (:func:`eqlib.runner.latest_results` or
:func:`eqlib.runner.stored_results`) and returns a Figure. A run is passed as ``(label, arrays)``:
``label`` (e.g. :func:`eqlib.runner.run_label`) heads its row of panels, so every figure says which
preset, device, date and commit it shows. The training modes of a run (``plain``, ``C4``, ``D4``)
are read from its arrays.
"""
from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..data.histology import CLASSES
from ..experiments.histology import EVAL_SETS
from ..results import Results

__all__ = [
    "histology_modes",
    "histology_accuracy",
    "histology_member_vs_ensemble",
    "histology_growth",
    "histology_osp_blind_spots",
]

Arrays = Mapping[str, np.ndarray]
Run = tuple[str, Arrays]               # (label, arrays)

MODE_STYLE = {"plain": ("tab:grey", "no augmentation"), "C4": ("tab:blue", "C4 augmentation"),
              "D4": ("tab:green", "D4 augmentation")}
SET_TITLES = {"test": "held-out tissue", "noise": "uniform noise", "jitter": "colour-jittered tissue",
              "fashion": "FashionMNIST"}
SET_TICKS = {"test": "held-out\ntissue", "noise": "noise", "jitter": "jittered\ntissue", "fashion": "Fashion-\nMNIST"}
STAT_TITLES = {"osp": "OSP fraction", "kl": "symmetric orbit KL (nats)",
               "rspread": "relative orbit spread", "spread": "orbit spread of the logits",
               "consistent": "consistent share"}


def _results(arrays: Arrays | Results) -> Results:
    """The arrays of a histology results file, read by name (:class:`eqlib.results.Results`)."""
    return arrays if isinstance(arrays, Results) else Results("histology", arrays)


def histology_modes(arrays: Arrays | Results) -> tuple[str, ...]:
    """The training modes stored in a run, in the order plain, C4, D4."""
    arms = _results(arrays).arms
    return tuple(m for m in ("plain", "C4", "D4") if m in arms)


def _errorbar(ax, x: float, interval, **style) -> None:
    """One point with its interval ``(estimate, low, high)`` or an :class:`~eqlib.metrics.Interval`."""
    est, low, high = (float(v) for v in tuple(interval)[:3])
    ax.errorbar([x], [est], yerr=[[max(est - low, 0.0)], [max(high - est, 0.0)]], capsize=3, ms=5, **style)


def _rows(labels: Sequence[str], ncols: int, panel: tuple[float, float]) -> tuple[Figure, list]:
    """A figure with one row of ``ncols`` panels per run, each row headed by its run's label."""
    fig = plt.figure(figsize=(panel[0] * ncols, panel[1] * len(labels) + 0.5), layout="constrained")
    subs = np.atleast_1d(fig.subfigures(len(labels), 1))
    rows = []
    for sub, label in zip(subs, labels):
        rows.append(sub.subplots(1, ncols, squeeze=False)[0])
        sub.suptitle(label, fontsize=8, style="italic")
    return fig, rows


def histology_accuracy(runs: Sequence[Run]) -> Figure:
    """Held-out accuracy per training mode: the full ensemble and the mean member with 95 % bootstrap
    intervals over held-out patches (``{mode}/test/accuracy_patches: (3,)``), every patch's accuracy
    as a dot, and chance (1/9). One panel per run."""
    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 3.6), squeeze=False, sharey=True)
    for ax, (label, arrays) in zip(axes[0], runs):
        modes = histology_modes(arrays)
        for i, mode in enumerate(modes):
            colour, text = MODE_STYLE[mode]
            arm = _results(arrays).arm(mode)
            dots = np.asarray(arm.patch_accuracy("test"))
            jitter = np.linspace(-0.12, 0.12, len(dots))
            ax.plot(i + 0.15 + jitter, dots, ".", color=colour, alpha=0.35, ms=4,
                    label="one held-out patch (ensemble)" if i == 0 else None)
            _errorbar(ax, i - 0.12, arm.interval("member_accuracy_patches", "test"), color=colour, marker="o",
                      mfc="white", label="mean member" if i == 0 else None)
            _errorbar(ax, i + 0.0, arm.interval("accuracy_patches", "test"), color=colour, marker="s",
                      label="ensemble" if i == 0 else None)
        ax.axhline(1 / len(CLASSES), color="k", ls="--", lw=1, label="chance (1/9)")
        ax.set_xticks(range(len(modes)), [MODE_STYLE[m][1] for m in modes], fontsize=8)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(textwrap.fill(label, 58), fontsize=8)
    axes[0, 0].set_ylabel("accuracy on held-out patches")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.suptitle("Accuracy with 95 % bootstrap intervals over the held-out patches", fontsize=10)
    fig.tight_layout()
    return fig


def histology_member_vs_ensemble(runs: Sequence[Run], group: str = "D4",
                                 stats: Sequence[str] = ("osp", "kl", "rspread"),
                                 sets: Sequence[str] = EVAL_SETS) -> Figure:
    """Mean member (open) against the full ensemble (filled) with 95 % jackknife intervals over
    members (``{mode}/{set}/mve_{stat}_{group}: (3, 3)``), per set, statistic and training mode.
    One row of panels per run."""
    fig, axes = _rows([label for label, _ in runs], len(stats), (4.2, 3.2))
    for row, (label, arrays) in zip(axes, runs):
        modes = histology_modes(arrays)
        width = 0.8 / len(modes)
        for ax, stat in zip(row, stats):
            for a, mode in enumerate(modes):
                colour, text = MODE_STYLE[mode]
                for j, name in enumerate(sets):
                    iv = _results(arrays).arm(mode).mve(f"mve_{stat}_{group}", name)
                    x = j - 0.4 + width * (a + 0.5)
                    _errorbar(ax, x - width / 5, iv["member"], color=colour, marker="o", mfc="white",
                              label=f"members, {text}" if j == 0 else None)
                    _errorbar(ax, x + width / 5, iv["ensemble"], color=colour, marker="o",
                              label=f"ensemble, {text}" if j == 0 else None)
            ax.set_xticks(range(len(sets)), [SET_TICKS[s] for s in sets], fontsize=7)
            ax.set_ylabel(f"{STAT_TITLES[stat]}, {group}", fontsize=8)
            if stat == "kl":
                ax.set_yscale("log")
            if stat in ("osp", "consistent"):
                ax.set_ylim(top=1.01)
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.suptitle(f"Members (open) against the ensemble (filled) on the {group} orbit, 95 % intervals over "
                 "members: OSP higher is more invariant, KL and spread lower", fontsize=10)
    return fig


def histology_growth(runs: Sequence[Run], stat: str = "kl", group: str = "D4", relative: bool = False,
                     sets: Sequence[str] = EVAL_SETS) -> Figure:
    """A statistic of ensembles of growing size M (``{mode}/{set}/{stat}_{group}: (K,)`` with bootstrap
    bands over disjoint sub-ensembles ``_low``/``_high``); M = 1 is the mean member. ``relative``
    divides by the M = 1 value and draws 1/√M. One row per run, one panel per set."""
    fig, axes = _rows([label for label, _ in runs], len(sets), (3.3, 2.9))
    for row, (label, arrays) in zip(axes, runs):
        res = _results(arrays)
        sizes = np.asarray(res.array("sizes"))
        for ax, name in zip(row, sets):
            for mode in histology_modes(res):
                colour, text = MODE_STYLE[mode]
                band = res.arm(mode).interval(f"{stat}_{group}", name)
                est, low, high = (np.asarray(v, dtype=float) for v in band[:3])
                scale = est[0] if relative and est[0] > 0 else 1.0
                ax.plot(sizes, est / scale, marker="o", ms=3, color=colour, label=text)
                ax.fill_between(sizes, low / scale, high / scale, color=colour, alpha=0.15, lw=0)
            if relative:
                ax.plot(sizes, 1 / np.sqrt(sizes), "k--", lw=1, label="$1/\\sqrt{M}$")
                ax.set_yscale("log")
                ticks = [t for t in (0.1, 0.2, 0.3, 0.5, 0.7, 1.0) if t >= 0.8 / np.sqrt(sizes[-1])]
                ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes, [str(s) for s in sizes])
            ax.minorticks_off()
            ax.set_title(SET_TITLES[name], fontsize=8)
            ax.set_xlabel("ensemble size M (members)", fontsize=8)
        what = STAT_TITLES[stat] + (" / its value at M = 1" if relative else "")
        row[0].set_ylabel(f"{what}\n({group} orbit)", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="best")
    title = STAT_TITLES[stat]
    fig.suptitle(f"{title[0].upper() + title[1:]} of ensembles of growing size "
                 "(bands: 95 % bootstrap over disjoint sub-ensembles)", fontsize=10)
    return fig


def histology_osp_blind_spots(arrays: Arrays, name: str = "noise", group: str = "D4",
                              label: str = "") -> Figure:
    """Where the OSP misleads, on one set: left, the classes the full ensemble predicts (a constant
    classifier is perfectly invariant); right, every input's logit margin (top-1 minus top-2 at the
    identity) against the ensemble's orbit KL, orbits that keep their class (dots) and those that do
    not (crosses). One colour per training mode."""
    modes = histology_modes(arrays)
    order = 4 if group == "C4" else 8
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / len(modes)
    for a, mode in enumerate(modes):
        colour, text = MODE_STYLE[mode]
        arm = _results(arrays).arm(mode)
        pred = np.asarray(arm.ensemble_pred(name))[0]
        share = np.bincount(pred, minlength=len(CLASSES)) / len(pred)
        left.bar(np.arange(len(CLASSES)) - 0.4 + width * (a + 0.5), share, width, color=colour, label=text)
        margin = np.maximum(np.asarray(arm.margin(name)), 1e-4)                     # log axis
        kl = np.maximum(np.asarray(arm.get(f"ensemble_kl_{group}", name)), 1e-6)
        whole = np.asarray(arm.get(f"ensemble_counts_{group}", name)) == order
        right.scatter(margin[whole], kl[whole], s=6, color=colour, alpha=0.4, marker="o")
        right.scatter(margin[~whole], kl[~whole], s=18, color=colour, alpha=0.9, marker="x",
                      label=f"{text}: class changes on the orbit ({(~whole).sum()})")
    left.set_xticks(range(len(CLASSES)), CLASSES, fontsize=8)
    left.set_ylabel("share of inputs")
    left.set_title(f"{SET_TITLES[name]}: class of the full ensemble", fontsize=9)
    left.legend(fontsize=7)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("logit margin of the ensemble (top-1 − top-2)")
    right.set_ylabel(f"ensemble orbit KL, {group} (nats)")
    right.set_title("flips (×) need small margins; KL sees all orbits", fontsize=9)
    right.legend(fontsize=7, loc="best")
    if label:
        fig.suptitle(label, fontsize=8, style="italic")
    fig.tight_layout()
    return fig
