"""Ensemble checkpoints: one orbax format, atomic, resumable after a kill; the npz format still read.

The kill tests run a small training script in subprocesses that SIGKILL themselves — once in the
middle of epoch 2 (trained, its checkpoint not yet written) and once inside orbax's save of epoch 2
(the data written, the final rename not done) — and then resume; the resumed members must equal an
uninterrupted run bit for bit. Once on one CPU device and once on 8 simulated devices (10 members:
padded to 16 and split over the devices).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from eqlib.ensemble import EnsembleState, TrainConfig, checkpoint_info, init_ensemble, train_ensemble
from eqlib.io import save_arrays
from eqlib.models import mlp

ROOT = Path(__file__).resolve().parents[1]
NET = mlp([8], 1).flax()
BASE = dict(optimizer="adam", learning_rate=0.01, batch_size=4)  # a stateful optimiser, 2 steps per epoch


def data(n: int = 9, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 1)).astype(np.float32)


def train(epochs: int, members: int = 2, **kwargs):
    x, y = data()
    config = TrainConfig(epochs=epochs, **BASE)
    state = init_ensemble(NET, x, members, seed=1, config=config)
    return train_ensemble(NET, state, x, y, config, seed=1, progress=False, **kwargs)


def same(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def save_npz_checkpoint(path, state: EnsembleState, history: dict) -> None:
    """The checkpoint writer of the earlier engine (npz leaves), kept to prove its files still resume."""
    leaves = jax.tree_util.tree_leaves((state.params, state.opt_state))
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    arrays["state/epoch"] = np.asarray(state.epoch)
    arrays["state/member_ids"] = np.asarray(state.member_ids)
    arrays.update({f"history/{k}": np.asarray(v) for k, v in history.items()})
    save_arrays(path, arrays)


# ------------------------------------------------------------------------------ the format

def test_a_checkpoint_is_an_orbax_directory_holding_the_last_epoch(tmp_path):
    ckpt = tmp_path / "train.npz"  # the runner's names end in .npz; the path becomes a directory
    state, history = train(3, checkpoint=ckpt, on_epoch_end=lambda e, p: {"tag": e})
    assert ckpt.is_dir() and sorted(p.name for p in ckpt.iterdir()) == ["3"]  # older epochs deleted
    assert sorted(p.name for p in (ckpt / "3").iterdir()) == ["_CHECKPOINT_METADATA", "meta", "state"]
    assert checkpoint_info(ckpt) == {"format": "orbax", "epoch": 3, "member_ids": [0, 1]}
    assert not list(tmp_path.glob(".*"))  # no temporary files left beside it
    calls = []
    again, again_history = train(3, checkpoint=ckpt, on_epoch_end=lambda e, p: calls.append(e) or {"tag": e})
    assert calls == [] and same(again.params, state.params) and same(again.opt_state, state.opt_state)
    for k in history:
        np.testing.assert_array_equal(again_history[k], history[k])


def test_an_npz_checkpoint_of_the_earlier_format_resumes_and_is_replaced(tmp_path):
    ckpt = tmp_path / "train.npz"
    first, first_history = train(2, on_epoch_end=lambda e, p: {"tag": e})
    save_npz_checkpoint(ckpt, EnsembleState(first.params, first.opt_state, first.member_ids, 2),
                        {k: list(v) for k, v in first_history.items()})
    assert checkpoint_info(ckpt) == {"format": "npz", "epoch": 2, "member_ids": [0, 1]}
    calls = []
    resumed, history = train(3, checkpoint=ckpt, on_epoch_end=lambda e, p: calls.append(e) or {"tag": e})
    straight, straight_history = train(3, on_epoch_end=lambda e, p: {"tag": e})
    assert calls == [3] and same(resumed.params, straight.params) and same(resumed.opt_state, straight.opt_state)
    for k in straight_history:
        np.testing.assert_array_equal(history[k], straight_history[k])
    assert checkpoint_info(ckpt)["format"] == "orbax" and not list(tmp_path.glob(".*"))


def test_an_interrupted_replacement_of_an_npz_checkpoint_resumes(tmp_path):
    """Killed after moving the npz file aside, before moving the new directory in: the file aside is read."""
    ckpt = tmp_path / "train.npz"
    first, first_history = train(2)
    save_npz_checkpoint(tmp_path / ".train.npz.npz-old", EnsembleState(first.params, first.opt_state,
                                                                      first.member_ids, 2),
                        {k: list(v) for k, v in first_history.items()})
    (tmp_path / ".train.npz.orbax-new").mkdir()  # what the interrupted save had begun
    assert checkpoint_info(ckpt)["epoch"] == 2
    resumed, _ = train(3, checkpoint=ckpt)
    assert same(resumed.params, train(3)[0].params)
    assert checkpoint_info(ckpt) == {"format": "orbax", "epoch": 3, "member_ids": [0, 1]}
    assert not (tmp_path / ".train.npz.npz-old").exists()


def test_a_directory_without_a_complete_epoch_is_no_checkpoint(tmp_path):
    ckpt = tmp_path / "train"
    (ckpt / "1.orbax-checkpoint-tmp-123").mkdir(parents=True)  # a first save killed before its rename
    assert checkpoint_info(ckpt) is None and checkpoint_info(tmp_path / "absent") is None
    calls = []
    state, _ = train(1, checkpoint=ckpt, on_epoch_end=lambda e, p: calls.append(e) or {})
    assert calls == [0, 1] and same(state.params, train(1)[0].params)
    assert sorted(p.name for p in ckpt.iterdir()) == ["1"]  # the leftover removed


def test_checkpoints_of_another_ensemble_or_with_text_metrics_are_errors(tmp_path):
    ckpt = tmp_path / "train"
    train(1, checkpoint=ckpt)
    with pytest.raises(ValueError, match="members"):
        train(2, members=3, checkpoint=ckpt)
    x, y = data()
    wide, config = mlp([16], 1).flax(), TrainConfig(epochs=2, **BASE)
    with pytest.raises(ValueError, match="shape"):
        train_ensemble(wide, init_ensemble(wide, x, 2, seed=1, config=config), x, y, config, seed=1,
                       checkpoint=ckpt, progress=False)
    with pytest.raises(TypeError, match="numbers"):
        train(1, checkpoint=tmp_path / "other", on_epoch_end=lambda e, p: {"name": "text"})


# ------------------------------------------------------------------------------ killed and resumed

SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    import jax, numpy as np
    from eqlib.ensemble import TrainConfig, init_ensemble, train_ensemble
    from eqlib.models import mlp

    out, mode, members, devices = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    assert jax.device_count() == devices, jax.devices()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 3)).astype(np.float32), rng.normal(size=(9, 1)).astype(np.float32)
    net = mlp([8], 1).flax()
    config = TrainConfig(epochs=3, **json.loads(sys.argv[5]))  # strategy auto: vmap on 8 devices
    seen = []

    def on_epoch_end(epoch, params):
        if mode == "kill_in_epoch" and epoch == 2:  # epoch 2 trained, its checkpoint not written
            os.kill(os.getpid(), signal.SIGKILL)
        seen.append(epoch)
        return {"tag": epoch}

    if mode == "kill_in_save":  # inside orbax's save of epoch 2: data written, not yet renamed into place
        from orbax.checkpoint._src.path import atomicity
        finalize = atomicity.AtomicRenameTemporaryPath.finalize

        async def finalize_or_die(self, *args, **kwargs):
            if self.get_final().name == "2":
                os.kill(os.getpid(), signal.SIGKILL)
            return await finalize(self, *args, **kwargs)

        atomicity.AtomicRenameTemporaryPath.finalize = finalize_or_die

    state = init_ensemble(net, x, members, seed=1, config=config)
    resumed, history = train_ensemble(net, state, x, y, config, seed=1, on_epoch_end=on_epoch_end,
                                      checkpoint=out / "ckpt", progress=False)
    straight, straight_history = train_ensemble(net, state, x, y, config, seed=1, progress=False,
                                                on_epoch_end=lambda e, p: {"tag": e})
    leaves = lambda s: [np.asarray(l) for l in jax.tree_util.tree_leaves((s.params, s.opt_state))]
    np.savez(out / "result.npz", **{f"resumed{i}": l for i, l in enumerate(leaves(resumed))},
             **{f"straight{i}": l for i, l in enumerate(leaves(straight))},
             loss=history["loss"], straight_loss=straight_history["loss"], tag=history["tag"])
    print("SEEN " + json.dumps(seen))
""")


