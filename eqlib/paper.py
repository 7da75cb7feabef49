"""What the paper and its public discussion say: every figure the book compares with, with its source.

Two kinds of entries:

* :data:`FIGURES` — numbers (:class:`PaperFigure`): value, unit, the source they come from and
  where in it, and what was measured. The ICML 2024 text of Gerken & Kessel gives no FashionMNIST
  accuracy; the three FashionMNIST figures come from the authors' replies in the public OpenReview
  discussion of the earlier ICLR 2024 submission of this work, and the steerable-CNN comparison
  was left out of the final paper by its authors. Chapters glue these from here with
  :func:`attribution`, so a figure never appears without its source.
* :data:`CLAIMS` — statements the book tests (:class:`PaperClaim`), each with where the paper makes
  it (by name, not by section number: section numbers differ between the preprint and the
  published version), and the experiment whose results file measures it. The reproduction report
  (:mod:`eqlib.report`) lists every claim beside the measured values.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PaperFigure", "PaperClaim", "FIGURES", "CLAIMS", "SOURCES", "figure", "formatted",
           "attribution"]

#: The sources, by key.
SOURCES = {
    "icml": "Gerken & Kessel, Emergent Equivariance in Deep Ensembles, ICML 2024 (PMLR 235)",
    "openreview": ("the authors' replies in the public OpenReview discussion of the earlier ICLR "
                   "2024 submission of this work (not in the ICML text)"),
}


@dataclass(frozen=True)
class PaperFigure:
    """A number reported by the authors: ``value`` (a float, or a ``(low, high)`` range)."""

    key: str
    value: float | tuple[float, float]
    unit: str                 # "fraction" (an accuracy in [0, 1]); "fraction-pair" (a vs b);
                              # "fraction-range" (low–high); "count" (a setting, not a result)
    source: str               # a key of SOURCES
    where: str                # where in the source
    what: str                 # what was measured, in the authors' setting

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"unknown source {self.source!r}; known: {', '.join(SOURCES)}")


@dataclass(frozen=True)
class PaperClaim:
    """A statement of the paper that the book tests, and which experiment measures it."""

    key: str
    statement: str
    where: str                # where the paper makes it (by name)
    experiment: str           # the eqlib experiment (results file) that measures it
    source: str = "icml"


FIGURES: dict[str, PaperFigure] = {f.key: f for f in (
    PaperFigure("fmnist_ensemble_accuracy", 0.929, "fraction", "openreview",
                "authors' reply on the FashionMNIST experiment",
                "validation accuracy of an ensemble of 100 CNNs of about 120k parameters each, "
                "trained with full C4 augmentation"),
    PaperFigure("fmnist_ensemble_vs_canonicalised", (0.91, 0.87), "fraction-pair", "openreview",
                "authors' reply comparing with canonicalisation",
                "accuracy of an ensemble against a canonicalised model of the same architecture"),
    PaperFigure("fmnist_steerable_ensembles", (0.853, 0.863), "fraction-range", "openreview",
                "authors' reply on equivariant baselines (left out of the final paper)",
                "accuracy of ensembles of C4-invariant steerable CNNs, 51k–184k parameters, "
                "10–40 members"),
    PaperFigure("fmnist_members", 100.0, "count", "openreview",
                "authors' reply on the FashionMNIST experiment", "members in that ensemble"),
    PaperFigure("fmnist_member_params", 120_000.0, "count", "openreview",
                "authors' reply on the FashionMNIST experiment", "parameters per member (about)"),
)}

CLAIMS: dict[str, PaperClaim] = {c.key: c for c in (
    PaperClaim("theorem_exact", "With full augmentation, the infinite-width ensemble mean μ_t is "
               "exactly invariant (equivariant) for every input and at every training time t.",
               "main theorem (infinite-width ensembles under full data augmentation)", "tour"),
    PaperClaim("finite_m_rate", "A finite ensemble of M members deviates from the invariant mean by "
               "fluctuations of variance Σ_t/M: the orbit spread falls like 1/√M.",
               "discussion of finite ensembles after the main theorem", "ising"),
    PaperClaim("continuous_bound", "Augmenting with a finite subgroup that covers a continuous "
               "group more finely (smaller covering radius κ) makes the ensemble more invariant "
               "under the continuous group.", "the continuous-group bound and its FashionMNIST "
               "C4/C8/C16 experiment", "fashion_mnist"),
    PaperClaim("ising_width", "Ising: the ensemble is more invariant (smaller orbit spread) than "
               "its members, on and off the training distribution, and its spread approaches the "
               "NTK prediction as the width grows.", "Ising experiment", "ising"),
    PaperClaim("fmnist_emergent", "FashionMNIST: ensembles of C4-augmented CNNs are more invariant "
               "(higher OSP) than their members, also off the data manifold (MNIST, noise).",
               "FashionMNIST experiment", "fashion_mnist"),
    PaperClaim("histology_emergent", "Histology: ensembles of augmented CNNs are more invariant "
               "than their members under rotations and reflections.", "histology experiment",
               "histology"),
)}


def figure(key: str) -> PaperFigure:
    """The figure ``key``; KeyError naming the known keys otherwise."""
    try:
        return FIGURES[key]
    except KeyError:
        raise KeyError(f"no paper figure {key!r}; known: {', '.join(FIGURES)}") from None


def formatted(key: str) -> str:
    """The figure's value as the authors state it: ``"92.9 %"``, ``"91 % vs 87 %"``, ``"85.3–86.3 %"``."""
    fig = figure(key)
    pct = lambda v: f"{100 * v:.3g} %"                                # noqa: E731
    if fig.unit == "fraction":
        return pct(fig.value)
    if fig.unit == "fraction-pair":
        return " vs ".join(pct(v) for v in fig.value)
    if fig.unit == "fraction-range":
        return f"{100 * fig.value[0]:.3g}–{pct(fig.value[1])}"
    return f"{fig.value:,.0f}"


def attribution(key: str) -> str:
    """``"<what> — <source>, <where>"``: the text that goes with a figure wherever it is shown."""
    fig = figure(key)
    return f"{fig.what} — {SOURCES[fig.source]}; {fig.where}"
