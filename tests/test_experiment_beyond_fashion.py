"""The beyond_fashion experiment: presets, equal-compute width, symmetrisation, the comparison table,
and a tiny end-to-end run (schema, invariance of the trained GCNN and canonicalised networks, resume)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqlib.experiments import beyond_fashion as bf
from eqlib.experiments import fashion_mnist as fm
from eqlib.groups import CyclicRotations
from eqlib.metrics import orbit_outputs
from eqlib.runner import latest_results, run_experiment
from eqlib.symmetrize import group_average

TINY = dict(n_train=64, n_eval=8, epochs=1, seeds=2, timing_steps=0, eval_batch=64)


def test_config_validation_and_mirrored_preset():
    with pytest.raises(ValueError, match="fashion_preset must be one of"):
        bf.BeyondFashionConfig(fashion_preset="huge")
    with pytest.raises(ValueError, match="seeds must be at least 2"):
        bf.BeyondFashionConfig(seeds=1)
    with pytest.raises(ValueError, match="must not exceed the mirrored preset's members"):
        bf.BeyondFashionConfig(seeds=9)
    with pytest.raises(ValueError, match="must be ≥ 0"):
        bf.BeyondFashionConfig(n_train=-1)
    assert bf.fashion_config(bf.QUICK) == fm.QUICK
    assert bf.fashion_config(bf.REFERENCE) == fm.REFERENCE
    tiny = bf.fashion_config(bf.BeyondFashionConfig(**TINY))
    assert (tiny.n_train, tiny.n_eval, tiny.epochs) == (64, 8, 1)
    assert (tiny.learning_rate, tiny.batch_size) == (fm.QUICK.learning_rate, fm.QUICK.batch_size)
    assert bf.augmented_key(fm.QUICK) == "c8_C4" and bf.augmented_key(fm.REFERENCE, "none") == "c16_none"


@pytest.mark.parametrize("cfg", [bf.QUICK, bf.REFERENCE], ids=["quick", "reference"])
def test_preset_gcnn_width_is_the_flop_matched_one(cfg):
    """Each preset's GCNN width is the one whose step costs closest to an augmented member's."""
    fcfg = bf.fashion_config(cfg)
    w = cfg.gcnn_width
    assert bf.matched_gcnn_width(fcfg.widths[0], fcfg.batch_size, range(max(1, w - 2), w + 3),
                                 head=fcfg.head) == w


def test_symmetrized_logits_equal_group_averaging_a_network(rng):
    W = jnp.asarray(rng.normal(size=(8 * 8, 3)), jnp.float32)
    f = lambda x: (x.reshape(len(x), -1) ** 2) @ W + x.reshape(len(x), -1)[:, :3]   # noqa: E731
    x = jnp.asarray(rng.uniform(size=(5, 8, 8, 1)), jnp.float32)
    c4 = CyclicRotations(4)
    direct = np.asarray(orbit_outputs(group_average(f, c4), x, c4))          # (4, n, 3)
    from_orbit = bf.symmetrized(np.asarray(orbit_outputs(f, x, c4)))
    np.testing.assert_allclose(from_orbit, direct, rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(orbit_outputs(f, x, c4)) - from_orbit).max() > 1e-2   # f itself is not
    with pytest.raises(ValueError, match="symmetrized expects"):
        bf.symmetrized(np.zeros((4, 3)))


def _fake_runs(rng, M=6, S=3, n=20):
    y = rng.integers(0, 10, n)
    fashion = {"y_test": y}
    for s in fm.EVAL_SETS:
        fashion[f"c8_C4/logits/{s}"] = rng.normal(size=(M, 4, n, 10)).astype(np.float16)
    arrays = {}
    for model in bf.MODELS:
        for s in fm.EVAL_SETS:
            invariant = rng.normal(size=(S, 1, n, 10))
            arrays[f"{model}/logits/{s}"] = np.broadcast_to(invariant, (S, 4, n, 10)).astype(np.float16)
    for i, kind in enumerate(bf.COST_KINDS):
        for q, v in (("params", 1000.0 * (i + 1)), ("train_step_flops", 2e8),
                     ("forward_flops_per_image", 1e6), ("step_seconds", 0.1), ("steps", 50)):
            arrays[f"cost/{kind}/{q}"] = np.asarray(v)
    return fashion, arrays


def test_comparison_rows_statistics_and_costs(rng):
    fashion, arrays = _fake_runs(rng)
    cfg = dataclasses.replace(bf.QUICK, seeds=3)
    rows = {r["model"]: r for r in bf.comparison_rows(fashion, arrays, cfg)}
    assert list(rows) == ["augmented member", "augmented ensemble of 3", "augmented ensemble of 6",
                          "symmetrised augmented member", "GCNN member", "GCNN ensemble of 3",
                          "canonicalised member", "canonicalised ensemble of 3"]
    for name in ("GCNN member", "canonicalised ensemble of 3", "symmetrised augmented member"):
        for s in fm.EVAL_SETS:
            assert rows[name][f"osp_{s}"] == pytest.approx((1, 1, 1))
            assert rows[name][f"kl_{s}"] == pytest.approx((0, 0, 0), abs=1e-6)
    assert rows["augmented member"]["osp_noise"][0] < 0.6          # random logits: far from invariant
    logits = fashion["c8_C4/logits/test"].astype(np.float32)
    acc = (logits[:3, 0].argmax(-1) == fashion["y_test"]).mean()
    assert rows["augmented member"]["acc"][0] == pytest.approx(acc)
    # costs: networks × per-network cost; symmetrisation evaluates 4 rotations
    assert rows["augmented ensemble of 6"]["train_gflop"] == pytest.approx(6 * 2e8 * 50 / 1e9)
    assert rows["symmetrised augmented member"]["infer_mflop"] == pytest.approx(4.0)
    assert rows["GCNN ensemble of 3"]["params"] == 3 * 2000.0
    assert rows["canonicalised member"]["train_s"] == pytest.approx(0.1 * 50)
    table = bf.markdown_table(list(rows.values()), headers={"model": "network"})
    assert table.splitlines()[0].startswith("| network |") and len(table.splitlines()) == 2 + len(rows)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("beyond_fashion")
    run_experiment("beyond_fashion", "quick", root=root, verbose=False, **TINY)
    arrays, meta = latest_results("beyond_fashion", "quick", root=root, allow_modified=True)
    return root, arrays, meta


def test_tiny_run_schema_invariance_and_resume(tiny_run, capsys):
    root, arrays, meta = tiny_run
    S, n = TINY["seeds"], TINY["n_eval"]
    for model in bf.MODELS:
        assert arrays[f"{model}/loss"].shape == (1, S)
        for s in fm.EVAL_SETS:
            logits = arrays[f"{model}/logits/{s}"]
            assert logits.shape == (S, 4, n, 10) and logits.dtype == np.float16
    for s in fm.EVAL_SETS:                     # invariant by construction, measured on the trained nets
        g = arrays[f"gcnn/logits/{s}"].astype(np.float32)
        assert np.abs(g - g[:, :1]).max() <= 1e-2 * max(np.abs(g).max(), 1.0)    # float16 rounding
        c, tied = arrays[f"canonical/logits/{s}"], arrays[f"canonical/ties/{s}"]
        np.testing.assert_array_equal(c[:, :, ~tied], np.broadcast_to(c[:, :1, ~tied], c[:, :, ~tied].shape))
    for kind in bf.COST_KINDS:
        assert arrays[f"cost/{kind}/train_step_flops"] > 0
        assert np.isnan(arrays[f"cost/{kind}/step_seconds"])        # timing_steps = 0: not timed
    assert arrays["cost/augmented/train_step_flops"] > 3 * arrays["cost/canonical/train_step_flops"]
    assert meta["summary"]["gcnn"]["member_osp_fraction/noise"] == 1.0
    capsys.readouterr()
    run_experiment("beyond_fashion", "quick", root=root, **TINY)
    out = capsys.readouterr().out
    assert out.count("resumed") == 4 and "computing" not in out      # data, costs, two models


def test_uncertainty_helpers_on_an_orbit_closed_ensemble(rng):
    """Arm C4 built so that f_m(g·x) = f_{m+g}(x): its predictive variance is invariant (share 0,
    AUROC unchanged by rotation); arm none: independent logits on every orbit element."""
    n, fcfg = 30, fm.QUICK
    fashion = {}
    for s in fm.EVAL_SETS:
        base = rng.normal(size=(4, n, 10)) * (2 if s == "test" else 1)
        orbit = np.stack([np.roll(base, -g, axis=0) for g in range(4)], 1)
        fashion[f"c8_C4/logits/{s}"] = orbit.astype(np.float32)
        fashion[f"c8_none/logits/{s}"] = rng.normal(size=(4, 4, n, 10)).astype(np.float32)
    shares = bf.orbit_shares(fashion, fcfg, num_bootstrap=50)
    for s in fm.EVAL_SETS:
        assert float(shares[("C4", "ensemble_variance", s)].estimate) == pytest.approx(0, abs=1e-9)
        assert float(shares[("none", "ensemble_variance", s)].estimate) > 0.3
    views = bf.ood_views(fashion["c8_none/logits/test"], seed=0)
    logits = fashion["c8_none/logits/test"]
    np.testing.assert_array_equal(views["upright"], logits[:, 0])
    match = np.array([[(logits[:, g, i] == views["rotated"][:, i]).all() for g in range(4)]
                      for i in range(n)])                                 # (n, |G|)
    assert not match[:, 0].any() and match[:, 1:].any(1).all()           # a turned copy, never upright
    aurocs = bf.ood_aurocs(fashion, fcfg, num_bootstrap=50)
    upright, rotated = (float(aurocs[("C4", v)].estimate) for v in bf.OOD_VIEWS)
    assert upright == pytest.approx(rotated)
    assert float(aurocs[("C4", "upright")].estimate) < 0.5    # larger logits on test: less variance there


def test_difference_interval_adds_standard_errors_in_quadrature():
    z = 1.959963984540054
    d, lo, hi = bf.difference_interval((0.8, 0.8 - 3 * z, 0.8 + 3 * z),
                                       (0.5, 0.5 - 4 * z, 0.5 + 4 * z))
    assert d == pytest.approx(0.3) and hi - d == pytest.approx(5 * z) and d - lo == pytest.approx(5 * z)
    with pytest.raises(ValueError, match="low ≤ high"):
        bf.difference_interval((0.0, 1.0, -1.0), (0.0, -1.0, 1.0))
