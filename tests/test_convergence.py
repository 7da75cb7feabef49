"""eqlib.convergence: empirical NTK, ensemble moments, coupled infinite-width trajectories, power-law fits.

Small sizes: 6 inputs of 2×2×1, one-hidden-layer MLPs; kernel functions jit-compiled once per module.
"""
from __future__ import annotations

import functools

import jax
import jax.flatten_util
import numpy as np
import pytest

from eqlib.convergence import empirical_ntk, ensemble_moments, fit_power_law, ntk_trajectories
from eqlib.ensemble import TrainConfig, ensemble_apply, init_ensemble, train_ensemble
from eqlib.models import cnn, mlp
from eqlib.ntk import ensemble_mean_cov, kernels

SHAPE = (2, 2, 1)


@functools.cache
def kernel_fn():
    return jax.jit(mlp([8], 1).kernel_fn, static_argnames="get")


def data(seed: int = 0, n: int = 6, d: int = 1):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, *SHAPE)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32),
            rng.normal(size=(3, *SHAPE)).astype(np.float32))


# ------------------------------------------------------------------------------ empirical NTK

def test_empirical_ntk_is_a_jacobian_gram_matrix():
    x, _, x_test = data()
    net = mlp([5], 2).flax()
    params = net.init(jax.random.PRNGKey(0), x)
    theta = empirical_ntk(net, params, x, x_test)
    assert theta.shape == (6, 3) and theta.dtype == np.float64
    # by hand: finite differences would be slow; use jax.jacobian of the flattened parameters
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    j1 = np.asarray(jax.jacobian(lambda p: net.apply(unravel(p), x))(flat))        # (6, 2, P)
    j2 = np.asarray(jax.jacobian(lambda p: net.apply(unravel(p), x_test))(flat))   # (3, 2, P)
    np.testing.assert_allclose(theta, np.einsum("adp,bdp->ab", j1, j2) / 2, rtol=1e-4, atol=1e-5)
    square = empirical_ntk(net, params, x)
    np.testing.assert_allclose(square, square.T, rtol=1e-5, atol=1e-6)
    assert np.linalg.eigvalsh(square).min() > -1e-4                               # a Gram matrix: PSD


def test_empirical_ntk_matrix_valued():
    """channels=True: the full (n1, n2, d, d) kernel; its channel trace / d is the default."""
    x, _, x_test = data()
    net = mlp([5], 3).flax()
    params = net.init(jax.random.PRNGKey(1), x)
    full = empirical_ntk(net, params, x, x_test, channels=True)
    assert full.shape == (6, 3, 3, 3)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    j1 = np.asarray(jax.jacobian(lambda p: net.apply(unravel(p), x))(flat))        # (6, 3, P)
    j2 = np.asarray(jax.jacobian(lambda p: net.apply(unravel(p), x_test))(flat))
    np.testing.assert_allclose(full, np.einsum("adp,bep->abde", j1, j2), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.einsum("abdd->ab", full) / 3,
                               empirical_ntk(net, params, x, x_test), rtol=1e-5, atol=1e-6)
    # at large width the channels decouple: Θ̂_{jj'} → Θ δ_{jj'} (off-diagonal blocks shrink)
    off, mask = {}, ~np.eye(3, dtype=bool)
    for width in (16, 4096):                         # off-diagonal part ∝ 1/√width: ratio 1/16
        wide = mlp([width], 3).flax()
        ks = [empirical_ntk(wide, wide.init(jax.random.PRNGKey(s), x), x, channels=True)
              for s in range(4)]
        off[width] = np.mean([np.sqrt(np.mean(k[:, :, mask] ** 2) / np.mean(k[:, :, ~mask] ** 2))
                              for k in ks])
    assert off[4096] < 0.25 * off[16] and off[4096] < 0.02, off


def test_empirical_ntk_converges_to_the_analytic_ntk():
    x, _, _ = data(1)
    arch = mlp([4096], 1)
    _, theta = kernels(arch.kernel_fn, x)
    net = arch.flax()
    errors = []
    for seed in range(3):
        emp = empirical_ntk(net, net.init(jax.random.PRNGKey(seed), x), x)
        errors.append(np.linalg.norm(emp - theta) / np.linalg.norm(theta))
    assert np.mean(errors) < 0.05, errors                                         # ~1/√4096 ≈ 0.016 scale
    small = mlp([4], 1).flax()
    err_small = np.linalg.norm(empirical_ntk(small, small.init(jax.random.PRNGKey(0), x), x) - theta) / np.linalg.norm(theta)
    assert err_small > np.mean(errors)


def test_empirical_ntk_works_for_cnns():
    x = np.random.default_rng(0).normal(size=(3, 4, 4, 1)).astype(np.float32)
    net = cnn([4], 1).flax()
    theta = empirical_ntk(net, net.init(jax.random.PRNGKey(0), x), x)
    assert theta.shape == (3, 3) and np.all(np.isfinite(theta))


