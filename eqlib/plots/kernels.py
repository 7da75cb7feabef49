"""Figures of the kernel chapters: ntk, theorem and what_breaks_it.

Every function takes arrays (or small dicts of arrays), draws one figure with pyplot — so that the
notebook's inline backend shows it once when the cell ends — and returns it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from ..breaking import MonteCarloSplit

__all__ = [
    # ntk
    "kernels_at_initialisation",
    "ensemble_error_vs_width",
    "ensemble_over_training",
    # theorem
    "augmentation_control",
    "members_vs_ensemble",
    "proof_diagram",
    # what_breaks_it
    "finite_ensemble_violation",
    "finite_width_split",
    "covering_bound_violation",
    "tail_bound_check",
    "subgroup_augmentation_floor",
]

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


# ---------------------------------------------------------------------------------------- ntk


def kernels_at_initialisation(nngp_analytic: np.ndarray, nngp_sampled: np.ndarray,
                              num_networks: int, widths: Sequence[float],
                              ntk_errors: Sequence[float], fit: tuple[float, float]) -> Figure:
    """Sampled vs analytic NNGP kernel (n, n); NTK error vs width (n_widths,) with its fit."""
    nngp_analytic, nngp_sampled = np.asarray(nngp_analytic), np.asarray(nngp_sampled)
    widths, ntk_errors = np.asarray(widths, np.float64), np.asarray(ntk_errors, np.float64)
    slope, intercept = fit
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    left.scatter(nngp_analytic.ravel(), nngp_sampled.ravel(), s=6, alpha=0.6)
    both = np.concatenate([nngp_analytic.ravel(), nngp_sampled.ravel()])
    lim = [both.min(), both.max()]
    left.plot(lim, lim, "k--", lw=1, label="equality")
    left.set_xlabel("analytic NNGP kernel K(x, x′)")
    left.set_ylabel(f"covariance of {num_networks} random networks")
    left.set_title("NNGP: output covariance at initialisation")
    left.legend()
    right.loglog(widths, ntk_errors, "o", label="measured")
    right.loglog(widths, np.exp(intercept) * widths ** slope, "-", label=f"fit: slope {slope:.2f}")
    right.loglog(widths, ntk_errors[0] * (widths / widths[0]) ** -0.5, ":", color="gray",
                 label="slope −1/2")
    right.set_xlabel("hidden width w (units)")
    right.set_ylabel("‖Θ̂ − Θ‖_F / ‖Θ‖_F at initialisation")
    right.set_title("Empirical NTK → analytic NTK")
    right.legend()
    fig.suptitle("Random networks sample the NNGP kernel; their NTK converges like 1/√w")
    fig.tight_layout()
    return fig


def ensemble_error_vs_width(widths: Sequence[int], errors: Mapping[str, Sequence[float]],
                            fits: Mapping[str, tuple[float, float]], mc_floor: float,
                            members: int, steps: int) -> Figure:
    """Errors of trained ensembles vs width: errors[key] (n_widths,), fits[key] (slope, log c)."""
    widths = np.asarray(widths, np.float64)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    for key, label, style in (("member", "one member vs its twin", "o-"),
                              ("mean_width", "ensemble mean: width part", "s-"),
                              ("mean_total", "ensemble mean vs μ_t (total)", "^--")):
        left.loglog(widths, errors[key], style, label=label)
    for key, colour in (("member", "C0"), ("mean_width", "C1")):
        slope, intercept = fits[key]
        left.loglog(widths, np.exp(intercept) * widths ** slope, ":", color=colour,
                    label=f"fit, slope {slope:.2f}")
    left.axhline(mc_floor, color="gray", lw=1, ls="--",
                 label=f"Monte-Carlo floor √(Σ_t/M), M={members}")
    left.set_xlabel("hidden width w (units)")
    left.set_ylabel("RMS error of the output (target units)")
    left.set_title(f"Function after t = {steps} steps")
    left.legend(fontsize=7)
    right.loglog(widths, errors["cov_width"], "s-", color="C1", label="width part ‖Σ̂_f − Σ̂_g‖")
    right.loglog(widths, errors["cov_total"], "^--", color="C2", label="total ‖Σ̂_f − Σ_t‖")
    right.loglog(widths, errors["cov_mc"], "x:", color="gray",
                 label="Monte-Carlo part ‖Σ̂_g − Σ_t‖")
    slope, intercept = fits["cov_width"]
    right.loglog(widths, np.exp(intercept) * widths ** slope, ":", color="C1",
                 label=f"fit, slope {slope:.2f}")
    right.set_xlabel("hidden width w (units)")
    right.set_ylabel("error relative to ‖Σ_t‖_F")
    right.set_title(f"Covariance after t = {steps} steps")
    right.legend(fontsize=7)
    fig.suptitle("The width error falls like 1/√w; the ensemble's total error is the "
                 "Monte-Carlo floor")
    fig.tight_layout()
    return fig


def ensemble_over_training(times: Sequence[float], mean: np.ndarray, covariance: np.ndarray,
                           record_times: Sequence[float], ensemble_mean: np.ndarray,
                           member_sd: np.ndarray, members: int, width: int,
                           panels: Mapping[str, int]) -> Figure:
    """μ_t (n_times, n) ± √Σ_t (n_times, n, n) vs trained means (n_record, n), sd (n_record, n)."""
    times, mean = np.asarray(times), np.asarray(mean)
    spread = np.sqrt(np.diagonal(np.asarray(covariance), axis1=1, axis2=2))      # (n_times, n)
    ensemble_mean, member_sd = np.asarray(ensemble_mean), np.asarray(member_sd)
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8), sharey=True,
                             squeeze=False)
    for ax, (name, i) in zip(axes[0], panels.items()):
        ax.plot(times, mean[:, i], color="C0", label="μ_t (infinite ensemble)")
        ax.fill_between(times, mean[:, i] - spread[:, i], mean[:, i] + spread[:, i], color="C0",
                        alpha=0.15, label="μ_t ± √Σ_t (member spread)")
        ax.errorbar(record_times, ensemble_mean[:, i], yerr=2 * member_sd[:, i] / np.sqrt(members),
                    fmt="o", color="C3", capsize=3,
                    label=f"mean of {members} trained nets (± 2√(Σ_t/M))")
        ax.set_xlabel("training time t (gradient steps)")
        ax.set_title(name)
    axes[0, 0].set_ylabel("output (standardised target units)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Ensemble of width {width} follows the closed form μ_t over training")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ theorem


def augmentation_control(times: Sequence[float],
                         violations: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
                         floor: float = 1e-15) -> Figure:
    """Violation of μ_t vs t (n_times,), augmented or not: {(case, inputs): (with, without)}."""
    times = np.asarray(times, np.float64)
    finite = np.isfinite(times) & (times > 0)     # t = 0 (μ_0 = 0) is not drawn on log axes
    t_inf = 3 * times[finite].max()               # where t = ∞ is drawn
    cases = list(dict.fromkeys(case for case, _ in violations))
    fig, axes = plt.subplots(1, len(cases), figsize=(5.5 * len(cases), 4.2), sharey=True,
                             squeeze=False)
    for ax, case in zip(axes[0], cases):
        names = [name for c, name in violations if c == case]
        for name, colour in zip(names, _COLOURS):
            with_aug, without = (np.asarray(v) for v in violations[case, name])
            ax.plot(times[finite], np.maximum(with_aug[finite], floor), "o-", color=colour, ms=3,
                    label=f"augmented, {name} inputs")
            ax.plot(times[finite], without[finite], "s--", color=colour, ms=3,
                    label=f"not augmented, {name} inputs")
            if np.isinf(times[-1]):
                ax.plot([t_inf], [without[-1]], "s", color=colour, ms=6, mfc="none")
                ax.plot([t_inf], [max(with_aug[-1], floor)], "o", color=colour, ms=6, mfc="none")
        ax.set_xscale("log")
        ax.set_yscale("log")
        low, high = np.log10(times[finite].min()), np.log10(times[finite].max())
        ticks = list(10.0 ** np.arange(np.floor(low + 1e-9), np.floor(high + 1e-9) + 1, 2))
        ax.set_xticks(ticks + [t_inf], [f"{t:g}" for t in ticks] + ["∞"])
        ax.set_xlabel("training time t (gradient steps)")
        ax.set_title(case)
        ax.legend(fontsize=7, loc="center", bbox_to_anchor=(0.45, 0.64))
    axes[0, 0].set_ylabel("relative violation of μ_t\n"
                          "max ‖μ_t(ρ_X(g)x) − ρ_Y(g)μ_t(x)‖ / max ‖μ_t(x)‖")
    axes[0, 0].set_ylim(floor, 10)
    fig.suptitle("Only full augmentation makes the infinite ensemble equivariant "
                 "(open markers: t = ∞)")
    fig.tight_layout()
    return fig


def members_vs_ensemble(times: Sequence[int], members: np.ndarray, ensemble: Sequence[float],
                        predicted: Sequence[float], control: Sequence[float],
                        infinite: Sequence[float]) -> Figure:
    """Equivariance error vs t (n_times,): members (n_times, M), ensemble, prediction, control."""
    steps_axis = np.asarray(times, np.float64) + 1
    members = np.asarray(members)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.plot(steps_axis, members, color="tab:blue", alpha=0.25, lw=0.8)
    ax.plot([], [], color="tab:blue", alpha=0.5, lw=0.8,
            label=f"each of the M = {members.shape[1]} members (augmented)")
    ax.plot(steps_axis, ensemble, "o-", color="tab:green", lw=2.5,
            label="ensemble mean (augmented)")
    ax.plot(steps_axis, predicted, "k:", lw=1.5, label="prediction: draw from N(μ_t, Σ_t / M)")
    ax.plot(steps_axis, control, "s-", color="tab:red", lw=2,
            label="ensemble mean (not augmented)")
    ax.text(0.02, 0.04, f"infinite ensemble μ_t (augmented): ≤ {np.max(infinite):.0e} at every t, "
            "off the scale", transform=ax.transAxes, ha="left", fontsize=8, color="tab:purple")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training time t + 1 (gradient steps)")
    ax.set_ylabel("equivariance error\nmean ‖f(ρ_X(g)x) − ρ_Y(g) f(x)‖")
    ax.set_title("Cross product under O: members are not equivariant, their mean nearly is")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


_PROOF_STEPS = (
    # (expression in the box, where the group acts in it)
    (r"$\mu_t(\rho_X(g)\,x)^\top$" "\n" r"$=\Theta(\rho_X(g)\,x,\ X)\;F_t\;Y$",
     "test point (input space)"),
    (r"$\Theta(x,\ X)\;\Pi(g)\;F_t\;Y$", "training index"),
    (r"$\Theta(x,\ X)\;F_t\;\Pi(g)\;Y$", "targets' index"),
    (r"$\Theta(x,\ X)\;F_t\;Y\;\rho_Y(g)^\top$" "\n" r"$=(\rho_Y(g)\,\mu_t(x))^\top$",
     "output space"),
)
_PROOF_ARROWS = (
    "kernel invariance\n(full augmentation:\n" r"$\rho_X(g)X_k = X_{\pi_g(k)}$)",
    "permutation lemma\n" r"$\Pi(g)\,\varphi_t(\Theta) = \varphi_t(\Theta)\,\Pi(g)$",
    "targets permute\n" r"$\Pi(g)\,Y = Y\rho_Y(g)^\top$",
)


def proof_diagram(differences: Sequence[float] | None = None) -> Figure:
    """The proof as a chain: ρ_X(g) on the test point → Π(g) on the training index → through
    F_t → ρ_Y(g) on the targets; ``differences`` (3,): measured sizes of the three equalities."""
    if differences is not None and len(differences) != len(_PROOF_ARROWS):
        raise ValueError(f"differences must have {len(_PROOF_ARROWS)} entries, got {len(differences)}")
    fig, ax = plt.subplots(figsize=(13, 2.7))
    ax.set_xlim(0, 13)
    ax.set_ylim(0.95, 3.0)
    ax.axis("off")
    centres = [1.45 + 3.37 * i for i in range(len(_PROOF_STEPS))]
    colours = ("tab:blue", "tab:orange", "tab:orange", "tab:green")
    for x, (text, where), colour in zip(centres, _PROOF_STEPS, colours):
        ax.text(x, 2.0, text, ha="center", va="center", fontsize=12,
                bbox=dict(boxstyle="round,pad=0.5", fc="white", ec=colour, lw=2))
        ax.text(x, 2.8, f"g acts on the {where}", ha="center", va="center", fontsize=10,
                color=colour)
    for i, label in enumerate(_PROOF_ARROWS):
        start, end = centres[i] + 1.3, centres[i + 1] - 1.3
        ax.annotate("", xy=(end, 2.0), xytext=(start, 2.0),
                    arrowprops=dict(arrowstyle="-|>", lw=2, color="black"))
        text = label if differences is None else f"{label}\nmeasured: {differences[i]:.0e}"
        ax.text((start + end) / 2, 1.7, text, ha="center", va="top", fontsize=10)
    ax.set_title("The proof in one line: the group element travels from the test point through "
                 r"the training index to the targets ($F_t = \varphi_t(\Theta)$)")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- what_breaks_it


def finite_ensemble_violation(sizes: Sequence[int], measured: np.ndarray, predicted: np.ndarray,
                              slope: float) -> Figure:
    """Violation vs size M (n_sizes,): measured (n_sizes, n_resamples), predicted (n_sizes, k)."""
    sizes = np.asarray(sizes, np.float64)
    measured, predicted = np.asarray(measured), np.asarray(predicted)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.errorbar(sizes, measured.mean(1), yerr=measured.std(1), fmt="o", color="tab:green",
                capsize=3, label="trained sub-ensembles (mean ± std over resamples)")
    ax.plot(sizes, predicted.mean(1), "k-", label="after Lemma B.4: draws from N(μ_t, Σ_t / M)")
    ax.plot(sizes, measured.mean(1)[0] * sizes ** -0.5, ":", color="gray", label="slope −1/2")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("ensemble size M (members)")
    ax.set_ylabel("equivariance error over O\nmean ‖f̄_M(ρ_X(g)x) − ρ_Y(g) f̄_M(x)‖")
    ax.set_title(f"Finite ensembles: violation falls like 1/√M (fitted slope {slope:.2f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def finite_width_split(defect: Mapping[int, MonteCarloSplit],
                       distance: Mapping[int, MonteCarloSplit], anchor_width: int = 32) -> Figure:
    """Equivariance defect and distance from μ_t vs width: {width: MonteCarloSplit} each."""
    keys = sorted(defect)
    widths = np.asarray(keys, np.float64)
    defect, distance = [defect[w] for w in keys], [distance[w] for w in keys]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(widths, [np.sqrt(d.total) for d in defect], "o-", color="tab:green",
              label="ensemble mean: total")
    left.plot(widths, [np.sqrt(d.fluctuation) for d in defect], "k--",
              label="Monte-Carlo part √(Var/M)")
    upper = [np.sqrt(max(d.systematic + 2 * d.systematic_stderr, 0)) for d in defect]
    left.plot(widths, upper, "v", color="tab:red", ms=8, label="systematic part: 2σ upper bound")
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("width (hidden units)")
    left.set_ylabel("rms equivariance defect per entry")
    left.set_title("Equivariance defect of the ensemble mean")
    left.legend(fontsize=8)
    dist = np.array([s.systematic for s in distance])
    err = np.array([s.systematic_stderr for s in distance])
    right.errorbar(widths, dist, yerr=err, fmt="s-", color="tab:blue", capsize=3,
                   label="(E f_t − μ_t)², MC part removed")
    anchor = int(np.flatnonzero(widths == anchor_width)[0]) if anchor_width in widths else 0
    right.plot(widths, dist[anchor] * (widths / widths[anchor]) ** -2.0, ":", color="gray",
               label="∝ width⁻²")
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("width (hidden units)")
    right.set_ylabel("mean square distance per entry")
    right.set_title("Distance from the infinite-width mean μ_t")
    right.legend(fontsize=8)
    fig.suptitle("Width adds no systematic violation; it brings the ensemble to the kernel limit")
    fig.tight_layout()
    return fig


def _kappa_axis(ax, kappas: np.ndarray, ks: Sequence[int]) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(kappas, [f"{kappa:.2f}\nC{k}" for k, kappa in zip(ks, kappas)])
    ax.minorticks_off()


def subgroup_augmentation_floor(sizes: Sequence[int], measured: np.ndarray,
                                predicted: np.ndarray, measured_haar: np.ndarray,
                                predicted_haar: np.ndarray, infinite_haar: float) -> Figure:
    """Error vs M (n_sizes,) over O and SO(3): measured (n_sizes, n_res), predicted (n_sizes, k)."""
    sizes = np.asarray(sizes, np.float64)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for (m, p), colour, marker, where in (((measured, predicted), "tab:green", "o", "O"),
                                          ((measured_haar, predicted_haar), "tab:purple", "s",
                                           "random SO(3) rotations")):
        m, p = np.asarray(m), np.asarray(p)
        ax.errorbar(sizes, m.mean(1), yerr=m.std(1), fmt=marker, color=colour, capsize=3,
                    label=f"trained, over {where}")
        ax.plot(sizes, p.mean(1), "-", color=colour, alpha=0.6, label=f"predicted, over {where}")
    ax.axhline(infinite_haar, color="tab:purple", ls=":",
               label="infinite ensemble μ_t, SO(3) (floor)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("ensemble size M (members)")
    ax.set_ylabel("equivariance error\nmean ‖f̄_M(ρ_X(g)x) − ρ_Y(g) f̄_M(x)‖")
    ax.set_title("Cross product augmented with O: on SO(3) the error levels off")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------ what_breaks_it: tail bound, covering bound, t = ∞


def tail_bound_check(thresholds: Sequence[float], tails: Mapping[str, np.ndarray],
                     sizes: Sequence[int], bound: Sequence[float]) -> Figure:
    """Exceedance frequency / tail bound vs δ/σ_M: tails[source] (n_sizes, n_thresholds)."""
    from math import erfc, sqrt

    a = np.asarray(thresholds, np.float64)
    bound = np.asarray(bound, np.float64)
    gauss = np.array([erfc(v / sqrt(2)) for v in a])                # P(|Z| > a)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.axhline(1.0, color="k", lw=1.5, label="the bound (after Lemma B.4)")
    ax.plot(a, gauss / bound, ":", color="gray", lw=1.5, label="exact Gaussian tail")
    markers = ("o", "s", "^", "D", "v")
    for (source, freq), colour in zip(tails.items(), _COLOURS):
        freq = np.asarray(freq, np.float64)
        for row, size, marker in zip(freq, sizes, markers):
            ax.plot(a, row / bound, marker=marker, ls="-", color=colour, ms=5, alpha=0.8,
                    label=f"{source}, M = {size}")
    ax.set_xlabel("threshold δ / σ_M")
    ax.set_ylabel("P(|f̄_M − μ_t| > δ) / bound\n(frequency over entries and draws)")
    ax.set_title("Gaussian tail of finite ensembles: above 1 the bound is violated")
    ax.legend(fontsize=6.5, ncol=2, loc="upper left")
    fig.tight_layout()
    return fig


def covering_bound_violation(times: Sequence[float], plane: Mapping[int, Mapping],
                             images: Mapping[int, Mapping],
                             conditioning: Mapping[int, Mapping]) -> Figure:
    """Violation and bound A_t·κ vs κ of C_q; t = ∞ conditioning vs q; pixel images.

    plane[q]: kappa, violation (n_times, n), A (n_times, n); conditioning[q]: t_eff, cond;
    images[q]: kappa, violation (n_times,), on_group (n_times,).
    """
    times = np.asarray(times, np.float64)
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.4))
    qs = sorted(plane)
    kappas = np.array([plane[q]["kappa"] for q in qs])
    for i, colour in zip(range(1, len(times)), _COLOURS):        # t = 0: no violation
        left.plot(kappas, [plane[q]["violation"][i].mean() for q in qs], "o-", color=colour,
                  label=f"violation, t = {times[i]:g}")
        if np.isfinite(times[i]):
            left.plot(kappas, [plane[q]["A"][i].mean() * plane[q]["kappa"] for q in qs], ":",
                      color=colour)
    left.plot([], [], "k:", label="bound A_t(x)·κ (no bound at t = ∞)")
    _kappa_axis(left, kappas, qs)
    left.set_xlabel("covering radius κ of C_q")
    left.set_ylabel("worst-rotation violation of μ_t\n(mean over inputs)")
    left.set_title("Point clouds in R²: exact rotations")
    left.legend(fontsize=7, loc="lower right")
    cq = sorted(conditioning)
    qv = np.asarray(cq, np.float64)
    middle.loglog(qv, [conditioning[q]["t_eff"] for q in cq], "o-", color="tab:purple",
                  label="t = ∞: |Y|·‖F_∞‖/η = |Y|/(η λ_min)")
    middle.loglog(qv, [conditioning[q]["cond"] for q in cq], "s--", color="tab:gray",
                  label="condition number of Θ(X, X)")
    for t, colour in zip(times[1:], _COLOURS):
        if np.isfinite(t):
            middle.axhline(t, color=colour, ls=":", lw=1)
    middle.plot([], [], "k:", lw=1, label="finite t: |Y|·‖F_t‖/η ≤ t")
    middle.set_xticks(qv, [str(q) for q in cq])
    middle.minorticks_off()
    middle.set_xlabel("order q of the subgroup C_q")
    middle.set_ylabel("effective training time t_eff\nand condition number")
    middle.set_title("At t = ∞ the constant grows with q")
    middle.legend(fontsize=7, loc="upper left")
    image_qs = list(images)
    image_kappas = np.array([images[q]["kappa"] for q in image_qs])
    for i, colour in zip(range(1, len(times)), _COLOURS):
        right.plot(image_kappas, [images[q]["violation"][i] for q in image_qs], "o-",
                   color=colour, label=f"all 64 rotations, t = {times[i]:g}")
    right.plot(image_kappas, [max(images[q]["on_group"][-1], 1e-12) for q in image_qs], "s--",
               color="k", label="only the elements of C_q, t = ∞")
    _kappa_axis(right, image_kappas, image_qs)
    right.set_xlabel("angle-gap covering radius κ = 2 sin(π/2q)")
    right.set_ylabel("worst-rotation violation of μ_t\n(mean over inputs)")
    right.set_title("16×16 images: interpolated rotations")
    right.legend(fontsize=7, loc="lower left")
    fig.suptitle("Augmenting with C_q: the SO(2) violation is bounded by A_t·κ at finite t")
    fig.tight_layout()
    return fig

