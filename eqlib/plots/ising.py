"""Figures of the Ising chapter (quick run beside the stored reference run, intervals).

Every function takes ``runs``: a sequence of ``(arrays, config, label)`` — the arrays (a dict, or
an :class:`eqlib.results.Results`, through which they are read) and the config dict of one
results file of ``ising`` and a label naming the run (e.g. from
:func:`eqlib.runner.run_label`) — and draws one column (or row) per run, so the live quick run
and the stored reference run sit side by side. Intervals are those the runner stored: bootstrap
over sub-ensembles for spread vs M, jackknife over members for members vs ensemble.
"""
from __future__ import annotations

import textwrap
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..results import Results

__all__ = ["ising_intervals_vs_members", "ising_member_vs_ensemble", "ising_slopes"]

Run = tuple[Mapping[str, np.ndarray], Mapping[str, Any], str]

SETS = ("test", "other_T", "random", "gaussian")
STAT_LABELS = {"spread": "orbit spread", "rel_spread": "relative orbit spread"}


def _set_titles(cfg: Mapping[str, Any]) -> dict[str, str]:
    temps = ", ".join(f"{t:g}" for t in cfg["train_temperatures"])
    return {"test": f"test (T = {temps})", "other_T": f"other T = {cfg['other_temperature']:g}",
            "random": "random spins (T = ∞)", "gaussian": "Gaussian lattices"}


def _check_runs(runs: Sequence[Run], stat: str) -> None:
    if not runs:
        raise ValueError("runs must hold at least one (arrays, config, label)")
    if stat not in STAT_LABELS:
        raise ValueError(f"stat must be one of {tuple(STAT_LABELS)}, got {stat!r}")


def _wrap(label: str, width: int = 60) -> str:
    return "\n".join(textwrap.wrap(label, width))


def _widths(cfg: Mapping[str, Any]) -> list[int]:
    return list(cfg["widths"])


def _results(arrays: Mapping[str, np.ndarray] | Results) -> Results:
    """The arrays of an ising results file, read by name (:class:`eqlib.results.Results`)."""
    return arrays if isinstance(arrays, Results) else Results("ising", arrays)


def _curve_with_intervals(arrays: Mapping[str, np.ndarray] | Results, key: str, stat: str, name: str):
    """Sizes, estimate, low, high at the last time: the bootstrap interval over sub-ensembles
    where there are at least 4 of them, the jackknife interval over members for the full
    ensemble, and no bar (low = high = estimate) in between."""
    arm = _results(arrays).arm(key)
    sizes = arm.sizes()
    band = arm.interval(f"ensemble_{stat}", name)
    est, low, high = (np.asarray(v)[-1].astype(float) for v in band[:3])
    few = sizes[-1] // sizes < 4
    low[few], high[few] = est[few], est[few]
    if arm.has(f"mve_{stat}", name):
        full = arm.mve(f"mve_{stat}", name)["ensemble"]
        low[-1], high[-1] = full.low, full.high
    return sizes, est, low, high


def ising_intervals_vs_members(runs: Sequence[Run], stat: str = "spread") -> Figure:
    """Final ``stat`` of MLP ensembles against M with 95 % intervals, one row per run, one column per set.

    Markers with bars: every width trained with augmentation (95 % bootstrap interval over the
    disjoint sub-ensembles of a size where there are at least four, the jackknife interval over
    members for the full ensemble, no bar in between); triangles: the control without
    augmentation; black line: the
    infinite-width prediction (mean of the spread of N(μ_t, Σ_t/M) draws) with its ± 1 std band
    (the spread of single ensembles of that size); red line: the same without augmentation.
    """
    _check_runs(runs, stat)
    fig, axes = plt.subplots(len(runs), 4, figsize=(14, 3.5 * len(runs) + 0.4), squeeze=False)
    for row, (arrays, cfg, label) in zip(axes, runs):
        res = _results(arrays)
        widths = _widths(cfg)
        colours = plt.cm.viridis(np.linspace(0.15, 0.85, len(widths)))
        plain = f"mlp_w{cfg['plain_width']}_plain"
        titles = _set_titles(cfg)
        for ax, name in zip(row, SETS):
            series = [(f"mlp_w{w}_aug", colour, "o", f"augmented, width {w}") for w, colour in zip(widths, colours)]
            series.append((plain, "tab:red", "^", f"no augmentation, width {cfg['plain_width']}"))
            for (key, colour, marker, text), shift in zip(series, np.linspace(-0.06, 0.06, len(series))):
                sizes, est, low, high = _curve_with_intervals(res, key, stat, name)
                ax.errorbar(sizes * np.exp(shift), est, yerr=[est - low, high - est], fmt=marker, ms=3.5,
                            color=colour, capsize=2, lw=1, label=text)
            if "ntk_mlp_aug" in res.arms:
                ntk = res.arm("ntk_mlp_aug")
                mean, std = ntk.get(f"predicted_{stat}", name)[-1], ntk.get(f"predicted_{stat}_std", name)[-1]
                ax.plot(ntk.sizes(), mean, "k-", lw=1, label="infinite width, augmented (± 1 std)")
                ax.fill_between(ntk.sizes(), np.maximum(mean - std, 1e-12), mean + std, color="k", alpha=0.12,
                                lw=0)
            if "ntk_mlp_plain" in res.arms:
                ntk = res.arm("ntk_mlp_plain")
                ax.plot(ntk.sizes(), ntk.get(f"predicted_{stat}", name)[-1], "-", color="tab:red", lw=1,
                        label="infinite width, no augmentation")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("ensemble size M (members)")
            ax.set_title(titles[name], fontsize=10)
        row[0].set_ylabel(f"{STAT_LABELS[stat]} at t = {res.array('times')[-1]}\n{_wrap(label, 45)}",
                          fontsize=8.5)
    axes[0, 0].legend(fontsize=6.5, loc="lower left")
    fig.suptitle(f"{STAT_LABELS[stat].capitalize()} of the ensemble against its size, with 95 % "
                 "intervals (bootstrap over sub-ensembles; jackknife over members at the largest M)")
    fig.tight_layout()
    return fig


