"""The tour experiment end-to-end on a tiny preset: results schema, resume, the claims, the
chapter's preset resolution (quick live, a larger preset only loaded, never trained)."""
import json

import numpy as np
import pytest

from eqlib.experiments import tour
from eqlib.metrics import orbit_spread
from eqlib.runner import chapter_results, get_experiment, latest_results, run_experiment, store_run

TINY = dict(n_train=6, n_eval=5, size=6, width=64, members=4, steps=20, prediction_samples=64)
M, N, G = 4, 5, 4


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tour")
    path = run_experiment("tour", preset="quick", root=root, verbose=False, **TINY)
    arrays, meta = latest_results("tour", "quick", root=root, allow_modified=True)
    return root, path, arrays, meta


def test_tour_runs_end_to_end_and_resumes(tiny_run, capsys):
    root, path, arrays, loaded = tiny_run
    meta = json.loads(path.read_text())
    for key in ("experiment", "preset", "config", "seed", "summary", "provenance", "wall_time_s"):
        assert key in meta
    assert meta["config"]["members"] == 4 and meta["preset"] == "quick"
    for key in ("versions", "device", "git", "timestamp"):
        assert key in meta["provenance"]
    assert arrays["augmented/member_spread_test"].shape == (M, N)
    # the theorem, at tiny size: the infinite-width mean is invariant with augmentation only
    assert loaded["summary"]["augmented/noise"]["ntk_mean_spread_max"] < 1e-6
    assert loaded["summary"]["plain/noise"]["ntk_mean_spread_max"] > 1e-3
    capsys.readouterr()
    run_experiment("tour", preset="quick", root=root, **TINY)
    out = capsys.readouterr().out
    assert out.count("resumed") == 3 and "computing" not in out   # data + two measurements
    again, _ = latest_results("tour", "quick", root=root, allow_modified=True)
    for key in ("augmented/ensemble_spread_noise", "comparison/ensemble_spread_ratio_test"):
        np.testing.assert_array_equal(again[key], arrays[key])


def test_tour_arrays_have_the_documented_shapes(tiny_run):
    _, _, arrays, _ = tiny_run
    for mode in tour.MODES:
        assert arrays[f"{mode}/loss"].shape == (TINY["steps"], M)
        assert arrays[f"{mode}/first_epoch_step_loss"].shape == (M, 1)   # full batch: one step
        np.testing.assert_array_equal(arrays[f"{mode}/ntk_times"], [0, TINY["steps"]])
        for d in tour.DATA_SETS:
            assert arrays[f"{mode}/member_outputs_{d}"].shape == (M, G, N, 1)
            assert arrays[f"{mode}/ntk_mean_{d}"].shape == (2, G, N, 1)
            assert arrays[f"{mode}/ntk_mean_{d}"].dtype == np.float64
            assert arrays[f"{mode}/ntk_spread_{d}"].shape == (2, N)
            assert arrays[f"{mode}/sigma_blocks_{d}"].shape == (N, G, G)
            assert arrays[f"{mode}/var_w_blocks_{d}"].shape == (N, G, G)
            assert arrays[f"{mode}/spread_interval_{d}"].shape == (3, 3)
            assert arrays[f"{mode}/fluctuation_{d}"].shape == (len(tour.FLUCTUATION_COLUMNS),)
    for d in tour.DATA_SETS:
        assert arrays[f"comparison/ensemble_spread_ratio_{d}"].shape == (3, 3)


def test_tour_arrays_agree_with_each_other(tiny_run):
    _, _, arrays, meta = tiny_run
    for mode in tour.MODES:
        # training decreases the loss; the first recorded epoch loss is the first step's
        loss = arrays[f"{mode}/loss"]
        assert np.all(loss[-1] < loss[0])
        np.testing.assert_allclose(loss[0], arrays[f"{mode}/first_epoch_step_loss"][:, 0])
        for d in tour.DATA_SETS:
            outputs = arrays[f"{mode}/member_outputs_{d}"]
            np.testing.assert_allclose(arrays[f"{mode}/member_spread_{d}"],
                                       orbit_spread(outputs), rtol=1e-5)
            np.testing.assert_allclose(arrays[f"{mode}/ensemble_spread_{d}"],
                                       orbit_spread(outputs.mean(0)), rtol=1e-5)
            est, low, high = arrays[f"{mode}/spread_interval_{d}"].T
            assert np.all(low <= est) and np.all(est <= high)
            assert est[0] == pytest.approx(arrays[f"{mode}/member_spread_{d}"].mean(), rel=1e-5)
            assert est[1] == pytest.approx(arrays[f"{mode}/ensemble_spread_{d}"].mean(), rel=1e-5)
            assert est[2] == pytest.approx(est[1] - est[0])
            # μ_0 = 0 in closed form; the covariance blocks are symmetric, Var_w from the outputs
            assert np.all(arrays[f"{mode}/ntk_mean_{d}"][0] == 0)
            for key in ("sigma_blocks", "var_w_blocks"):
                blocks = arrays[f"{mode}/{key}_{d}"]
                np.testing.assert_allclose(blocks, np.swapaxes(blocks, 1, 2), atol=1e-10)
            var = outputs[..., 0].reshape(M, -1).astype(np.float64).var(0, ddof=1)
            np.testing.assert_allclose(
                np.einsum("igg->gi", arrays[f"{mode}/var_w_blocks_{d}"]).reshape(-1), var,
                rtol=1e-6)
            fluct = dict(zip(tour.FLUCTUATION_COLUMNS, arrays[f"{mode}/fluctuation_{d}"]))
            naive = np.sqrt(np.trace(arrays[f"{mode}/var_w_blocks_{d}"], axis1=1, axis2=2).mean()
                            / G / M)
            assert fluct["naive_var_w"] == pytest.approx(naive, rel=1e-6)
            assert 0 < fluct["from_var_w"] and 0 < fluct["from_sigma"]
            summary = meta["summary"][f"{mode}/{d}"]
            assert summary["from_var_w"] == pytest.approx(fluct["from_var_w"])
    # the augmented/plain ratio is the ratio of the two ensembles' mean spreads
    for d in tour.DATA_SETS:
        ratio = arrays[f"comparison/ensemble_spread_ratio_{d}"]
        assert ratio[1, 0] == pytest.approx(arrays[f"augmented/ensemble_spread_{d}"].mean()
                                            / arrays[f"plain/ensemble_spread_{d}"].mean(),
                                            rel=1e-5)
        assert ratio[1, 1] <= ratio[1, 0] <= ratio[1, 2]


