"""Job arrays: ``python -m eqlib run NAME --members a:b`` tasks, joined by ``python -m eqlib merge``.

A task trains members a … b−1 of every ensemble of the experiment (member m is a pure function of
``(seed, m)``), stores them under ``ranges/`` of the run directory and stops before the measurement;
the merge checks that the stored ranges tile 0 … M−1 and finishes the run. Its results must equal
those of one plain run to float tolerance (not bit for bit: a task's members are stepped in smaller
compiled groups, which may sum in another order; the largest difference measured on the tour was
5e-7 on values of order 1).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from eqlib.__main__ import main
from eqlib.ensemble import TrainConfig, ensemble_apply
from eqlib.models import mlp
from eqlib.runner import (MemberRangeError, Run, check_tiling, parse_member_range, register,
                          run_experiment)

RTOL, ATOL = 1e-5, 1e-6
TOUR = ["--set", "members=4", "--set", "steps=6", "--set", "width=16", "--set", "n_train=12",
        "--set", "n_eval=8", "--set", "prediction_samples=8"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("EQLIB_PRESET", raising=False)
    monkeypatch.delenv("EQLIB_RESULTS", raising=False)
    monkeypatch.setenv("EQLIB_PROGRESS", "0")


def results(root: Path) -> tuple[dict, dict]:
    [path] = list(root.glob("*/*/results.json"))
    with np.load(path.with_suffix(".npz")) as npz:
        return {k: npz[k] for k in npz.files}, json.loads(path.read_text())


def assert_same_results(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL, atol=ATOL, err_msg=key)


# ------------------------------------------------------------------------------ ranges, pure

def test_parse_member_range():
    assert parse_member_range("0:25") == (0, 25) and parse_member_range(" 3 : 4 ") == (3, 4)
    assert parse_member_range((2, 5)) == (2, 5)
    for bad in ["0-2", "2:", ":3", "a:b", "1:2:3", "-1:2"]:
        with pytest.raises(ValueError, match="a:b"):
            parse_member_range(bad)
    for bad in ["2:2", "3:1"]:
        with pytest.raises(ValueError, match="0 ≤ a < b, got"):
            parse_member_range(bad)


def test_check_tiling_names_missing_and_overlapping_members():
    check_tiling([(0, 1), (2, 3)], 4)
    check_tiling([(0, 9)], 10)
    with pytest.raises(MemberRangeError, match=r"members 2–3 are missing"):
        check_tiling([(0, 1)], 4)
    with pytest.raises(MemberRangeError, match=r"members 0, 4–5 are missing"):
        check_tiling([(1, 3), (6, 6)], 7)
    with pytest.raises(MemberRangeError, match=r"members 1–2 are stored more than once"):
        check_tiling([(0, 2), (1, 3)], 4)
    with pytest.raises(MemberRangeError, match=r"reach past member 3"):
        check_tiling([(0, 1), (2, 5)], 4)


# ------------------------------------------------------------------------------ a toy experiment

@dataclasses.dataclass(frozen=True)
class ToyCfg:
    seed: int = 0
    members: int = 4
    small: int = 2


NET = mlp([8], 1).flax()


def _toy_data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(6, 1)).astype(np.float32)


def _toy(run: Run, cfg: ToyCfg) -> dict:
    """Two ensembles: one whose epoch metrics are ensemble statistics, one with per-member metrics."""
    x, y = _toy_data()
    config = TrainConfig(learning_rate=0.05, epochs=3, batch_size=3, strategy="loop")

    def ensemble_metric(epoch, params):  # a statistic of the whole ensemble: needs every member
        out = ensemble_apply(NET, params, x)                                 # (M, n, 1)
        return {"ensemble_mean": jnp.mean(out), "member_norm": jnp.abs(out).mean((1, 2))}

    def member_metric(epoch, params):  # per member, plus the epoch it was taken at
        return {} if epoch == 1 else {"time": np.asarray(epoch),
                                      "out": np.asarray(ensemble_apply(NET, params, x))[..., 0]}

    def measure_big():
        state, history = run.train("big", NET, x, y, config, cfg.members, seed=3,
                                   on_epoch_end=ensemble_metric)
        return {"outputs": ensemble_apply(NET, state.params, x), **history}

    def measure_small():  # two ensembles in one step, like the folds of a cross-validation
        parts = list(run.train_in_chunks("small", NET, x, y, config, cfg.small, chunk=1, seed=4,
                                         on_epoch_end=member_metric, per_member_metrics=True))
        other, _ = run.train("small_b", NET, x, y, config, cfg.small, seed=5)
        return {"out": np.concatenate([h["out"] for _, h in parts], 1), "time": parts[0][1]["time"],
                "loss": np.concatenate([h["loss"] for _, h in parts], 1),
                "other": ensemble_apply(NET, other.params, x)}

    big = run.step("big", measure_big)
    small = run.step("small", measure_small)
    arrays = {**{f"big/{k}": v for k, v in big.items()}, **{f"small/{k}": v for k, v in small.items()}}
    return {"arrays": arrays, "summary": {"mean": float(big["outputs"].mean())}}


@pytest.fixture()
def toy():
    register("toy_ranges", {"quick": ToyCfg(), "full": ToyCfg()}, _toy)
    return "toy_ranges"


def test_toy_tasks_then_merge_equal_a_plain_run(tmp_path, toy, capsys):
    plain = run_experiment(toy, "quick", tmp_path / "plain", verbose=False)
    want, want_meta = results(tmp_path / "plain")
    root = tmp_path / "tasks"
    ranges = run_experiment(toy, "quick", root, verbose=False, member_range="2:4")
    report = capsys.readouterr().out
    assert "big: 4 members; stored 2:4; missing 0–1" in report
    assert "small: 2 members; stored none; missing 0–1" in report  # 2:4 lies past its 2 members
    assert "python -m eqlib merge toy_ranges --preset quick" in report
    assert not list(root.glob("*/*/results.json")) and not list(root.glob("*/*/steps/big.npz"))
    run_experiment(toy, "quick", root, verbose=False, member_range=(0, 2))
    assert "big: 4 members; stored 0:2, 2:4; complete" in capsys.readouterr().out
    stored = sorted(p.relative_to(ranges).as_posix() for p in ranges.rglob("*.npz"))
    assert stored == ["big/members0-1.npz", "big/members2-3.npz", "small/members0-1.npz",
                      "small_b/members0-1.npz"]  # the second ensemble of the step was reached too
    # the task left the ensemble statistics to the merge: it stored the parameters of every epoch
    with np.load(ranges / "big" / "members0-1.npz") as npz:
        assert "history/ensemble_mean" not in npz.files
        assert npz["history/snapshot/leaf_00000"].shape[:2] == (4, 2)  # epochs 0-3, members 0-1
    merged = run_experiment(toy, "quick", root, verbose=False, merge=True)
    got, meta = results(root)
    assert merged.name == plain.name == "results.json"
    assert_same_results(got, want)
    assert meta["summary"] == pytest.approx(want_meta["summary"], rel=RTOL)
    assert got["big/ensemble_mean"].shape == (4,) and got["small/out"].shape == (3, 2, 6)  # epochs 0, 2, 3


def test_merge_refuses_gaps_and_overlaps(tmp_path, toy, capsys):
    run_experiment(toy, "quick", tmp_path, verbose=False, member_range="0:2")
    with pytest.raises(MemberRangeError, match=r"big: .*\(0:2\) do not tile 0:4: members 2–3 are missing"):
        run_experiment(toy, "quick", tmp_path, verbose=False, merge=True)
    ranges = next(tmp_path.glob("*/*/ranges"))
    shutil.copy(ranges / "big" / "members0-1.npz", ranges / "big" / "members1-3.npz")
    with pytest.raises(MemberRangeError, match=r"members 1 are stored more than once"):
        run_experiment(toy, "quick", tmp_path, verbose=False, merge=True)
    capsys.readouterr()
    assert main(["merge", toy, "--results", str(tmp_path)]) == 1
    assert "members 1 are stored more than once" in capsys.readouterr().err
    assert not list(tmp_path.glob("*/*/results.json"))


def test_a_range_past_the_members_is_refused(tmp_path, toy):
    with pytest.raises(MemberRangeError, match=r"members 2:5 run past the 4 members of the ensemble 'big'"):
        run_experiment(toy, "quick", tmp_path, verbose=False, member_range="2:5")
    with pytest.raises(MemberRangeError, match=r"members 4:6 run past the 4 members of the ensemble 'big'"):
        run_experiment(toy, "quick", tmp_path, verbose=False, member_range="4:6")
    # past the 2 members of 'small', but not of 'big' trained before it: 'small' trains members 1 … 1
    ranges = run_experiment(toy, "quick", tmp_path, verbose=False, member_range="1:4")
    assert sorted(p.name for p in (ranges / "small").iterdir()) == ["members1-1.npz"]
    assert sorted(p.name for p in (ranges / "small_b").iterdir()) == ["members1-1.npz"]
    assert sorted(p.name for p in (ranges / "big").iterdir()) == ["members1-3.npz"]
    with pytest.raises(ValueError, match="not both"):
        Run(toy, "quick", ToyCfg(), tmp_path, member_range="0:1", merge=True)


# ------------------------------------------------------------------------------ the tour, by the CLI

def test_tour_tasks_then_merge_equal_a_plain_run(tmp_path, capsys):
    assert main(["run", "tour", "--quiet", "--results", str(tmp_path / "plain"), *TOUR]) == 0
    want, want_meta = results(tmp_path / "plain")
    root = str(tmp_path / "tasks")
    for members in ("0:2", "2:4"):
        assert main(["run", "tour", "--quiet", "--results", root, "--members", members, *TOUR]) == 0
    out = capsys.readouterr().out
    assert "train_augmented: 4 members; stored 0:2, 2:4; complete" in out
    assert "train_plain: 4 members; stored 0:2, 2:4; complete" in out
    assert not list(Path(root).glob("*/*/results.json"))
    assert main(["merge", "tour", "--quiet", "--results", root, *TOUR]) == 0
    got, meta = results(Path(root))
    assert_same_results(got, want)
    assert meta["config"] == want_meta["config"] and meta["config_hash"] == want_meta["config_hash"]
    assert json.loads(json.dumps(meta["summary"])).keys() == want_meta["summary"].keys()


def test_cli_rejects_bad_member_ranges(tmp_path, capsys):
    root = str(tmp_path)
    for bad, message in [("0-2", "--members expects a:b"), ("2:2", "0 ≤ a < b, got 2:2"),
                         ("3:1", "0 ≤ a < b, got 3:1")]:
        assert main(["run", "tour", "--results", root, "--members", bad, *TOUR]) == 1
        assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing ran
    assert main(["run", "tour", "--quiet", "--results", root, "--members", "2:5", *TOUR]) == 1
    assert "members 2:5 run past the 4 members of the ensemble 'train_augmented'" in capsys.readouterr().err
    assert main(["merge", "tour", "--quiet", "--results", root, *TOUR]) == 1
    assert "train_augmented: no member ranges are stored" in capsys.readouterr().err
    assert main(["run", "tour", "--results", root, "--members", "0:2", "--store", *TOUR]) == 1
    assert "--store takes a finished run" in capsys.readouterr().err
    assert main(["run", "tour", "--results", root, "--members", "0:2", "--fresh", *TOUR]) == 1
    assert "--fresh cannot be combined with --members" in capsys.readouterr().err


def test_an_experiment_that_trains_outside_run_train_cannot_be_split(tmp_path):
    def direct(run: Run, cfg: ToyCfg) -> dict:
        """Trains with its own checkpoint, not through Run.train."""
        return {"arrays": {}, "summary": {"ckpt": str(run.checkpoint_path("train_direct"))}}

    register("toy_direct", {"quick": ToyCfg(), "full": ToyCfg()}, direct)
    with pytest.raises(MemberRangeError, match="'train_direct' trains members outside Run.train"):
        run_experiment("toy_direct", "quick", tmp_path, verbose=False, member_range="0:2")
    run_experiment("toy_direct", "quick", tmp_path, verbose=False)  # a plain run is unaffected

    register("toy_nothing", {"quick": ToyCfg(), "full": ToyCfg()},
             lambda run, cfg: {"arrays": {}, "summary": {"n": cfg.members}})
    with pytest.raises(MemberRangeError, match="trained no members through Run.train"):
        run_experiment("toy_nothing", "quick", tmp_path, verbose=False, member_range="0:2")
