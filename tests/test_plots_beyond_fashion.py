"""Figures of the beyond_fashion chapter: drawn from synthetic inputs of the documented shapes."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from eqlib.experiments import beyond_fashion as bfx  # noqa: E402
from eqlib.plots import beyond_fashion as bf  # noqa: E402


def _row(model, networks, gflop):
    return {"model": model, "networks": networks, "acc": (0.8, 0.78, 0.82), "osp_noise": (0.9, 0.85, 0.95),
            "train_gflop": gflop}


def test_accuracy_invariance_cost_draws_every_row():
    rows = [_row("augmented member", 1, 180.0), _row("GCNN ensemble of 4", 4, 670.0)]
    fig = bf.accuracy_invariance_cost(rows, label="quick")
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    assert len(fig.axes[0].texts) == 2 and fig.axes[1].get_ylabel().startswith("OSP fraction")
    assert len(fig.axes[1].texts) == 3                # two rows below 1, one shared label
    plt.close(fig)
    with pytest.raises(ValueError, match="rows must not be empty"):
        bf.accuracy_invariance_cost([])


def test_uncertainty_figures(rng):
    logits = rng.normal(size=(8, 4, 12, 10))
    scores = {s: bfx.orbit_scores(logits) for s in ("test", "noise")}
    fig = bf.orbit_scores_examples(scores, inputs=range(5))
    assert len(fig.axes) == 4 and len(fig.axes[0].lines) == 5
    plt.close(fig)
    curve = bfx.variance_share_by_size(logits, [2, 4, 8])
    assert curve["share"].shape == (3,) and curve["share_std"][-1] == 0
    curves = {arm: {"test": curve} for arm in ("C4", "none")}
    members = {arm: {"test": (0.5, 0.4, 0.6)} for arm in ("C4", "none")}
    fig = bf.variance_share_vs_members(curves, members)
    assert len(fig.axes) == 1 and fig.axes[0].get_xscale() == "log"
    plt.close(fig)
    aurocs = {(a, v): (0.6, 0.55, 0.65) for a in ("C4", "none") for v in ("upright", "rotated")}
    fig = bf.ood_auroc(aurocs)
    assert len(fig.axes[0].patches) == 4
    plt.close(fig)
    with pytest.raises(ValueError, match="sizes must lie in"):
        bfx.variance_share_by_size(logits, [1, 2])
