"""eqlib.ntk: the infinite-width ensemble is exactly equivariant under full augmentation (and not without).

Small float64 problems: 3 training images 6×6×1, C4 (or D4) orbits, off-manifold test inputs (scaled
noise). Kernel functions are jit-compiled once per module to keep the suite fast.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.special

from eqlib.augment import augment_full_orbit, permutation_matrix
from eqlib.groups import CyclicRotations, Dihedral4, SpinFlip
from eqlib.models import Architecture, Conv, GlobalAvgPool, Dense, Flatten, Relu, cnn, mlp
from eqlib.ntk import (distinct_kernels, distinct_rows, ensemble_mean_cov, float64, flow_gain,
                       flow_matrix, gram_rank, kernels)

C4, D4 = CyclicRotations(4), Dihedral4()
TIMES = [0.0, 5.0, 100.0, np.inf]
SHAPE = (6, 6, 1)


@functools.cache
def kernel_fn(name: str):
    arch = {
        "mlp": mlp([16], 1),
        "cnn": cnn([8], 1),                    # Conv → ReLU → GlobalAvgPool → Dense
        "cnn-pool": cnn([8, 8], 1),            # … with a 2×2 average pool in between
        "cnn-circular": cnn([8], 1, padding="CIRCULAR"),
        "cnn-flatten": Architecture((Conv(8), Relu(), Flatten(), Dense(1))),
        "cnn-1x3": Architecture((Conv(8, kernel=(1, 3)), Relu(), GlobalAvgPool(), Dense(1))),
    }[name]
    return jax.jit(arch.kernel_fn, static_argnames="get")


@functools.cache
def preprocessed_mlp_kernel_fn():
    """An MLP kernel on inputs mapped by a fixed, non-orthogonal linear map: genuinely not invariant."""
    d = int(np.prod(SHAPE))
    A = np.eye(d) + 0.5 * np.random.default_rng(7).normal(size=(d, d)) / np.sqrt(d)
    base = kernel_fn("mlp")

    def pre(x):
        return None if x is None else (x.reshape(len(x), -1) @ jnp.asarray(A.T, x.dtype)).reshape(x.shape)

    def kf(x1, x2=None, get=None, **kwargs):
        return base(pre(x1), pre(x2), get, **kwargs)

    return kf


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, *SHAPE))
    y = rng.normal(size=(3, 1))
    x_test = 3.0 * rng.normal(size=(2, *SHAPE))  # off the data manifold: scaled noise
    return x, y, x_test


def orbit_blocks(arr: np.ndarray, order: int) -> np.ndarray:
    """``(T, |G|·n, …) -> (T, |G|, n, …)``."""
    return arr.reshape(arr.shape[0], order, -1, *arr.shape[2:])


def mean_and_cov_violation(pred, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Per time: max_g |μ_t(gx) − μ_t(x)| and max_g |Σ_t(gx, gx') − Σ_t(x, x')| over the test orbit."""
    mean = orbit_blocks(pred.mean, order)                          # (T, |G|, n, d)
    n = mean.shape[2]
    cov = pred.covariance.reshape(len(pred.covariance), order, n, order, n)
    mean_v = np.abs(mean - mean[:, :1]).max(axis=(1, 2, 3))
    cov_v = np.stack([np.abs(cov[:, g, :, g, :] - cov[:, 0, :, 0, :]).max(axis=(1, 2)) for g in range(order)]).max(0)
    return mean_v, cov_v


# ------------------------------------------------------------------------------ emergent invariance

@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_augmented_ensemble_is_invariant_off_manifold(arch):
    x, y, x_test = data()
    aug = augment_full_orbit(x, y, C4)
    test_orbit = np.asarray(C4.orbit(jnp.asarray(x_test))).reshape(-1, *SHAPE)
    pred = ensemble_mean_cov(kernel_fn(arch), aug.x, aug.y, test_orbit, TIMES)
    assert pred.mean.shape == (4, 4 * 2, 1) and pred.covariance.shape == (4, 8, 8)
    np.testing.assert_array_equal(pred.mean[0], 0.0)  # μ_0 = 0
    mean_v, cov_v = mean_and_cov_violation(pred, C4.order)
    assert (mean_v <= 1e-6).all(), mean_v
    assert (cov_v <= 1e-6).all(), cov_v
    assert (np.abs(pred.mean[1:]).max(axis=(1, 2)) > 0.1).all()  # the invariance is not that of zero


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_without_augmentation_not_invariant(arch):
    x, y, x_test = data()
    test_orbit = np.asarray(C4.orbit(jnp.asarray(x_test))).reshape(-1, *SHAPE)
    pred = ensemble_mean_cov(kernel_fn(arch), x, y, test_orbit, TIMES)
    mean_v, _ = mean_and_cov_violation(pred, C4.order)
    assert mean_v[0] == 0.0
    assert (mean_v[1:] > 1e-3).all(), mean_v