def test_empirical_ntk_bad_inputs():
    x, _, _ = data()
    net = mlp([3], 1).flax()
    params = net.init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="equally shaped"):
        empirical_ntk(net, params, x, x[:, :1])
    with pytest.raises(ValueError, match="batches"):
        empirical_ntk(net, params, x[0, 0, 0])
    with pytest.raises(ValueError, match="no leaves"):
        empirical_ntk(net, {}, x)


# ------------------------------------------------------------------------------ ensemble moments

def test_ensemble_moments_match_numpy():
    out = np.random.default_rng(0).normal(size=(50, 4, 3))
    mean, cov = ensemble_moments(out)
    assert mean.shape == (4, 3) and cov.shape == (4, 4)
    np.testing.assert_allclose(mean, out.mean(0))
    expected = np.mean([np.cov(out[:, :, j].T) for j in range(3)], axis=0)          # unbiased, per channel
    np.testing.assert_allclose(cov, expected)


def test_ensemble_moments_estimate_a_known_gaussian():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(3, 3))
    true_cov, true_mean = A @ A.T, np.array([1.0, -2.0, 0.5])
    samples = true_mean + rng.normal(size=(20000, 3)) @ A.T
    mean, cov = ensemble_moments(samples[:, :, None])
    np.testing.assert_allclose(mean[:, 0], true_mean, atol=0.05)
    np.testing.assert_allclose(cov, true_cov, atol=0.1)


@pytest.mark.parametrize("shape", [(5, 3), (1, 3, 1), (4,)])
def test_ensemble_moments_bad_shapes(shape):
    with pytest.raises(ValueError):
        ensemble_moments(np.zeros(shape))


# ------------------------------------------------------------------------------ trajectories

def test_trajectories_from_zero_are_the_ensemble_mean():
    x, y, x_test = data(2, d=2)
    kf = kernel_fn()
    times = [0.0, 3.0, 40.0, np.inf]
    zero = ntk_trajectories(kf, x, y, x_test, np.zeros((1, 6, 2)), np.zeros((1, 3, 2)), times, learning_rate=0.7)
    pred = ensemble_mean_cov(kf, x, y, x_test, times, learning_rate=0.7)
    assert zero.shape == (4, 1, 3, 2)
    np.testing.assert_allclose(zero[:, 0], pred.mean, atol=1e-8 * np.abs(pred.mean).max())


def test_trajectories_are_samples_of_the_infinite_ensemble():
    """g_t is linear in f_0 ~ GP(0, K): its covariance is Σ_t, computed exactly through the linear map."""
    x, y, x_test = data(3)
    kf = kernel_fn()
    t, lr = 25.0, 1.3
    joint = np.concatenate([x, x_test])
    K_joint, _ = kernels(kf, joint)
    basis = np.eye(9)[:, :, None]                                                   # f_0 = unit vectors
    g = ntk_trajectories(kf, x, np.zeros_like(y), x_test, basis[:, :6], basis[:, 6:], t, learning_rate=lr)[0, :, :, 0]
    A = g.T                                                                         # (3, 9): g = A f_0
    pred = ensemble_mean_cov(kf, x, y, x_test, t, learning_rate=lr)
    np.testing.assert_allclose(A @ K_joint @ A.T, pred.covariance[0], atol=1e-8 * np.abs(pred.covariance).max())


def test_discrete_time_is_gradient_descent_of_the_linear_model():
    x, y, x_test = data(4)
    kf, lr, steps = kernel_fn(), 0.5, 7
    f0 = np.random.default_rng(4).normal(size=(2, 9, 1))
    g = ntk_trajectories(kf, x, y, x_test, f0[:, :6], f0[:, 6:], [steps], learning_rate=lr, discrete=True)[0]
    _, theta = kernels(kf, np.concatenate([x, x_test]))
    f = f0.copy()
    for _ in range(steps):   # f ← f − η Θ(·, X) (f(X) − Y) / |Y|
        f = f - lr * np.einsum("ab,mbd->mad", theta[:, :6], f[:, :6] - y) / y.size
    np.testing.assert_allclose(g, f[:, 6:], rtol=1e-8, atol=1e-10)
    cont = ntk_trajectories(kf, x, y, x_test, f0[:, :6], f0[:, 6:], [steps], learning_rate=lr)[0]
    assert 0 < np.abs(cont - g).max() < 0.5                                          # O(η) apart


