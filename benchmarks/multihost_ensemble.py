"""Train one ensemble on one or several processes (hosts) and print its throughput.

Every process runs this same script; ``eqlib.distributed.initialize`` reads the launch from the
environment (``EQLIB_COORDINATOR``/``EQLIB_NUM_PROCESSES``/``EQLIB_PROCESS_ID``, or SLURM's
``SLURM_PROCID``/``SLURM_NTASKS``), the members are split over the devices of all processes, and
only process 0 prints and writes (``--checkpoint``, ``--out``). Examples::

    python benchmarks/multihost_ensemble.py --members 8                       # one process
    # two processes on this machine, 2 simulated CPU devices each (4 devices in all)
    for i in 0 1; do XLA_FLAGS=--xla_force_host_platform_device_count=2 EQLIB_COORDINATOR=127.0.0.1:12355 \\
        EQLIB_NUM_PROCESSES=2 EQLIB_PROCESS_ID=$i python benchmarks/multihost_ensemble.py & done; wait
    srun --nodes=2 --ntasks-per-node=1 python benchmarks/multihost_ensemble.py --members 64   # SLURM

Workload: ``cnn([16, 32, 64], 10)`` on random 28×28×1 images, minibatches of ``--batch`` with full C4
augmentation, SGD, cross-entropy (the one of ``ensemble_throughput.py``).
"""
from __future__ import annotations

import argparse
import time

from eqlib import distributed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    parser.add_argument("--steps", type=int, default=4, help="steps per epoch")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--checkpoint", default=None, help="checkpoint path (written by process 0 only)")
    parser.add_argument("--out", default=None, help="npz of the trained members (written by process 0 only)")
    args = parser.parse_args(argv)
    distributed.initialize()  # before any other jax work

    import jax
    import numpy as np

    from eqlib.ensemble import TrainConfig, init_ensemble, train_ensemble
    from eqlib.groups import CyclicRotations
    from eqlib.io import save_arrays
    from eqlib.models import cnn

    rng = np.random.default_rng(0)  # the same data on every process
    n = args.steps * args.batch
    x = rng.normal(size=(n, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, n)
    net = cnn(args.channels, 10).flax()
    config = TrainConfig(loss="cross_entropy", learning_rate=0.05, batch_size=args.batch, epochs=1)
    state = init_ensemble(net, x, args.members, seed=0, config=config)
    t0 = time.perf_counter()
    state, _ = train_ensemble(net, state, x, y, config, group=CyclicRotations(4), progress=False)  # compiles
    jax.block_until_ready(state.params)
    warm = time.perf_counter() - t0
    config = TrainConfig(loss="cross_entropy", learning_rate=0.05, batch_size=args.batch, epochs=1 + args.epochs)
    t0 = time.perf_counter()
    state, history = train_ensemble(net, state, x, y, config, group=CyclicRotations(4), progress=False,
                                    checkpoint=args.checkpoint)
    jax.block_until_ready(state.params)
    seconds = time.perf_counter() - t0
    params = distributed.gather(state.params)  # every process takes part
    if distributed.is_writer():
        rate = args.members * args.epochs * args.steps / seconds
        print(f"{jax.process_count()} process(es), {jax.device_count()} {jax.default_backend()} device(s), "
              f"M={args.members}: {rate:.2f} member-steps/s (first epoch with compilation {warm:.1f} s; "
              f"final loss {history['loss'][-1].mean():.4f})")
        if args.out:
            save_arrays(args.out, {f"leaf{i}": leaf for i, leaf in enumerate(jax.tree_util.tree_leaves(params))})


if __name__ == "__main__":
    main()