def test_augmented_ensemble_is_equivariant_for_odd_targets():
    """Z2 spin flip with ρ_Y = −1: μ_t(−x) = −μ_t(x) and Σ_t(−x, −x') = Σ_t(x, x')."""
    Z2 = SpinFlip()
    x, _, x_test = data(1)
    y = np.random.default_rng(1).normal(size=(3, 2))
    aug = augment_full_orbit(x, y, Z2, act_y=Z2.act)
    test_orbit = np.concatenate([x_test, -x_test])
    pred = ensemble_mean_cov(kernel_fn("mlp"), aug.x, aug.y, test_orbit, TIMES[1:])
    mean = orbit_blocks(pred.mean, 2)
    np.testing.assert_allclose(mean[:, 1], -mean[:, 0], atol=1e-6)
    assert np.abs(mean).max() > 0.1
    cov = pred.covariance.reshape(3, 2, 2, 2, 2)
    np.testing.assert_allclose(cov[:, 1, :, 1], cov[:, 0, :, 0], atol=1e-6)
    # without augmentation the odd symmetry is lost
    plain = orbit_blocks(ensemble_mean_cov(kernel_fn("mlp"), x, y, test_orbit, TIMES[1:]).mean, 2)
    assert np.abs(plain[:, 1] + plain[:, 0]).max() > 1e-3


# ------------------------------------------------------------------------------ kernel invariance

def gram_violation(kf, group, shape=SHAPE, seed: int = 2) -> tuple[float, float]:
    """Relative max_g |K(gX, gX) − K(X, X)| for the NNGP and the NTK on 2 off-manifold inputs."""
    x = 3.0 * np.random.default_rng(seed).normal(size=(2, *shape))
    orbit = np.asarray(group.orbit(jnp.asarray(x))).reshape(-1, *shape)
    out = []
    for gram in kernels(kf, orbit):
        blocks = gram.reshape(group.order, 2, group.order, 2)
        dev = max(np.abs(blocks[g, :, g] - blocks[0, :, 0]).max() for g in range(group.order))
        out.append(dev / np.abs(gram).max())
    return out[0], out[1]


@pytest.mark.parametrize("arch", ["mlp", "cnn", "cnn-pool", "cnn-flatten", "cnn-circular"])
def test_kernels_are_invariant(arch):
    nngp_v, ntk_v = gram_violation(kernel_fn(arch), D4)
    assert nngp_v <= 1e-8 and ntk_v <= 1e-8, (nngp_v, ntk_v)  # NTK: ~1e-10 float64 noise from nt


@pytest.mark.parametrize("case", ["cnn-1x3", "preprocessed-mlp", "cnn-pool-odd"])
def test_kernel_invariance_can_fail(case):
    """Genuine failures: a 1×3 filter sees rows, not columns; a non-orthogonal input map breaks the
    orthogonality of ρ_X; a 2×2 pool on a 5×5 map drops the last row and column (not rotation-symmetric)."""
    if case == "preprocessed-mlp":
        kf, shape = preprocessed_mlp_kernel_fn(), SHAPE
    elif case == "cnn-pool-odd":
        kf, shape = kernel_fn("cnn-pool"), (5, 5, 1)
    else:
        kf, shape = kernel_fn(case), SHAPE
    nngp_v, ntk_v = gram_violation(kf, C4, shape)
    assert nngp_v > 1e-2 and ntk_v > 1e-2, (nngp_v, ntk_v)


# ------------------------------------------------------------------------------ permutation lemma

