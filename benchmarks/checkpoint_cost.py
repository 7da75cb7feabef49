"""What a training checkpoint costs: the orbax format of ``eqlib.ensemble`` against the earlier npz leaves.

For an ensemble of ``cnn([16, 32, 64], 10)`` members with Adam state (M members), times one save
and one load of each format (median of ``--repeats``) and the bytes on disk::

    python benchmarks/checkpoint_cost.py                  # M = 8 32
    python benchmarks/checkpoint_cost.py --members 128 --repeats 5
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from eqlib.ensemble import (EnsembleState, TrainConfig, _load_checkpoint, _save_checkpoint, init_ensemble)
    from eqlib.io import save_arrays
    from eqlib.models import cnn
    import jax

    net = cnn([16, 32, 64], 10).flax()
    x = np.zeros((1, 28, 28, 1), np.float32)
    print(f"{'M':>5} {'MB':>7} {'orbax save s':>13} {'npz save s':>11} {'orbax load s':>13} {'npz load s':>11}")
    for M in args.members:
        state = init_ensemble(net, x, M, config=TrainConfig(optimizer="adam", learning_rate=1e-3))
        state = EnsembleState(state.params, state.opt_state, state.member_ids, 1)
        history = {"loss": [np.ones(M)], "epoch": [0, 1]}
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)

            def save_orbax():
                shutil.rmtree(tmp / "orbax", ignore_errors=True)
                _save_checkpoint(tmp / "orbax", state, history)

            def save_npz():  # the earlier format (eqlib.ensemble before the orbax checkpoints)
                leaves = jax.tree_util.tree_leaves((state.params, state.opt_state))
                arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
                arrays.update({"state/epoch": np.asarray(1), "state/member_ids": np.asarray(state.member_ids)})
                arrays.update({f"history/{k}": np.asarray(v) for k, v in history.items()})
                save_arrays(tmp / "old.npz", arrays)

            so, sn = timed(save_orbax, args.repeats), timed(save_npz, args.repeats)
            lo = timed(lambda: _load_checkpoint(tmp / "orbax", state), args.repeats)
            ln = timed(lambda: _load_checkpoint(tmp / "old.npz", state), args.repeats)
            print(f"{M:>5} {size(tmp / 'orbax') / 1e6:>7.2f} {so:>13.3f} {sn:>11.3f} {lo:>13.3f} {ln:>11.3f}")


if __name__ == "__main__":
    main()
