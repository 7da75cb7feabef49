"""Print README's results table from the results files: the quick runs (local cache) and the stored
reference runs, each number with its 95 % interval, on and off the data manifold.

    python tools/results_table.py            # after the quick runs exist (a book build makes them)

Numbers are read from the results arrays by name (:class:`eqlib.results.Results`, checked against
each experiment's schema by tests/test_results.py); nothing is typed. Rows where the ensemble
is *not* more invariant than its members, or where a finding does not show, are printed like any
other: the table does not select.
"""
from __future__ import annotations

import sys

from eqlib.data.histology import CLASSES
from eqlib.results import Results
from eqlib.runner import latest_results, run_label, stored_results


def iv(v) -> str:
    """An interval (estimate, low, high[, level]) → ``"0.123 [0.1, 0.15]"``."""
    e, lo, hi = (float(x) for x in tuple(v)[:3])
    return f"{e:.3g} [{lo:.3g}, {hi:.3g}]"


def ising(res: Results) -> list[str]:
    cfg = res.config
    aug = res.arm(f"mlp_w{max(cfg['widths'])}_aug")
    plain = res.arm(f"mlp_w{cfg['plain_width']}_plain")
    ntk = res.arm("ntk_mlp_aug")
    out = []
    for name in res.sets:
        m = aug.mve("mve_spread", name)
        out.append(f"{name}: orbit spread {iv(m['member'])} → {iv(m['ensemble'])} (NTK "
                   f"{float(ntk.predicted_spread(name)[-1, -1]):.3g}), slope "
                   f"{iv(aug.interval('slope_spread', name))}; "
                   f"no augmentation → {iv(plain.mve('mve_spread', name)['ensemble'])}")
    out.append(f"energy RMSE (test): ensemble {iv(aug.mve('mve_rmse', 'test')['ensemble'])} J "
               f"vs {iv(plain.mve('mve_rmse', 'test')['ensemble'])} J without augmentation")
    return out


def fashion_mnist(res: Results) -> list[str]:
    cfg = res.config
    w = max(cfg["widths"])
    c4, none = res.arm(f"c{w}_C4"), res.arm(f"c{w}_none")
    acc, acc_none = c4.mve("interval/acc_full", "test"), none.mve("interval/acc_full", "test")
    out = [f"accuracy (all test images): C4 members {iv(acc['member'])}, ensemble "
           f"{iv(acc['ensemble'])}; no augmentation: ensemble {iv(acc_none['ensemble'])}"]
    for name in res.sets:
        osp, kl = c4.mve("interval/osp", name), c4.mve("interval/kl", name)
        out.append(f"{name}: C4 OSP {iv(osp['member'])} → {iv(osp['ensemble'])}, "
                   f"KL {iv(kl['member'])} → {iv(kl['ensemble'])}; "
                   f"no augmentation OSP → {iv(none.mve('interval/osp', name)['ensemble'])} (chance "
                   f"{float(none.ensemble_chance(name)[-1]):.2f})")
    groups = ["C4", *cfg.get("cont_groups", [])]
    if len(groups) > 1:
        cw = cfg["cont_width"]
        fr = ", ".join(f"{g} {float(res.arm(f'c{cw}_{g}').get('so2/ensemble_agreement', 'test').mean()):.3f}"
                       for g in groups)
        out.append(f"SO(2)-OSP fraction of the ensembles: {fr}")
    return out


def histology(res: Results) -> list[str]:
    d4, plain = res.arm("D4"), res.arm("plain")
    chance = 1 / len(CLASSES)
    out = [f"accuracy (held-out patches): D4 ensemble {iv(d4.interval('accuracy_patches', 'test'))}, "
           f"no augmentation {iv(plain.interval('accuracy_patches', 'test'))}, chance {chance:.2f}"]
    for name in res.sets:
        osp, kl = d4.mve("mve_osp_D4", name), d4.mve("mve_kl_D4", name)
        out.append(f"{name}: D4-OSP fraction {iv(osp['member'])} → {iv(osp['ensemble'])}, "
                   f"KL {iv(kl['member'])} → {iv(kl['ensemble'])}; no augmentation → "
                   f"{iv(plain.mve('mve_osp_D4', name)['ensemble'])}")
    return out


ROWS = {"ising": ising, "fashion_mnist": fashion_mnist, "histology": histology}


def main() -> int:
    print("| experiment | run | members → ensemble, 95 % intervals |")
    print("|---|---|---|")
    for exp, rows in ROWS.items():
        for preset, load in (("quick", lambda: latest_results(exp, "quick")),
                             ("reference", lambda: stored_results(exp, "reference"))):
            try:
                arrays, meta = load()
            except FileNotFoundError:
                print(f"| {exp} | {preset} | (no run) |")
                continue
            try:
                lines = rows(Results(exp, arrays, meta))
            except KeyError as err:              # eqlib.results.UnknownName: an array is missing
                lines = [f"(results lack {err})"]
            print(f"| {exp} | {run_label(meta)} | " + "<br>".join(lines) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
