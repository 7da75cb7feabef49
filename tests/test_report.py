"""The reproduction report: readers apply their rule to intervals, verdicts combine runs."""
from __future__ import annotations

import numpy as np
import pytest

from eqlib import report
from eqlib.report import Measurement, verdict


def _run(arrays, config, preset="quick"):
    meta = {"summary": {}, "config": config, "preset": preset, "timestamp": "2026-12-01T00:00",
            "provenance": {"device": {"backend": "cpu"}, "host": {"cpu_count": 2},
                           "git": {"commit": "abcdef0123", "dirty": False}}}
    return arrays, meta


def _tour(aug=1e-14, plain=1.1):
    """Tour arrays: the orbit spread of μ_t over time (the reader takes its maximum)."""
    return {f"{m}/ntk_spread_{d}": np.array([[0.0, v]]) for m, v in (("augmented", aug), ("plain", plain))
            for d in ("test", "noise")}


def _table(difference):
    """A (3, 3) member-vs-ensemble table whose difference row is ``difference``."""
    return np.array([[0.5, 0.45, 0.55], [0.6, 0.55, 0.65], difference])


FMNIST_CFG = {"widths": [8], "cont_groups": [], "cont_width": 8, "parametrization": "standard",
              "head": "flatten", "n_train": 8192}


def _fmnist(diffs):
    arrays = {f"c8_C4/interval/{s}/{name}": _table(d) for name, d in zip(("test", "mnist", "noise"), diffs)
              for s in ("osp", "kl")}
    arrays["c8_C4/interval/acc_full/test"] = _table([0.83, 0.82, 0.84])
    arrays["c8_C4/member_acc_full/test"] = np.full(8, 0.8)
    return arrays


def test_verdicts():
    yes, no = Measurement("a", True, ""), Measurement("b", False, "")
    assert verdict([yes, yes]) == "reproduced"
    assert verdict([yes, None]) == "reproduced"
    assert verdict([yes, no]) == "partly"
    assert verdict([Measurement("c", "partly", ""), yes]) == "partly"
    assert verdict([no, None]) == "not reproduced"
    assert verdict([None, None]) == "not attempted"
    assert verdict([Measurement("d", None, "")]) == "not comparable"


def test_theorem_reader_can_fail():
    rows = {r.key: r for r in report.reproduction_rows({"tour": _run(_tour(), {})}, {})}
    assert rows["theorem_exact"].verdict == "reproduced"
    rows = {r.key: r for r in report.reproduction_rows({"tour": _run(_tour(aug=1e-3), {})}, {})}
    assert rows["theorem_exact"].verdict == "not reproduced"
    rows = {r.key: r for r in report.reproduction_rows({"tour": _run(_tour(plain=1e-4), {})}, {})}
    assert rows["theorem_exact"].verdict == "not reproduced"   # a control that does not fail


def test_emergence_reader_uses_the_interval_not_the_estimate():
    cfg = FMNIST_CFG
    up, straddle = [0.3, 0.1, 0.5], [0.3, -0.1, 0.7]
    quick = {"fashion_mnist": _run(_fmnist([up, up, up]), cfg)}
    rows = {r.key: r for r in report.reproduction_rows(quick, {})}
    assert rows["fmnist_emergent"].verdict == "reproduced"
    quick = {"fashion_mnist": _run(_fmnist([up, straddle, up]), cfg)}
    rows = {r.key: r for r in report.reproduction_rows(quick, {})}
    assert rows["fmnist_emergent"].verdict == "partly"
    assert rows["fmnist_ensemble_accuracy"].verdict == "not comparable"      # far below the size
    assert rows["continuous_bound"].verdict == "not attempted"              # no C8/C16 arms
    assert rows["fmnist_steerable_ensembles"].verdict == "not attempted"
    table = report.markdown_table(list(rows.values()))
    assert table.count("\n") == len(rows) + 1 and "85.3–86.3 %" in table and "OpenReview" in table


def test_a_run_without_the_stored_keys_says_so():
    rows = {r.key: r for r in report.reproduction_rows({"ising": _run({}, {"widths": [32]})}, {})}
    assert rows["finite_m_rate"].quick.text.startswith("not in this run")
    assert rows["finite_m_rate"].verdict == "not comparable"


@pytest.mark.parametrize("key", list(report.READERS))
def test_every_reader_has_a_stated_rule(key):
    _, reader = report.READERS[key]
    assert reader.__doc__ and len(reader.__doc__) > 40
