"""eqlib.breaking: sub-ensemble violations, their Gaussian prediction and tail bound, the Monte-Carlo split,
κ, the covering bound and its kernel constants."""
from __future__ import annotations

import numpy as np
import pytest

from eqlib.breaking import (covering_bound_constant, covering_radius, defect_variance, gaussian_members,
                            gaussian_tail_bound, member_defects, monte_carlo_split, orbit_lipschitz, phi_t,
                            predicted_subensemble_violation, relu_ntk, relu_ntk_lipschitz, relu_profile_sup,
                            rotation_matrices_2d, subensemble_violation, tail_exceedance)
from eqlib.convergence import fit_power_law
from eqlib.groups import CyclicRotations, MatrixGroup, octahedral_group, random_rotations
from eqlib.metrics import equivariance_error, orbit_spread

O = octahedral_group()


# ------------------------------------------------------------------------------ finite ensembles

def invariant_plus_noise(K: int, order: int = 4, n: int = 5, d: int = 2, seed: int = 0) -> np.ndarray:
    """Member outputs ``(K, |G|, n, d)``: an invariant mean plus i.i.d. unit Gaussian noise per entry."""
    rng = np.random.default_rng(seed)
    mean = np.broadcast_to(rng.normal(size=(1, 1, n, d)), (1, order, n, d))
    return mean + rng.normal(size=(K, order, n, d))


def test_subensemble_violation_shape_and_scaling():
    outputs = invariant_plus_noise(512)
    sizes = [1, 4, 16, 64]
    v = subensemble_violation(outputs, sizes, num_resamples=64, seed=1)
    assert v.shape == (4, 64) and np.all(v > 0)
    assert fit_power_law(sizes, v.mean(1))[0] == pytest.approx(-0.5, abs=0.05)
    # resampling is seeded
    np.testing.assert_array_equal(v, subensemble_violation(outputs, sizes, num_resamples=64, seed=1))


def test_subensemble_violation_zero_for_invariant_members():
    outputs = np.broadcast_to(np.random.default_rng(0).normal(size=(8, 1, 3, 1)), (8, 4, 3, 1))
    v = subensemble_violation(outputs, [1, 3, 8], num_resamples=5)
    np.testing.assert_allclose(v, 0.0, atol=1e-12)


def test_subensemble_violation_size_equal_pool_is_the_full_ensemble():
    outputs = invariant_plus_noise(6)
    v = subensemble_violation(outputs, [6], num_resamples=3)
    np.testing.assert_allclose(v, orbit_spread(outputs.mean(0)).mean(), rtol=1e-12)


def test_subensemble_violation_bad_input():
    outputs = invariant_plus_noise(4)
    with pytest.raises(ValueError, match="exceed"):
        subensemble_violation(outputs, [5])
    with pytest.raises(ValueError, match="positive integers"):
        subensemble_violation(outputs, [0, 2])
    with pytest.raises(ValueError, match="positive integers"):
        subensemble_violation(outputs, [1.5])
    with pytest.raises(ValueError, match="rank 4"):
        subensemble_violation(outputs[0], [1])
    with pytest.raises(ValueError, match="num_resamples"):
        subensemble_violation(outputs, [1], num_resamples=0)


def test_predicted_matches_resampled_gaussian_members():
    """Members drawn from N(μ, Σ) with μ invariant: resampled and predicted violations agree."""
    rng = np.random.default_rng(3)
    order, n = 4, 3
    A = rng.normal(size=(order * n, order * n))
    cov = A @ A.T / (order * n)
    mu = np.broadcast_to(rng.normal(size=(1, n, 1)), (order, n, 1))
    members = mu + np.einsum("pq,kq->kp", np.linalg.cholesky(cov), rng.normal(size=(2000, order * n))
                             ).reshape(2000, order, n, 1)
    sizes = [1, 4, 16]
    measured = subensemble_violation(members, sizes, num_resamples=400, seed=0).mean(1)
    predicted = predicted_subensemble_violation(mu, cov, sizes, num_samples=4000, seed=1).mean(1)
    np.testing.assert_allclose(measured, predicted, rtol=0.08)
    # an exactly invariant mean gives exactly the 1/√M law
    np.testing.assert_allclose(predicted * np.sqrt(sizes), predicted[0], rtol=1e-10)


