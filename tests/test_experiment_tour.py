"""The tour experiment end-to-end on a tiny preset: results file schema, resume, the claims."""
import json

import numpy as np

from eqlib.runner import latest_results, run_experiment

TINY = dict(n_train=6, n_eval=5, size=6, width=64, members=4, steps=20)


def test_tour_runs_end_to_end_and_resumes(tmp_path, capsys):
    path = run_experiment("tour", preset="quick", root=tmp_path, **TINY)
    meta = json.loads(path.read_text())
    for key in ("experiment", "preset", "config", "seed", "summary", "provenance", "wall_time_s"):
        assert key in meta
    assert meta["config"]["members"] == 4 and meta["preset"] == "quick"
    for key in ("versions", "device", "git", "timestamp"):
        assert key in meta["provenance"]
    arrays, loaded = latest_results("tour", "quick", root=tmp_path, allow_modified=True)
    assert arrays["augmented/member_spread_test"].shape == (4, 5)
    # the theorem, at tiny size: the infinite-width mean is invariant with augmentation only
    assert loaded["summary"]["augmented/noise"]["ntk_mean_spread_max"] < 1e-6
    assert loaded["summary"]["plain/noise"]["ntk_mean_spread_max"] > 1e-3
    capsys.readouterr()
    run_experiment("tour", preset="quick", root=tmp_path, **TINY)
    out = capsys.readouterr().out
    assert out.count("resumed") == 3 and "computing" not in out   # data + two measurements
    again, _ = latest_results("tour", "quick", root=tmp_path, allow_modified=True)
    np.testing.assert_array_equal(again["augmented/ensemble_spread_noise"], arrays["augmented/ensemble_spread_noise"])