def _commutator(P, M) -> float:
    return float(np.abs(P @ M - M @ P).max() / np.abs(M).max())


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_permutation_lemma(arch):
    x, y, _ = data()
    aug = augment_full_orbit(x, y, C4)
    K, theta = kernels(kernel_fn(arch), aug.x)
    n_targets = aug.y.size
    funcs = {
        "Θ": theta,
        "K": K,
        "Θ⁻¹": np.linalg.inv(theta),
        "exp(−ηΘt)": scipy.linalg.expm(-0.5 * theta * 5.0 / n_targets),
        "Θ⁻¹(1−exp)KΘ⁻¹": np.linalg.solve(theta, (np.eye(len(theta)) - scipy.linalg.expm(-theta)) @ K)
                          @ np.linalg.inv(theta),
    }
    for g in range(C4.order):
        P = permutation_matrix(aug.permutations[g])
        for name, M in funcs.items():
            assert _commutator(P, M) <= 1e-8, (g, name, _commutator(P, M))
    # the lemma needs kernel invariance: the preprocessed kernel's Gram matrix does not commute
    _, theta_bad = kernels(preprocessed_mlp_kernel_fn(), aug.x)
    P = permutation_matrix(aug.permutations[1])
    assert _commutator(P, theta_bad) > 1e-3


def test_closed_form_matches_kernel_regression_by_hand():
    x, _, x_test = data(3)
    y = np.random.default_rng(3).normal(size=(3, 2))
    aug = augment_full_orbit(x, y, C4)
    X, Y = np.asarray(aug.x, np.float64), np.asarray(aug.y, np.float64)
    kf, lr = kernel_fn("mlp"), 0.5
    pred = ensemble_mean_cov(kf, X, Y, x_test, [5.0, np.inf], learning_rate=lr)
    K_dd, T_dd = kernels(kf, X)
    K_td, T_td = kernels(kf, x_test, X)
    K_tt, _ = kernels(kf, x_test)
    inv = np.linalg.inv(T_dd)
    scale = np.abs(pred.mean).max()
    # t = ∞: kernel regression Θ(x, X) Θ⁻¹ Y and the matching covariance
    np.testing.assert_allclose(pred.mean[1], T_td @ inv @ Y, atol=1e-8 * scale)
    cov_inf = K_tt + T_td @ inv @ K_dd @ inv @ T_td.T - (T_td @ inv @ K_td.T + (T_td @ inv @ K_td.T).T)
    np.testing.assert_allclose(pred.covariance[1], cov_inf, atol=1e-8 * np.abs(cov_inf).max())
    # finite t: T_t = 1 − exp(−η Θ t / |Y|) with |Y| the number of target entries (module docstring)
    T_t = np.eye(len(X)) - scipy.linalg.expm(-lr * T_dd * 5.0 / Y.size)
    np.testing.assert_allclose(pred.mean[0], T_td @ inv @ T_t @ Y, atol=1e-8 * scale)
    # at t = ∞ the ensemble interpolates the (augmented) training set
    on_train = ensemble_mean_cov(kf, X, Y, X, np.inf)
    np.testing.assert_allclose(on_train.mean[0], Y, atol=1e-6)
    assert on_train.mean.shape == (1, len(X), 2)


# ------------------------------------------------------------------------------ F_t = φ_t(Θ)

def test_flow_gain_is_the_entire_function_and_its_limits():
    lam = np.array([-1e-17, 0.0, 1e-300, 1e-15, 0.3, 2.0, 7.0])
    lr, n_targets, t = 0.5, 4, 3.0
    a = lr * t / n_targets
    phi = flow_gain(lam, t, lr, n_targets)
    # φ_t(λ) = (1 − e^{−aλ})/λ for λ > 0, and its limit a at λ = 0 (negatives are rounding)
    np.testing.assert_allclose(phi[4:], (1 - np.exp(-a * lam[4:])) / lam[4:], rtol=1e-14)
    np.testing.assert_allclose(phi[:4], a, rtol=1e-10)
    assert np.all(np.diff(phi[1:]) <= 0)              # decreasing in λ, no jump at 0
    # discrete: a geometric series, (η/|Y|) Σ_{j<k} (1 − ηλ/|Y|)^j, summed term by term
    k = 5
    r = lr * lam[1:] / n_targets
    series = lr / n_targets * sum((1 - r) ** j for j in range(k))
    np.testing.assert_allclose(flow_gain(lam[1:], k, lr, n_targets, discrete=True), series,
                               rtol=1e-12)
    # t = ∞: 1/λ above rcond·λ_max, 0 below (the pseudo-inverse)
    inf = flow_gain(lam, np.inf, lr, n_targets)
    np.testing.assert_allclose(inf[4:], 1 / lam[4:], rtol=1e-15)
    assert np.all(inf[:4] == 0)
    assert flow_gain(lam, np.inf, lr, n_targets, rcond=1e-30)[3] == pytest.approx(1e15)
    np.testing.assert_array_equal(flow_gain(lam, 0.0, lr, n_targets), 0.0)
    for bad in (dict(t=-1.0), dict(t=np.nan), dict(learning_rate=0.0), dict(num_targets=0)):
        kwargs = dict(t=1.0, learning_rate=1.0, num_targets=1) | bad
        with pytest.raises(ValueError):
            flow_gain(lam, **kwargs)
    with pytest.raises(ValueError, match="1-d"):
        flow_gain(np.eye(2), 1.0, 1.0, 1)