def test_predicted_with_equivariance_error_and_nonequivariant_mean():
    """A non-equivariant mean leaves a floor as M grows: the prediction tends to the violation of μ."""
    rng = np.random.default_rng(0)
    n = 2
    mu = rng.normal(size=(O.order, n, 3))                       # not equivariant
    cov = np.eye(O.order * n)

    def violation(o):
        return equivariance_error(o, O, O.act)

    floor = violation(mu).mean()
    pred = predicted_subensemble_violation(mu, cov, [1, 10_000], num_samples=16, violation=violation).mean(1)
    assert pred[0] > pred[1] and pred[1] == pytest.approx(floor, rel=0.01)


def test_predicted_bad_input():
    mu = np.zeros((4, 2, 1))
    with pytest.raises(ValueError, match=r"\(8, 8\)"):
        predicted_subensemble_violation(mu, np.eye(6), [1])
    with pytest.raises(ValueError, match="symmetric"):
        predicted_subensemble_violation(mu, np.triu(np.ones((8, 8))), [1])
    with pytest.raises(ValueError, match="semi-definite"):
        predicted_subensemble_violation(mu, -np.eye(8), [1])
    with pytest.raises(ValueError, match="rank 3"):
        predicted_subensemble_violation(mu[0], np.eye(2), [1])


# ------------------------------------------------------------------------------ defects, MC split

def test_member_defects_vanish_for_equivariant_function():
    x = np.random.default_rng(0).normal(size=(5, 3))
    W = 2.0                                                   # f(x) = 2x is SO(3)-equivariant
    outputs = np.stack([W * np.asarray(O.act(g, x)) for g in range(O.order)])   # (|G|, n, 3)
    defects = member_defects(outputs[None], O, O.act)
    assert defects.shape == (1, O.order - 1, 5, 3)
    np.testing.assert_allclose(defects, 0.0, atol=1e-12)
    # with the trivial ρ_Y the same outputs are not invariant
    assert np.abs(member_defects(outputs, O)).max() > 0.1
    # the mean defect norm is the equivariance error
    outputs = np.random.default_rng(1).normal(size=(O.order, 5, 3))
    np.testing.assert_allclose(np.linalg.norm(member_defects(outputs, O, O.act), axis=-1).mean(0),
                               equivariance_error(outputs, O, O.act), rtol=1e-10)


def test_member_defects_bad_shape():
    with pytest.raises(ValueError, match="24"):
        member_defects(np.zeros((4, 2, 3)), O, O.act)


def test_monte_carlo_split_zero_mean_noise_has_no_systematic_part():
    rng = np.random.default_rng(0)
    split = monte_carlo_split(rng.normal(size=(64, 200)))
    assert split.total == pytest.approx(split.fluctuation, rel=0.3)
    assert abs(split.systematic) < 4 * split.systematic_stderr
    assert split.fluctuation == pytest.approx(1 / 64, rel=0.1)


def test_monte_carlo_split_recovers_bias():
    rng = np.random.default_rng(1)
    bias = 0.3
    split = monte_carlo_split(bias + rng.normal(size=(200, 500)))
    assert split.systematic == pytest.approx(bias ** 2, rel=0.1)
    assert split.systematic > 10 * split.systematic_stderr
    assert split.total == pytest.approx(split.systematic + split.fluctuation)


def test_monte_carlo_split_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        monte_carlo_split(np.zeros((1, 3)))
    assert np.isnan(monte_carlo_split(np.zeros((2, 3))).systematic_stderr)


# ------------------------------------------------------------------------------ κ and SO(2)

def test_rotation_matrices_2d_form_cyclic_group():
    k = 6
    mats = rotation_matrices_2d(2 * np.pi * np.arange(k) / k)
    group = MatrixGroup(mats, "C6")
    group.check_axioms()
    np.testing.assert_allclose(np.einsum("kji,kjl->kil", mats, mats), np.broadcast_to(np.eye(2), (k, 2, 2)), atol=1e-12)
    np.testing.assert_allclose(rotation_matrices_2d([np.pi / 2])[0] @ [1.0, 0.0], [0.0, 1.0], atol=1e-12)
    with pytest.raises(ValueError):
        rotation_matrices_2d([[0.0]])


