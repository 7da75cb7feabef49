"""Figures of the FashionMNIST chapter (quick run beside the stored reference run, intervals).

Every function takes stored arrays (``results.npz`` of :func:`eqlib.runner.latest_results` or
:func:`eqlib.runner.stored_results`) or logits computed from them, and returns a Figure. A run
is passed as ``(label, arrays, width)``: ``label`` (e.g. :func:`eqlib.runner.run_label`) heads
its row of panels, so every figure says which preset, device, date and commit it shows.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter, NullLocator

from ..experiments.fashion_mnist import EVAL_SETS, covering_kappa
from ..metrics import orbit_same_prediction, orbit_symmetric_kl
from ..results import Results

__all__ = [
    "fashion_member_vs_ensemble",
    "fashion_continuous_vs_members",
    "fashion_osp_against_kl",
    "fashion_so2_intervals",
]

Arrays = Mapping[str, np.ndarray]
Run = tuple[str, Arrays, int]          # (label, arrays, width)

_SET_TITLES = {"test": "FashionMNIST test (on the manifold)", "mnist": "MNIST digits (off it)",
               "noise": "block noise (far off it)"}
_STAT_TITLES = {"osp": "OSP (of 4 rotations)", "kl": "symmetric orbit KL (nats)",
                "rel_spread": "relative orbit spread of the logits"}
_ARMS = (("C4", "tab:blue", "C4 augmentation"), ("none", "tab:red", "no augmentation"))


def _arm(arrays: Arrays | Results, width: int, aug: str):
    """The ensemble ``c{width}_{aug}`` of a run, read by name (:class:`eqlib.results.Results`)."""
    res = arrays if isinstance(arrays, Results) else Results("fashion_mnist", arrays)
    return res.arm(f"c{width}_{aug}")


def _errorbar(ax, x: float, interval: np.ndarray, **style) -> None:
    """One point with its interval: ``interval = (estimate, low, high)`` or an :class:`Interval`."""
    est, low, high = (float(v) for v in tuple(interval)[:3])
    ax.errorbar([x], [est], yerr=[[max(est - low, 0.0)], [max(high - est, 0.0)]], capsize=3, ms=5, **style)


def _log_ticks(axis) -> None:
    """Label a log axis at 1, 2, 5 × powers of ten, in plain numbers."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def fashion_member_vs_ensemble(runs: Sequence[Run], stats: Sequence[str] = ("osp", "kl", "rel_spread"),
                               sets: Sequence[str] = EVAL_SETS) -> Figure:
    """Members (open) against the ensemble (filled) with 95 % intervals, per set and statistic.

    Reads ``c{width}_{arm}/interval/{stat}/{set}: (3, 3)`` (rows member, ensemble, difference;
    columns estimate, low, high) for the C4 arm and the control. One row of panels per run.
    """
    fig, axes = plt.subplots(len(runs), len(stats), figsize=(4.1 * len(stats), 3.2 * len(runs) + 0.4),
                             squeeze=False)
    for row, (label, arrays, width) in zip(axes, runs):
        for ax, stat in zip(row, stats):
            for a, (arm, colour, text) in enumerate(_ARMS):
                for j, name in enumerate(sets):
                    iv = _arm(arrays, width, arm).mve(f"interval/{stat}", name)
                    x = j + (a - 0.5) * 0.36
                    _errorbar(ax, x - 0.07, iv["member"], color=colour, marker="o", mfc="white",
                              label=f"members, {text}" if j == 0 else None)
                    _errorbar(ax, x + 0.07, iv["ensemble"], color=colour, marker="o",
                              label=f"ensemble, {text}" if j == 0 else None)
            ax.set_xticks(range(len(sets)), [s for s in sets])
            ax.set_xlim(-0.6, len(sets) - 0.4)
            if stat == "kl":
                ax.set_yscale("log")
                _log_ticks(ax.yaxis)
            if stat == "osp":
                ax.axhline(4, color="k", lw=0.6)
            ax.set_ylabel(_STAT_TITLES[stat])
            ax.set_xlabel("evaluation set")
        row[0].set_title(label, loc="left", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.suptitle("Members (open) against the ensemble (filled), 95 % jackknife intervals over members")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def fashion_continuous_vs_members(runs: Sequence[Run], stat: str = "kl",
                                  sets: Sequence[str] = EVAL_SETS) -> Figure:
    """Ensemble ``stat`` over the members' mean against the ensemble size M, per set; one row per run.

    Reads ``member_{stat}/{set}: (M,)`` and ``ensemble_{stat}/{set}``, ``ensemble_{stat}_std/{set}:
    (K,)`` (mean and std over disjoint blocks). The guide is what independent deviations from an
    invariant mean give: ``1/M`` for the KL (quadratic in small deviations), ``1/√M`` for the spread.
    """
    if stat not in ("kl", "rel_spread"):
        raise ValueError(f"stat must be 'kl' or 'rel_spread', got {stat!r}")
    power = 1.0 if stat == "kl" else 0.5
    fig, axes = plt.subplots(len(runs), len(sets), figsize=(4 * len(sets), 3.1 * len(runs) + 0.4),
                             squeeze=False, sharey=True)
    for row, (label, arrays, width) in zip(axes, runs):
        for ax, name in zip(row, sets):
            sizes = None
            for arm, colour, text in _ARMS:
                ens = _arm(arrays, width, arm)
                sizes = np.asarray(ens.sizes())
                ref = np.asarray(ens.get(f"member_{stat}", name)).mean()
                ax.errorbar(sizes, np.asarray(ens.get(f"ensemble_{stat}", name)) / ref,
                            np.asarray(ens.get(f"ensemble_{stat}_std", name)) / ref, marker="o", ms=4,
                            capsize=2, color=colour, label=text)
            ax.plot(sizes, sizes ** -power, "k--", lw=0.8, label="1/M" if power == 1 else "1/√M")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            _log_ticks(ax.yaxis)
            ax.set_xticks(sizes, [str(int(s)) for s in sizes])
            ax.set_xlabel("ensemble size M")
            ax.set_title("\n" + _SET_TITLES[name], fontsize=9)
        row[0].set_title(f"{label}\n", loc="left", fontsize=8)
        row[0].set_ylabel(f"{_STAT_TITLES[stat]}\nensemble / members' mean")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def fashion_osp_against_kl(models: Mapping[str, np.ndarray], seed: int = 0) -> Figure:
    """Per input: OSP count (jittered) against the symmetric orbit KL, one panel per model.

    ``models``: title → logits on the orbit ``(|G|, n, C)`` of one model (a member or an
    ensemble). Points at OSP |G| with a large KL are orbits whose class never changes although the
    predicted distribution does (a confident favourite class); points below |G| with a tiny KL are
    near-ties that flip under a rotation.
    """
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.3), sharey=True, squeeze=False)
    for ax, (title, logits) in zip(axes[0], models.items()):
        logits = np.asarray(logits, dtype=np.float32)
        counts = orbit_same_prediction(logits).counts
        kl = np.maximum(orbit_symmetric_kl(logits), 1e-6)
        ax.scatter(kl, counts + rng.uniform(-0.15, 0.15, counts.shape), s=6, alpha=0.5)
        ax.set_xscale("log")
        _log_ticks(ax.xaxis)
        ax.set_xlabel("symmetric orbit KL of the input (nats)")
        ax.set_yticks(range(1, logits.shape[-3] + 1))
        ax.set_title(title, fontsize=8)
    axes[0, 0].set_ylabel("OSP of the input")
    fig.tight_layout()
    return fig


