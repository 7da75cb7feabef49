"""eqlib.distributed: the ensemble on several processes with JAX's multi-controller runtime.

Two local processes, each with 2 simulated CPU devices (4 global devices, one ``members`` mesh, gloo
collectives), run one small script; their members, losses and metrics must equal a single-process
run, and only process 0 may write. Each process gets its own output directory, so what process 1
would have written is visible: nothing. It also resumes from the checkpoint without a shared file
system (process 0 reads it and sends it to process 1).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from eqlib import distributed
from eqlib.ensemble import TrainConfig, checkpoint_info, init_ensemble, train_ensemble
from eqlib.models import mlp

ROOT = Path(__file__).resolve().parents[1]
NET = mlp([8], 1).flax()
CONFIG = dict(learning_rate=0.05, momentum=0.9, batch_size=3)  # SGD with momentum, 2 steps per epoch
M = 6  # on 4 devices: padded to 8
ATOL = 1e-6  # vmap over 4 devices vs one member at a time: float tolerance (see test_sharding.py)


def data(n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 1)).astype(np.float32)


def kernel_norms(params):
    """The metric every epoch records: ``(M,)`` L1 norm of each member's first kernel."""
    import jax.numpy as jnp

    return {"norm": jnp.abs(params["params"]["_Linear_0"]["kernel"]).sum(axis=(1, 2))}


SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from eqlib import distributed
    assert distributed.initialize()  # EQLIB_COORDINATOR, EQLIB_NUM_PROCESSES, EQLIB_PROCESS_ID
    import jax, jax.numpy as jnp, numpy as np
    from eqlib.ensemble import TrainConfig, init_ensemble, train_ensemble
    from eqlib.io import save_arrays
    from eqlib.models import mlp
    from eqlib.sharding import member_layout

    out, config = Path(sys.argv[1]) / f"p{jax.process_index()}", json.loads(sys.argv[2])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    net = mlp([8], 1).flax()

    def norms(epoch, params):
        return {"norm": jnp.abs(params["params"]["_Linear_0"]["kernel"]).sum(axis=(1, 2))}

    report = dict(process=jax.process_index(), processes=jax.process_count(), devices=jax.device_count(),
                  local_devices=jax.local_device_count())
    ckpt = out / "ckpt"  # a path per process: process 1 must write nothing, and read nothing either
    for epochs in (2, 3):  # 2 epochs, then resume from the checkpoint for a third
        cfg = TrainConfig(epochs=epochs, **config)
        state = init_ensemble(net, x, 6, seed=1, config=cfg)
        state, history = train_ensemble(net, state, x, y, cfg, seed=1, on_epoch_end=norms, checkpoint=ckpt,
                                        progress=False)
    # 8 members: no padding, so the result stays split over the 4 devices of both processes
    state8 = init_ensemble(net, x, 8, seed=1, config=cfg)
    state8, _ = train_ensemble(net, state8, x, y, TrainConfig(epochs=1, **config), seed=1, progress=False)
    leaf8 = jax.tree_util.tree_leaves(state8.params)[0]
    report.update(global_8=not leaf8.is_fully_addressable, layout_8=member_layout(leaf8))
    params = distributed.gather(state.params)
    report.update(leaves=[np.asarray(l).tolist() for l in jax.tree_util.tree_leaves(params)],
                  history={k: np.asarray(v).tolist() for k, v in history.items()},
                  epoch=state.epoch, member_ids=list(state.member_ids))
    if distributed.is_writer():
        save_arrays(out / "result.npz", {f"leaf{i}": l for i, l in enumerate(jax.tree_util.tree_leaves(params))})
    print("REPORT " + json.dumps(report))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """SCRIPT on 2 processes × 2 CPU devices → (reports by process id, output directory)."""
    out = tmp_path_factory.mktemp("multihost")
    script = out / "script.py"
    script.write_text(SCRIPT)
    port = free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
                   EQLIB_COORDINATOR=f"127.0.0.1:{port}", EQLIB_NUM_PROCESSES="2", EQLIB_PROCESS_ID=str(pid),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        procs.append(subprocess.Popen([sys.executable, str(script), str(out / "run"), json.dumps(CONFIG)],
                                      env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    reports = {}
    try:
        for pid, proc in enumerate(procs):
            stdout, stderr = proc.communicate(timeout=240)
            assert proc.returncode == 0, f"process {pid}:\n{stderr[-4000:]}"
            [line] = [l for l in stdout.splitlines() if l.startswith("REPORT ")]
            reports[pid] = json.loads(line[len("REPORT "):])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return reports, out / "run"


def test_two_processes_form_one_runtime_of_four_devices(two_processes):
    reports, _ = two_processes
    for pid, report in reports.items():
        assert (report["process"], report["processes"], report["devices"], report["local_devices"]) == (pid, 2, 4, 2)
        # 8 members over 4 devices: a global array; each process holds only its own 2 devices' members
        assert report["global_8"]
        held = sorted(tuple(r) for r in report["layout_8"][0]["members"].values())
        assert held == ([(0, 2), (2, 4)] if pid == 0 else [(4, 6), (6, 8)])


def test_the_union_of_members_equals_the_single_process_run(two_processes):
    reports, _ = two_processes
    x, y = data()
    config = TrainConfig(epochs=3, strategy="loop", **CONFIG)
    state = init_ensemble(NET, x, M, seed=1, config=config)
    alone, history = train_ensemble(NET, state, x, y, config, seed=1, on_epoch_end=lambda e, p: kernel_norms(p),
                                    progress=False)
    expected = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(alone.params)]
    for report in reports.values():
        assert report["epoch"] == 3 and report["member_ids"] == list(range(M))
        for got, want in zip(report["leaves"], expected):
            np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=ATOL)
        # losses (gathered every epoch) and metrics (gathered from global arrays), across the resume
        np.testing.assert_allclose(report["history"]["loss"], history["loss"], rtol=1e-6)
        np.testing.assert_allclose(report["history"]["norm"], history["norm"], rtol=1e-6)
        np.testing.assert_array_equal(report["history"]["epoch"], [0, 1, 2, 3])
    assert reports[0]["leaves"] == reports[1]["leaves"]  # every process sees the same members


