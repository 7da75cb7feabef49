"""eqlib.results: the schemas match the files key for key; the accessor reads the stored values and
rejects misspelt names; the chapters and readers address results through it, not f-string keys."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from eqlib.metrics import Interval
from eqlib.results import SCHEMAS, Results, UnknownName, schema
from eqlib.runner import run_experiment, stored_results

ROOT = Path(__file__).resolve().parent.parent
STORED = ("ising", "fashion_mnist", "histology")


def _check_keys(experiment: str, keys: set[str], config: dict, where: str):
    s = schema(experiment)
    expected = s.expected_keys(config)
    undescribed = sorted(keys - expected)
    missing = sorted(expected - keys)
    assert not undescribed, f"{where}: {len(undescribed)} keys the {experiment} schema does not describe: " \
                            f"{undescribed[:8]}"
    assert not missing, f"{where}: {len(missing)} keys the {experiment} schema declares but the run lacks: " \
                        f"{missing[:8]}"


@pytest.mark.parametrize("experiment", STORED)
def test_schema_matches_the_stored_reference_run(experiment):
    arrays, meta = stored_results(experiment, "reference")
    _check_keys(experiment, set(arrays), meta["config"], f"stored {experiment} reference run")


# small runs that exercise both sides of every conditional entry (slopes, SO(2) arms, CNN kernels)
FRESH = {
    "ising": [dict(size=4, group="D4", n_train=6, n_eval=5, sweeps=10, widths=(16,), plain_width=32, members=8,
                   ensemble_sizes=(1, 2, 4, 8), cnn_channels=(4,), cnn_members=2, cnn_ntk=True, steps=4, n_times=3,
                   ntk_samples=16, ntk_batch=24, learning_rate=0.5, cnn_learning_rate=0.5),
              dict(size=4, group="C4", n_train=6, n_eval=4, sweeps=10, widths=(8, 16), plain_width=8, members=2,
                   ensemble_sizes=(1, 2), cnn_channels=(2,), cnn_members=2, cnn_ntk=False, steps=2, n_times=2,
                   ntk_samples=8, ntk_batch=16, learning_rate=0.5, cnn_learning_rate=0.5)],
    "histology": [dict(patch_size=56, image_size=16, n_off=12, members=2, ensemble_sizes=(1, 2), epochs=1,
                       channels=(2,), batch_size=32, num_bootstrap=20, stored_inputs=3, augmentations=("C4",))],
    "tour": [dict(n_train=6, n_eval=5, size=6, width=16, members=2, steps=3, prediction_samples=16)],
    "fashion_mnist": [dict(n_train=128, n_eval=16, n_acc_eval=20, n_epoch_eval=4, widths=(2,), members=2,
                           ensemble_sizes=(1, 2), epochs=1, batch_size=64, cont_width=2, cont_groups=("C8",),
                           cont_members=2, n_angles=4, n_cont_eval=4)],
}


def _fashion_data() -> bool:
    from eqlib.data.fashion_mnist import fashion_mnist_files
    from eqlib.data.mnist import mnist_files

    try:
        fashion_mnist_files("train", download=False), fashion_mnist_files("test", download=False)
        mnist_files("test", download=False)
    except (FileNotFoundError, ValueError, OSError):
        return False
    return True


@pytest.mark.parametrize("experiment,index", [(e, i) for e, cfgs in FRESH.items() for i in range(len(cfgs))])
def test_schema_matches_a_fresh_small_run(experiment, index, tmp_path):
    if experiment == "fashion_mnist" and not _fashion_data():
        pytest.skip("FashionMNIST or MNIST files not found locally")
    path = run_experiment(experiment, "quick", root=tmp_path, verbose=False, **FRESH[experiment][index])
    meta = json.loads(Path(path).read_text())
    with np.load(Path(path).with_suffix(".npz")) as z:
        keys = set(z.files)
    _check_keys(experiment, keys, meta["config"], f"fresh {experiment} run {index}")


def test_a_renamed_metric_fails_the_key_check():
    """The key check can fail: a stored key renamed, or one dropped, is reported by name."""
    arrays, meta = stored_results("ising", "reference")
    keys = set(arrays)
    renamed = (keys - {"cnn_aug/mve_spread/test"}) | {"cnn_aug/mve_orbit_spread/test"}
    with pytest.raises(AssertionError, match="does not describe: \\['cnn_aug/mve_orbit_spread/test'\\]"):
        _check_keys("ising", renamed, meta["config"], "renamed")
    with pytest.raises(AssertionError, match="run lacks: \\['cnn_aug/mve_spread/test'\\]"):
        _check_keys("ising", keys - {"cnn_aug/mve_spread/test"}, meta["config"], "dropped")


@pytest.fixture(scope="module")
def ising():
    return Results("ising", *stored_results("ising", "reference"))


def test_accessor_reads_the_stored_arrays(ising):
    arrays, cfg = ising.arrays, ising.config
    wide = f"mlp_w{max(cfg['widths'])}_aug"
    arm = ising.arm(wide)
    np.testing.assert_array_equal(arm.ensemble_spread("gaussian"), arrays[f"{wide}/ensemble_spread/gaussian"])
    np.testing.assert_array_equal(arm.get("member_rmse", "other_T"), arrays[f"{wide}/member_rmse/other_T"])
    table = arrays[f"{wide}/mve_spread/random"]
    mve = arm.mve("mve_spread", "random")
    assert list(mve) == ["member", "ensemble", "difference"]
    for i, row in enumerate(mve.values()):
        assert isinstance(row, Interval) and row.level == 0.95
        assert (row.estimate, row.low, row.high) == tuple(table[i])
    assert arm.interval("mve_spread", "random", row="difference") == mve["difference"]
    slope = arm.interval("slope_spread", "test")
    assert (slope.estimate, slope.low, slope.high) == tuple(arrays[f"{wide}/slope_spread/test"])
    band = arm.interval("ensemble_rel_spread", "test")
    np.testing.assert_array_equal(band.low, arrays[f"{wide}/ensemble_rel_spread_low/test"])
    np.testing.assert_array_equal(band.high, arrays[f"{wide}/ensemble_rel_spread_high/test"])
    np.testing.assert_array_equal(ising.data("removed", "random"), arrays["data/removed_random"])
    np.testing.assert_array_equal(ising.data("energy_std"), arrays["data/energy_std"])
    np.testing.assert_array_equal(ising.array("times"), arrays["times"])
    assert ising.arm("ntk_mlp_aug").kind == "ntk"
    # the arms of a run without its config are the prefixes of its keys
    assert Results("ising", arrays).arms == ising.arms


def test_other_layouts_read_the_stored_arrays():
    h = Results("histology", *stored_results("histology", "reference"))
    acc = h.arm("D4").interval("accuracy_patches", "test")
    assert (acc.estimate, acc.low, acc.high) == tuple(h.arrays["D4/test/accuracy_patches"])
    band = h.arm("plain").interval("kl_D4", "noise")
    np.testing.assert_array_equal(band.high, h.arrays["plain/noise/kl_D4_high"])
    f = Results("fashion_mnist", *stored_results("fashion_mnist", "reference"))
    key = f"c{f.config['widths'][0]}_C4"
    iv = f.interval(key, "interval/acc_full", "test", "ensemble")
    assert (iv.estimate, iv.low, iv.high) == tuple(f.arrays[f"{key}/interval/acc_full/test"][1])


@pytest.mark.parametrize("call,names", [
    (lambda r: r.arm("mlp_w2049_aug"), ["mlp_w2048_aug", "cnn_plain", "ntk_mlp_aug"]),
    (lambda r: r.arm("cnn_aug").get("mve_sprad", "test"), ["mve_spread", "mve_rel_spread"]),
    (lambda r: r.arm("cnn_aug").ensemble_sprad("test"), ["ensemble_spread"]),
    (lambda r: r.arm("cnn_aug").get("mve_rmse", "gaussian"), ["test", "other_T", "random"]),
    (lambda r: r.arm("cnn_aug").mve("mve_spread", "tset"), ["test", "gaussian"]),
    (lambda r: r.data("x", "Test"), ["test", "other_T"]),
    (lambda r: r.data("removd", "test"), ["removed"]),
    (lambda r: r.array("time"), ["times"]),
    (lambda r: r.arm("cnn_aug").interval("mve_spread", "test", row="ensembles"), ["member", "difference"]),
])
def test_misspelt_names_raise_a_key_error_listing_the_valid_ones(ising, call, names):
    with pytest.raises(KeyError) as err:
        call(ising)
    for name in names:
        assert name in str(err.value)


def test_wrong_layout_and_absent_entries_are_rejected(ising):
    arm = ising.arm("cnn_aug")
    with pytest.raises(UnknownName, match="stored as 'triple', not as table"):
        arm.mve("slope_spread", "test")
    with pytest.raises(UnknownName, match="arm-level array"):
        arm.get("loss", "test")
    with pytest.raises(ValueError, match="applies to tables only"):
        arm.interval("slope_spread", "test", row="member")
    # declared by the schema, not produced by this config: the reference run has no SO(2) arms
    f = Results("fashion_mnist", *stored_results("fashion_mnist", "reference"))
    with pytest.raises(UnknownName, match="not stored in this run"):
        f.arm(f"c{f.config['widths'][0]}_C4").get("so2/logits", "test")
    with pytest.raises(KeyError, match="valid: tour, ising, fashion_mnist, histology"):
        schema("isign")
    assert set(SCHEMAS) == {"tour", "ising", "fashion_mnist", "histology"}


def test_no_metric_is_shadowed_by_an_arm_attribute():
    """``arm.<metric>(set)`` reaches every identifier-named metric: none is an attribute of Arm."""
    from eqlib.results import Arm

    taken = {name for name in dir(Arm) if not name.startswith("__")} | {"name", "kind", "_results", "_entries"}
    for experiment in SCHEMAS:
        s = schema(experiment)
        for kind in s.kinds:
            assert not taken & set(s.entries(kind)), (experiment, kind, taken & set(s.entries(kind)))


# ------------------------------------------------------------------- no f-string result keys

NOTEBOOKS = ("book/ising.ipynb", "book/fashion_mnist.ipynb", "book/histology.ipynb", "book/reproduction.ipynb")
MODULES = ("eqlib/report.py", "tools/results_table.py", "eqlib/plots/ising.py", "eqlib/plots/fashion.py",
           "eqlib/plots/histology.py", "eqlib/plots/experiments.py")
SUMMARIES = ("eqlib/experiments/ising.py", "eqlib/experiments/fashion_mnist.py", "eqlib/experiments/histology.py")
#: A subscript with an f-string key: ``arrays[f"{key}/ensemble_acc/test"]``, ``a[f'...']``;
#: filling a dict of one's own (``out[f"{mode}: ..."] = ...``) is not reading a result.
F_KEY = re.compile(r"[\w\)\]]\[f[\"']")
F_ASSIGN = re.compile(r"\[f([\"'])[^\"']*\1\](\[[^\]]*\])*\s*=[^=]")


def _code_cells(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def _summary_source(path: Path) -> str:
    text = path.read_text()
    start = text.index("\ndef _summary(")
    end = text.find("\ndef ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def _offending(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if F_KEY.search(line) and not F_ASSIGN.search(line)]


def test_pattern_finds_f_string_keys():
    """The grep is not vacuous: it finds the old spellings and passes the new ones."""
    assert _offending('x = arrays[f"{key}/ensemble_acc/test"]\ny = a[f\'{k}/mve_spread/{n}\'][1]')
    assert _offending('v = SUMMARY[key][mode][f"D4/{name}"]')
    assert _offending('ok = arrays[f"{k}/loss"] == 0')
    assert not _offending('v = res.arm(key).ensemble_acc("test")\nrows = [f"| {x} |"]\nprint(f"{a}")')
    assert not _offending('out[f"{mode}: KL falls"] = (True, False)')
    assert not _offending('entry[f"accuracy_{name}"]["members"] = 1')


@pytest.mark.parametrize("path", NOTEBOOKS + MODULES + SUMMARIES)
def test_no_f_string_result_keys(path):
    p = ROOT / path
    text = (_code_cells(p) if p.suffix == ".ipynb" else
            _summary_source(p) if path in SUMMARIES else p.read_text())
    bad = _offending(text)
    assert not bad, f"{path} addresses results with f-string keys (use eqlib.results): {bad[:5]}"
