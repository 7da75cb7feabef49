"""Ensemble-training throughput of the three strategies of :mod:`eqlib.ensemble`.

Workload: ``cnn([16, 32, 64], 10)`` (28×28×1 → 10 classes; 3×3 convs, 2×2 average pools, global
average pool, dense head), minibatches of 64 with full C4 augmentation (256 images per member-step),
SGD, cross-entropy, random data. Every (strategy, M) runs in a fresh subprocess through the public
API (``init_ensemble`` / ``train_ensemble``), so the numbers measure the real engine, and its peak
memory is that process's peak RSS minus its RSS after importing jax/eqlib.

One run = one warm-up epoch (it includes compilation) + ``--epochs`` timed epochs of ``--steps``
steps each. Reported: member-steps/s over the median timed epoch, each strategy's ratio to ``loop``
at the same M, compile time (first epoch minus a steady-state epoch), peak memory, and how many CPU
cores other processes used meanwhile ("others": on a shared machine, rerun rows where it is > 0.1;
``--wait-idle`` waits for a quiet machine before each run).

The machine's speed drifts (on a shared 2-core VM the same run varied by ±15 % over minutes), so
compare strategies within one invocation; ``--repeats N`` runs N round-robin rounds and reports
medians, the range and the median of each round's ratio to ``loop``.

    python benchmarks/ensemble_throughput.py                      # M = 1 8 32, all strategies (~4 min)
    python benchmarks/ensemble_throughput.py --skip-vmap-above 8  # skip the slow, ~3.4 GB vmap M=32
    python benchmarks/ensemble_throughput.py --strategies loop unrolled --members 32 --unroll 2 4 8 16 32
    python benchmarks/ensemble_throughput.py --repeats 2 --wait-idle --json results.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = 64
IMAGE = (28, 28, 1)
CLASSES = 10


def _rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux: ru_maxrss is in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def _cpu_seconds() -> tuple[float, float]:
    """(CPU seconds used by the whole machine, by this process) so far; Linux only, else zeros."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        mine = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return (sum(fields) - fields[3] - fields[4]) / ticks, (int(mine[11]) + int(mine[12])) / ticks
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0


def wait_until_idle(max_wait: float = 600, threshold: float = 0.15) -> float:
    """Wait until other processes use < ``threshold`` of the machine for 3 s; returns their last share."""
    start, calm, share = time.time(), 0, 0.0
    while time.time() - start < max_wait:
        busy0, _ = _cpu_seconds()
        time.sleep(1)
        busy1, _ = _cpu_seconds()
        share = (busy1 - busy0) / (os.cpu_count() or 1)
        calm = calm + 1 if share < threshold else 0
        if calm >= 3:
            break
    return share


