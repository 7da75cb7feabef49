"""Stored runs (results/reference/), the continuous invariance measures and the replay of a run."""
from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from eqlib import metrics, runner
from eqlib.__main__ import main
from eqlib.ensemble import TrainConfig, init_ensemble, replay_steps, train_ensemble
from eqlib.groups import CyclicRotations
from eqlib.models import cnn, mlp
from eqlib.runner import Run, register, run_experiment, run_label, store_run, stored_results


@dataclasses.dataclass(frozen=True)
class Cfg:
    seed: int = 0
    n: int = 4


def _toy(run: Run, cfg: Cfg) -> dict:
    return {"arrays": {"x": np.arange(cfg.n, dtype=np.float32)}, "summary": {"n": cfg.n}}


@pytest.fixture
def toy(monkeypatch, tmp_path):
    monkeypatch.delenv("EQLIB_PRESET", raising=False)
    register("storetoy", {"quick": Cfg(), "reference": Cfg(n=6), "full": Cfg(n=9)}, _toy)
    yield tmp_path
    runner._REGISTRY.pop("storetoy", None)


def _fake_clean(path):
    meta = json.loads(path.read_text())
    meta["provenance"]["git"] = {"commit": "0123456789abcdef", "dirty": False}
    meta["steps"]["dirty"] = {}
    path.write_text(json.dumps(meta))


def test_store_and_load_a_reference_run(toy):
    path = run_experiment("storetoy", "reference", toy / "cache", verbose=False)
    _fake_clean(path)
    stored = store_run(path, "python -m eqlib run storetoy --preset reference --store", toy / "ref")
    assert stored == toy / "ref" / "storetoy" / "reference" / "results.json"
    arrays, meta = stored_results("storetoy", "reference", toy / "ref")
    np.testing.assert_array_equal(arrays["x"], np.arange(6))
    assert meta["stored"]["command"].endswith("--preset reference --store")
    label = run_label(meta)
    assert label.startswith("reference preset") and "commit 0123456" in label


def test_store_refuses_dirty_modified_and_unstored_presets(toy):
    path = run_experiment("storetoy", "reference", toy / "cache", verbose=False)
    meta = json.loads(path.read_text())
    meta["provenance"]["git"] = {"commit": "abc", "dirty": True}
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="uncommitted changes"):
        store_run(path, "cmd", toy / "ref")
    modified = run_experiment("storetoy", "reference", toy / "cache", verbose=False, n=7)
    _fake_clean(modified)
    with pytest.raises(ValueError, match="modified run.*n"):
        store_run(modified, "cmd", toy / "ref")
    with pytest.raises(ValueError, match="only presets"):
        runner.stored_dir("storetoy", "quick")
    with pytest.raises(FileNotFoundError, match="python -m eqlib run storetoy --preset reference --store"):
        stored_results("storetoy", "reference", toy / "nothing")


def test_cli_store_flag_is_refused_for_quick_and_overrides(toy, capsys):
    assert main(["run", "storetoy", "--preset", "quick", "--store", "--results", str(toy)]) == 1
    assert "--store takes an unmodified run" in capsys.readouterr().err
    assert main(["run", "storetoy", "--preset", "reference", "--set", "n=3", "--store",
                 "--results", str(toy)]) == 1


def test_unknown_preset_names_are_rejected():
    with pytest.raises(ValueError, match="unknown preset"):
        register("badpreset", {"quick": Cfg(), "full": Cfg(), "huge": Cfg()}, _toy)


# ------------------------------------------------------------------------ continuous measures

def _brute_kl(logits):
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    G = logits.shape[-3]
    total = 0.0
    for g in range(G):
        for h in range(G):
            if g != h:
                total = total + (p[..., g, :, :] * np.log(p[..., g, :, :] / p[..., h, :, :])).sum(-1)
    return total / (G * (G - 1))


def test_orbit_symmetric_kl_matches_its_definition_and_vanishes_on_invariant_outputs():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 5, 7)) * 2
    np.testing.assert_allclose(metrics.orbit_symmetric_kl(logits), _brute_kl(logits), rtol=1e-10)
    invariant = np.broadcast_to(logits[:, :1], logits.shape)
    assert np.abs(metrics.orbit_symmetric_kl(invariant)).max() < 1e-12
    # a common shift of the logits does not change the distributions
    np.testing.assert_allclose(metrics.orbit_symmetric_kl(logits + 3.0), _brute_kl(logits), rtol=1e-9)
    # the OSP is blind to a change of confidence that keeps the argmax; the KL is not
    sure = np.zeros((4, 1, 3)); sure[..., 0] = 5.0
    sure[1, 0, 0] = 1.0
    assert metrics.orbit_same_prediction(sure).mean == 4
    assert metrics.orbit_symmetric_kl(sure)[0] > 0.1


def test_relative_orbit_spread_is_scale_free_and_bounded():
    rng = np.random.default_rng(1)
    out = rng.normal(size=(2, 4, 6, 5))
    rel = metrics.relative_orbit_spread(out)
    np.testing.assert_allclose(metrics.relative_orbit_spread(10 * out), rel, rtol=1e-12)
    assert np.all((rel >= 0) & (rel <= 1 + 1e-12))
    assert np.abs(metrics.relative_orbit_spread(np.broadcast_to(out[:, :1], out.shape))).max() < 1e-12
    zero = metrics.relative_orbit_spread(np.zeros((4, 3, 2)), centre=False)
    np.testing.assert_array_equal(zero, 0)