@pytest.mark.parametrize("k", [2, 4, 8, 16])
def test_covering_radius_of_cyclic_rotations(k):
    """C_k covers SO(2) up to the angle gap π/k, i.e. ‖R(π/k) − 1‖ = 2 sin(π/(2k))."""
    group = rotation_matrices_2d(2 * np.pi * np.arange(k) / k)
    fine = rotation_matrices_2d(2 * np.pi * np.arange(4 * k * 16) / (4 * k * 16))
    assert covering_radius(group, fine) == pytest.approx(2 * np.sin(np.pi / (2 * k)), rel=1e-9)
    assert covering_radius(group, group) == pytest.approx(0.0, abs=1e-12)


def test_covering_radius_octahedral_in_so3():
    """O covers SO(3) much better than the 4 rotations about one axis, and not perfectly."""
    sample = random_rotations(2000, seed=0)
    kappa_o = covering_radius(O.matrices, sample)
    c4z = rotation_matrices_2d(np.pi / 2 * np.arange(4))
    c4z3 = np.zeros((4, 3, 3))
    c4z3[:, :2, :2], c4z3[:, 2, 2] = c4z, 1.0
    assert 0.5 < kappa_o < covering_radius(c4z3, sample) <= 2.0 + 1e-12


def test_covering_radius_bad_input():
    with pytest.raises(ValueError):
        covering_radius(np.eye(2)[None], np.eye(3)[None])
    with pytest.raises(ValueError):
        covering_radius(np.zeros((0, 2, 2)), np.eye(2)[None])


def test_image_rotations_covering_radius_reflects_interpolation():
    """Representation matrices of interpolated image rotations: C8 is not even a representation."""
    from eqlib.groups import SampledRotations, representation_matrix

    C8 = CyclicRotations(8)
    mats = np.stack([representation_matrix(C8, g, (6, 6, 1)) for g in range(8)])
    # ρ(r45°)·ρ(r45°) ≠ ρ(r90°): the C8 "representation" is only approximate on pixels
    assert np.abs(mats[1] @ mats[1] - mats[2]).max() > 0.05
    fine = SampledRotations.uniform(32)
    sample = np.stack([representation_matrix(fine, g, (6, 6, 1)) for g in range(32)])
    assert covering_radius(mats, sample) < covering_radius(mats[::2], sample)


# ------------------------------------------------------------------------------ orbit Lipschitz constant

def test_orbit_lipschitz_of_linear_map():
    """For f(x) = A x the constant on an orbit is at most ‖A‖ and at least its smallest singular value."""
    rng = np.random.default_rng(0)
    A = np.diag([3.0, 0.5])
    x = rng.normal(size=(4, 2))
    rot = rotation_matrices_2d(2 * np.pi * np.arange(50) / 50)
    points = np.einsum("sij,nj->sni", rot, x)                         # (S, n, 2)
    L = orbit_lipschitz(points @ A.T, points)
    assert L.shape == (4,) and np.all(L <= 3.0 + 1e-9) and np.all(L >= 0.5 - 1e-9)
    assert np.all(L > 2.9)                                             # some chord points along the long axis