def ising_member_vs_ensemble(runs: Sequence[Run], stat: str = "spread") -> Figure:
    """Members' mean ``stat`` (open) and the full ensemble's (filled), 95 % jackknife intervals, per set.

    One panel per run; x: evaluation set, one offset per MLP width (augmented) plus the control
    without augmentation (red). Log scale: the gap between open and filled markers is the factor
    by which the ensemble is more invariant than its members.
    """
    _check_runs(runs, stat)
    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 5.0), squeeze=False)
    for ax, (arrays, cfg, label) in zip(axes[0], runs):
        res = _results(arrays)
        widths = _widths(cfg)
        keys = [(f"mlp_w{w}_aug", f"width {w}", c)
                for w, c in zip(widths, plt.cm.viridis(np.linspace(0.15, 0.85, len(widths))))]
        keys.append((f"mlp_w{cfg['plain_width']}_plain", f"width {cfg['plain_width']}, no aug.", "tab:red"))
        offsets = np.linspace(-0.3, 0.3, len(keys))
        for (key, text, colour), dx in zip(keys, offsets):
            for j, name in enumerate(SETS):
                mve = res.arm(key).mve(f"mve_{stat}", name)
                for row, fill in ((0, "none"), (1, colour)):
                    est, low, high, _ = mve["ensemble" if row else "member"]
                    ax.errorbar(j + dx + (0.04 if row else -0.04), est, yerr=[[est - low], [high - est]],
                                fmt="o", ms=5, mfc=fill, color=colour, capsize=2, lw=1,
                                label=(f"{text}: {'ensemble' if row else 'members'}"
                                       if j == 0 else None))
        ax.set_xticks(range(len(SETS)), [_set_titles(cfg)[n] for n in SETS], fontsize=8, rotation=10)
        ax.set_yscale("log")
        ax.set_ylabel(f"{STAT_LABELS[stat]} at t = {res.array('times')[-1]}")
        members = int(res.arm(keys[0][0]).sizes()[-1])
        ax.set_title(_wrap(f"M = {members} members · {label}", 70), fontsize=8.5)
        ax.legend(fontsize=6.5, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.suptitle(f"Members (open) against the ensemble of all members (filled): {STAT_LABELS[stat]}, "
                 "95 % jackknife intervals over members", fontsize=10.5)
    fig.tight_layout()
    return fig


def ising_slopes(runs: Sequence[Run], stat: str = "spread") -> Figure:
    """Slope of log ``stat`` against log M with its 95 % bootstrap interval, per set and width.

    The dotted line at −1/2 is the law for members that fluctuate independently around an
    invariant mean; a slope nearer 0 means a floor (a non-invariant ensemble limit).
    """
    _check_runs(runs, stat)
    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 3.8), squeeze=False, sharey=True)
    for ax, (arrays, cfg, label) in zip(axes[0], runs):
        res = _results(arrays)
        widths = _widths(cfg)
        keys = [(f"mlp_w{w}_aug", f"width {w}", c)
                for w, c in zip(widths, plt.cm.viridis(np.linspace(0.15, 0.85, len(widths))))]
        keys.append((f"mlp_w{cfg['plain_width']}_plain", f"width {cfg['plain_width']}, no aug.", "tab:red"))
        keys.append(("cnn_aug", "CNN", "tab:orange"))
        keys.append(("cnn_plain", "CNN, no aug.", "tab:brown"))
        offsets = np.linspace(-0.3, 0.3, len(keys))
        for (key, text, colour), dx in zip(keys, offsets):
            for j, name in enumerate(SETS):
                if not res.arm(key).has(f"slope_{stat}", name):
                    continue
                est, low, high, _ = res.arm(key).interval(f"slope_{stat}", name)
                ax.errorbar(j + dx, est, yerr=[[est - low], [high - est]], fmt="s" if "cnn" in key else "o",
                            ms=4, color=colour, capsize=2, lw=1, label=text if j == 0 else None)
        ax.axhline(-0.5, color="k", ls=":", lw=1, label="−1/2 (independent members, invariant mean)")
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xticks(range(len(SETS)), [_set_titles(cfg)[n] for n in SETS], fontsize=8, rotation=10)
        ax.set_ylabel(f"slope of log {STAT_LABELS[stat]} vs log M")
        first = res.arm(keys[0][0])
        fitted = ", ".join(str(int(k)) for k in first.slope_sizes()) if first.has("slope_sizes") else "?"
        ax.set_title(_wrap(f"MLPs fitted over M = {fitted} · {label}", 70), fontsize=8.5)
        ax.legend(fontsize=6, ncol=2, loc="upper left")
    fig.suptitle(f"How fast the {STAT_LABELS[stat]} falls with M: slopes with 95 % bootstrap intervals",
                 fontsize=10.5)
    fig.tight_layout()
    return fig
