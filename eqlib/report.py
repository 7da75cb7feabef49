"""The reproduction report: every claim and figure of the paper that the book addresses, beside
the book's measured values, generated from the results files (never typed).

For each claim of :data:`eqlib.paper.CLAIMS` and each figure of :data:`eqlib.paper.FIGURES` a
*reader* turns an experiment's results (its arrays, read by name through
:class:`eqlib.results.Results`) into a :class:`Measurement` — the value
with its 95 % interval as text, whether it supports the claim (a rule stated in the reader's
docstring, applied to the interval, not to the point estimate), and the run's label (preset,
device, date, commit). :func:`reproduction_rows` does this for the quick run and for the stored
reference run and gives a verdict:

* **reproduced** — every measured run supports the claim;
* **partly** — some runs or some evaluation sets support it, others do not;
* **not reproduced** — no run supports it;
* **not attempted** — no run measures it (the reason is given).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .paper import CLAIMS, FIGURES, SOURCES, formatted
from .results import Arm, Results

__all__ = ["CLAIMS", "Measurement", "ReportRow", "READERS", "reproduction_rows", "verdict", "markdown_table",
           "load_runs"]

Run = tuple[dict, dict]            # (arrays, meta) as returned by eqlib.runner


@dataclass(frozen=True)
class Measurement:
    """A measured value as text; whether it supports the claim — True, False, ``"partly"`` (some
    evaluation sets do, some do not) or None (it says nothing about it) — and the run's label."""

    text: str
    supports: bool | str | None
    label: str


@dataclass(frozen=True)
class ReportRow:
    key: str
    paper: str          # what the paper (or its discussion) says
    source: str
    quick: Measurement | None
    reference: Measurement | None
    verdict: str
    why: str


def _triple(values) -> tuple[float, float, float]:
    """An :class:`~eqlib.metrics.Interval` or ``[estimate, low, high]`` → three floats."""
    e, lo, hi = (float(v) for v in tuple(values)[:3])
    return e, lo, hi


def _iv(values) -> str:
    """An interval → ``"0.123 [0.100, 0.150]"``."""
    e, lo, hi = _triple(values)
    return f"{e:.3g} [{lo:.3g}, {hi:.3g}]"


def _low(values) -> float:
    return _triple(values)[1]


def _high(values) -> float:
    return _triple(values)[2]


def _combine(parts: list[tuple[str, bool]]) -> tuple[str, bool | str]:
    """Several evaluation sets → one text and: all support → True, none → False, else "partly"."""
    text = "; ".join(p for p, _ in parts)
    flags = [ok for _, ok in parts]
    return text, (True if all(flags) else False if not any(flags) else "partly")


# ------------------------------------------------------------------------------------ readers
# Each reader gets the run's results through eqlib.results (arrays read by name, checked against
# the experiment's schema), so a renamed metric fails tests/test_results.py, not the report.

def _theorem_exact(res: Results) -> tuple[str, bool | None]:
    """Tour: the largest orbit spread of μ_t over test and noise inputs ≤ 1e-6 with augmentation,
    and > 1e-2 without (the control shows the check can fail)."""
    aug = max(float(res.arm("augmented").ntk_spread(d).max()) for d in res.sets)
    plain = min(float(res.arm("plain").ntk_spread(d).max()) for d in res.sets)
    return (f"max orbit spread of μ_t: {aug:.1e} augmented, {plain:.2g} without augmentation",
            aug <= 1e-6 and plain > 1e-2)


def _widest(res: Results) -> Arm:
    """The augmented MLP ensemble of the largest width of an Ising run."""
    return res.arm(f"mlp_w{max(res.config['widths'])}_aug")


def _finite_m_rate(res: Results) -> tuple[str, bool | None]:
    """Ising, widest augmented MLP: the slope of log(orbit spread) against log M, with its 95 %
    bootstrap interval, contains −1/2 — on every evaluation set."""
    arm = _widest(res)
    parts = []
    for name in res.sets:
        if arm.has("slope_spread", name):
            s = arm.interval("slope_spread", name)
            parts.append((f"{name} {_iv(s)}", _low(s) <= -0.5 <= _high(s)))
    return _combine(parts) if parts else ("no slope stored", None)


