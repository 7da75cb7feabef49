"""Predictive variance, its share along orbits, and AUROC (checked against a brute-force pair count)."""
import numpy as np
import pytest

from eqlib.uncertainty import (auroc, bootstrap_auroc, max_softmax, mutual_information, predictive_variance,
                               softmax, within_orbit_share, within_orbit_share_interval)


def _pairs(scores_in, scores_out) -> float:
    """Brute force: the share of (in, out) pairs ordered correctly, ties counting one half."""
    wins = sum((o > i) + 0.5 * (o == i) for i in scores_in for o in scores_out)
    return wins / (len(scores_in) * len(scores_out))


@pytest.mark.parametrize("n_in, n_out, levels", [(7, 5, 3), (40, 31, 6), (25, 60, 1000)])
def test_auroc_equals_the_pair_count_with_ties(rng, n_in, n_out, levels):
    a = rng.integers(0, levels, n_in).astype(float)            # few levels: many ties
    b = rng.integers(0, levels, n_out).astype(float) + 0.5 * rng.integers(0, 2, n_out)
    assert auroc(a, b) == pytest.approx(_pairs(a, b), abs=1e-12)


def test_auroc_limits_and_bad_input():
    assert auroc([0, 1, 2], [3, 4]) == 1.0
    assert auroc([3, 4], [0, 1, 2]) == 0.0
    assert auroc([1, 1, 1], [1, 1]) == 0.5
    with pytest.raises(ValueError, match="scores_in must be a non-empty 1-d"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="scores_out contains non-finite"):
        auroc([1.0], [np.nan])


def test_bootstrap_auroc_is_seeded_and_covers_the_estimate(rng):
    a, b = rng.normal(0, 1, 200), rng.normal(1, 1, 150)
    iv = bootstrap_auroc(a, b, num_bootstrap=300, seed=3)
    again = bootstrap_auroc(a, b, num_bootstrap=300, seed=3)
    assert iv.low < iv.estimate < iv.high and (iv.low, iv.high) == (again.low, again.high)
    assert 0.6 < iv.estimate < 0.85                     # Φ(1/√2) ≈ 0.76 for these normals
    with pytest.raises(ValueError, match="num_bootstrap"):
        bootstrap_auroc(a, b, num_bootstrap=0)


def test_predictive_variance_and_mutual_information(rng):
    logits = rng.normal(size=(5, 7, 10))                      # (M, n, C)
    p = softmax(logits)
    brute = np.array([[np.mean((p[:, i, c] - p[:, i, c].mean()) ** 2) for c in range(10)]
                      for i in range(7)]).sum(-1)
    np.testing.assert_allclose(predictive_variance(logits), brute, rtol=1e-12)
    np.testing.assert_allclose(predictive_variance(np.moveaxis(logits, 0, 1), axis=1), brute, rtol=1e-12)
    same = np.broadcast_to(logits[:1], logits.shape)
    np.testing.assert_allclose(predictive_variance(same), 0, atol=1e-15)
    np.testing.assert_allclose(mutual_information(same), 0, atol=1e-12)
    assert (mutual_information(logits) > 0).all()
    np.testing.assert_allclose(max_softmax(logits), p.max(-1))
    with pytest.raises(ValueError, match="at least 2 members"):
        predictive_variance(logits[:1])
    with pytest.raises(ValueError, match="class axis"):
        predictive_variance(logits, axis=-1)


def test_orbit_closed_ensemble_has_invariant_variance_but_not_member_confidence(rng):
    """Members with f_m(g·x) = f_{m+g}(x) (an ensemble closed under C4, as in the infinite limit):
    the ensemble's variance is constant on every orbit, each member's confidence is not."""
    base = rng.normal(size=(4, 50, 10)) * 2                   # f_m(x) for m = 0..3
    orbit = np.stack([np.roll(base, -g, axis=0) for g in range(4)], 1)   # (M, |G|, n, C)
    var = predictive_variance(orbit)                          # (|G|, n)
    np.testing.assert_allclose(var, np.broadcast_to(var[:1], var.shape), rtol=1e-12)
    assert within_orbit_share(var) == pytest.approx(0, abs=1e-12)
    assert within_orbit_share(max_softmax(orbit)).mean() > 0.3


def test_within_orbit_share_limits_and_interval(rng):
    invariant = np.broadcast_to(rng.normal(size=(1, 30)), (4, 30))
    assert within_orbit_share(invariant) == 0
    along = np.broadcast_to(rng.normal(size=(4, 1)), (4, 30))      # orbit means all equal
    assert within_orbit_share(along) == pytest.approx(1)
    mixed = rng.normal(size=(3, 4, 30))
    iv = within_orbit_share_interval(mixed, num_bootstrap=200, seed=1)
    assert iv.low <= iv.estimate <= iv.high
    assert iv.estimate == pytest.approx(within_orbit_share(mixed).mean())
    with pytest.raises(ValueError, match="scores_on_orbit must be"):
        within_orbit_share(np.zeros(4))