def test_only_process_zero_writes(two_processes):
    _, out = two_processes
    assert not (out / "p1").exists()  # no checkpoint, no result, not even a directory
    info = checkpoint_info(out / "p0" / "ckpt")
    assert info == {"format": "orbax", "epoch": 3, "member_ids": list(range(M))}
    assert (out / "p0" / "result.npz").is_file()


# ------------------------------------------------------------------------------ settings, one process

def test_settings_from_env():
    assert distributed.settings_from_env({}) is None
    assert distributed.settings_from_env({"EQLIB_NUM_PROCESSES": "1"}) is None
    env = {"EQLIB_COORDINATOR": "10.0.0.1:1234", "EQLIB_NUM_PROCESSES": "4", "EQLIB_PROCESS_ID": "3"}
    assert distributed.settings_from_env(env) == dict(coordinator="10.0.0.1:1234", num_processes=4, process_id=3)
    slurm = {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_JOB_NODELIST": "gpu[07-08,11],cpu1"}
    assert distributed.settings_from_env(slurm) == dict(coordinator="gpu07:12355", num_processes=2, process_id=1)
    assert distributed.settings_from_env(slurm | {"EQLIB_PORT": "999"})["coordinator"] == "gpu07:999"
    assert distributed.settings_from_env(slurm | {"EQLIB_COORDINATOR": "a:1"})["coordinator"] == "a:1"
    assert distributed.settings_from_env({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    with pytest.raises(ValueError, match="EQLIB_PROCESS_ID"):
        distributed.settings_from_env({"EQLIB_NUM_PROCESSES": "2", "EQLIB_COORDINATOR": "a:1"})
    with pytest.raises(ValueError, match="0..1"):
        distributed.settings_from_env(env | {"EQLIB_NUM_PROCESSES": "2"})
    with pytest.raises(ValueError, match="host:port"):
        distributed.settings_from_env(env | {"EQLIB_COORDINATOR": "10.0.0.1"})
    with pytest.raises(ValueError, match="integer"):
        distributed.settings_from_env(env | {"EQLIB_PROCESS_ID": "one"})


def test_one_process_is_the_plain_case():
    assert not distributed.initialize()  # nothing in the environment of the test run: one process
    assert distributed.process_count() == 1 and distributed.process_index() == 0 and distributed.is_writer()
    with pytest.raises(ValueError, match="together"):
        distributed.initialize(coordinator="127.0.0.1:1")
    tree = {"a": jax.numpy.arange(3), "b": [1.5, np.ones(2)]}
    gathered = distributed.gather(tree)
    assert isinstance(gathered["a"], np.ndarray) and gathered["a"].tolist() == [0, 1, 2]
    assert distributed.broadcast_bytes(b"abc") == b"abc"
    distributed.barrier("nothing to wait for")
