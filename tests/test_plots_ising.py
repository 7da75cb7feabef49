"""The Ising chapter's figures (eqlib.plots.ising) on synthetic results arrays."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from eqlib import plots  # noqa: E402
from eqlib.plots.ising import _curve_with_intervals  # noqa: E402

SETS = ("test", "other_T", "random", "gaussian")
CFG = {"widths": [8, 16], "plain_width": 16, "train_temperatures": [2.5, 3.5], "other_temperature": 2.0}


def fake_arrays(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    sizes, T = np.array([1, 2, 4, 8]), 3
    arrays = {"times": np.array([0, 1, 10]), "ntk_mlp_aug/sizes": sizes, "ntk_mlp_plain/sizes": sizes}
    for key in ("mlp_w8_aug", "mlp_w16_aug", "mlp_w16_plain", "cnn_aug", "cnn_plain"):
        arrays[f"{key}/sizes"] = sizes
        arrays[f"{key}/slope_sizes"] = sizes[:2]
        for stat in ("spread", "rel_spread"):
            for name in SETS:
                est = np.tile(0.5 / np.sqrt(sizes), (T, 1)) * (1 + 0.1 * rng.random((T, 4)))
                arrays[f"{key}/ensemble_{stat}/{name}"] = est
                arrays[f"{key}/ensemble_{stat}_low/{name}"] = 0.9 * est
                arrays[f"{key}/ensemble_{stat}_high/{name}"] = 1.1 * est
                arrays[f"{key}/mve_{stat}/{name}"] = np.array([[0.5, 0.45, 0.55], [est[-1, -1], 0.15, 0.2],
                                                               [-0.3, -0.35, -0.25]])
                arrays[f"{key}/slope_{stat}/{name}"] = np.array([-0.5, -0.55, -0.45])
                arrays[f"ntk_mlp_aug/predicted_{stat}/{name}"] = np.tile(0.5 / np.sqrt(sizes), (T, 1))
                arrays[f"ntk_mlp_aug/predicted_{stat}_std/{name}"] = np.tile(0.05 / np.sqrt(sizes), (T, 1))
                arrays[f"ntk_mlp_plain/predicted_{stat}/{name}"] = np.tile(0.2 + 0.5 / np.sqrt(sizes), (T, 1))
    return arrays


RUNS = [(fake_arrays(0), CFG, "quick preset · cpu · today"), (fake_arrays(1), CFG, "reference preset · cpu")]


@pytest.mark.parametrize("stat", ["spread", "rel_spread"])
def test_intervals_vs_members_draws_a_row_per_run(stat):
    fig = plots.ising_intervals_vs_members(RUNS, stat)
    assert len(fig.axes) == 8                                   # 2 runs × 4 evaluation sets
    assert "reference preset" in fig.axes[4].get_ylabel()
    assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_xlabel().startswith("ensemble size")
    plt.close(fig)


def test_member_vs_ensemble_and_slopes_draw_a_panel_per_run():
    fig = plots.ising_member_vs_ensemble(RUNS, "rel_spread")
    assert len(fig.axes) == 2 and "quick preset" in fig.axes[0].get_title()
    assert "relative orbit spread" in fig.axes[0].get_ylabel()
    plt.close(fig)
    fig = plots.ising_slopes(RUNS[:1])
    assert len(fig.axes) == 1 and "over M = 1, 2" in fig.axes[0].get_title()
    # the reference line at −1/2 is drawn
    assert any(np.allclose(line.get_ydata(), -0.5) for line in fig.axes[0].get_lines())
    plt.close(fig)


def test_interval_curve_uses_bootstrap_jackknife_or_no_bar():
    arrays = fake_arrays()
    sizes, est, low, high = _curve_with_intervals(arrays, "mlp_w8_aug", "spread", "test")
    assert sizes.tolist() == [1, 2, 4, 8]
    np.testing.assert_allclose(low[:2], 0.9 * est[:2])           # ≥ 4 sub-ensembles: bootstrap
    assert low[2] == high[2] == est[2]                            # 2 sub-ensembles: no bar
    assert (low[-1], high[-1]) == (0.15, 0.2)                     # the full ensemble: jackknife


def test_validation():
    with pytest.raises(ValueError, match="at least one"):
        plots.ising_slopes([])
    with pytest.raises(ValueError, match="stat must be"):
        plots.ising_member_vs_ensemble(RUNS, "osp")