def test_flow_matrix_matches_expm_and_pinv():
    rng = np.random.default_rng(5)
    A = rng.normal(size=(5, 5))
    theta = A @ A.T + 0.1 * np.eye(5)
    lr, n_targets, t = 0.7, 10, 4.0
    expected = np.linalg.solve(theta, np.eye(5) - scipy.linalg.expm(-lr * theta * t / n_targets))
    np.testing.assert_allclose(flow_matrix(theta, t, lr, n_targets), expected, atol=1e-13)
    np.testing.assert_allclose(flow_matrix(theta, np.inf, lr, n_targets), np.linalg.inv(theta),
                               rtol=1e-10)
    # a repeated row: singular, yet F_t is finite for t < ∞ and F_∞ is the pseudo-inverse
    E = np.eye(5)[[0, 1, 2, 3, 4, 0, 1]]                 # inputs 0 and 1 appear twice
    singular = E @ theta @ E.T
    assert gram_rank(singular) == 5 and gram_rank(theta) == 5
    np.testing.assert_allclose(flow_matrix(singular, np.inf, lr, n_targets),
                               np.linalg.pinv(singular, rcond=1e-12, hermitian=True), atol=1e-10)
    F = flow_matrix(singular, t, lr, 14)
    series = sum(np.linalg.matrix_power(-lr * t * singular / 14, j) / scipy.special.factorial(j + 1)
                 for j in range(60)) * lr * t / 14     # φ_t as its power series: no inverse
    np.testing.assert_allclose(F, series, atol=1e-12)
    with pytest.raises(ValueError, match="square"):
        flow_matrix(np.ones((2, 3)), 1.0, 1.0, 1)
    with pytest.raises(ValueError, match="square"):
        gram_rank(np.ones(3))


def test_distinct_kernels_make_repeated_rows_exactly_equal():
    x, _, x_test = data()
    xs = np.concatenate([x, x[:2], x[:1]])                      # (6, ...): three repeats
    first, inverse = distinct_rows(xs)
    np.testing.assert_array_equal(first, [0, 1, 2])
    np.testing.assert_array_equal(xs[first][inverse], xs)
    K, theta = distinct_kernels(kernel_fn("mlp"), xs)
    np.testing.assert_array_equal(theta[3], theta[0])
    np.testing.assert_array_equal(theta[:, 5], theta[:, 0])
    assert gram_rank(theta) == 3 and gram_rank(K) == 3
    # without repeats: the same numbers as kernels()
    for a, b in zip(distinct_kernels(kernel_fn("mlp"), x_test, x), kernels(kernel_fn("mlp"), x_test, x)):
        np.testing.assert_array_equal(a, b)
    K_td, theta_td = distinct_kernels(kernel_fn("mlp"), x_test, xs)
    np.testing.assert_array_equal(theta_td[:, 4], theta_td[:, 1])
    with pytest.raises(ValueError, match="non-empty"):
        distinct_rows(np.zeros((0, 3)))


def symmetric_training_set():
    """Three 6×6 inputs, the first exactly C4-invariant (a max over its orbit), augmented with C4."""
    x, y, x_test = data(6)
    x[0] = np.maximum.reduce([np.rot90(x[0], k) for k in range(4)])
    return augment_full_orbit(x, y, C4), x_test


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_stabiliser_makes_the_gram_matrix_singular_and_the_theorem_still_holds(arch):
    aug, x_test = symmetric_training_set()
    _, theta = distinct_kernels(kernel_fn(arch), aug.x)
    assert gram_rank(theta) == len(aug.x) - 3                    # 3 repeats of x_0 in its orbit
    test_orbit = np.asarray(C4.orbit(jnp.asarray(x_test))).reshape(-1, *SHAPE)
    pred = ensemble_mean_cov(kernel_fn(arch), aug.x, aug.y, test_orbit, TIMES)
    assert np.all(np.isfinite(pred.mean)) and np.all(np.isfinite(pred.covariance))
    mean_v, cov_v = mean_and_cov_violation(pred, C4.order)
    assert (mean_v <= 1e-7).all() and (cov_v <= 1e-7).all(), (mean_v, cov_v)
    assert (np.abs(pred.mean[1:]).max(axis=(1, 2)) > 0.1).all()
    # t = ∞ is kernel regression on the distinct inputs: the same interpolant, computed independently
    first, _ = distinct_rows(aug.x)
    X, Y = np.asarray(aug.x)[first], np.asarray(aug.y)[first]
    K_dd, T_dd = kernels(kernel_fn(arch), X)
    K_td, T_td = kernels(kernel_fn(arch), test_orbit, X)
    np.testing.assert_allclose(pred.mean[-1], T_td @ np.linalg.solve(T_dd, Y),
                               atol=1e-8 * np.abs(pred.mean[-1]).max())
    # finite t: neural-tangents (which divides by |λ| only where the numerator vanishes) agrees
    nt_pred = ensemble_mean_cov(kernel_fn(arch), aug.x, aug.y, test_orbit, TIMES[:-1],
                                method="neural_tangents")
    np.testing.assert_allclose(nt_pred.mean, pred.mean[:-1], atol=1e-7 * np.abs(pred.mean).max())


