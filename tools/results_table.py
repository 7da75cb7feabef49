"""Print README's results table from the results files: the quick runs (local cache) and the stored
reference runs, each number with its 95 % interval, on and off the data manifold.

    python tools/results_table.py            # after the quick runs exist (a book build makes them)

Numbers are read from ``results.json`` summaries only; nothing is typed. Rows where the ensemble
is *not* more invariant than its members, or where a finding does not show, are printed like any
other: the table does not select.
"""
from __future__ import annotations

import sys

from eqlib.runner import latest_results, run_label, stored_results


def iv(v) -> str:
    if isinstance(v, dict):
        v = [v["estimate"], v["low"], v["high"]]
    return f"{v[0]:.3g} [{v[1]:.3g}, {v[2]:.3g}]"


def ising(meta) -> list[str]:
    s, cfg = meta["summary"], meta["config"]
    aug, plain = s[f"mlp_w{max(cfg['widths'])}_aug"], s[f"mlp_w{cfg['plain_width']}_plain"]
    out = []
    for name in ("test", "other_T", "random", "gaussian"):
        m = aug[name]["member_vs_ensemble_spread"]
        out.append(f"{name}: orbit spread {iv(m['member'])} → {iv(m['ensemble'])} (NTK "
                   f"{aug[name]['predicted_ensemble_spread']:.3g}), slope {iv(aug[name]['slope_spread'])}; "
                   f"no augmentation → {iv(plain[name]['member_vs_ensemble_spread']['ensemble'])}")
    out.append(f"energy RMSE (test): ensemble {iv(aug['test']['member_vs_ensemble_rmse']['ensemble'])} J "
               f"vs {iv(plain['test']['member_vs_ensemble_rmse']['ensemble'])} J without augmentation")
    return out


def fashion_mnist(meta) -> list[str]:
    s, cfg = meta["summary"], meta["config"]
    w = max(cfg["widths"])
    c4, none = s[f"c{w}_C4"], s[f"c{w}_none"]
    out = [f"accuracy (all test images): C4 members {iv(c4['acc_full_interval']['member'])}, ensemble "
           f"{iv(c4['acc_full_interval']['ensemble'])}; no augmentation: ensemble "
           f"{iv(none['acc_full_interval']['ensemble'])}"]
    for name in ("test", "mnist", "noise"):
        e, n = c4[name], none[name]
        out.append(f"{name}: C4 OSP {iv(e['osp_interval']['member'])} → {iv(e['osp_interval']['ensemble'])}, "
                   f"KL {iv(e['kl_interval']['member'])} → {iv(e['kl_interval']['ensemble'])}; "
                   f"no augmentation OSP → {iv(n['osp_interval']['ensemble'])} (chance "
                   f"{n['ensemble_chance']:.2f})")
    groups = ["C4", *cfg.get("cont_groups", [])]
    if len(groups) > 1:
        cw = cfg["cont_width"]
        fr = ", ".join(f"{g} {s[f'c{cw}_{g}']['so2']['test']['ensemble_osp_fraction']:.3f}" for g in groups)
        out.append(f"SO(2)-OSP fraction of the ensembles: {fr}")
    return out


def histology(meta) -> list[str]:
    s = meta["summary"]
    d4, plain = s["D4"], s["plain"]
    acc = d4["accuracy_test"]["ensemble_patches"]
    out = [f"accuracy (held-out patches): D4 ensemble {iv(acc)}, no augmentation "
           f"{iv(plain['accuracy_test']['ensemble_patches'])}, chance {s['chance_accuracy']:.2f}"]
    for name in ("test", "noise", "jitter", "fashion"):
        e, p = d4[f"D4/{name}"], plain[f"D4/{name}"]
        out.append(f"{name}: D4-OSP fraction {iv(e['osp']['member'])} → {iv(e['osp']['ensemble'])}, "
                   f"KL {iv(e['kl']['member'])} → {iv(e['kl']['ensemble'])}; no augmentation → "
                   f"{iv(p['osp']['ensemble'])}")
    return out


ROWS = {"ising": ising, "fashion_mnist": fashion_mnist, "histology": histology}


def main() -> int:
    print("| experiment | run | members → ensemble, 95 % intervals |")
    print("|---|---|---|")
    for exp, rows in ROWS.items():
        for preset, load in (("quick", lambda: latest_results(exp, "quick")),
                             ("reference", lambda: stored_results(exp, "reference"))):
            try:
                _, meta = load()
            except FileNotFoundError:
                print(f"| {exp} | {preset} | (no run) |")
                continue
            try:
                lines = rows(meta)
            except KeyError as err:
                lines = [f"(results lack {err})"]
            print(f"| {exp} | {run_label(meta)} | " + "<br>".join(lines) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
