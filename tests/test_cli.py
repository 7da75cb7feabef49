"""The command line: python -m eqlib list | run | show (eqlib.__main__)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from eqlib.__main__ import main
from eqlib.runner import Run, register


@dataclasses.dataclass(frozen=True)
class ToyCfg:
    seed: int = 0
    n: int = 3
    scale: float = 1.0
    square: bool = True


def _toy(run: Run, cfg: ToyCfg) -> dict:
    """Sum of a small range (CLI test experiment)."""
    x = run.step("data", lambda: {"x": cfg.scale * np.arange(cfg.n, dtype=np.float64)})["x"]
    y = x**2 if cfg.square else x
    return {"arrays": {"y": y}, "summary": {"total": float(y.sum()), "n": cfg.n}}


@pytest.fixture(autouse=True)
def _toy_experiment(monkeypatch):
    monkeypatch.delenv("EQLIB_PRESET", raising=False)
    monkeypatch.delenv("EQLIB_RESULTS", raising=False)
    register("toy_cli", {"quick": ToyCfg(), "full": ToyCfg(n=10)}, _toy)


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy_cli  presets: quick, full" in out and "CLI test experiment" in out


def test_run_then_show(tmp_path, capsys):
    root = str(tmp_path)
    assert main(["run", "toy_cli", "--results", root, "--quiet", "--set", "n=4", "--set", "scale=0.5"]) == 0
    out = capsys.readouterr().out
    assert '"total": 3.5' in out and out.strip().endswith("results.json")

    # a run with --set overrides is not the preset: show refuses it, unless asked, and labels it
    assert main(["show", "toy_cli", "--results", root]) == 1
    assert "modified run" in capsys.readouterr().err
    assert main(["show", "toy_cli", "--results", root, "--modified"]) == 0
    out = capsys.readouterr().out
    assert "# MODIFIED run, not the quick preset: n=4" in out
    assert "# preset quick" in out and json.loads(out[out.index("{"):]) == {"total": 3.5, "n": 4}

    assert main(["run", "toy_cli", "--preset", "full", "--results", root, "--set", "square=false"]) == 0
    assert "step 'data': computing" in capsys.readouterr().out
    assert main(["show", "toy_cli", "--preset", "full", "--results", root, "--all",
                 "--modified"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["summary"] == {"total": 45.0, "n": 10} and meta["config"]["square"] is False
    assert meta["modified"] == {"square": {"run": False, "preset": True}}
    assert "provenance" in meta

    assert main(["run", "toy_cli", "--preset", "full", "--results", root, "--set", "square=false"]) == 0
    assert "step 'data': resumed" in capsys.readouterr().out


def test_errors_are_reported(tmp_path, capsys):
    root = str(tmp_path)
    assert main(["show", "toy_cli", "--results", root]) == 1
    assert "python -m eqlib run toy_cli --preset quick" in capsys.readouterr().err
    assert main(["run", "toy_cli", "--results", root, "--set", "epochs=3"]) == 1
    assert "unknown config field 'epochs'" in capsys.readouterr().err
    assert main(["run", "toy_cli", "--results", root, "--set", "n=abc"]) == 1
    assert "cannot parse n='abc' as int" in capsys.readouterr().err
    assert main(["run", "toy_cli", "--results", root, "--set", "n"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["run", "toy_cli", "--preset", "huge", "--results", root]) == 1
    assert "valid presets: quick, full" in capsys.readouterr().err
    assert main(["run", "nope_exp", "--results", root]) == 1
    assert "unknown experiment 'nope_exp'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing ran


def test_module_entry_point(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "eqlib", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "list" in out.stdout and "show" in out.stdout