def test_neural_tangents_breaks_at_infinite_time_on_a_singular_gram_matrix():
    """The guard is needed: nt's 0·∞ or 1/λ ≈ 1e16 at t = ∞ (see eqlib.ntk's docstring)."""
    aug, x_test = symmetric_training_set()
    spectral = ensemble_mean_cov(kernel_fn("cnn"), aug.x, aug.y, x_test, np.inf, method="spectral")
    nt_pred = ensemble_mean_cov(kernel_fn("cnn"), aug.x, aug.y, x_test, np.inf,
                                method="neural_tangents")
    assert not np.allclose(nt_pred.mean, spectral.mean, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("diag_reg", [0.0, 0.05])
def test_spectral_path_equals_neural_tangents_on_distinct_inputs(diag_reg):
    x, _, x_test = data(3)
    y = np.random.default_rng(3).normal(size=(3, 2))
    aug = augment_full_orbit(x, y, C4)
    times = [0.0, 2.0, 50.0, np.inf]
    a = ensemble_mean_cov(kernel_fn("mlp"), aug.x, aug.y, x_test, times, 0.5, diag_reg,
                          method="neural_tangents")
    b = ensemble_mean_cov(kernel_fn("mlp"), aug.x, aug.y, x_test, times, 0.5, diag_reg,
                          method="spectral")
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-9 * np.abs(a.mean).max())
    np.testing.assert_allclose(a.covariance, b.covariance, atol=1e-9 * np.abs(a.covariance).max())
    assert b.mean.shape == (4, 2, 2) and b.covariance.shape == (4, 2, 2)


# ------------------------------------------------------------------------------ bad input, float64

def test_bad_inputs():
    x, y, x_test = data()
    kf = kernel_fn("mlp")
    with pytest.raises(ValueError, match="y_train"):
        ensemble_mean_cov(kf, x, y[:, 0], x_test, 1.0)
    with pytest.raises(ValueError, match="same number"):
        ensemble_mean_cov(kf, x, y[:2], x_test, 1.0)
    with pytest.raises(ValueError, match="≥ 0"):
        ensemble_mean_cov(kf, x, y, x_test, [1.0, -1.0])
    with pytest.raises(ValueError):
        ensemble_mean_cov(kf, x, y, x_test, np.nan)
    with pytest.raises(ValueError, match="x_test"):
        ensemble_mean_cov(kf, x, y, x_test[:, :5], 1.0)
    with pytest.raises(ValueError, match="method"):
        ensemble_mean_cov(kf, x, y, x_test, 1.0, method="cholesky")


@pytest.mark.parametrize("before", [False, True])
def test_float64_context_restores_previous_setting(before, restore_x64):
    jax.config.update("jax_enable_x64", before)
    with float64():
        assert jax.config.jax_enable_x64
        assert jnp.zeros(1).dtype == jnp.float64
    assert jax.config.jax_enable_x64 == before
    with pytest.raises(RuntimeError):
        with float64():
            raise RuntimeError("inside")
    assert jax.config.jax_enable_x64 == before


def test_kernels_in_float64_regardless_of_global_setting(restore_x64):
    jax.config.update("jax_enable_x64", False)
    K, theta = kernels(kernel_fn("mlp"), np.random.default_rng(0).normal(size=(3, *SHAPE)))
    assert K.dtype == theta.dtype == np.float64 and K.shape == theta.shape == (3, 3)
    np.testing.assert_allclose(K, K.T, rtol=1e-12)
    assert not jax.config.jax_enable_x64