def _ising_ensemble(res: Results) -> tuple[str, bool | None]:
    """Ising, widest augmented MLP: the ensemble's orbit spread minus the members' mean has a 95 %
    interval below 0 on every evaluation set (on and off the training distribution)."""
    arm = _widest(res)
    ntk = res.arm("ntk_mlp_aug") if "ntk_mlp_aug" in res.arms else None
    parts = []
    for name in res.sets:
        if arm.has("mve_spread", name):
            d = arm.mve("mve_spread", name)["difference"]
            extra = ""
            if ntk is not None:
                extra = (f" (ensemble {float(arm.ensemble_spread(name)[-1, -1]):.3g} vs NTK-predicted "
                         f"{float(ntk.predicted_spread(name)[-1, -1]):.3g} ± "
                         f"{float(ntk.predicted_spread_std(name)[-1, -1]):.2g})")
            parts.append((f"{name} Δspread {_iv(d)}{extra}", _high(d) < 0))
    return _combine(parts) if parts else ("no interval stored", None)


def _fmnist_arm(res: Results, aug: str = "C4", width: int | None = None) -> Arm:
    """A FashionMNIST ensemble: augmentation ``aug`` at ``width`` (default: the largest width)."""
    return res.arm(f"c{width or max(res.config['widths'])}_{aug}")


def _fmnist_emergent(res: Results) -> tuple[str, bool | None]:
    """FashionMNIST, C4-augmented CNNs of the largest width: the ensemble's OSP minus the members'
    mean has a 95 % interval above 0, on the test set, MNIST and noise."""
    arm = _fmnist_arm(res)
    parts = []
    for name in res.sets:
        d = arm.mve("interval/osp", name)["difference"]
        kl = arm.mve("interval/kl", name)["difference"]
        parts.append((f"{name} ΔOSP {_iv(d)}, ΔKL {_iv(kl)}", _low(d) > 0))
    return _combine(parts)


def _continuous_bound(res: Results) -> tuple[str, bool | None]:
    """FashionMNIST SO(2) arms: the ensembles' SO(2)-OSP fraction on test images increases
    C4 < C8 < C16 (no interval: one ensemble per group)."""
    groups = ["C4", *res.config.get("cont_groups", [])]
    if len(groups) < 3:
        return "", None
    values = [float(_fmnist_arm(res, g, res.config["cont_width"]).get("so2/ensemble_agreement", "test").mean())
              for g in groups]
    text = ", ".join(f"{g} {v:.3f}" for g, v in zip(groups, values))
    return f"ensemble SO(2)-OSP fraction: {text}", all(a < b for a, b in zip(values, values[1:]))


def _histology_emergent(res: Results) -> tuple[str, bool | None]:
    """Histology, D4-augmented CNNs: the ensemble's D4-OSP minus the members' mean has a 95 %
    interval above 0 on held-out tissue and off the manifold (noise, colour jitter, FashionMNIST)."""
    arm = res.arm("D4")
    parts = []
    for name in res.sets:
        if arm.has("mve_osp_D4", name):
            d = arm.mve("mve_osp_D4", name)["difference"]
            parts.append((f"{name} ΔOSP {_iv(d)}", _low(d) > 0))
    return _combine(parts) if parts else ("no interval stored", None)


def _fmnist_accuracy(res: Results) -> tuple[str, bool | None]:
    """FashionMNIST: the C4-augmented ensemble's accuracy on all test images with its interval.
    Compared with the authors' 92.9 % it says nothing (None) unless the run has the authors' size
    (100 members of about 120k parameters, the full training set)."""
    from .experiments.fashion_mnist import member_architecture

    cfg = res.config
    arm = _fmnist_arm(res)
    acc = arm.mve("interval/acc_full", "test")["ensemble"]
    members = len(arm.member_acc_full("test"))
    params = member_architecture(max(cfg["widths"]), cfg["parametrization"], cfg["head"]).num_params((28, 28, 1))
    text = f"ensemble accuracy {_iv(acc)} ({members} members × {params:,} parameters)"
    at_size = members >= 100 and cfg.get("n_train", 0) >= 60_000
    return text, (_high(acc) >= FIGURES["fmnist_ensemble_accuracy"].value if at_size else None)


#: claim or figure key → (experiment, reader)
READERS: dict[str, tuple[str, Callable[[Results], tuple[str, bool | None]]]] = {
    "theorem_exact": ("tour", _theorem_exact),
    "finite_m_rate": ("ising", _finite_m_rate),
    "ising_width": ("ising", _ising_ensemble),
    "continuous_bound": ("fashion_mnist", _continuous_bound),
    "fmnist_emergent": ("fashion_mnist", _fmnist_emergent),
    "histology_emergent": ("histology", _histology_emergent),
    "fmnist_ensemble_accuracy": ("fashion_mnist", _fmnist_accuracy),
}

