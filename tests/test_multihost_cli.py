"""``python -m eqlib run`` on two processes (JAX's multi-controller runtime, gloo on the CPU).

Two local processes run the tour with small overrides, each given its own results root so that
anything process 1 wrote would show; their members are split over the 2 devices of the global mesh.
The results written by process 0 must equal a single-process run of the same command to float
tolerance (vmap over 2 devices against the CPU's unrolled member loop: the sums may run in another
order), and process 1 must write nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from eqlib.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
TOUR = ["--set", "members=4", "--set", "steps=4", "--set", "width=16", "--set", "n_train=12",
        "--set", "n_eval=6", "--set", "prediction_samples=8"]
RTOL, ATOL = 1e-5, 1e-6


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _results(root: Path) -> tuple[dict, dict]:
    [path] = list(root.glob("*/*/results.json"))
    with np.load(path.with_suffix(".npz")) as npz:
        return {k: npz[k] for k in npz.files}, json.loads(path.read_text())


def test_run_on_two_processes_equals_one_process(tmp_path, monkeypatch):
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, JAX_PLATFORMS="cpu", EQLIB_PROGRESS="0", EQLIB_COORDINATOR=f"127.0.0.1:{port}",
                   EQLIB_NUM_PROCESSES="2", EQLIB_PROCESS_ID=str(pid),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        env.pop("XLA_FLAGS", None)
        cmd = [sys.executable, "-m", "eqlib", "run", "tour", "--results", str(tmp_path / f"p{pid}"), *TOUR]
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outs = []
    try:
        for pid, proc in enumerate(procs):
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"process {pid}:\n{stderr[-4000:]}"
            outs.append(stdout)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert not (tmp_path / "p1").exists()  # process 1: no run directory, no step, no checkpoint, no result
    assert outs[1] == ""  # nor does it print: the summary is process 0's
    got, meta = _results(tmp_path / "p0")
    assert meta["provenance"]["device"]["device_count"] == 2  # one global runtime of two devices

    monkeypatch.setenv("EQLIB_PROGRESS", "0")
    assert main(["run", "tour", "--quiet", "--results", str(tmp_path / "one"), *TOUR]) == 0
    want, want_meta = _results(tmp_path / "one")
    assert want_meta["provenance"]["device"]["device_count"] == 1
    assert sorted(got) == sorted(want) and meta["config_hash"] == want_meta["config_hash"]
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=RTOL, atol=ATOL, err_msg=key)
    assert json.loads(outs[0][outs[0].index("{"):outs[0].rindex("}") + 1]) == meta["summary"]
