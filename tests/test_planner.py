"""The ensemble-size planner (eqlib.planner): r(M)² = a + b/M, its estimates and intervals."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from eqlib.breaking import gaussian_members
from eqlib.experiments.ising import expected_squared_orbit_spread, orbit_blocks
from eqlib.groups import get_group
from eqlib.metrics import orbit_spread
from eqlib.models import mlp
from eqlib.planner import (SpreadModel, disjoint_rms_spreads, plan_from_kernel, plan_from_members,
                           required_members, rms_spread, rms_spread_interval,
                           spread_model_from_members, spread_model_from_moments)

ORDER, N = 4, 6


def _moments(seed: int, d: int = 1):
    """A non-invariant mean (|G|, n, d), a random PSD covariance (|G|·n, |G|·n) and its root."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(ORDER, N, d)) * 0.3
    root = rng.normal(size=(ORDER * N, ORDER * N)) / np.sqrt(ORDER * N)
    return mean, root @ root.T, root


def test_rms_spread_over_all_subsets_is_exact():
    members = np.random.default_rng(0).normal(size=(6, ORDER, N, 2))
    sizes = [1, 2, 3, 6]
    est = rms_spread_interval(members, sizes).estimate
    for size, value in zip(sizes, est):
        brute = [np.mean(orbit_spread(members[list(s)].mean(0)) ** 2)
                 for s in itertools.combinations(range(6), size)]
        assert abs(value ** 2 - np.mean(brute)) < 1e-12


def test_moments_model_matches_independent_formula_and_members():
    mean, cov, root = _moments(1, d=2)
    model = spread_model_from_moments(mean, cov)
    assert np.isclose(model.floor, np.mean(orbit_spread(mean) ** 2), rtol=1e-12)
    b = 2 * expected_squared_orbit_spread(orbit_blocks(cov, ORDER)).mean()
    assert np.isclose(model.scale, b, rtol=1e-12)
    noise = np.random.default_rng(2).normal(size=(20000, ORDER * N, 2))
    draws = mean + np.einsum("pq,kqd->kpd", root, noise).reshape((-1,) + mean.shape)
    est = spread_model_from_members(draws)
    assert abs(est.floor - model.floor) < 0.02 * model.floor
    assert abs(est.scale - model.scale) < 0.03 * model.scale


def test_required_members_is_the_smallest_size():
    model = SpreadModel(floor=0.01, scale=0.5)
    for target in (0.15, 0.3, 0.7, 2.0):
        m = required_members(model, target)
        assert rms_spread(model, [m])[0] <= target
        assert m == 1 or rms_spread(model, [m - 1])[0] > target
    assert required_members(model, 0.099) == math.inf                  # τ² < a: below the floor
    assert required_members(SpreadModel(0.0, 1.0), 0.5) == 4


def test_member_interval_covers_the_truth():
    mean, cov, _ = _moments(3)
    truth = spread_model_from_moments(mean, cov)
    r2_true = truth.floor + truth.scale / 4
    hits = 0
    for rep in range(300):
        members = gaussian_members(mean, cov, 6, seed=[4, rep])
        s = rms_spread_interval(members, [4])
        hits += s.low[0] ** 2 <= r2_true <= s.high[0] ** 2
    assert 0.88 <= hits / 300 <= 1.0


def test_plan_from_members_brackets_its_point():
    mean, cov, _ = _moments(5)
    members = gaussian_members(mean, cov, 5, seed=6)
    target = 1.2 * np.sqrt(spread_model_from_members(members).floor + 0.05)
    plan = plan_from_members(members, target)
    assert plan.low <= plan.members <= plan.high
    assert plan.level == 0.95 and plan.target == target
    # an estimated floor below zero is noise: the plan uses a = 0, i.e. ⌈b̂/τ²⌉
    invariant = np.broadcast_to(np.random.default_rng(9).normal(size=(5, 1, N, 1)), (5, ORDER, N, 1))
    members = invariant + 0.1 * np.random.default_rng(10).normal(size=(5, ORDER, N, 1))
    model = spread_model_from_members(members)
    assert model.floor < 0
    assert plan_from_members(members, 0.03).members == math.ceil(model.scale / 0.03 ** 2)


def test_plan_from_kernel_sees_the_floor_without_augmentation():
    group = get_group("C4")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(6, 4, 4, 1)).astype(np.float32)
    y = rng.normal(size=(6, 1))
    kernel_fn = mlp([64], out=1).kernel_fn
    aug = plan_from_kernel(kernel_fn, x, y, x[:4], group, 20.0, 0.2, method="spectral")
    plain = plan_from_kernel(kernel_fn, x, y, x[:4], group, 20.0, 0.2, augment=False,
                             method="spectral")
    assert aug.model.floor < 1e-12 * aug.model.scale
    assert plain.model.floor > 1e-3 * plain.model.scale
    assert aug.members < math.inf
    below = 0.5 * np.sqrt(plain.model.floor)
    assert plan_from_kernel(kernel_fn, x, y, x[:4], group, 20.0, below, augment=False,
                            method="spectral").members == math.inf


def test_disjoint_spreads_match_orbit_spread():
    members = np.random.default_rng(8).normal(size=(7, ORDER, N, 3))
    got = disjoint_rms_spreads(members, 3)
    want = [np.sqrt(np.mean(orbit_spread(members[s:s + 3].mean(0)) ** 2)) for s in (0, 3)]
    assert got.shape == (2,) and np.allclose(got, want, rtol=1e-12)


def test_bad_input():
    model = SpreadModel(0.0, 1.0)
    members = np.zeros((4, ORDER, N, 1))
    with pytest.raises(ValueError, match="positive number"):
        required_members(model, 0.0)
    with pytest.raises(ValueError, match="at least 2 members"):
        spread_model_from_members(members[:1])
    with pytest.raises(ValueError, match="at least 3 members"):
        rms_spread_interval(members[:2], [1])
    with pytest.raises(ValueError, match=r"\(k, \|G\|, n, d\)"):
        spread_model_from_members(members[0])
    with pytest.raises(ValueError, match="positive integers"):
        rms_spread_interval(members, [0])
    with pytest.raises(ValueError, match="covariance must be"):
        spread_model_from_moments(np.zeros((ORDER, N, 1)), np.eye(3))
    with pytest.raises(ValueError, match="outside 1..4"):
        disjoint_rms_spreads(members, 5)
