"""The FashionMNIST chapter's figures (eqlib.plots.fashion) draw from arrays shaped like a run's."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from eqlib import plots
from eqlib.experiments import fashion_mnist as fx


def _fake_run(width=2, members=4, n=6, angles=8, groups=("none", "C4", "C8")):
    """Arrays with the keys and shapes the runner stores, from random logits."""
    rng = np.random.default_rng(0)
    arrays = {"angles": 2 * np.pi * np.arange(angles) / angles}
    sizes = np.array([1, 2, 4])
    labels = rng.integers(0, 10, n)
    for aug in groups:
        key = f"c{width}_{aug}"
        arrays[f"{key}/sizes"] = sizes
        for name in fx.EVAL_SETS:
            logits = rng.normal(size=(members, 4, n, 10)).astype(np.float16)
            arrays[f"{key}/logits/{name}"] = logits
            for stat, iv in fx.orbit_statistics(logits, labels if name == "test" else None).items():
                arrays[f"{key}/interval/{stat}/{name}"] = iv
            for k, v in fx.continuous_by_ensemble_size(logits, sizes).items():
                arrays[f"{key}/{k}/{name}"] = v
        so2 = rng.normal(size=(2, angles, n, 10))
        for stat, iv in fx.orbit_statistics(so2, labels).items():
            arrays[f"{key}/so2/interval/{stat}/test"] = iv
    return arrays


def test_member_vs_ensemble_and_size_figures():
    arrays = _fake_run()
    runs = [("quick preset · cpu", arrays, 2), ("reference preset · cpu", arrays, 2)]
    fig = plots.fashion_member_vs_ensemble(runs)
    assert len(fig.axes) == 6 and fig.axes[1].get_yscale() == "log"        # 2 runs × 3 statistics
    assert fig.axes[0].get_title(loc="left") == "quick preset · cpu"
    fig2 = plots.fashion_continuous_vs_members(runs, "rel_spread")
    assert len(fig2.axes) == 6
    with pytest.raises(ValueError, match="stat"):
        plots.fashion_continuous_vs_members(runs, "osp")
    plt.close("all")


def test_osp_against_kl_and_so2_intervals():
    arrays = _fake_run()
    logits = arrays["c2_C4/logits/noise"].astype(np.float32)
    fig = plots.fashion_osp_against_kl({"member": logits[0], "ensemble": logits.mean(0)})
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "log"
    points = fig.axes[0].collections[0].get_offsets()
    assert len(points) == 6 and np.all((points[:, 1] > 0.8) & (points[:, 1] < 4.2))
    fig2 = plots.fashion_so2_intervals("quick", arrays, 2, ["none", "C4", "C8"])
    assert len(fig2.axes) == 3
    plt.close("all")