def worker(strategy: str, members: int, steps: int, epochs: int, unroll: int, channels: tuple[int, ...] = (16, 32, 64),
           batch: int = BATCH, seed: int = 0) -> dict:
    """Train ``members`` members for 1 + ``epochs`` epochs of ``steps`` steps; time every epoch."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from eqlib.ensemble import TrainConfig, init_ensemble, resolve_strategy, train_ensemble
    from eqlib.groups import CyclicRotations
    from eqlib.models import cnn

    jnp.zeros(1).block_until_ready()  # initialise the backend before taking the baseline
    baseline = _rss_mb()

    rng = np.random.default_rng(seed)
    n = batch * steps
    x = rng.normal(size=(n, *IMAGE)).astype(np.float32)
    y = rng.integers(0, CLASSES, n)
    net = cnn(list(channels), CLASSES).flax()
    config = TrainConfig(loss="cross_entropy", optimizer="sgd", learning_rate=0.1, epochs=1 + epochs,
                         batch_size=batch, strategy=strategy, unroll=unroll)
    state = init_ensemble(net, x, members, seed=seed, config=config)
    jax.block_until_ready(state.params)

    stamps, cpu = [], []

    def on_epoch_end(epoch, params):
        jax.block_until_ready(params)
        stamps.append(time.perf_counter())
        cpu.append(_cpu_seconds())
        return {}

    state, history = train_ensemble(net, state, x, y, config, seed=seed, group=CyclicRotations(4),
                                    on_epoch_end=on_epoch_end, progress=False)
    epoch_times = np.diff(stamps)  # epoch_times[0] includes compilation
    steady = float(np.median(epoch_times[1:]))  # the median resists a disturbed epoch
    # CPU cores that other processes used during the timed epochs: > ~0.1 means a disturbed measurement
    others = ((cpu[-1][0] - cpu[1][0]) - (cpu[-1][1] - cpu[1][1])) / (stamps[-1] - stamps[1])
    return {
        "strategy": f"auto→{resolve_strategy(strategy)}" if strategy == "auto" else strategy, "members": members,
        "unroll": min(unroll, members) if resolve_strategy(strategy) == "unrolled" else None,
        "steps_per_epoch": steps, "timed_epochs": epochs,
        "member_steps_per_s": members * steps / steady,
        "first_epoch_s": float(epoch_times[0]), "steady_epoch_s": steady,
        "compile_s": max(float(epoch_times[0]) - steady, 0.0),
        "peak_rss_mb": _rss_mb() - baseline, "baseline_rss_mb": baseline,
        "other_processes_cores": round(max(others, 0.0), 2),
        "final_loss": float(history["loss"][-1].mean()),
    }


def run_in_subprocess(strategy: str, members: int, steps: int, epochs: int, unroll: int, timeout: float,
                      channels: tuple[int, ...] = (16, 32, 64), batch: int = BATCH) -> dict:
    cmd = [sys.executable, __file__, "--worker", strategy, str(members), str(steps), str(epochs), str(unroll),
           "--channels", *map(str, channels), "--batch", str(batch)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"strategy": strategy, "members": members, "unroll": unroll, "error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"strategy": strategy, "members": members, "unroll": unroll,
                "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def environment() -> dict:
    import jax

    return {"date": time.strftime("%Y-%m-%d"), "jax": jax.__version__, "backend": jax.default_backend(),
            "device": str(jax.devices()[0].device_kind), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}


def summarise(rows: list[dict]) -> list[dict]:
    """One row per (M, strategy, unroll): medians over repeats; ``vs_loop`` is the median over repeats
    of the ratio to the loop run of the same repeat (adjacent runs share the machine's state)."""
    import numpy as np

    ok = [r for r in rows if "error" not in r]
    loop = {(r["members"], r["repeat"]): r["member_steps_per_s"] for r in ok if r["strategy"] == "loop"}
    keys = list(dict.fromkeys((r["members"], r["strategy"], r.get("unroll")) for r in rows))
    out = []
    for M, strategy, unroll in keys:
        runs = [r for r in ok if (r["members"], r["strategy"], r.get("unroll")) == (M, strategy, unroll)]
        if not runs:
            err = next(r for r in rows if (r["members"], r["strategy"], r.get("unroll")) == (M, strategy, unroll))
            out.append({"members": M, "strategy": strategy, "unroll": unroll, "error": err["error"]})
            continue
        ratios = [r["member_steps_per_s"] / loop[M, r["repeat"]] for r in runs if (M, r["repeat"]) in loop]
        med = lambda k: float(np.median([r[k] for r in runs]))
        out.append({"members": M, "strategy": strategy, "unroll": unroll, "repeats": len(runs),
                    "member_steps_per_s": med("member_steps_per_s"),
                    "member_steps_per_s_range": [min(r["member_steps_per_s"] for r in runs),
                                                 max(r["member_steps_per_s"] for r in runs)],
                    "vs_loop": float(np.median(ratios)) if ratios else float("nan"),
                    "compile_s": med("compile_s"), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                    "other_processes_cores": max(r["other_processes_cores"] for r in runs)})
    return out


def table(summary: list[dict]) -> str:
    head = ("strategy", "unroll", "M", "member-steps/s", "× loop", "compile s", "peak MB", "others")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(head))) + "|"]
    for r in summary:
        if "error" in r:
            lines.append(f"| {r['strategy']} | {r['unroll'] or ''} | {r['members']} | {r['error']} | | | | |")
            continue
        lo, hi = r["member_steps_per_s_range"]
        rate = f"{r['member_steps_per_s']:.1f}" + (f" ({lo:.1f}–{hi:.1f})" if r["repeats"] > 1 else "")
        lines.append(f"| {r['strategy']} | {r['unroll'] or ''} | {r['members']} | {rate} | {r['vs_loop']:.2f} | "
                     f"{r['compile_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['other_processes_cores']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, nargs="+", default=[1, 8, 32], help="ensemble sizes M")
    p.add_argument("--strategies", nargs="+", default=["vmap", "loop", "unrolled"],
                   choices=["vmap", "loop", "unrolled", "auto"])
    p.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64],
                   help="conv widths of the member cnn (default: the benchmark's 16 32 64)")
    p.add_argument("--batch", type=int, default=BATCH, help="images per minibatch before C4 augmentation")
    p.add_argument("--steps", type=int, default=4, help="steps per epoch (data: batch·steps random images)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up epoch")
    p.add_argument("--unroll", "--chunk", dest="unroll", type=int, nargs="+", default=None,
                   help="members per compiled program for 'unrolled' (several values: a sweep; "
                        "default: TrainConfig's default)")
    p.add_argument("--skip-vmap-above", type=int, default=None, metavar="M",
                   help="skip vmap for ensembles larger than M (vmap at M=32 takes ~1 min and ~3 GB)")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds over all runs (round-robin, so each ratio compares adjacent runs); "
                        "the table shows medians and the range")
    p.add_argument("--wait-idle", action="store_true",
                   help="before each run, wait (up to 10 min) until other processes leave the CPU idle")
    p.add_argument("--timeout", type=float, default=600, help="seconds per (strategy, M) subprocess")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the results here")
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        strategy, members, steps, epochs, unroll = args.worker
        print(json.dumps(worker(strategy, int(members), int(steps), int(epochs), int(unroll),
                                tuple(args.channels), args.batch)))
        return

    sys.path.insert(0, str(ROOT))
    from eqlib.ensemble import TrainConfig

    unrolls = args.unroll or [TrainConfig().unroll]
    env = environment()
    print(f"# {env['date']}  jax {env['jax']} ({env['backend']}, {env['device']}), {env['cpu_count']} CPUs"
          + (f", XLA_FLAGS={env['XLA_FLAGS']}" if env["XLA_FLAGS"] else ""))
    print(f"# cnn({args.channels}, 10), batch {args.batch}×C4 = {4 * args.batch} images/step, SGD, cross-entropy; "
          f"{args.steps} steps/epoch, 1 warm-up + {args.epochs} timed epochs", flush=True)
    order = sorted(args.strategies, key=lambda s: s != "loop")  # loop first: the reference for ratios
    rows = []
    for repeat in range(args.repeats):
        for M in args.members:
            for strategy in order:
                if strategy == "vmap" and args.skip_vmap_above is not None and M > args.skip_vmap_above:
                    continue
                for unroll in (unrolls if strategy in ("unrolled", "auto") else [unrolls[0]]):
                    if args.wait_idle:
                        wait_until_idle()
                    r = run_in_subprocess(strategy, M, args.steps, args.epochs, unroll, args.timeout,
                                          tuple(args.channels), args.batch)
                    r["repeat"] = repeat
                    rows.append(r)
                    msg = r.get("error") or (f"{r['member_steps_per_s']:.1f} member-steps/s, "
                                             f"compile {r['compile_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB, "
                                             f"others {r['other_processes_cores']:.2f} cores")
                    print(f"  [{repeat + 1}/{args.repeats}] {r['strategy']:<8} M={M:<3} "
                          f"unroll={unroll if r.get('unroll') else '-':<3} {msg}", flush=True)
    summary = summarise(rows)
    print()
    print(table(summary))
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "args": {k: v for k, v in vars(args).items()
                                                                        if k not in ("worker", "json")},
                                         "summary": summary, "runs": rows}, indent=2, default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
