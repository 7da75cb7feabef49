"""Runs, resumable steps, results files, presets and the experiment registry (eqlib.runner)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from eqlib import runner
from eqlib.presets import config_hash, preset_name
from eqlib.runner import Run, apply_overrides, latest_results, parse_override, register, run_experiment


@dataclasses.dataclass(frozen=True)
class Cfg:
    seed: int = 0
    n: int = 4
    lr: float = 0.1
    augment: bool = False
    widths: tuple[int, ...] = (8, 16)
    label: str | None = None


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("EQLIB_PRESET", raising=False)
    monkeypatch.delenv("EQLIB_RESULTS", raising=False)


def test_preset_name_resolution(monkeypatch):
    assert preset_name() == "quick"
    assert preset_name("full") == "full"
    monkeypatch.setenv("EQLIB_PRESET", "full")
    assert preset_name() == "full"
    assert preset_name("quick") == "quick"  # explicit argument wins
    monkeypatch.setenv("EQLIB_PRESET", "huge")
    with pytest.raises(ValueError, match=r"'huge' \(from \$EQLIB_PRESET\); valid presets: quick, reference, full"):
        preset_name()


def test_config_hash_is_stable_and_sensitive():
    assert config_hash(Cfg()) == config_hash(Cfg())
    assert config_hash(Cfg()) == config_hash(dataclasses.asdict(Cfg()) | {"widths": [8, 16]})
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash(Cfg(n=5)) != config_hash(Cfg())
    assert len(config_hash(Cfg())) == 10


def test_default_results_root(monkeypatch, tmp_path):
    monkeypatch.setenv("EQLIB_RESULTS", str(tmp_path))
    assert runner.default_results_root() == tmp_path
    assert Run("toy", "quick", Cfg(), verbose=False).dir.parent.parent == tmp_path


def test_step_names_validated(tmp_path):
    run = Run("toy", "quick", Cfg(), tmp_path, verbose=False)
    for bad in ["", "../x", "a/../b", "/abs", "a//b", ".hidden"]:
        with pytest.raises(ValueError, match="invalid step name"):
            run.step(bad, lambda: {})
    out = run.step("train/member_000", lambda: {"w": np.ones(2)})
    assert (run.dir / "steps" / "train" / "member_000.npz").exists()
    np.testing.assert_array_equal(out["w"], np.ones(2))
    ckpt = run.checkpoint_path("train/epoch")  # an orbax directory: no file suffix
    assert ckpt == run.dir / "checkpoints" / "train" / "epoch" and ckpt.parent.is_dir()


def test_resume_after_failure(tmp_path, capsys):
    calls = {"data": 0, "train": 0}

    def data():
        calls["data"] += 1
        return {"x": np.random.default_rng(0).normal(size=(5, 3))}

    def pipeline(run, fail):
        d = run.step("data", data)

        def train():
            calls["train"] += 1
            if fail:
                raise RuntimeError("interrupted")
            return {"y": d["x"].sum(axis=1)}

        t = run.step("train", train)
        return d, t

    run1 = Run("toy", "quick", Cfg(), tmp_path)
    with pytest.raises(RuntimeError, match="interrupted"):
        pipeline(run1, fail=True)
    assert calls == {"data": 1, "train": 1}
    assert (run1.dir / "steps" / "data.npz").exists() and not (run1.dir / "steps" / "train.npz").exists()
    run2 = Run("toy", "quick", Cfg(), tmp_path)
    d2, t2 = pipeline(run2, fail=False)
    assert calls == {"data": 1, "train": 2}  # data not recomputed
    assert run2.resumed_steps == ["data"] and run2.computed_steps == ["train"]
    assert "step 'data': resumed" in capsys.readouterr().out

    run3 = Run("toy", "quick", Cfg(), tmp_path, verbose=False)
    d3, t3 = pipeline(run3, fail=False)
    assert calls == {"data": 1, "train": 2}
    np.testing.assert_array_equal(d3["x"], d2["x"])
    np.testing.assert_array_equal(t3["y"], t2["y"])
    assert t3["y"].dtype == t2["y"].dtype

    fresh = Run("toy", "quick", Cfg(), tmp_path, fresh=True, verbose=False)
    pipeline(fresh, fail=False)
    assert calls == {"data": 2, "train": 3}


def test_step_fn_must_return_dict(tmp_path):
    run = Run("toy", "quick", Cfg(), tmp_path, verbose=False)
    with pytest.raises(TypeError, match="step 'bad' must return a dict"):
        run.step("bad", lambda: np.zeros(3))


def test_finish_writes_results_with_provenance(tmp_path):
    run = Run("toy", "quick", Cfg(seed=3), tmp_path, verbose=False)
    run.step("a", lambda: {"x": np.zeros(2)})
    path = run.finish({"acc": np.array([0.5, 0.75])}, {"mean_acc": np.float64(0.625)})
    assert path == run.dir / "results.json" and run.dir.name == f"quick-{config_hash(Cfg(seed=3))}"
    meta = json.loads(path.read_text())
    assert meta["experiment"] == "toy" and meta["preset"] == "quick" and meta["seed"] == 3
    assert meta["config"]["widths"] == [8, 16]
    assert meta["summary"] == {"mean_acc": 0.625}
    assert meta["wall_time_s"] >= 0 and meta["steps"]["computed"] == ["a"]
    prov = meta["provenance"]
    assert {"timestamp", "versions", "device", "host", "git", "command"} <= set(prov)
    assert prov["seed"] == 3
    for pkg in ["python", "jax", "jaxlib", "flax", "optax", "numpy", "neural-tangents", "eqlib"]:
        assert pkg in prov["versions"]
    assert prov["device"]["backend"] in {"cpu", "gpu", "tpu"} and prov["device"]["device_count"] >= 1
    assert prov["host"]["cpu_count"] >= 1
    assert set(prov["git"]) == {"commit", "dirty"}
    np.testing.assert_array_equal(np.load(run.dir / "results.npz")["acc"], [0.5, 0.75])


def test_git_info_outside_repo_is_none(tmp_path):
    from eqlib.provenance import git_info

    assert git_info(tmp_path) == {"commit": None, "dirty": None}


def test_latest_results_picks_newest_and_explains_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m eqlib run toy --preset full"):
        latest_results("toy", "full", tmp_path)
    Run("toy", "quick", Cfg(n=1), tmp_path, verbose=False).finish({"v": np.array(1)}, {"n": 1})
    Run("toy", "quick", Cfg(n=2), tmp_path, verbose=False).finish({"v": np.array(2)}, {"n": 2})
    Run("toy", "full", Cfg(n=9), tmp_path, verbose=False).finish({"v": np.array(9)}, {"n": 9})
    arrays, meta = latest_results("toy", "quick", tmp_path)
    assert int(arrays["v"]) == 2 and meta["summary"] == {"n": 2} and meta["path"].endswith("results.json")
    Run("toy", "quick", Cfg(n=1), tmp_path, verbose=False).finish({"v": np.array(11)}, {"n": 11})
    arrays, meta = latest_results("toy", "quick", tmp_path)  # rerun of n=1 is now the newest
    assert int(arrays["v"]) == 11
    assert int(latest_results("toy", "full", tmp_path)[0]["v"]) == 9


def test_overrides():
    assert apply_overrides(Cfg(), n=7, lr=0.5) == Cfg(n=7, lr=0.5)
    with pytest.raises(ValueError, match=r"unknown config field\(s\) 'epochs'.*fields: seed, n, lr"):
        apply_overrides(Cfg(), epochs=3)
    assert apply_overrides({"a": 1}, a=2) == {"a": 2}
    assert parse_override(Cfg(), "n", "12") == 12
    assert parse_override(Cfg(), "lr", "1e-3") == 1e-3
    assert parse_override(Cfg(), "augment", "true") is True
    assert parse_override(Cfg(), "widths", "4,8,16") == (4, 8, 16)
    assert parse_override(Cfg(), "label", "none") is None
    assert parse_override(Cfg(), "label", "abc") == "abc"
    with pytest.raises(ValueError, match="cannot parse n='x' as int"):
        parse_override(Cfg(), "n", "x")
    with pytest.raises(ValueError, match="unknown config field 'm'"):
        parse_override(Cfg(), "m", "1")


def _toy_run(run: Run, cfg: Cfg) -> dict:
    """Toy experiment for the runner tests."""
    x = run.step("data", lambda: {"x": np.arange(cfg.n, dtype=np.float64)})
    return {"arrays": {"x2": x["x"] ** 2}, "summary": {"total": float((x["x"] ** 2).sum())}}


def test_registry_and_run_experiment(tmp_path, monkeypatch):
    register("toy_runner", {"quick": Cfg(n=3), "full": Cfg(n=50)}, _toy_run)
    assert "toy_runner" in runner.list_experiments()
    assert runner.get_experiment("toy_runner").doc.startswith("Toy experiment")
    monkeypatch.setenv("EQLIB_PRESET", "full")
    path = run_experiment("toy_runner", root=tmp_path, verbose=False, n=4)
    meta = json.loads(path.read_text())
    assert meta["preset"] == "full" and meta["config"]["n"] == 4 and meta["summary"]["total"] == 14.0
    with pytest.raises(ValueError, match="unknown config field"):
        run_experiment("toy_runner", "quick", tmp_path, verbose=False, bogus=1)
    with pytest.raises(ValueError, match="unknown experiment 'no_such_exp'"):
        runner.get_experiment("no_such_exp")
    with pytest.raises(ValueError, match="lacks preset"):
        register("toy_bad", {"quick": Cfg()}, _toy_run)

    @runner.experiment("toy_bad_return", quick=Cfg(), full=Cfg())
    def bad(run, cfg):
        return {"oops": 1}

    with pytest.raises(ValueError, match="must return"):
        run_experiment("toy_bad_return", "quick", tmp_path, verbose=False)


def test_show_progress(tmp_path, monkeypatch):
    class Terminal:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    run = Run("toy", "quick", Cfg(), tmp_path)
    monkeypatch.delenv("EQLIB_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stderr", Terminal(False))
    assert not run.show_progress                                 # a notebook or a log file: no bars
    monkeypatch.setattr("sys.stderr", Terminal(True))
    assert run.show_progress                                     # a terminal: bars
    monkeypatch.setenv("EQLIB_PROGRESS", "0")
    assert not run.show_progress
    monkeypatch.setenv("EQLIB_PROGRESS", "1")
    monkeypatch.setattr("sys.stderr", Terminal(False))
    assert run.show_progress
    assert not Run("toy", "quick", Cfg(), tmp_path, verbose=False).show_progress   # quiet runs stay quiet


def test_display_path_never_shows_the_machine_path(tmp_path, monkeypatch):
    from eqlib.runner import display_path

    monkeypatch.delenv(runner.RESULTS_ENV_VAR, raising=False)
    root = tmp_path / "results"
    run_dir = root / "tour" / "quick-abc"
    assert display_path(run_dir, root) == "results/tour/quick-abc"
    assert display_path(tmp_path / "elsewhere" / "x.json", root) == "x.json"
    monkeypatch.setenv(runner.RESULTS_ENV_VAR, str(root))
    assert display_path(run_dir / "results.json") == "$EQLIB_RESULTS/tour/quick-abc/results.json"
    assert str(tmp_path) not in display_path(run_dir)


def test_latest_results_never_shows_a_modified_run_as_the_preset(tmp_path):
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        seed: int = 0
        size: int = 3

    def run_fn(run, cfg):
        return {"arrays": {"x": np.arange(cfg.size)}, "summary": {"size": cfg.size}}

    register("modtest", {"quick": Cfg(), "full": Cfg(size=9)}, run_fn)
    run_experiment("modtest", "quick", tmp_path, verbose=False)
    run_experiment("modtest", "quick", tmp_path, verbose=False, size=5)  # newer, modified
    arrays, meta = latest_results("modtest", "quick", tmp_path)
    assert meta["summary"]["size"] == 3 and meta["modified"] == {}
    arrays, meta = latest_results("modtest", "quick", tmp_path, allow_modified=True)
    assert meta["summary"]["size"] == 5
    assert meta["modified"] == {"size": {"run": 5, "preset": 3}}
    # only the modified run on disk: an error that names it, no silent substitute
    import shutil

    shutil.rmtree(tmp_path / "modtest" / f"quick-{config_hash(Cfg())}")
    with pytest.raises(FileNotFoundError, match="modified run.*size"):
        latest_results("modtest", "quick", tmp_path)


def test_results_record_the_commit_of_every_step_also_when_resumed(tmp_path, monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        seed: int = 0

    calls = []

    def run_fn(run, cfg):
        calls.append(1)
        a = run.step("a", lambda: {"v": np.ones(2)})
        return {"arrays": a, "summary": {}}

    register("committest", {"quick": Cfg(), "full": Cfg(seed=1)}, run_fn)
    monkeypatch.setattr(runner, "git_info", lambda: {"commit": "aaa", "dirty": False})
    first = json.loads(run_experiment("committest", "quick", tmp_path, verbose=False).read_text())
    assert first["steps"]["commit"] == {"a": "aaa"}
    monkeypatch.setattr(runner, "provenance", lambda seed=None: {
        "git": {"commit": "bbb", "dirty": False}, "timestamp": "2026-01-01T00:00:00Z"})
    second = json.loads(run_experiment("committest", "quick", tmp_path, verbose=False)
                        .read_text())
    assert second["steps"]["resumed"] == ["a"]
    assert second["steps"]["commit"] == {"a": "aaa"}
    assert second["steps"]["computed_at_another_commit"] == ["a"]
    assert "another commit" in second["note"]
