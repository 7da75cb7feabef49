"""The FashionMNIST experiment: its helpers on hand-made logits, and the runner end to end on a tiny preset."""
import json
import math

import numpy as np
import pytest

from eqlib.experiments import fashion_mnist as fx
from eqlib.runner import latest_results, run_experiment


def _data_available() -> bool:
    from eqlib.data.fashion_mnist import fashion_mnist_files
    from eqlib.data.mnist import mnist_files

    try:
        fashion_mnist_files("train", download=False)
        fashion_mnist_files("test", download=False)
        mnist_files("test", download=False)
    except (FileNotFoundError, ValueError, OSError):
        return False
    return True


needs_data = pytest.mark.skipif(not _data_available(), reason="FashionMNIST or MNIST files not found locally")

TINY = dict(n_train=256, n_eval=24, n_acc_eval=40, n_epoch_eval=8, widths=(2,), members=2, ensemble_sizes=(1, 2),
            epochs=1, batch_size=32, cont_width=2, cont_groups=("C8",), cont_members=2, n_angles=8, n_cont_eval=8)


def test_osp_by_ensemble_size_on_hand_made_logits():
    # 2 members, C2-like orbit of 2 elements, 3 inputs, 3 classes
    logits = np.zeros((2, 2, 3, 3))
    logits[0, :, :, 0] = 1.0                       # member 0: class 0 everywhere (invariant)
    logits[1, 0, :, 1] = 3.0                       # member 1: class 1 upright ...
    logits[1, 1, :, 2] = 3.0                       # ... class 2 when transformed
    labels = np.array([0, 1, 2])
    out = fx.osp_by_ensemble_size(logits, [1, 2], labels)
    np.testing.assert_allclose(out["member_osp"], [2.0, 1.0])
    np.testing.assert_allclose(out["member_consistent"], [1.0, 0.0])
    np.testing.assert_allclose(out["member_hist"], [[0, 1], [1, 0]])
    np.testing.assert_allclose(out["ensemble_osp"], [1.5, 1.0])       # M=1: mean of the two; M=2: logit mean
    np.testing.assert_allclose(out["ensemble_osp_std"], [0.5, 0.0])
    np.testing.assert_allclose(out["member_acc"], [1 / 3, 1 / 3])
    np.testing.assert_allclose(out["ensemble_acc"][1], 1 / 3)         # mean logits: class 1 upright
    assert out["ensemble_hist"].shape == (2,)
    with pytest.raises(ValueError, match="ensemble sizes"):
        fx.osp_by_ensemble_size(logits, [3])
    with pytest.raises(ValueError, match="M, \\|G\\|, n, C"):
        fx.osp_by_ensemble_size(logits[0], [1])


def test_spread_and_chance_on_hand_made_logits():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 6, 3))                                   # (|G|, n, C)
    twins = np.stack([np.roll(base, k, axis=0) for k in range(4)])      # rotated twins: their mean is invariant
    out = fx.spread_by_ensemble_size(twins, [1, 2, 4])
    assert out["member_spread"].shape == (4,) and np.allclose(out["member_spread"], out["member_spread"][0])
    np.testing.assert_allclose(out["ensemble_spread"][0], out["member_spread"][0])   # M = 1: the members
    assert out["ensemble_spread"][-1] < 1e-6                                          # the twin average is invariant
    constant = np.zeros((2, 4, 5, 3))
    constant[..., 1] = 1.0
    np.testing.assert_allclose(fx.chance_osp(constant), [4.0, 4.0])
    uniform = np.eye(4)[None, :, None, :]              # 4 orbit elements, 1 input, 4 classes: each class once
    np.testing.assert_allclose(fx.chance_osp(uniform), [1 + 3 * 4 * (1 / 4) ** 2])
    with pytest.raises(ValueError):
        fx.spread_by_ensemble_size(twins[0], [1])
    with pytest.raises(ValueError):
        fx.chance_osp(np.zeros((4, 3)))
    noise = fx.block_noise(3, 4, seed=0)
    assert noise.shape == (3, 28, 28, 1) and np.all(noise[:, :4, :4] == noise[:, :1, :1])
    coarse = noise[:, ::4, ::4]                        # rot90 maps the 7×7 block grid onto itself
    np.testing.assert_array_equal(np.rot90(noise, 1, axes=(1, 2))[:, ::4, ::4], np.rot90(coarse, 1, axes=(1, 2)))
    with pytest.raises(ValueError, match="divide 28"):
        fx.block_noise(2, 5)


