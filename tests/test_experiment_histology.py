"""The histology experiment end to end on tiny configs (the bundled patches): results schema,
patch-level cross-validation, resume, intervals, the colour jitter, the FashionMNIST conversion
and the sub-ensemble metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest

from eqlib.data.histology import bundled_histology_dir
from eqlib.experiments import histology as H
from eqlib.runner import get_experiment, latest_results, run_experiment


# 3 folds of 16-px crops of 56-px patches (9 crops per patch), 3 members, 1 epoch, one narrow conv
TINY = dict(patch_size=56, image_size=16, n_off=12, members=3, ensemble_sizes=(1, 3), epochs=1, channels=(4,),
            batch_size=16, num_bootstrap=50, stored_inputs=5)


def test_presets_are_registered():
    presets = get_experiment("histology").presets
    assert presets["quick"] == H.QUICK and presets["reference"] == H.REFERENCE and presets["full"] == H.FULL
    assert H.QUICK.folds == H.REFERENCE.folds == 3 and H.REFERENCE.members > H.QUICK.members


def test_histology_runs_end_to_end_and_resumes(tmp_path, capsys):
    path = run_experiment("histology", preset="quick", root=tmp_path, **TINY)
    meta = json.loads(path.read_text())
    for key in ("experiment", "preset", "config", "seed", "summary", "provenance", "wall_time_s", "steps"):
        assert key in meta
    assert meta["config"]["members"] == 3 and meta["config"]["folds"] == 3
    summary = meta["summary"]
    data = summary["data"]
    assert data["stand_in"] is True and "tiny stand-in" in data["note"] and "cross-validation" in data["note"]
    # every one of the 27 patches is held out once: 27 · 9 crops, 18 · 9 training crops per fold
    assert data["n_train"] == [162, 162, 162] and data["test_patches"] == 27
    assert data["n_eval"] == {"test": 243, "noise": 12, "jitter": 243, "fashion": 12}
    assert summary["ensemble_sizes"] == [1, 3]
    for mode in ("plain", "D4"):
        acc = summary[mode]["accuracy_test"]
        p = acc["ensemble_patches"]
        assert p["low"] <= p["estimate"] <= p["high"] and p["estimate"] == pytest.approx(acc["ensemble"])
        for g in H.EVAL_GROUPS:
            for name in H.EVAL_SETS:
                entry = summary[mode][f"{g}/{name}"]
                assert 1 / (4 if g == "C4" else 8) <= entry["ensemble_osp"] <= 1
                for key in ("osp", "kl", "rspread"):
                    iv = entry[key]["ensemble"]
                    assert iv["low"] <= iv["estimate"] <= iv["high"]
    arrays, loaded = latest_results("histology", "quick", root=tmp_path, allow_modified=True)
    assert loaded["config_hash"] == meta["config_hash"]
    assert arrays["sizes"].tolist() == [1, 3]
    # held-out images of the folds: disjoint, all 243, no held-out patch in its fold's training set
    held, patch = arrays["data/held_out"], arrays["data/patch"]
    assert sorted(arrays["data/test_index"].tolist()) == list(range(243))
    for k in range(3):
        assert not set(patch[held == k]) & set(patch[held != k])
    assert arrays["D4/test/logits"].shape == (3, 8, 5, 9) and arrays["D4/test/logits"].dtype == np.float16
    assert arrays["D4/test/member_pred"].shape == (3, 243)
    assert arrays["D4/test/patch_accuracy"].shape == (27,)
    assert arrays["D4/noise/mve_kl_D4"].shape == (3, 3)
    assert arrays["plain/loss"].shape == (3, 1, 3)                     # folds × epochs × members
    assert arrays["plain/first_epoch_step_loss"].shape == (3, 3, 162 // 16)
    # size 1 of the sub-ensemble curve is the mean member; the stored logits give the same numbers
    np.testing.assert_allclose(arrays["D4/test/osp_C4"][0], arrays["D4/test/member_osp_C4"].mean())
    np.testing.assert_allclose(arrays["D4/jitter/spread_D4"][0], arrays["D4/jitter/member_spread_D4"].mean(),
                               rtol=1e-6)
    idx = arrays["D4/test/logits_index"]
    kept = arrays["D4/test/logits"].astype(np.float64)
    np.testing.assert_array_equal(kept[:, 0].argmax(-1), arrays["D4/test/member_pred"][:, idx])
    mve = arrays["D4/noise/mve_osp_D4"]
    np.testing.assert_allclose(mve[0, 0], arrays["D4/noise/member_osp_D4"].mean())
    np.testing.assert_allclose(mve[1, 0], arrays["D4/noise/osp_D4"][-1])

    capsys.readouterr()
    run_experiment("histology", preset="quick", root=tmp_path, **TINY)
    out = capsys.readouterr().out
    assert out.count("resumed") == 3 and "computing" not in out       # data + two trainings
    again, _ = latest_results("histology", "quick", root=tmp_path, allow_modified=True)
    for key in ("D4/test/member_pred", "D4/fashion/spread_D4", "plain/test/accuracy"):
        np.testing.assert_array_equal(again[key], arrays[key])


def test_crop_table_folds_hold_out_every_patch_once():
    table = H.crop_table(H.HistologyConfig(patch_size=56, image_size=16, folds=3))
    assert table["x"].shape == (243, 16, 16, 3) and len(table["files"]) == 27
    held, patch, y = table["held_out"], table["patch"], table["y"]
    for k in range(3):
        fold_patches = np.unique(patch[held == k])
        assert len(fold_patches) == 9
        assert sorted(np.unique(y[held == k]).tolist()) == list(range(9))    # one patch per class
        fd = H.fold_data(H.HistologyConfig(folds=3), table, k)
        assert not set(patch[fd["train"]]) & set(fold_patches)
        np.testing.assert_allclose(fd["x"].mean((0, 1, 2)), 0, atol=1e-4)
    # one fold: the original split, CRC-VAL-HE-7K held out
    one = H.crop_table(H.HistologyConfig(patch_size=56, image_size=16))
    assert (one["held_out"] == 0).sum() == 81 and (one["held_out"] == -1).sum() == 162
    with pytest.raises(ValueError, match="folds"):
        H.crop_table(H.HistologyConfig(folds=4))
    with pytest.raises(ValueError, match="n_train"):
        H.crop_table(H.HistologyConfig(folds=3, n_train=10))


def test_patch_bootstrap_resamples_patches():
    correct = np.array([1, 1, 0, 0, 1, 0], bool)
    patch = np.array([0, 0, 1, 1, 2, 2])
    per_patch, interval = H.patch_bootstrap(correct, patch, num_bootstrap=2000, seed=0)
    np.testing.assert_allclose(per_patch, [1.0, 0.0, 0.5])
    assert interval[0] == pytest.approx(0.5)
    assert 0 <= interval[1] < 0.5 < interval[2] <= 1
    # several rows at once (members)
    rows, intervals = H.patch_bootstrap(np.stack([correct, ~correct]), patch, 10)
    assert rows.shape == (2, 3) and intervals.shape == (2, 3)


def test_colour_jitter_is_seeded_and_stays_in_range(rng):
    images = rng.uniform(0, 1, size=(6, 5, 5, 3)).astype(np.float32)
    a = H.colour_jitter(images, 0.3, 0.15, seed=1)
    assert a.shape == images.shape and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, H.colour_jitter(images, 0.3, 0.15, seed=1))
    assert not np.array_equal(a, H.colour_jitter(images, 0.3, 0.15, seed=2))
    assert not np.array_equal(a, images)
    np.testing.assert_array_equal(H.colour_jitter(images, 0.0, 0.0), images)     # no jitter: unchanged
    # one gain and one offset per image and channel: it commutes with rotations of the image
    np.testing.assert_allclose(np.rot90(a, axes=(1, 2)), H.colour_jitter(np.rot90(images, axes=(1, 2)), 0.3, 0.15, 1))
    with pytest.raises(ValueError, match="scale"):
        H.colour_jitter(images, 1.5)
    with pytest.raises(ValueError, match="shift"):
        H.colour_jitter(images, 0.1, -0.1)
    with pytest.raises(ValueError, match=r"\(n, h, w, c\)"):
        H.colour_jitter(images[0])


def test_fashion_rgb_pads_tiles_and_scales(rng):
    images = rng.uniform(0, 1, size=(3, 28, 28, 1)).astype(np.float32)
    out = H.fashion_rgb(images)
    assert out.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(out[:, 2:30, 2:30, 1], images[..., 0])
    assert np.all(out[:, :2] == 0) and np.all(out[:, :, -2:] == 0)
    big = H.fashion_rgb(images, 64)
    assert big.shape == (3, 64, 64, 3)
    np.testing.assert_array_equal(big[:, ::2, ::2], out)
    assert H.fashion_rgb(images, 48).shape == (3, 48, 48, 3)
    assert H.fashion_rgb(images, 16).shape == (3, 16, 16, 3)
    with pytest.raises(ValueError, match="28, 28, 1"):
        H.fashion_rgb(images[..., :20, :])


def test_subensemble_symmetry():
    # two members, each predicting a class that depends on the orbit element, in opposite ways
    logits = np.zeros((2, 4, 1, 3))
    logits[0, :, 0, 0] = [2, 2, 0, 0]
    logits[0, :, 0, 1] = [0, 0, 1, 1]
    logits[1, :, 0, 0] = [0, 0, 2, 2]
    logits[1, :, 0, 1] = [1, 1, 0, 0]
    out = H.subensemble_symmetry(logits, np.array([1, 2]))
    np.testing.assert_allclose(out["osp"], [0.5, 1.0])         # members: 2 of 4; the mean is invariant
    np.testing.assert_allclose(out["consistent"], [0.0, 1.0])
    assert out["spread"][0] > 0 and out["spread"][1] == pytest.approx(0.0)
    # the continuous measures agree: the members' KL and relative spread are positive, the mean's 0
    stats = {k: f(logits) for k, f in H.STATISTICS.items()}
    assert np.all(stats["kl"] > 0) and np.all(stats["rspread"] > 0)
    mean = logits.mean(0, keepdims=True)
    assert H.STATISTICS["kl"](mean)[0] == pytest.approx(0) and H.STATISTICS["rspread"](mean)[0] == pytest.approx(0)
    with pytest.raises(ValueError, match="outside"):
        H.subensemble_symmetry(logits, np.array([3]))


def test_config_validation(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="augmentations"):
        H.training_modes(H.HistologyConfig(augmentations=("C8",)))
    with pytest.raises(ValueError, match="head"):
        H.architecture(H.HistologyConfig(head="max"))
    assert H.ensemble_sizes(H.HistologyConfig(members=6, ensemble_sizes=(2, 4, 8))).tolist() == [1, 2, 4, 6]
    monkeypatch.delenv(H.ROOT_ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match="download_histology"):
        H.histology_data(H.FULL)
    with pytest.raises(ValueError, match="mini"):
        H.histology_data(H.HistologyConfig(data="medium"))


def test_full_data_path_on_the_bundled_patches(tmp_path, monkeypatch):
    """The ``full`` preset's loader (whole patches resized) works on any folder in the published layout."""
    monkeypatch.setenv("EQLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(H.ROOT_ENV_VAR, str(bundled_histology_dir()))
    d = H.histology_data(H.HistologyConfig(data="full", image_size=64))
    assert d["x_train"].shape == (18, 64, 64, 3) and d["x_test"].shape == (9, 64, 64, 3)
    assert sorted(set(d["y_train"].tolist())) == list(range(9))
    sets = H.evaluation_sets(H.HistologyConfig(image_size=64, n_off=5), d["x_test"])
    assert {k: v.shape for k, v in sets.items()} == {"test": (9, 64, 64, 3), "noise": (5, 64, 64, 3),
                                                     "jitter": (9, 64, 64, 3), "fashion": (5, 64, 64, 3)}
    assert all(0 <= v.min() and v.max() <= 1 for v in sets.values())
    with pytest.raises(ValueError, match="cross-validation"):
        H.crop_table(H.HistologyConfig(data="full", image_size=64, folds=3))


def test_full_preset_code_path_with_member_chunks(tmp_path, monkeypatch, capsys):
    """The ``full`` preset's path — whole patches, one split, vmapped members trained in chunks, each
    chunk checkpointed — on the bundled patches at tiny size; chunked training equals training all at once."""
    monkeypatch.setenv("EQLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(H.ROOT_ENV_VAR, str(bundled_histology_dir()))
    small = dict(image_size=32, n_off=8, members=2, ensemble_sizes=(1, 2), epochs=1, channels=(4,), batch_size=8,
                 augmentations=("C4",), strategy="vmap", eval_batch=8, apply_batch=64, num_bootstrap=20)
    path = run_experiment("histology", preset="full", root=tmp_path, member_chunk=1, **small)
    meta = json.loads(path.read_text())
    assert meta["summary"]["data"]["stand_in"] is False and meta["summary"]["data"]["n_train"] == [18]
    assert sorted(p.name for p in (path.parent / "checkpoints").iterdir()) == [
        f"train_{mode}_members{m}-{m}" for mode in ("C4", "plain") for m in (0, 1)]
    chunked, _ = latest_results("histology", "full", root=tmp_path, allow_modified=True)
    whole = run_experiment("histology", preset="full", root=tmp_path / "whole", member_chunk=None, **small)
    once, _ = latest_results("histology", "full", root=tmp_path / "whole", allow_modified=True)
    assert whole != path
    np.testing.assert_allclose(chunked["C4/test/spread_C4"], once["C4/test/spread_C4"], rtol=1e-4)
    np.testing.assert_allclose(chunked["plain/loss"], once["plain/loss"], rtol=1e-4)
    np.testing.assert_allclose(chunked["plain/first_epoch_step_loss"], once["plain/first_epoch_step_loss"],
                               rtol=1e-4)
    assert (chunked["plain/test/member_pred"] == once["plain/test/member_pred"]).mean() > 0.95
