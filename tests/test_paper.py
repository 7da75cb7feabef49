"""The paper's figures carry their source; no FashionMNIST figure is attributed to the ICML text."""
import pytest

from eqlib import paper


def test_every_figure_and_claim_has_a_known_source():
    for fig in paper.FIGURES.values():
        assert fig.source in paper.SOURCES and fig.where and fig.what
    for claim in paper.CLAIMS.values():
        assert claim.source in paper.SOURCES and claim.experiment and claim.where


def test_fashion_mnist_figures_come_from_the_openreview_discussion():
    fmnist = [f for k, f in paper.FIGURES.items() if k.startswith("fmnist")]
    assert fmnist and all(f.source == "openreview" for f in fmnist)
    assert "OpenReview" in paper.attribution("fmnist_ensemble_accuracy")
    assert paper.figure("fmnist_ensemble_accuracy").value == pytest.approx(0.929)


def test_unknown_keys_and_sources_are_rejected():
    with pytest.raises(KeyError, match="no paper figure 'nope'"):
        paper.figure("nope")
    with pytest.raises(ValueError, match="unknown source"):
        paper.PaperFigure("x", 1.0, "count", "blog", "here", "that")


def test_no_section_numbers_in_where():
    import re
    for item in [*paper.FIGURES.values(), *paper.CLAIMS.values()]:
        assert not re.search(r"§|\bsection \d", item.where, re.I), item.where


def test_figures_are_formatted_as_the_authors_state_them():
    assert paper.formatted("fmnist_ensemble_accuracy") == "92.9 %"
    assert paper.formatted("fmnist_ensemble_vs_canonicalised") == "91 % vs 87 %"
    assert paper.formatted("fmnist_steerable_ensembles") == "85.3–86.3 %"