def fashion_so2_intervals(label: str, arrays: Arrays, width: int, groups: Sequence[str], name: str = "test",
                          stats: Sequence[str] = ("osp", "kl", "rel_spread")) -> Figure:
    """SO(2) statistics of members and ensemble with 95 % intervals against κ of the augmentation C_k.

    Reads ``c{width}_{aug}/so2/interval/{stat}/{name}: (3, 3)``; the OSP is shown as a fraction of
    the ``angles`` sampled.
    """
    res = arrays if isinstance(arrays, Results) else Results("fashion_mnist", arrays)
    angles = len(res.array("angles"))
    fig, axes = plt.subplots(1, len(stats), figsize=(4.1 * len(stats), 3.3), squeeze=False)
    for ax, stat in zip(axes[0], stats):
        scale = 1 / angles if stat == "osp" else 1.0
        for aug in groups:
            kappa = covering_kappa(1 if aug == "none" else int(aug[1:]))
            mve = _arm(res, width, aug).mve(f"so2/interval/{stat}", name)
            member, ensemble = (np.asarray(mve[row][:3]) * scale for row in ("member", "ensemble"))
            _errorbar(ax, kappa * 0.97, member, color="tab:gray", marker="s", mfc="white",
                      label="members" if aug == groups[0] else None)
            _errorbar(ax, kappa * 1.03, ensemble, color="tab:green", marker="o",
                      label="ensemble" if aug == groups[0] else None)
            ax.annotate(aug, (kappa, ensemble[0]), textcoords="offset points", xytext=(5, 5), fontsize=8)
        kappas = [covering_kappa(1 if aug == "none" else int(aug[1:])) for aug in groups]
        ax.set_xscale("log")
        ax.set_xticks(kappas, [f"{k:.2f}" for k in kappas])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("κ = 2 sin(π/2k) of the augmentation group")
        ax.set_ylabel("SO(2) OSP fraction" if stat == "osp" else _STAT_TITLES[stat])
        if stat == "kl":
            ax.set_yscale("log")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Under {angles} sampled rotations ({name}), 95 % jackknife intervals — {label}", fontsize=9)
    fig.tight_layout()
    return fig