def test_orbit_lipschitz_bounds_covering_violation():
    """Lemma 6.2 on a C4-equivariant f: its SO(2) violation is below (L‖x‖ + ‖f(x)‖)·κ."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 2))
    S = rotation_matrices_2d(2 * np.pi * np.arange(64) / 64)
    points = np.einsum("sij,nj->sni", S, x)

    def f(p):                                     # equivariant under C4 only: (r cos 5φ, r sin 5φ)
        r, phi = np.linalg.norm(p, axis=-1), np.arctan2(p[..., 1], p[..., 0])
        return np.stack([r * np.cos(5 * phi), r * np.sin(5 * phi)], -1)

    values = f(points)
    defects = values - np.einsum("sij,nj->sni", S, values[0])
    assert np.abs(defects[::16]).max() < 1e-12                          # exact on C4
    violation = np.linalg.norm(defects, axis=-1).max(0)
    kappa = covering_radius(S[::16], S)
    bound = (orbit_lipschitz(values, points) * np.linalg.norm(x, axis=-1) + np.linalg.norm(values[0], axis=-1)) * kappa
    assert np.all(violation <= bound) and np.all(violation > 0.1 * bound)


def test_orbit_lipschitz_bad_input():
    with pytest.raises(ValueError):
        orbit_lipschitz(np.zeros((3, 2, 1)), np.zeros((4, 2, 2)))
    np.testing.assert_array_equal(orbit_lipschitz(np.ones((3, 2, 1)), np.ones((3, 2, 2))), 0.0)


# ------------------------------------------------------------------------------ Gaussian members, defect variance

def _random_cov(rng, points: int) -> np.ndarray:
    A = rng.normal(size=(points, points))
    return A @ A.T / points + 0.1 * np.eye(points)


def test_gaussian_members_have_the_given_mean_and_covariance():
    rng = np.random.default_rng(0)
    order, n, d = 4, 2, 3
    cov = _random_cov(rng, order * n)
    mu = rng.normal(size=(order, n, d))
    draws = gaussian_members(mu, cov, 20000, seed=1)
    assert draws.shape == (20000, order, n, d)
    np.testing.assert_allclose(draws.mean(0), mu, atol=0.05)
    flat = draws.reshape(20000, order * n, d)
    for j in range(d):                                          # every channel has covariance Σ
        np.testing.assert_allclose(np.cov(flat[..., j].T), cov, atol=0.06)
    # channels are independent
    assert abs(np.corrcoef(flat[:, 0, 0], flat[:, 0, 1])[0, 1]) < 0.03


def test_predicted_subensemble_violation_is_the_violation_of_gaussian_members():
    """For M = 1 the prediction is the violation of the members that gaussian_members draws."""
    rng = np.random.default_rng(2)
    mu = rng.normal(size=(O.order, 2, 3))
    cov = _random_cov(rng, O.order * 2)

    def violation(o):
        return equivariance_error(o, O, O.act)

    pred = predicted_subensemble_violation(mu, cov, [1], num_samples=8, seed=5, violation=violation)
    members = gaussian_members(mu, cov, 8, seed=5)
    np.testing.assert_allclose(pred[0], violation(members).mean(-1), rtol=1e-12)


def test_defect_variance_matches_gaussian_draws():
    rng = np.random.default_rng(3)
    n = 2
    cov = _random_cov(rng, O.order * n)
    mu = np.zeros((O.order, n, 3))
    draws = gaussian_members(mu, cov, 20000, seed=4)
    measured = member_defects(draws, O, O.act).var(0)                 # (23, n, 3)
    predicted = defect_variance(cov, O.matrices)
    assert predicted.shape == (O.order - 1, n, 3) and np.all(predicted > 0)
    np.testing.assert_allclose(measured, predicted, rtol=0.06)
    # trivial ρ_Y: Var = Σ(gx, gx) + Σ(x, x) − 2Σ(gx, x), the same in every channel
    trivial = defect_variance(cov, np.broadcast_to(np.eye(3), (O.order, 3, 3)))
    np.testing.assert_allclose(member_defects(draws, O).var(0), trivial, rtol=0.06)
    assert np.ptp(trivial, axis=-1).max() < 1e-12


def test_defect_variance_bad_input():
    with pytest.raises(ValueError, match=r"\(\|G\|, d, d\)"):
        defect_variance(np.eye(8), np.eye(3))
    with pytest.raises(ValueError, match="covariance"):
        defect_variance(np.eye(7), O.matrices)


# ------------------------------------------------------------------------------ the tail bound (Lemma B.4)

def test_gaussian_tail_bound_is_a_bound_and_sharp_for_large_thresholds():
    from math import erfc, sqrt

    a = np.linspace(0.05, 6, 200)
    exact = np.array([erfc(v / sqrt(2)) for v in a])
    bound = gaussian_tail_bound(a)
    assert np.all(exact <= bound)
    assert exact[-1] / bound[-1] > 0.97 and exact[0] / bound[0] < 0.1      # sharp only far out
    with pytest.raises(ValueError, match="positive"):
        gaussian_tail_bound([1.0, 0.0])


def test_tail_exceedance_of_gaussian_members():
    """i.i.d. N(0, v) members: frequencies follow the Gaussian tail at every M; a σ too small by
    20 % breaks the bound; forgetting the 1/M hides every exceedance."""
    from math import erfc, sqrt

    rng = np.random.default_rng(6)
    v = rng.uniform(0.5, 2.0, size=(30, 2))
    members = rng.normal(size=(3000, 30, 2)) * np.sqrt(v)
    a = np.array([1.0, 2.0, 2.5])
    exact = np.array([erfc(x / sqrt(2)) for x in a])
    freq = tail_exceedance(members, 0.0, v, [1, 4, 16], a, num_resamples=500, seed=0)
    assert freq.shape == (3, 3)
    np.testing.assert_allclose(freq, np.broadcast_to(exact, (3, 3)), rtol=0.15)
    assert np.all(freq <= gaussian_tail_bound(a))
    too_narrow = tail_exceedance(members, 0.0, 0.64 * v, [1], a)
    assert too_narrow[0, -1] > gaussian_tail_bound(a)[-1]
    forgot = tail_exceedance(members, 0.0, 16 * v, [16], a, num_resamples=200)   # σ² = v
    assert forgot[0, 1] < 0.01 * gaussian_tail_bound(a[1] / 4)


def test_tail_exceedance_bad_input():
    members = np.zeros((4, 3))
    with pytest.raises(ValueError, match="thresholds"):
        tail_exceedance(members, 0.0, 1.0, [1], [0.0])
    with pytest.raises(ValueError, match="variance"):
        tail_exceedance(members, 0.0, 0.0, [1], [1.0])
    with pytest.raises(ValueError, match="exceed"):
        tail_exceedance(members, 0.0, 1.0, [5], [1.0])
    with pytest.raises(ValueError, match=r"\(K, \.\.\.\)"):
        tail_exceedance(np.zeros(4), 0.0, 1.0, [1], [1.0])


# ------------------------------------------------------------------------------ the covering bound

def planar_data(n: int, seed: int):
    """Clouds of 4 points in R² (n, 4, 2) and the SO(2)-equivariant target mean_p ‖x_p‖² x_p."""
    x = np.random.default_rng(seed).normal(size=(n, 4, 2))
    return x, ((x ** 2).sum(-1, keepdims=True) * x).mean(1)


def augment_planar(x, y, q: int):
    rot = rotation_matrices_2d(2 * np.pi * np.arange(q) / q)
    xs = np.einsum("bij,npj->bnpi", rot, x).reshape(-1, 4, 2)
    ys = np.einsum("bij,nj->bni", rot, y).reshape(-1, 2)
    return rot, xs, ys


def test_phi_t_is_the_spectral_function_of_the_flow():
    lam = np.array([0.0, 1e-12, 0.3, 2.0, 50.0])
    eta, t, size = 0.5, 40.0, 20
    phi = phi_t(lam, t, eta, size)
    scale = eta * t / size
    assert phi[0] == pytest.approx(scale) and phi[1] == pytest.approx(scale, rel=1e-9)
    np.testing.assert_allclose(phi[2:], (1 - np.exp(-scale * lam[2:])) / lam[2:], rtol=1e-12)
    assert np.all((phi >= 0) & (phi <= scale))                           # ‖F_t‖ ≤ ηt/|Y|
    np.testing.assert_allclose(phi_t(lam, np.inf, eta, size), [0.0, 1e12, 1 / 0.3, 0.5, 0.02])
    np.testing.assert_array_equal(phi_t(lam, 0.0, eta, size), 0.0)
    with pytest.raises(ValueError):
        phi_t(lam, -1.0, eta, size)


def test_relu_ntk_matches_neural_tangents_and_the_flow_gives_mu_t():
    from eqlib.models import mlp
    from eqlib.ntk import ensemble_mean_cov, kernels

    x, y = planar_data(6, seed=0)
    z, _ = planar_data(5, seed=1)
    for kwargs in ({}, {"W_std": 1.3, "b_std": 0.4}):
        arch = mlp([1], out=2, **kwargs)
        _, theta = kernels(arch.kernel_fn, x, z)
        np.testing.assert_allclose(relu_ntk(x, z, W_std=arch.W_std, b_std=arch.b_std), theta,
                                   rtol=1e-12, atol=1e-12)
    arch = mlp([1], out=2)
    times = [0.0, 7.0, 300.0, np.inf]
    mean = ensemble_mean_cov(arch.kernel_fn, x, y, z, times, learning_rate=0.7).mean
    lam, U = np.linalg.eigh(relu_ntk(x))
    for t, mu in zip(times, mean):
        F = (U * phi_t(lam, t, 0.7, y.size)) @ U.T
        np.testing.assert_allclose(relu_ntk(z, x) @ F @ y, mu, atol=1e-7)


def test_relu_ntk_lipschitz_bounds_kernel_differences():
    rng = np.random.default_rng(2)
    x1 = rng.normal(size=(3000, 4, 2))
    x2 = x1 + rng.normal(size=x1.shape) * rng.uniform(1e-3, 1.0, size=(3000, 1, 1))
    z = rng.normal(size=(4, 4, 2))
    ell = relu_ntk_lipschitz(z)
    step = np.linalg.norm((x1 - x2).reshape(3000, -1), axis=1)[:, None]
    ratio = np.abs(relu_ntk(x1, z) - relu_ntk(x2, z)) / step / ell
    assert np.all(ratio <= 1) and ratio.max() > 0.5                      # a bound, not far off
    # the profile bound: √(ψ² + ψ'²) is largest at ω = 0, where it is W_std²·√(1 + 1/4π²)
    assert relu_profile_sup(2.0 ** 0.5) == pytest.approx(2 * np.sqrt(1 + 1 / (4 * np.pi ** 2)),
                                                          rel=1e-4)


def test_covering_bound_holds_off_the_grid_and_is_uniform_in_q():
    from eqlib.models import mlp
    from eqlib.ntk import ensemble_mean_cov

    x, y = planar_data(4, seed=3)
    x_test, _ = planar_data(3, seed=4)
    angles = np.concatenate([[0.0], np.random.default_rng(5).uniform(0, 2 * np.pi, 40)])
    R = rotation_matrices_2d(angles)
    orbit = np.einsum("sij,npj->snpi", R, x_test).reshape(-1, 4, 2)
    times = [0.0, 5.0, 50.0, np.inf]
    constants = {}
    for q in (3, 4, 12):
        rot, xs, ys = augment_planar(x, y, q)
        mu = ensemble_mean_cov(mlp([1], out=2).kernel_fn, xs, ys, orbit, times).mean
        mu = mu.reshape(len(times), len(angles), len(x_test), 2)
        defect = np.linalg.norm(mu[:, 1:] - np.einsum("sij,tnj->tsni", R[1:], mu[:, 0]), axis=-1)
        kappa = np.array([covering_radius(rot, r[None]) for r in R[1:]])
        A = covering_bound_constant(x_test, xs, ys, times)
        assert A.shape == (4, 3) and np.all(A[0] == 0) and np.all(np.isinf(A[-1]))
        np.testing.assert_allclose(A[2], 10 * A[1])                          # linear in t
        assert np.all(defect[1:3] <= A[1:3, None, :] * kappa[None, :, None])
        constants[q] = A[1]
    assert np.all(constants[12] < 1.2 * constants[3])                        # does not grow with q
    # a μ that is not C_q-equivariant (targets not rotated) violates the same bound
    rot, xs, _ = augment_planar(x, y, 4)
    ys = np.tile(y, (4, 1))
    mu = ensemble_mean_cov(mlp([1], out=2).kernel_fn, xs, ys, orbit, [5.0]).mean[0]
    mu = mu.reshape(len(angles), len(x_test), 2)
    defect = np.linalg.norm(mu[1:] - np.einsum("sij,nj->sni", R[1:], mu[0]), axis=-1)
    kappa = np.array([covering_radius(rot, r[None]) for r in R[1:]])
    A = covering_bound_constant(x_test, xs, ys, [5.0])
    assert not np.all(defect <= A[0][None, :] * kappa[:, None])


def test_covering_bound_constant_bad_input():
    x, y = planar_data(3, seed=0)
    with pytest.raises(ValueError, match="y_train"):
        covering_bound_constant(x, x, y[:2], [1.0])
    with pytest.raises(ValueError, match="times"):
        covering_bound_constant(x, x, y, [-1.0])
    with pytest.raises(ValueError, match="dimension"):
        relu_ntk(x, np.zeros((2, 3)))
