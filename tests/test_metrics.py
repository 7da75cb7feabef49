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
    for chunk in (1, 2, 3, 10):                             # chunks of inputs: the same array
        np.testing.assert_allclose(orbit_outputs(members, x, C4, chunk=chunk), out, rtol=1e-6)
    with pytest.raises(ValueError, match="chunk"):
        orbit_outputs(members, x, C4, chunk=0)


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