def test_fluctuation_only_matches_the_closed_form():
    """Independent orbit points of variance σ²: E s² = σ²(1 − 1/|G|)/M; E s slightly below √ of it."""
    n, members, sigma2 = 50, 8, 2.0
    pred = tour.fluctuation_only(sigma2 * np.eye(G * n), G, members, samples=400, seed=1)
    expected_rms = np.sqrt(sigma2 * (1 - 1 / G) / members)
    assert 0.8 * expected_rms < pred[0] < expected_rms
    assert pred[2] == pytest.approx(np.sqrt(sigma2 / members))
    # a fluctuation shared by the whole orbit violates nothing
    shared = np.kron(np.ones((G, G)), np.eye(n))
    assert tour.fluctuation_only(shared, G, members, samples=50)[0] < 1e-6


def test_orbit_blocks_picks_the_per_input_orbit_covariance():
    n = 3
    cov = np.arange((G * n) ** 2, dtype=float).reshape(G * n, G * n)
    blocks = tour.orbit_blocks(cov, G)
    for i in range(n):
        for g in range(G):
            for h in range(G):
                assert blocks[i, g, h] == cov[g * n + i, h * n + i]


def test_spread_ratio_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        tour.spread_ratio_intervals(np.zeros((4, G, 3, 1)), np.zeros((4, G, 2, 1)))


@pytest.fixture
def tiny_presets(monkeypatch):
    """Make the tiny config the tour's quick and full presets, so runs count as exact presets."""
    presets = get_experiment("tour").presets
    monkeypatch.setitem(presets, "quick", tour.TourConfig(**TINY))
    monkeypatch.setitem(presets, "full", tour.TourConfig(**{**TINY, "members": 5}))


def test_chapter_results_quick_runs_live(tmp_path, tiny_presets):
    arrays, meta = chapter_results("tour", "quick", root=tmp_path, stored_root=tmp_path / "s")
    assert meta["note"] == "" and meta["preset"] == "quick" and not meta["modified"]
    assert arrays["augmented/member_outputs_test"].shape[0] == M


def test_chapter_results_full_falls_back_without_training(tmp_path, tiny_presets, monkeypatch):
    monkeypatch.setenv("EQLIB_PRESET", "full")
    arrays, meta = chapter_results("tour", root=tmp_path, stored_root=tmp_path / "s")
    assert meta["preset"] == "quick"
    assert "python -m eqlib run tour --preset full" in meta["note"]
    assert not list((tmp_path / "tour").glob("full-*"))        # full was not trained
    # the reference preset does not exist for the tour: quick, with a note
    _, meta = chapter_results("tour", "reference", root=tmp_path, stored_root=tmp_path / "s")
    assert meta["preset"] == "quick" and "no 'reference' preset" in meta["note"]


def test_chapter_results_loads_a_finished_full_run(tmp_path, tiny_presets):
    path = run_experiment("tour", "full", tmp_path, verbose=False)
    arrays, meta = chapter_results("tour", "full", root=tmp_path, stored_root=tmp_path / "s")
    assert meta["note"] == "" and meta["preset"] == "full"
    assert arrays["augmented/member_outputs_test"].shape[0] == 5
    # a stored run is preferred to the cache
    store_run(path, "python -m eqlib run tour --preset full --store", root=tmp_path / "s",
              allow_dirty=True)
    _, meta = chapter_results("tour", "full", root=tmp_path / "elsewhere",
                               stored_root=tmp_path / "s")
    assert meta["note"] == "" and meta["stored"]["command"].endswith("--store")


def test_ensemble_spread_bars_draws_intervals_and_the_run_label():
    import matplotlib.pyplot as plt

    from eqlib import plots

    keys = [(t, d, k) for t in ("augmented", "no augmentation") for d in tour.DATA_SETS
            for k in ("member", "ensemble")]
    spread = {key: 1.0 + i for i, key in enumerate(keys)}
    intervals = {key: (v - 0.5, v + 0.25) for key, v in spread.items()}
    fig = plots.ensemble_spread_bars(spread, 3, intervals=intervals, label="quick preset · cpu")
    ax = fig.axes[0]
    assert len(ax.patches) == 8
    caps = [line for line in ax.lines if len(line.get_xdata()) == len(tour.DATA_SETS)]
    assert caps, "error bars drawn"
    tops = sorted({round(float(y), 6) for line in caps for y in line.get_ydata()})
    assert 1.25 in tops and 0.5 in tops                          # first bar: 1 − 0.5, 1 + 0.25
    assert any("quick preset · cpu" in t.get_text() for t in fig.texts)
    plt.close(fig)
