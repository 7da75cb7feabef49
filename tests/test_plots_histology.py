"""The histology chapter's figures (eqlib.plots.histology) on synthetic results with the runner's
exact schema: the arrays are made by the runner's own measuring function from random logits."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from eqlib import plots  # noqa: E402
from eqlib.experiments import histology as H  # noqa: E402

CFG = H.HistologyConfig(members=4, ensemble_sizes=(1, 2, 4), num_bootstrap=20, stored_inputs=3)


def fake_run(modes=("plain", "D4"), n=18, seed=0) -> dict:
    """Arrays laid out as the runner stores them, from random member logits (M, 8, n, 9)."""
    rng = np.random.default_rng(seed)
    sizes = H.ensemble_sizes(CFG)
    labels, patch = rng.integers(0, 9, n), np.repeat(np.arange(n // 3), 3)
    arrays = {"sizes": sizes}
    for mode in modes:
        arrays[f"{mode}/loss"] = np.ones((3, 2, CFG.members))
        for name in H.EVAL_SETS:
            logits = rng.normal(size=(CFG.members, 8, n, 9))
            lab = labels if name in ("test", "jitter") else None
            out = H._measure(CFG, logits, sizes, lab, patch if lab is not None else None)
            arrays.update({f"{mode}/{name}/{k}": v for k, v in out.items()})
    return arrays


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_modes_are_read_from_the_arrays():
    assert plots.histology_modes(fake_run(("plain", "C4", "D4"))) == ("plain", "C4", "D4")
    assert plots.histology_modes(fake_run(("plain", "D4"))) == ("plain", "D4")


def test_histology_figures_draw_both_runs():
    runs = [("quick · cpu", fake_run()), ("reference · cpu", fake_run(("plain", "C4", "D4"), seed=1))]
    fig = plots.histology_accuracy(runs)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[0].get_title() == "quick · cpu" and fig.axes[0].get_ylabel()
    fig = plots.histology_member_vs_ensemble(runs)
    assert len(fig.axes) == 6 and fig.axes[1].get_yscale() == "log"         # KL on a log axis
    assert all(ax.get_ylabel() for ax in fig.axes)
    for relative in (False, True):
        fig = plots.histology_growth(runs, stat="rspread" if relative else "kl", relative=relative)
        assert len(fig.axes) == 2 * len(H.EVAL_SETS)
        assert fig.axes[0].get_xlabel() == "ensemble size M (members)"
    fig = plots.histology_osp_blind_spots(runs[1][1], "noise", label="reference")
    assert len(fig.axes) == 2 and fig.axes[1].get_xlabel().startswith("logit margin")
    with pytest.raises(KeyError):
        plots.histology_member_vs_ensemble([("x", {"sizes": np.ones(1), "plain/loss": 0})])