def run_script(out: Path, mode: str, members: int, devices: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return subprocess.run([sys.executable, str(out / "script.py"), str(out), mode, str(members), str(devices),
                           json.dumps(BASE)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("devices,members", [(1, 3), (8, 10)], ids=["1-device", "8-devices"])
def test_a_killed_run_resumes_to_the_members_of_an_uninterrupted_one(tmp_path, devices, members):
    (tmp_path / "script.py").write_text(SCRIPT)
    ckpt = tmp_path / "ckpt"
    killed = run_script(tmp_path, "kill_in_epoch", members, devices)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert checkpoint_info(ckpt) == {"format": "orbax", "epoch": 1, "member_ids": list(range(members))}

    killed = run_script(tmp_path, "kill_in_save", members, devices)  # resumes at 1, dies saving 2
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert [p.name for p in ckpt.iterdir() if "tmp" in p.name], list(ckpt.iterdir())  # it was half-written
    assert checkpoint_info(ckpt)["epoch"] == 1  # and is not taken for a checkpoint

    done = run_script(tmp_path, "finish", members, devices)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads([l for l in done.stdout.splitlines() if l.startswith("SEEN ")][0][5:])
    assert seen == [2, 3]  # resumed after epoch 1
    assert checkpoint_info(ckpt)["epoch"] == 3 and sorted(p.name for p in ckpt.iterdir()) == ["3"]
    result = np.load(tmp_path / "result.npz")
    n = sum(k.startswith("resumed") for k in result.files)
    one = init_ensemble(NET, data()[0], 1, config=TrainConfig(**BASE))
    assert n == len(jax.tree_util.tree_leaves((one.params, one.opt_state)))
    for i in range(n):  # members and optimiser state, bit for bit
        assert result[f"resumed{i}"].shape[0] == members
        np.testing.assert_array_equal(result[f"resumed{i}"], result[f"straight{i}"])
    np.testing.assert_array_equal(result["loss"], result["straight_loss"])
    np.testing.assert_array_equal(result["tag"], [0, 1, 2, 3])


# ------------------------------------------------------------------------------ names in a run directory

@pytest.mark.parametrize("layout", ["orbax", "npz"])
def test_a_run_finds_and_resumes_a_checkpoint_of_the_older_npz_name(tmp_path, layout):
    """Checkpoints were named ``checkpoints/<name>.npz`` (an orbax directory, or earlier an npz file);
    now ``checkpoints/<name>``. A run interrupted under the old name resumes from it."""
    from eqlib.runner import Run

    run = Run("toy", "quick", {"seed": 0}, tmp_path, verbose=False)
    assert run.checkpoint_path("train_plain") == run.dir / "checkpoints" / "train_plain"
    old = run.dir / "checkpoints" / "train_plain.npz"
    if layout == "orbax":
        first, _ = train(2, checkpoint=old, on_epoch_end=lambda e, p: {"tag": e})
        assert old.is_dir()
    else:
        first, first_history = train(2, on_epoch_end=lambda e, p: {"tag": e})
        save_npz_checkpoint(old, EnsembleState(first.params, first.opt_state, first.member_ids, 2),
                            {k: list(v) for k, v in first_history.items()})
    assert run.checkpoint_path("train_plain") == old  # only the old name exists: it is the one
    calls = []
    resumed, history = train(3, checkpoint=run.checkpoint_path("train_plain"),
                             on_epoch_end=lambda e, p: calls.append(e) or {"tag": e})
    assert calls == [3]  # epochs 1 and 2 came from the old checkpoint
    alone, alone_history = train(3, on_epoch_end=lambda e, p: {"tag": e})
    assert same(resumed.params, alone.params) and same(resumed.opt_state, alone.opt_state)
    np.testing.assert_array_equal(history["loss"], alone_history["loss"])
    # a new checkpoint under the new name wins over the old one
    train(1, checkpoint=run.dir / "checkpoints" / "train_plain")
    assert run.checkpoint_path("train_plain") == run.dir / "checkpoints" / "train_plain"