def test_agreement_kappa_and_config_validation():
    logits = np.zeros((4, 5, 3))
    logits[:, :, 0] = 1
    logits[2, :2, 1] = 5                            # at angle index 2, two of five inputs change class
    np.testing.assert_allclose(fx.agreement_by_angle(logits), [1, 1, 0.6, 1])
    assert fx.covering_kappa(1) == pytest.approx(2.0)
    assert fx.covering_kappa(4) == pytest.approx(2 * math.sin(math.pi / 8))
    assert fx.covering_kappa(4) > fx.covering_kappa(8) > fx.covering_kappa(16)
    assert fx.member_architecture(36, head="gap").num_params((28, 28, 1)) == pytest.approx(120_000, rel=0.02)
    # flatten head: 3×3 convs 1→16→32→64 plus a dense layer on the 7×7×64 feature map
    convs = (9 * 1 + 1) * 16 + (9 * 16 + 1) * 32 + (9 * 32 + 1) * 64
    assert fx.member_architecture(16).num_params((28, 28, 1)) == convs + (7 * 7 * 64 + 1) * 10
    with pytest.raises(ValueError, match="head"):
        fx.FashionMNISTConfig(head="max")
    with pytest.raises(ValueError, match="members"):
        fx.FashionMNISTConfig(members=1)
    with pytest.raises(ValueError, match="cont_width"):
        fx.FashionMNISTConfig(widths=(8,), cont_width=16)
    with pytest.raises(ValueError, match="cont_groups"):
        fx.FashionMNISTConfig(cont_groups=("C5",))
    assert [k for k, *_ in fx.ensemble_keys(fx.QUICK)] == ["c8_C4", "c8_none", "c8_C8", "c8_C16"]
    assert fx.ensemble_keys(fx.REFERENCE)[:2] == [("c16_C4", 16, "C4", fx.REFERENCE.members),
                                                 ("c16_none", 16, "none", fx.REFERENCE.members)]
    assert fx.REFERENCE.n_train == 60_000 and fx.REFERENCE.members >= 16
    from eqlib.runner import get_experiment

    assert get_experiment("fashion_mnist").presets["reference"] == fx.REFERENCE


def test_orbit_statistics_members_against_ensemble():
    # two members, C2-like orbit: member 1 is member 0 with its orbit swapped (a rotated twin),
    # so the ensemble (mean logits) is exactly invariant while neither member is
    rng = np.random.default_rng(1)
    base = rng.normal(size=(2, 30, 4))                                    # (|G|, n, C)
    logits = np.stack([base, base[::-1]])                                 # (M=2, |G|, n, C)
    labels = base[0].argmax(-1)
    out = fx.orbit_statistics(logits, labels)
    assert set(out) == {"osp", "kl", "rel_spread", "acc", "acc_orbit"}
    for name, a in out.items():
        assert a.shape == (3, 3), name
        np.testing.assert_allclose(a[2, 0], a[1, 0] - a[0, 0], atol=1e-12)   # difference = ensemble − member
        assert np.all(a[:, 1] <= a[:, 0] + 1e-12) and np.all(a[:, 0] <= a[:, 2] + 1e-12)
    assert out["osp"][1, 0] == 2.0 and out["osp"][0, 0] < 2.0            # ensemble invariant, members not
    assert out["kl"][1, 0] < 1e-12 < out["kl"][0, 0]
    assert out["rel_spread"][1, 0] < 1e-6 < out["rel_spread"][0, 0]
    np.testing.assert_allclose(out["acc"][0, 0], ((base[0].argmax(-1) == labels).mean()
                                                  + (base[1].argmax(-1) == labels).mean()) / 2)
    table = fx.intervals_table(out, "{:.2f}")
    assert table["osp"]["ensemble"].startswith("2.00 [")
    cont = fx.continuous_by_ensemble_size(logits, [1, 2])
    np.testing.assert_allclose(cont["ensemble_kl"][0], cont["member_kl"].mean())
    assert cont["ensemble_kl"][1] < 1e-12 and cont["ensemble_rel_spread"][1] < 1e-6
    assert cont["ensemble_kl_std"].shape == (2,)
    with pytest.raises(ValueError, match="M, \\|G\\|, n, C"):
        fx.orbit_statistics(logits[0])


