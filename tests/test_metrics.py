"""eqlib.metrics: OSP, orbit spread, equivariance error, accuracy and orbit_outputs on hand-made cases."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from eqlib.groups import CyclicRotations, SpinFlip, Trivial, octahedral_group
from eqlib.metrics import (
    accuracy,
    ensemble_mean,
    ensemble_sizes,
    equivariance_error,
    orbit_outputs,
    orbit_same_prediction,
    orbit_spread,
    subensemble_means,
    subensemble_statistics,
)

C4 = CyclicRotations(4)
O = octahedral_group()


def one_hot_logits(classes) -> np.ndarray:
    """Logits ``(|G|, n, 3)`` whose argmax is ``classes[g][i]``."""
    classes = np.asarray(classes)
    return np.eye(3)[classes] * 2.0 + 0.1


# ------------------------------------------------------------------------------ OSP

def test_osp_invariant_predictions(rng):
    logits = np.broadcast_to(rng.normal(size=(1, 5, 3)), (4, 5, 3))
    osp = orbit_same_prediction(logits)
    np.testing.assert_array_equal(osp.counts, [4] * 5)
    assert osp.mean == 4 and osp.fraction == 1.0 and osp.consistent == 1.0 and osp.group_order == 4


def test_osp_known_counts():
    # rows: group elements (0 = identity); columns: inputs
    classes = [[0, 0, 2],
               [0, 1, 2],
               [0, 2, 0],
               [0, 1, 0]]
    osp = orbit_same_prediction(one_hot_logits(classes))
    np.testing.assert_array_equal(osp.counts, [4, 1, 2])
    np.testing.assert_allclose(osp.mean, 7 / 3)
    np.testing.assert_allclose(osp.fraction, 7 / 12)
    np.testing.assert_allclose(osp.consistent, 1 / 3)


def test_osp_keeps_leading_member_axis():
    a = one_hot_logits([[0, 0, 2], [0, 1, 2], [0, 2, 0], [0, 1, 0]])
    b = one_hot_logits([[1, 1, 1], [1, 1, 1], [1, 1, 1], [2, 1, 1]])
    osp = orbit_same_prediction(np.stack([a, b]))
    np.testing.assert_array_equal(osp.counts, [[4, 1, 2], [3, 4, 4]])
    np.testing.assert_allclose(osp.mean, [7 / 3, 11 / 3])
    np.testing.assert_allclose(osp.consistent, [1 / 3, 2 / 3])
    assert osp.counts.shape == (2, 3) and osp.fraction.shape == (2,)


# ------------------------------------------------------------------------------ orbit spread

def test_orbit_spread(rng):
    invariant = np.broadcast_to(rng.normal(size=(1, 3, 2)), (4, 3, 2))
    np.testing.assert_allclose(orbit_spread(invariant), np.zeros(3), atol=1e-12)
    # four outputs ±e1, ±e2 around mean 0: every deviation has norm 1, spread 1
    square = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])[:, None, :]
    np.testing.assert_allclose(orbit_spread(square), [1.0])
    # scalar outputs a, b: spread |a − b| / 2; with a member axis kept
    two = np.array([[[[0.0]], [[2.0]]], [[[1.0]], [[7.0]]]])  # (M=2, |G|=2, n=1, d=1)
    np.testing.assert_allclose(orbit_spread(two), [[1.0], [3.0]])


# ------------------------------------------------------------------------------ equivariance error

def _sum_points(x):
    """Sum of a set of 3-vectors ``(N, k, 3) -> (N, 3)``: exactly O-equivariant."""
    return x.sum(1)


def test_equivariance_error_zero_for_equivariant_function(rng):
    x = rng.normal(size=(4, 5, 3)).astype(np.float32)
    out = orbit_outputs(_sum_points, x, O)
    assert out.shape == (24, 4, 3)
    np.testing.assert_allclose(equivariance_error(out, O, act_y=O.act), np.zeros(4), atol=1e-5)
    # the same outputs are far from invariant, and a constant offset breaks equivariance
    assert (equivariance_error(out, O) > 0.1).all()
    shifted = orbit_outputs(lambda v: v.sum(1) + jnp.asarray([1.0, 0.0, 0.0]), x, O)
    assert (equivariance_error(shifted, O, act_y=O.act) > 0.1).all()


def test_equivariance_error_hand_computed():
    Z2 = SpinFlip()
    x = np.array([[0.5], [-2.0]], np.float32)
    out = orbit_outputs(lambda v: v + 1.0, x, Z2)  # f(−x) − (−f(x)) = 2
    np.testing.assert_allclose(out[:, :, 0], [[1.5, -1.0], [0.5, 3.0]])
    np.testing.assert_allclose(equivariance_error(out, Z2, act_y=Z2.act), [2.0, 2.0])
    np.testing.assert_allclose(equivariance_error(out, Z2), [1.0, 4.0])  # invariance: |f(−x) − f(x)| = 2|x|
    np.testing.assert_array_equal(equivariance_error(np.ones((2, 1, 3, 2)), Trivial()), np.zeros((2, 3)))


def test_equivariance_error_order_mismatch():
    with pytest.raises(ValueError, match="elements"):
        equivariance_error(np.zeros((3, 2, 1)), C4)


# ------------------------------------------------------------------------------ accuracy, means

def test_accuracy():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    labels = np.array([0, 1, 1, 0])
    assert accuracy(logits, labels) == 0.5
    members = np.stack([logits, -logits])
    np.testing.assert_allclose(accuracy(members, labels), [0.5, 0.5])
    np.testing.assert_allclose(accuracy(members, np.array([0, 1, 0, 1])), [1.0, 0.0])
    with pytest.raises(ValueError):
        accuracy(logits, labels[:3])


def test_ensemble_mean(rng):
    outs = rng.normal(size=(5, 3, 2))
    np.testing.assert_allclose(ensemble_mean(outs), outs.mean(0))
    np.testing.assert_allclose(ensemble_mean(outs, axis=1), outs.mean(1))


def test_ensemble_sizes():
    np.testing.assert_array_equal(ensemble_sizes((1, 2, 5, 200), 10), [1, 2, 5, 10])
    np.testing.assert_array_equal(ensemble_sizes((), 3), [1, 3])
    with pytest.raises(ValueError, match="members"):
        ensemble_sizes((1,), 0)


def test_subensemble_means_are_disjoint_blocks(rng):
    outs = rng.normal(size=(7, 3, 2))                       # M = 7 members
    np.testing.assert_allclose(subensemble_means(outs, 1), outs)
    np.testing.assert_allclose(subensemble_means(outs, 3), [outs[0:3].mean(0), outs[3:6].mean(0)])  # 7th unused
    np.testing.assert_allclose(subensemble_means(outs, 7), outs.mean(0, keepdims=True))
    timed = rng.normal(size=(2, 4, 5))                      # (T, M, n): members on axis 1
    np.testing.assert_allclose(subensemble_means(timed, 2, axis=1), timed.reshape(2, 2, 2, 5).mean(2))
    for bad in (0, 8):
        with pytest.raises(ValueError, match="outside 1..7"):
            subensemble_means(outs, bad)


# ------------------------------------------------------------------------------ orbit_outputs

def test_orbit_outputs_shape_and_order(rng):
    x = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)

    def members(batch):  # (N, 4, 4, 1) -> (M=2, N, 2): top-left pixel and its square, scaled per member
        corner = batch[:, 0, 0, :]
        return jnp.stack([m * jnp.concatenate([corner, corner ** 2], -1) for m in (1.0, 3.0)])

    out = np.asarray(orbit_outputs(members, x, C4))
    assert out.shape == (2, 4, 3, 2)
    for g in range(4):
        corner = np.rot90(x, g, axes=(1, 2))[:, 0, 0, 0]
        np.testing.assert_allclose(out[0, g, :, 0], corner, atol=1e-6)
        np.testing.assert_allclose(out[1, g, :, 1], 3 * corner ** 2, atol=1e-5)
    for per_call in (1, 2, 3, 10):                          # inputs per call: the same array
        np.testing.assert_allclose(orbit_outputs(members, x, C4, inputs_per_call=per_call), out, rtol=1e-6)
    with pytest.raises(ValueError, match="inputs_per_call"):
        orbit_outputs(members, x, C4, inputs_per_call=0)


# ------------------------------------------------------------------------------ bad shapes

@pytest.mark.parametrize("metric", [orbit_same_prediction, orbit_spread,
                                    lambda o: equivariance_error(o, C4)], ids=["osp", "spread", "equiv"])
@pytest.mark.parametrize("shape", [(4,), (4, 3)])
def test_bad_shapes_rejected(metric, shape):
    with pytest.raises(ValueError, match="expects outputs"):
        metric(np.zeros(shape))


def test_accuracy_rejects_rank_one_logits():
    with pytest.raises(ValueError):
        accuracy(np.array([0.1, 0.9, 0.3]), np.array([1, 1, 1]))


# ------------------------------------------------------------------------------ aligned orbit spread

def test_aligned_orbit_spread_vanishes_for_equivariant_functions():
    x = np.random.default_rng(3).normal(size=(5, 2, 3)).astype(np.float32)
    cross = lambda p: jnp.cross(p[:, 0], p[:, 1])
    out = np.asarray(orbit_outputs(cross, x, O))
    assert orbit_spread(out).min() > 0.1                        # the plain spread sees the rotation
    assert orbit_spread(out, O, O.act).max() < 1e-5             # aligned: zero for equivariant f
    assert equivariance_error(out, O, O.act).max() < 1e-5
    # aligned spread² = mean_g ‖d_g‖² − ‖mean_g d_g‖², d_g = ρ_Y(g)⁻¹ f(ρ_X(g)x) − f(x)
    noisy = out + np.random.default_rng(4).normal(size=out.shape) * 0.1
    aligned = np.stack([np.asarray(O.act(O.inverse(g), noisy[g])) for g in range(O.order)])
    d = aligned - aligned[:1]
    expected = np.sqrt((d ** 2).sum(-1).mean(0) - (d.mean(0) ** 2).sum(-1))
    assert np.allclose(orbit_spread(noisy, O, O.act), expected, rtol=1e-4)
    # trivial act_y: the plain spread
    assert np.allclose(orbit_spread(noisy, O, lambda g, y: y), orbit_spread(noisy))


def test_aligned_orbit_spread_needs_the_group():
    out = np.zeros((4, 2, 2))
    with pytest.raises(ValueError):
        orbit_spread(out, act_y=lambda g, y: y)
    with pytest.raises(ValueError):
        orbit_spread(np.zeros((3, 2, 2)), C4, lambda g, y: y)


# ------------------------------------------------------------------ sub-ensemble statistics

def test_subensemble_statistics_disjoint_blocks_and_reductions(rng):
    outputs = rng.normal(size=(7, 3, 2))                                   # M = 7 members
    stats = subensemble_statistics(outputs, [1, 2, 3, 7], lambda e: e.sum((1, 2)), num_bootstrap=0)
    assert [len(v) for v in stats.samples] == [7, 3, 2, 1]                # ⌊7/k⌋ disjoint blocks
    for k, values in zip(stats.sizes, stats.samples):
        np.testing.assert_allclose(values, subensemble_means(outputs, k).sum((1, 2)))
    np.testing.assert_allclose(stats.estimate, [v.mean() for v in stats.samples])
    np.testing.assert_allclose(stats.std, [v.std() for v in stats.samples])
    assert stats.low is None and stats.high is None
    rms = subensemble_statistics(outputs, [1, 2], lambda e: e.sum((1, 2)), reduce="rms", num_bootstrap=0)
    np.testing.assert_allclose(rms.estimate, [np.sqrt((v ** 2).mean()) for v in stats.samples[:2]])


def test_subensemble_statistics_member_axis_and_dict_statistics(rng):
    outputs = rng.normal(size=(5, 8, 4, 3))                               # (T, M, |G|, n)
    stats = subensemble_statistics(outputs, [1, 2, 8], lambda e: {"a": e.mean((2, 3)), "b": e[..., 0, 0]},
                                   axis=1, num_bootstrap=50)
    assert set(stats) == {"a", "b"}
    assert stats["a"].estimate.shape == (3, 5) and stats["a"].low.shape == (3, 5)
    moved = subensemble_statistics(np.moveaxis(outputs, 1, 0), [1, 2, 8], lambda e: e.mean((2, 3)),
                                   num_bootstrap=50)
    np.testing.assert_allclose(moved.estimate, stats["a"].estimate)
    np.testing.assert_allclose(moved.low, stats["a"].low)


def test_subensemble_statistics_random_subsets_are_seeded_draws_without_replacement(rng):
    outputs = rng.normal(size=(6, 2))
    stats = subensemble_statistics(outputs, [2, 6], lambda e: e[:, 0], subsets="random", num_resamples=5,
                                   seed=3, num_bootstrap=0)
    draw = np.random.default_rng(3)
    expected = [[outputs[draw.choice(6, size=k, replace=False)].mean(0)[0] for _ in range(5)] for k in (2, 6)]
    np.testing.assert_allclose(np.stack(stats.samples), expected)
    np.testing.assert_allclose(stats.samples[1], outputs.mean(0)[0])       # all members: every draw


def test_subensemble_statistics_bootstrap_interval(rng):
    outputs = rng.normal(size=(400, 1))
    stats = subensemble_statistics(outputs, [1, 4, 400], lambda e: e[:, 0], num_bootstrap=2000, level=0.9)
    assert np.all(stats.low <= stats.estimate) and np.all(stats.estimate <= stats.high)
    # the percentile interval of a mean of S values: about ±1.645·std/√S
    half = (stats.high - stats.low)[:2] / 2
    expected = 1.645 * stats.std[:2] / np.sqrt([400, 100])
    np.testing.assert_allclose(half, expected, rtol=0.15)
    assert stats.low[2] == stats.high[2] == stats.estimate[2]              # one sub-ensemble: no spread
    again = subensemble_statistics(outputs, [1, 4, 400], lambda e: e[:, 0], num_bootstrap=2000, level=0.9)
    np.testing.assert_array_equal(again.low, stats.low)                   # fixed seed


def test_subensemble_statistics_bad_input(rng):
    outputs = rng.normal(size=(4, 3))
    mean = lambda e: e.mean(-1)                                           # noqa: E731
    for sizes in ([0], [5], [], [1.5], [[1, 2]]):
        with pytest.raises(ValueError, match="sizes"):
            subensemble_statistics(outputs, sizes, mean)
    with pytest.raises(ValueError, match="subsets"):
        subensemble_statistics(outputs, [1], mean, subsets="bootstrap")
    with pytest.raises(ValueError, match="reduce"):
        subensemble_statistics(outputs, [1], mean, reduce="median")
    with pytest.raises(ValueError, match="axis"):
        subensemble_statistics(outputs, [1], mean, axis=2)
    with pytest.raises(ValueError, match="sub-ensemble axis"):
        subensemble_statistics(outputs, [1], lambda e: e.mean())
    with pytest.raises(ValueError, match="num_resamples"):
        subensemble_statistics(outputs, [1], mean, subsets="random", num_resamples=0)
    with pytest.raises(ValueError, match="level"):
        subensemble_statistics(outputs, [1], mean, level=1.5)


# Today's four implementations, frozen verbatim before they were rewritten on top of
# subensemble_statistics: the rewritten callers must give the same numbers.

def _frozen_ising_orbit_metrics(outputs, counts, data, group, sizes, energy_std):
    from eqlib.experiments.ising import EVAL_SETS, SPIN_SETS
    T, M = outputs.shape[:2]
    metrics = {}
    for name, part in zip(EVAL_SETS, np.split(outputs, np.cumsum(counts)[:-1], axis=2)):
        orbit = part.reshape(T, M, group.order, -1, 1)
        metrics[f"member_spread/{name}"] = orbit_spread(orbit).mean(-1)
        spread_k, spread_k_std, rmse_k = [], [], []
        for k in sizes:
            ens = subensemble_means(orbit, k, axis=1)
            per_group = orbit_spread(ens).mean(-1)
            spread_k.append(per_group.mean(1))
            spread_k_std.append(per_group.std(1))
            if name in SPIN_SETS:
                err = ens[:, :, 0, :, 0] - data[f"y_{name}"][None, None, :, 0]
                rmse_k.append(energy_std * np.sqrt((err ** 2).mean(-1)).mean(1))
        metrics[f"ensemble_spread/{name}"] = np.stack(spread_k, 1)
        metrics[f"ensemble_spread_std/{name}"] = np.stack(spread_k_std, 1)
        full = orbit.mean(1)
        metrics[f"member_eqerr/{name}"] = equivariance_error(orbit, group).mean((1, 2))
        metrics[f"ensemble_eqerr/{name}"] = equivariance_error(full, group).mean(1)
        metrics[f"ensemble_orbit_output/{name}"] = full[..., 0]
        if name in SPIN_SETS:
            err = orbit[:, :, 0, :, 0] - data[f"y_{name}"][None, None, :, 0]
            metrics[f"member_rmse/{name}"] = energy_std * np.sqrt((err ** 2).mean(-1))
            metrics[f"ensemble_rmse/{name}"] = np.stack(rmse_k, 1)
    return metrics


def _frozen_subensemble_symmetry(logits, sizes):
    out = {"osp": [], "osp_std": [], "consistent": [], "spread": []}
    for k in sizes:
        ens = subensemble_means(logits, k)
        osp = orbit_same_prediction(ens)
        out["osp"].append(osp.fraction.mean())
        out["osp_std"].append(osp.fraction.std())
        out["consistent"].append(osp.consistent.mean())
        out["spread"].append(orbit_spread(ens).mean())
    return {key: np.asarray(value) for key, value in out.items()}


def _frozen_osp_by_ensemble_size(logits, sizes, labels=None):
    from eqlib.experiments.fashion_mnist import chance_osp
    M, order = logits.shape[:2]
    member = orbit_same_prediction(logits)
    out = {"member_osp": member.mean, "member_consistent": member.consistent, "member_chance": chance_osp(logits),
           "member_hist": np.stack([(member.counts == c).mean(-1) for c in range(1, order + 1)], -1)}
    stats = {k: [] for k in ("ensemble_osp", "ensemble_osp_std", "ensemble_consistent",
                             "ensemble_chance", "ensemble_acc", "ensemble_acc_orbit")}
    for k in sizes:
        ens = subensemble_means(logits, k)
        osp = orbit_same_prediction(ens)
        stats["ensemble_osp"].append(osp.mean.mean())
        stats["ensemble_osp_std"].append(osp.mean.std())
        stats["ensemble_consistent"].append(osp.consistent.mean())
        stats["ensemble_chance"].append(chance_osp(ens).mean())
        if labels is not None:
            stats["ensemble_acc"].append(accuracy(ens[:, 0], labels).mean())
            rotated = accuracy(ens.reshape(len(ens), -1, ens.shape[-1]), np.tile(labels, order))
            stats["ensemble_acc_orbit"].append(rotated.mean())
    full = orbit_same_prediction(logits.mean(0))
    out["ensemble_hist"] = np.asarray([(full.counts == c).mean() for c in range(1, order + 1)])
    out.update({k: np.asarray(v) for k, v in stats.items() if v})
    if labels is not None:
        out["member_acc"] = accuracy(logits[:, 0], labels)
        out["member_acc_orbit"] = accuracy(logits.reshape(M, -1, logits.shape[-1]), np.tile(labels, order))
    return out


def _frozen_spread_by_ensemble_size(logits, sizes):
    means, stds = [], []
    for k in sizes:
        ens = subensemble_means(logits, k)
        rms = np.sqrt((orbit_spread(ens) ** 2).mean(-1))
        means.append(np.sqrt((rms ** 2).mean()))
        stds.append(rms.std())
    return {"member_spread": np.sqrt((orbit_spread(logits) ** 2).mean(-1)), "ensemble_spread": np.asarray(means),
            "ensemble_spread_std": np.asarray(stds)}


def _frozen_subensemble_violation(outputs, sizes, num_resamples=64, seed=0, violation=orbit_spread):
    rng = np.random.default_rng(seed)
    result = np.empty((len(sizes), num_resamples))
    for a, size in enumerate(sizes):
        means = np.stack([outputs[rng.choice(len(outputs), size=int(size), replace=False)].mean(0)
                          for _ in range(num_resamples)])
        result[a] = np.asarray(violation(means)).mean(-1)
    return result


def _assert_same(new: dict, old: dict, exact_except=()):
    assert set(old) <= set(new), sorted(set(old) - set(new))      # new statistics may be added
    for key in old:
        assert new[key].shape == old[key].shape and new[key].dtype == old[key].dtype, key
        if key in exact_except:
            rtol = 4 * np.finfo(old[key].dtype).eps                        # summation order only
            np.testing.assert_allclose(new[key], old[key], rtol=rtol, atol=0, err_msg=key)
        else:
            np.testing.assert_array_equal(new[key], old[key], err_msg=key)


SIZES = np.array([1, 2, 3, 5, 8, 20])                                     # 20, 10, 6, 4, 2, 1 blocks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_consolidated_callers_equal_their_frozen_implementations(dtype):
    from eqlib.breaking import subensemble_violation
    from eqlib.experiments import fashion_mnist as fx
    from eqlib.experiments import histology as hx
    from eqlib.experiments import ising as ix

    rng = np.random.default_rng(7)
    logits = rng.normal(size=(20, 4, 9, 5)).astype(dtype)                  # (M, |G|, n, C)
    logits[::3] += logits[::3, :1]                                         # some members nearly invariant
    labels = rng.integers(0, 5, size=9)
    _assert_same(fx.osp_by_ensemble_size(logits, SIZES, labels), _frozen_osp_by_ensemble_size(logits, SIZES, labels))
    _assert_same(fx.osp_by_ensemble_size(logits, SIZES), _frozen_osp_by_ensemble_size(logits, SIZES))
    _assert_same(fx.spread_by_ensemble_size(logits, SIZES), _frozen_spread_by_ensemble_size(logits, SIZES))
    # the histology spread was one mean over (blocks × inputs), now the mean over blocks of the
    # mean over inputs: the same number up to the order of floating-point summation
    _assert_same(hx.subensemble_symmetry(logits, SIZES), _frozen_subensemble_symmetry(logits, SIZES),
                 exact_except=("spread",))
    accuracy_new = hx._measure(hx.QUICK, logits[:, :1].repeat(8, 1), SIZES, labels,
                               np.arange(len(labels)))["accuracy"]
    accuracy_old = np.asarray([accuracy(subensemble_means(logits[:, 0], k), labels).mean() for k in SIZES])
    np.testing.assert_array_equal(accuracy_new, accuracy_old)
    for violation in (orbit_spread, lambda o: equivariance_error(o, C4)):
        np.testing.assert_array_equal(subensemble_violation(logits, SIZES, 16, seed=2, violation=violation),
                                      _frozen_subensemble_violation(logits, SIZES, 16, seed=2, violation=violation))

    T, M, n = 3, 20, 4
    counts = [C4.order * n] * 4
    outputs = rng.normal(size=(T, M, sum(counts), 1)).astype(dtype)
    data = {f"y_{name}": rng.normal(size=(n, 1)).astype(dtype) for name in ix.SPIN_SETS}
    _assert_same(ix.orbit_metrics(outputs, counts, data, C4, SIZES, 1.7),
                 _frozen_ising_orbit_metrics(outputs, counts, data, C4, SIZES, 1.7))