def test_member_vs_ensemble_intervals_cover_and_pair():
    rng = np.random.default_rng(2)
    invariant = rng.normal(size=(1, 1, 20, 5))
    members = invariant + rng.normal(size=(16, 4, 20, 5))      # independent non-invariant noise
    stat = lambda o: metrics.orbit_spread(o).mean(-1)         # noqa: E731
    res = metrics.member_vs_ensemble(members, stat)
    m, e, d = res["member"], res["ensemble"], res["difference"]
    assert m.low <= m.estimate <= m.high and e.low <= e.estimate <= e.high
    np.testing.assert_allclose(d.estimate, e.estimate - m.estimate)
    assert d.high < 0 and d.excludes_zero()                   # the ensemble is more invariant
    # the ensemble of 16 independent deviations has about 1/4 of the members' spread
    assert 0.15 < e.estimate / m.estimate < 0.4
    with pytest.raises(ValueError, match="one value per member"):
        metrics.member_vs_ensemble(members, lambda o: stat(o).mean(keepdims=True))
    with pytest.raises(ValueError, match="at least 2 members"):
        metrics.member_vs_ensemble(members[:1], stat)
    with pytest.raises(TypeError, match="jackknife"):
        metrics.member_vs_ensemble(members, stat, num_bootstrap=100)


def test_member_vs_ensemble_interval_covers_a_new_pool():
    """Coverage: over fresh pools, the ensemble's interval covers the mean ensemble value."""
    rng = np.random.default_rng(7)
    stat = lambda o: metrics.orbit_spread(o).mean(-1)         # noqa: E731
    base = rng.normal(size=(1, 1, 10, 3))
    draws = [base + rng.normal(size=(12, 4, 10, 3)) for _ in range(200)]
    truth = np.mean([stat(d.mean(0, keepdims=True))[0] for d in draws])
    covered = np.mean([(lambda r: r.low <= truth <= r.high)(metrics.member_vs_ensemble(d, stat)["ensemble"])
                       for d in draws[:60]])
    assert covered >= 0.8, covered


# ------------------------------------------------------------------------------------ replay

@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_replay_steps_recomputes_the_first_epoch_of_a_trained_member(strategy):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    net = cnn([4], 3, head="flatten", parametrization="standard").flax()
    cfg = TrainConfig(loss="cross_entropy", optimizer="adam", learning_rate=1e-2, epochs=1,
                      batch_size=8, strategy=strategy)
    c4 = CyclicRotations(4)
    state = init_ensemble(net, x, 3, seed=5, config=cfg)
    _, hist = train_ensemble(net, state, x, y, cfg, seed=5, group=c4, progress=False)
    assert hist["first_epoch_step_loss"].shape == (3, 5)
    np.testing.assert_allclose(hist["first_epoch_step_loss"].mean(1), hist["loss"][0], rtol=1e-6)
    replayed = replay_steps(net, x, y, cfg, seed=5, member=2, steps=4, group=c4)
    np.testing.assert_allclose(replayed, hist["first_epoch_step_loss"][2, :4], rtol=1e-5)
    # another member, or no augmentation, does not replay it: the check can fail
    other = replay_steps(net, x, y, cfg, seed=5, member=1, steps=4, group=c4)
    assert not np.allclose(other, hist["first_epoch_step_loss"][2, :4], rtol=1e-5)
    with pytest.raises(ValueError, match="steps must be in 1..5"):
        replay_steps(net, x, y, cfg, seed=5, member=0, steps=6)


def test_replay_full_batch_mlp():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(12, 5)).astype(np.float32)
    y = rng.normal(size=(12, 1)).astype(np.float32)
    net = mlp([16], 1).flax()
    cfg = TrainConfig(learning_rate=0.5, epochs=2)
    _, hist = train_ensemble(net, init_ensemble(net, x, 2, config=cfg), x, y, cfg, progress=False)
    np.testing.assert_allclose(replay_steps(net, x, y, cfg, member=1, steps=1),
                               hist["first_epoch_step_loss"][1], rtol=1e-5)
    assert jax.device_count() >= 1


def test_chapter_results_runs_quick_loads_stored_and_falls_back(toy, monkeypatch, capsys):
    monkeypatch.setenv("EQLIB_RESULTS", str(toy / "cache"))
    monkeypatch.setenv("EQLIB_STORED", str(toy / "ref"))
    arrays, meta = runner.chapter_results("storetoy")
    assert meta["preset"] == "quick" and arrays["x"].shape == (4,)
    arrays, meta = runner.chapter_results("storetoy", "full")      # nothing stored: falls back
    assert meta["fallback_from"] == "full" and meta["preset"] == "quick"
    out = capsys.readouterr().out
    assert "python -m eqlib run storetoy --preset full --store" in out
    assert "no full run exists" in run_label(meta)
    path = run_experiment("storetoy", "reference", verbose=False)
    _fake_clean(path)
    store_run(path, "cmd")
    arrays, meta = runner.chapter_results("storetoy", "reference")
    assert meta["preset"] == "reference" and arrays["x"].shape == (6,) and "stored" in meta


def test_every_reference_preset_has_a_stored_run():
    """The book shows a stored reference run beside each quick run: every experiment that defines
    a reference preset has one in results/reference/ (the replay tests then check it)."""
    from eqlib.runner import get_experiment, list_experiments, stored_dir

    missing = [name for name in list_experiments() if "reference" in get_experiment(name).presets
               and not (stored_dir(name, "reference") / "results.json").exists()]
    assert not missing, (f"no stored reference run for {missing}; make it with "
                         "python -m eqlib run <name> --preset reference --store")


def test_config_from_dict_round_trips_and_names_changed_fields():
    from eqlib.presets import config_dict, config_from_dict

    assert config_from_dict(Cfg, json.loads(json.dumps(config_dict(Cfg(n=5))))) == Cfg(n=5)
    with pytest.raises(ValueError, match=r"fields differ.*'extra'"):
        config_from_dict(Cfg, {"seed": 0, "n": 1, "extra": 2})