#: Figures the book does not measure, and why (figures with unit "count" are settings, not listed).
NOT_ATTEMPTED = {
    "fmnist_ensemble_vs_canonicalised": "no canonicalised baseline is trained in this book yet",
    "fmnist_steerable_ensembles": "no steerable-CNN baseline is trained in this book yet",
}


def verdict(measurements: list[Measurement | None]) -> str:
    """Verdict from the runs that measured the claim (see the module docstring); a run that says
    nothing about the claim (``supports`` None) makes it "not comparable" when no run decides."""
    said = [m.supports for m in measurements if m is not None and m.text]
    decided = [s for s in said if s is not None]
    if not said:
        return "not attempted"
    if not decided:
        return "not comparable"
    if all(s is True for s in decided):
        return "reproduced"
    if all(s is False for s in decided):
        return "not reproduced"
    return "partly"


def _measure(key: str, run: Run | None, label: Callable[[dict], str]) -> Measurement | None:
    if run is None:
        return None
    arrays, meta = run
    experiment, reader = READERS[key]
    try:
        text, ok = reader(Results(experiment, arrays, meta))
    except KeyError as err:            # eqlib.results.UnknownName: the run lacks an array
        return Measurement(f"not in this run ({err})", None, label(meta))
    return Measurement(text, ok, label(meta)) if text else None


def reproduction_rows(quick: dict[str, Run | None], reference: dict[str, Run | None],
                      label: Callable[[dict], str] | None = None) -> list[ReportRow]:
    """One row per claim and figure. ``quick`` / ``reference``: experiment → (arrays, meta) or None."""
    from .runner import run_label

    label = label or run_label
    rows = []
    for key, claim in CLAIMS.items():
        exp, _ = READERS[key]
        q, r = _measure(key, quick.get(exp), label), _measure(key, reference.get(exp), label)
        why = "" if (q or r) else f"no {exp} run measures it"
        if key == "continuous_bound" and r is None and reference.get(exp) is not None:
            why = "the reference run has no C8/C16 arms (their cost did not fit)"
        rows.append(ReportRow(key, claim.statement, f"{SOURCES[claim.source]}: {claim.where}", q, r,
                              verdict([q, r]), why))
    for key, fig in FIGURES.items():
        if fig.unit == "count":
            continue
        paper = f"{formatted(key)}: {fig.what}"
        source = f"{SOURCES[fig.source]}: {fig.where}"
        if key in NOT_ATTEMPTED:
            rows.append(ReportRow(key, paper, source, None, None, "not attempted", NOT_ATTEMPTED[key]))
            continue
        exp, _ = READERS[key]
        q, r = _measure(key, quick.get(exp), label), _measure(key, reference.get(exp), label)
        v = verdict([q, r])
        why = {"not comparable": "our runs are far smaller than the authors' (the full preset is for a GPU)",
               "not attempted": f"no {exp} run measures it"}.get(v, "")
        rows.append(ReportRow(key, paper, source, q, r, v, why))
    return rows


def markdown_table(rows: list[ReportRow]) -> str:
    """The rows as one GitHub-flavoured Markdown table."""
    def cell(m: Measurement | None) -> str:
        if m is None:
            return "—"
        mark = {True: " ✓", False: " ✗", "partly": " (partly)", None: ""}[m.supports]
        return f"{m.text}{mark}<br><sub>{m.label}</sub>"

    lines = ["| claim or figure | paper | quick run | reference run | verdict |",
             "|---|---|---|---|---|"]
    for r in rows:
        verdict_text = r.verdict + (f" ({r.why})" if r.why else "")
        lines.append(f"| `{r.key}` | {r.paper}<br><sub>{r.source}</sub> | {cell(r.quick)} | "
                     f"{cell(r.reference)} | **{verdict_text}** |")
    return "\n".join(line.replace("\n", " ") for line in lines)


def load_runs(run_quick: bool = True) -> tuple[dict[str, Run | None], dict[str, Run | None]]:
    """The quick runs (run or resumed when ``run_quick``, else read from the cache) and the stored
    reference runs of every experiment the report reads; a missing run is None."""
    from .runner import chapter_results, latest_results, stored_results

    quick, reference = {}, {}
    for exp in sorted({e for e, _ in READERS.values()}):
        try:
            quick[exp] = chapter_results(exp, "quick") if run_quick else latest_results(exp, "quick")
        except FileNotFoundError:
            quick[exp] = None
        try:
            reference[exp] = stored_results(exp, "reference")
        except (FileNotFoundError, ValueError):
            reference[exp] = None
    return quick, reference
