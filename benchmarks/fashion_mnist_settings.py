"""Settings of the FashionMNIST quick preset: accuracy against training time, measured.

For each setting (training images, epochs, width c of ``cnn([c, 2c, 4c], 10)`` with a flatten
head, batch, Adam learning rate) it trains, like the experiment runner does, ``--members``
members with full C4 augmentation and the same members without augmentation (the control), and
reports: the mean upright test accuracy of the C4 members, the accuracy of their ensemble (mean of
the logits), the control's member accuracy, the seconds per C4 member and per control member
(training only, compile included, as in the chapter), and seconds per 1,000 augmented C4 steps.
With ``--groups`` it also times one member of each extra group (C8, C16) at the first setting.

The load average is recorded before and after each setting, and the process's CPU seconds beside
the wall seconds: on a shared 2-core machine the wall times are inflated, while the CPU seconds
are not (on an idle machine the wall time is roughly the CPU seconds / 2 for this workload);
say so when quoting them.

    python benchmarks/fashion_mnist_settings.py                       # ~5 min
    python benchmarks/fashion_mnist_settings.py --members 2 --json benchmarks/results/fashion_mnist_settings.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: (n_train, epochs, width, batch, learning rate)
SETTINGS = [
    (8192, 2, 16, 32, 3e-3),
    (4096, 3, 16, 32, 3e-3),
    (8192, 1, 16, 32, 3e-3),
    (6144, 2, 12, 32, 3e-3),
    (8192, 2, 8, 32, 3e-3),
    (8192, 2, 16, 64, 3e-3),
    (4096, 2, 16, 32, 3e-3),
    (8192, 2, 20, 32, 3e-3),
]


def measure(n_train: int, epochs: int, width: int, batch: int, lr: float, members: int,
            x, y, xt, yt, groups=("C4", "none")) -> dict:
    """Train ``members`` members per group; accuracies on ``xt`` and seconds per member."""
    import jax

    from eqlib.ensemble import TrainConfig, ensemble_apply, init_ensemble, train_ensemble
    from eqlib.experiments.fashion_mnist import member_architecture
    from eqlib.groups import get_group

    net = member_architecture(width, head="flatten").flax()
    cfg = TrainConfig(loss="cross_entropy", optimizer="adam", learning_rate=lr, epochs=epochs,
                      batch_size=batch)
    rng = np.random.default_rng(0)
    idx = np.sort(rng.permutation(len(x))[:n_train])
    xs, ys = x[idx], y[idx]
    out = {"n_train": n_train, "epochs": epochs, "width": width, "batch": batch, "lr": lr,
           "members": members, "load_before": os.getloadavg()[0],
           "params": member_architecture(width, head="flatten").num_params((28, 28, 1))}
    for g in groups:
        group = None if g == "none" else get_group(g)
        state = init_ensemble(net, xs[:1], members, seed=0, config=cfg)
        t0, c0 = time.perf_counter(), time.process_time()
        state, _ = train_ensemble(net, state, xs, ys, cfg, seed=0, group=group, progress=False)
        jax.block_until_ready(state.params)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        logits = np.asarray(ensemble_apply(net, state.params, xt))              # (M, n, 10)
        acc = (logits.argmax(-1) == yt).mean(-1)
        out[g] = {"s_per_member": seconds / members, "cpu_s_per_member": cpu / members, "member_acc": float(acc.mean()),
                  "ensemble_acc": float((logits.mean(0).argmax(-1) == yt).mean())}
        steps = epochs * (n_train // batch)
        out[g]["s_per_1000_steps"] = 1000 * seconds / members / steps
    out["load_after"] = os.getloadavg()[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=2)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--only", type=int, nargs="*", help="indices into SETTINGS")
    ap.add_argument("--groups", action="store_true", help="also time C8 and C16 at the first setting")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from eqlib.data.fashion_mnist import load_fashion_mnist

    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    xt, yt = xt[: args.n_test], yt[: args.n_test]
    rows = []
    chosen = [SETTINGS[i] for i in args.only] if args.only else SETTINGS
    print(f"{'n_train':>7} {'ep':>3} {'c':>3} {'batch':>5} {'lr':>7} {'params':>7} | "
          f"{'C4 mem':>6} {'C4 ens':>6} {'ctl mem':>7} | {'s/C4 mem':>8} {'s/ctl mem':>9} "
          f"{'s/1k C4 st':>10} {'cpu/C4 mem':>10} {'cpu/ctl':>7} | load")
    for setting in chosen:
        r = measure(*setting, members=args.members, x=x, y=y, xt=xt, yt=yt)
        rows.append(r)
        print(f"{r['n_train']:>7} {r['epochs']:>3} {r['width']:>3} {r['batch']:>5} {r['lr']:>7.0e} "
              f"{r['params']:>7} | {r['C4']['member_acc']:>6.1%} {r['C4']['ensemble_acc']:>6.1%} "
              f"{r['none']['member_acc']:>7.1%} | {r['C4']['s_per_member']:>8.1f} "
              f"{r['none']['s_per_member']:>9.1f} {r['C4']['s_per_1000_steps']:>10.1f} "
              f"{r['C4']['cpu_s_per_member']:>10.1f} {r['none']['cpu_s_per_member']:>7.1f} | "
              f"{r['load_before']:.1f}→{r['load_after']:.1f}", flush=True)
    extra = []
    if args.groups:
        n, ep, w, b, lr = chosen[0]
        r = measure(n, ep, w, b, lr, members=1, x=x, y=y, xt=xt, yt=yt, groups=("C8", "C16"))
        extra.append(r)
        for g in ("C8", "C16"):
            print(f"{g}: {r[g]['s_per_member']:.1f} s ({r[g]['cpu_s_per_member']:.1f} CPU s) per member, "
                  f"member accuracy "
                  f"{r[g]['member_acc']:.1%} (setting {chosen[0]})", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
                  "cpus": os.cpu_count(), "members": args.members, "n_test": args.n_test,
                  "rows": rows, "groups": extra}
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