@needs_data
def test_runner_end_to_end_and_resume(tmp_path, capsys):
    path = run_experiment("fashion_mnist", preset="quick", root=tmp_path, **TINY)
    meta = json.loads(path.read_text())
    for key in ("experiment", "preset", "config", "seed", "summary", "provenance", "wall_time_s"):
        assert key in meta
    for key in ("versions", "device", "git", "timestamp"):
        assert key in meta["provenance"]
    assert meta["config"]["members"] == 2 and meta["config"]["n_train"] == 256
    assert meta["summary"]["ensemble_prediction"] == "mean of member logits"
    assert meta["summary"]["params"]["c2"] > 0
    assert meta["config"]["head"] == "flatten"

    arrays, loaded = latest_results("fashion_mnist", "quick", root=tmp_path, allow_modified=True)
    assert loaded["config_hash"] == meta["config_hash"]
    assert arrays["angles"].shape == (8,)
    for key, members in (("c2_C4", 2), ("c2_none", 2), ("c2_C8", 2)):
        assert arrays[f"{key}/loss"].shape == (1, members)                          # (epochs, M)
        steps = 256 // 32
        step_loss = arrays[f"{key}/first_epoch_step_loss"]                         # (M, steps)
        assert step_loss.shape == (members, steps) and step_loss.dtype == np.float32
        np.testing.assert_allclose(step_loss.mean(1), arrays[f"{key}/loss"][0], rtol=1e-5)
        iv = arrays[f"{key}/interval/acc_full/test"]
        assert iv.shape == (3, 3) and 0 <= iv[0, 0] <= 1
        assert arrays[f"{key}/member_acc_full/test"].shape == (members,)
        np.testing.assert_array_equal(arrays[f"{key}/epochs"], [0, 1])
        np.testing.assert_array_equal(arrays[f"{key}/sizes"], [1, 2])
        for name in fx.EVAL_SETS:
            assert arrays[f"{key}/member_osp/{name}"].shape == (members,)
            assert arrays[f"{key}/ensemble_osp/{name}"].shape == (2,)
            assert arrays[f"{key}/member_hist/{name}"].shape == (members, 4)
            np.testing.assert_allclose(arrays[f"{key}/member_hist/{name}"].sum(-1), 1.0)
            assert arrays[f"{key}/ensemble_hist/{name}"].shape == (4,)
            assert arrays[f"{key}/member_spread/{name}"].shape == (members,)
            assert arrays[f"{key}/ensemble_spread/{name}"].shape == (2,)
            assert arrays[f"{key}/member_chance/{name}"].shape == (members,)
            assert arrays[f"{key}/epoch/ensemble_spread/{name}"].shape == (2,)
            assert arrays[f"{key}/epoch/member_osp/{name}"].shape == (2, members)    # (epochs+1, M)
            assert arrays[f"{key}/epoch/ensemble_osp/{name}"].shape == (2,)
            osp = arrays[f"{key}/member_osp/{name}"]
            assert np.all((osp >= 1) & (osp <= 4))
            logits = arrays[f"{key}/logits/{name}"]
            assert logits.shape == (members, 4, 24, 10) and logits.dtype == np.float16
            # the stored statistics are recomputable from the stored float16 logits
            again = fx.orbit_statistics(logits, arrays["y_test"] if name == "test" else None)
            for stat, value in again.items():
                np.testing.assert_allclose(arrays[f"{key}/interval/{stat}/{name}"], value, rtol=1e-12)
            np.testing.assert_allclose(arrays[f"{key}/member_kl/{name}"], fx.STATISTICS["kl"](logits))
            assert arrays[f"{key}/ensemble_rel_spread/{name}"].shape == (2,)
            assert arrays[f"{key}/epoch/member_kl/{name}"].shape == (2, members)
            assert arrays[f"{key}/epoch/ensemble_rel_spread/{name}"].shape == (2,)
        assert arrays[f"{key}/member_acc/test"].shape == (members,)
        assert arrays[f"{key}/ensemble_acc_orbit/test"].shape == (2,)
        agreement = arrays[f"{key}/so2/ensemble_agreement/test"]
        assert agreement.shape == (8,) and agreement[0] == 1.0
        assert arrays[f"{key}/so2/member_agreement/test"].shape == (2, 8)
        assert arrays[f"{key}/so2/member_acc/test"].shape == (2, 8)
        assert arrays[f"{key}/so2/logits/test"].shape == (2, 8, 8, 10)
        assert arrays[f"{key}/so2/interval/kl/test"].shape == (3, 3)
    assert loaded["summary"]["c2_C8"]["so2"]["kappa"] == pytest.approx(fx.covering_kappa(8))

    capsys.readouterr()
    run_experiment("fashion_mnist", preset="quick", root=tmp_path, **TINY)
    out = capsys.readouterr().out
    assert out.count("resumed") == 4 and "computing" not in out     # data + three ensembles
    again, _ = latest_results("fashion_mnist", "quick", root=tmp_path, allow_modified=True)
    for key in arrays:
        np.testing.assert_array_equal(again[key], arrays[key])
