"""What Θ_G saves: Gram matrix + eigendecomposition of the augmented problem against the reduced one.

For the tour's MLP kernel (one hidden layer, 8×8 images) and groups of order 1, 2, 4, 8 acting on
the images (trivial, Z2, C4, D4), times (best of ``--repeats``, jit-compiled kernel, float64)

* augmented: Θ(X_aug, X_aug) on |G|·n points and its ``eigh``;
* reduced:   Θ_G(X, X) = Σ_g Θ(X, ρ(g)X) from one n × |G|·n kernel evaluation and its ``eigh``;

prints a table and writes ``benchmarks/results/group_kernel_cost.json``::

    python benchmarks/group_kernel_cost.py                        # n = 64 128 256
    python benchmarks/group_kernel_cost.py --sizes 128 512 --repeats 5
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

GROUPS = ("trivial", "Z2", "C4", "D4")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "group_kernel_cost.json"))
    args = parser.parse_args(argv)

    from eqlib.group_kernel import formulation_costs
    from eqlib.groups import get_group
    from eqlib.models import mlp
    from eqlib.provenance import provenance

    kernel_fn = mlp([512], out=1).kernel_fn
    x = np.random.default_rng(0).normal(size=(max(args.sizes), 8, 8, 1)).astype(np.float32)
    rows = []
    header = (f"{'n':>5} {'|G|':>4} {'aug gram':>9} {'aug eigh':>9} {'Θ_G gram':>9} "
              f"{'Θ_G eigh':>9} {'ratio':>8}")
    print(header)
    for n in args.sizes:
        for name in GROUPS:
            group = get_group(name, 8)
            c = formulation_costs(kernel_fn, x[:n], group, repeats=args.repeats)
            aug, red = c["augmented_gram"] + c["augmented_solve"], c["group_gram"] + c["group_solve"]
            rows.append({"n": n, "group": name, "order": group.order, **c, "ratio": aug / red})
            print(f"{n:>5} {group.order:>4} {c['augmented_gram']:>9.4f} {c['augmented_solve']:>9.4f} "
                  f"{c['group_gram']:>9.4f} {c['group_solve']:>9.4f} {aug / red:>8.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "repeats": args.repeats, "provenance": provenance()},
                              indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