def test_trajectories_allow_repeated_training_inputs():
    """A repeated input makes Θ(X, X) singular; F_t = φ_t(Θ) needs no inverse, F_∞ = Θ⁺."""
    x, y, x_test = data(6)
    xs, ys = np.concatenate([x, x[:2]]), np.concatenate([y, y[:2]])
    kf, times = kernel_fn(), [0.0, 4.0, 30.0, np.inf]
    g = ntk_trajectories(kf, xs, ys, x_test, np.zeros((1, 8, 1)), np.zeros((1, 3, 1)), times,
                         learning_rate=0.7)[:, 0]
    pred = ensemble_mean_cov(kf, xs, ys, x_test, times, learning_rate=0.7)
    np.testing.assert_allclose(g, pred.mean, atol=1e-10 * np.abs(pred.mean).max())
    # at t = ∞ the repeats do not matter: kernel regression on the distinct inputs
    plain = ntk_trajectories(kf, x, y, x_test, np.zeros((1, 6, 1)), np.zeros((1, 3, 1)), np.inf)
    np.testing.assert_allclose(g[-1], plain[0, 0], atol=1e-8 * np.abs(g[-1]).max())
    assert np.abs(g[1] - ntk_trajectories(kf, x, y, x_test, np.zeros((1, 6, 1)),
                                          np.zeros((1, 3, 1)), 4.0, 0.7)[0, 0]).max() > 1e-4
    # discrete steps from a fixed start are the iterated linear model, repeats included
    f0 = np.random.default_rng(6).normal(size=(1, 11, 1))
    steps = ntk_trajectories(kf, xs, ys, x_test, f0[:, :8], f0[:, 8:], [3], 0.3, discrete=True)[0]
    _, theta = kernels(kf, np.concatenate([xs, x_test]))
    f = f0.copy()
    for _ in range(3):
        f = f - 0.3 * np.einsum("ab,mbd->mad", theta[:, :8], f[:, :8] - ys) / ys.size
    np.testing.assert_allclose(steps, f[:, 8:], rtol=1e-6, atol=1e-8)


def test_trajectories_match_wide_trained_networks():
    """The coupling the book uses: a wide trained member stays close to its own infinite-width trajectory."""
    x, y, x_test = data(5)
    arch, lr, steps = mlp([2048], 1), 1.0, 20
    net = arch.flax()
    config = TrainConfig(loss="mse", optimizer="sgd", learning_rate=lr, epochs=steps, strategy="loop")
    state = init_ensemble(net, x, 2, seed=0, config=config)
    f0 = np.asarray(ensemble_apply(net, state.params, np.concatenate([x, x_test]), strategy="loop"))
    state, _ = train_ensemble(net, state, x, y, config, progress=False)
    ft = np.asarray(ensemble_apply(net, state.params, x_test, strategy="loop"))
    g = ntk_trajectories(arch.kernel_fn, x, y, x_test, f0[:, :6], f0[:, 6:], steps, lr, discrete=True)[0]
    moved = np.abs(g - f0[:, 6:]).max()
    assert moved > 0.1 and np.abs(ft - g).max() < 0.2 * moved


def test_trajectories_bad_inputs():
    x, y, x_test = data()
    kf, f0, f0t = kernel_fn(), np.zeros((2, 6, 1)), np.zeros((2, 3, 1))
    with pytest.raises(ValueError, match="y_train"):
        ntk_trajectories(kf, x, y[:, 0], x_test, f0, f0t, 1.0)
    with pytest.raises(ValueError, match="f0_train"):
        ntk_trajectories(kf, x, y, x_test, f0[:, :5], f0t, 1.0)
    with pytest.raises(ValueError, match="f0_test"):
        ntk_trajectories(kf, x, y, x_test, f0, f0t[:1], 1.0)
    with pytest.raises(ValueError, match="≥ 0"):
        ntk_trajectories(kf, x, y, x_test, f0, f0t, [-1.0])
    with pytest.raises(ValueError, match="learning_rate"):
        ntk_trajectories(kf, x, y, x_test, f0, f0t, 1.0, learning_rate=0.0)
    with pytest.raises(ValueError, match="diverges"):
        ntk_trajectories(kf, x, y, x_test, f0, f0t, 1.0, learning_rate=1e4, discrete=True)
    with pytest.raises(ValueError, match="x_test"):
        ntk_trajectories(kf, x, y, x_test[:, :1], f0, f0t, 1.0)


# ------------------------------------------------------------------------------ power laws

def test_fit_power_law_recovers_slope_and_intercept():
    x = np.array([64, 128, 256, 512, 1024.0])
    slope, intercept = fit_power_law(x, 3.0 * x ** -0.5)
    assert slope == pytest.approx(-0.5) and intercept == pytest.approx(np.log(3.0))
    noisy = 2.0 * x ** -1.0 * np.exp(np.random.default_rng(0).normal(scale=0.05, size=5))
    assert fit_power_law(x, noisy)[0] == pytest.approx(-1.0, abs=0.1)


@pytest.mark.parametrize("x, y", [([1, 2], [1, 0]), ([1, -2], [1, 1]), ([1], [1]), ([2, 2], [1, 3]),
                                  ([1, 2, 3], [1, 2]), ([1, np.inf], [1, 1])])
def test_fit_power_law_bad_inputs(x, y):
    with pytest.raises(ValueError):
        fit_power_law(x, y)
