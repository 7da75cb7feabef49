"""eqlib.random_augmentation: random vs systematic augmentation at equal gradient evaluations."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqlib import random_augmentation as ra
from eqlib.augment import augment_full_orbit
from eqlib.data.toy import blob_regression
from eqlib.ensemble import TrainConfig, ensemble_apply, init_ensemble, loss_value, train_ensemble
from eqlib.experiments.ising import expected_squared_orbit_spread, orbit_blocks
from eqlib.groups import get_group
from eqlib.metrics import orbit_spread
from eqlib.models import cnn, mlp
from eqlib.ntk import float64

C4 = get_group("C4")


def tiny(n: int = 3, size: int = 4, seed: int = 0):
    """``n`` random ``(size, size, 1)`` images and targets ``(n, 1)``."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, size, size, 1)).astype(np.float32),
            rng.normal(size=(n, 1)).astype(np.float32))


def test_orbit_indices_pick_each_sample_turned_by_its_element():
    x, y = tiny(n=5)
    aug = augment_full_orbit(x, y, C4)
    elements = np.array([3, 0, 2, 1, 3])
    picked = np.asarray(aug.x)[np.asarray(ra.orbit_indices(jnp.asarray(elements), 5))]
    for i, g in enumerate(elements):
        np.testing.assert_array_equal(picked[i], np.asarray(C4.act(int(g), x[i:i + 1]))[0])


def test_equal_gradient_evaluations_and_learning_rates():
    n, order = 48, 4
    per_epoch = {m: ra.steps_per_epoch(m, order) * len(ra.batch_indices(
        m, jax.random.PRNGKey(0), 0, n, order)) for m in ra.MODES}
    assert per_epoch == {"systematic": order * n, "random": order * n}
    assert ra.step_learning_rate("random", 4.0, order) == 1.0
    assert ra.step_learning_rate("systematic", 4.0, order) == 4.0


def test_expected_random_gradient_is_the_full_orbit_gradient(restore_x64):
    """Exact: the average over all 4³ = 64 random batches, in float64."""
    x, y = tiny(n=3)
    aug = augment_full_orbit(x, y, C4)
    net = mlp([8], out=1).flax()
    with float64():
        x_aug, y_aug = jnp.asarray(aug.x, jnp.float64), jnp.asarray(aug.y, jnp.float64)
        params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64),
                                        net.init(jax.random.PRNGKey(1), x_aug[:1]))
        full = jax.grad(lambda p: loss_value("mse", net.apply(p, x_aug), y_aug))(params)
        expected = ra.expected_random_gradient(net.apply, params, x_aug, y_aug, 3, 4)
        one = jax.grad(lambda p: ra.batch_loss(net.apply, p, x_aug, y_aug,
                                               ra.orbit_indices(jnp.array([1, 2, 3]), 3)))(params)
    gap = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(full),
                                                            jax.tree_util.tree_leaves(expected)))
    scale = max(float(jnp.max(jnp.abs(a))) for a in jax.tree_util.tree_leaves(full))
    assert gap <= 1e-12 * scale
    # a single draw is not the full-orbit gradient: the identity is one of averages
    single = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(full),
                                                               jax.tree_util.tree_leaves(one)))
    assert single > 1e-3 * scale


def test_draws_are_uniform_independent_and_reproducible():
    keys = ra.draw_keys(seed=3, member_ids=[0, 1])
    draws = np.asarray(jax.vmap(lambda s: jax.vmap(
        lambda k: ra.random_elements(k, s, 5, 4))(keys))(jnp.arange(1500)))     # (steps, M, n)
    freq = np.bincount(draws.ravel(), minlength=4) / draws.size
    se = np.sqrt(0.25 * 0.75 / draws.size)
    assert np.all(np.abs(freq - 0.25) < 5 * se)
    # pairs (member 0, member 1) and (sample 0, sample 1) are independent: 16 cells at 1/16
    for a, b in ((draws[:, 0, 0], draws[:, 1, 0]), (draws[:, 0, 0], draws[:, 0, 1])):
        joint = np.bincount(4 * a + b, minlength=16) / len(a)
        assert np.all(np.abs(joint - 1 / 16) < 5 * np.sqrt(1 / 16 * 15 / 16 / len(a)))
    again = ra.draw_keys(seed=3, member_ids=[0, 1])
    np.testing.assert_array_equal(np.asarray(keys), np.asarray(again))
    assert not np.array_equal(np.asarray(keys), np.asarray(ra.draw_keys(seed=4, member_ids=[0, 1])))


def test_systematic_training_is_eqlibs_full_augmentation():
    """The systematic scheme is train_ensemble with group= (same members, same steps)."""
    x, y = tiny(n=6, size=4)
    arch = mlp([16], out=1)
    hist = ra.train_with_augmentation(arch, x, y, C4, x[:2], mode="systematic", members=3,
                                      epochs=4, record_every=4, learning_rate=0.5, seed=7)
    net = arch.flax()
    config = TrainConfig(learning_rate=0.5, epochs=4, strategy="vmap")
    state = init_ensemble(net, np.asarray(augment_full_orbit(x, y, C4).x), 3, seed=7,
                          config=config)
    state, _ = train_ensemble(net, state, x, y, config, seed=7, group=C4, progress=False)
    reference = np.asarray(ensemble_apply(net, state.params, np.asarray(C4.orbit(x[:2])).reshape(
        -1, 4, 4, 1))).reshape(3, 4, 2, 1)
    np.testing.assert_allclose(hist.outputs[-1], reference, rtol=1e-5, atol=1e-5)


def test_random_member_is_not_invariant_but_the_systematic_ensemble_is_closer():
    x, y = blob_regression(16, 6, seed=0)
    y = (y - y.mean()) / y.std()
    x_eval = blob_regression(16, 6, seed=1)[0]
    arch = mlp([32], out=1)
    common = dict(members=16, epochs=10, record_every=10, learning_rate=2.0, seed=0)
    rnd = ra.train_with_augmentation(arch, x, y, C4, x_eval, mode="random", **common)
    sys_ = ra.train_with_augmentation(arch, x, y, C4, x_eval, mode="systematic", **common)
    assert rnd.loss[-1].mean() < 0.5 * rnd.loss[0].mean()                  # they did train
    member = ra.rms_orbit_spread(rnd.outputs[-1])                           # (M,)
    ensemble = ra.ensemble_spread_interval(sys_.outputs[-1])                # estimate, low, high
    assert member.min() > 0.05                                              # no member invariant
    assert ensemble[2] < 0.5 * member.mean()                                # M = 16: ~1/4


def test_linearised_members_have_the_exact_expected_mean():
    """Monte Carlo over 1000 infinitely wide members against the closed form, within 4.5 s.e."""
    x, y = tiny(n=4, size=4, seed=2)
    x_eval = tiny(n=3, size=4, seed=5)[0]
    arch = mlp([1], out=1)
    kw = dict(epochs=3, record_every=3, learning_rate=1.0)
    for mode in ra.MODES:
        sim = ra.linearised_members(arch, x, y, C4, x_eval, mode=mode, members=1000, seed=1, **kw)
        exact = ra.expected_linearised_mean(arch, x, y, C4, x_eval, mode=mode, epochs=sim.epochs,
                                            learning_rate=1.0)
        se = sim.outputs.std(1, ddof=1) / np.sqrt(1000)
        z = np.abs(sim.outputs.mean(1) - exact)[1:] / se[1:]
        assert z.max() < 4.5, (mode, z.max())
        # the exact mean is invariant (Proposition), the members are not
        assert orbit_spread(exact).max() < 1e-9 * np.abs(exact).max()
        assert ra.rms_orbit_spread(sim.outputs[-1]).mean() > 0.1


def test_random_mean_is_the_systematic_flow_to_first_order_in_the_learning_rate():
    x, y = tiny(n=4, size=4, seed=2)
    x_eval = tiny(n=3, size=4, seed=5)[0]
    arch = mlp([1], out=1)
    gaps = []
    for lr in (0.4, 0.2):
        epochs = [int(round(2.0 / lr))]                                      # τ = η·epochs = 2
        means = {m: ra.expected_linearised_mean(arch, x, y, C4, x_eval, mode=m, epochs=epochs,
                                                learning_rate=lr) for m in ra.MODES}
        gaps.append(np.abs(means["random"] - means["systematic"]).max())
    assert gaps[1] > 0
    assert 1.7 < gaps[0] / gaps[1] < 2.3                                     # O(η)


def test_expected_member_square_spread_matches_the_ising_blocks_and_monte_carlo(rng):
    order, n = 4, 5
    a = rng.normal(size=(order * n, order * n))
    cov = a @ a.T / (order * n)
    mine = ra.expected_member_square_spread(cov, order)
    np.testing.assert_allclose(mine, expected_squared_orbit_spread(orbit_blocks(cov, order)).mean(),
                               rtol=1e-12)
    draws = rng.multivariate_normal(np.zeros(order * n), cov, size=20000)
    mc = (orbit_spread(draws.reshape(-1, order, n, 1)) ** 2).mean()
    assert abs(mc - mine) < 0.05 * mine


def test_paired_ratio_of_an_ensemble_with_itself_is_one_and_scales():
    o = np.random.default_rng(0).normal(size=(6, 4, 5, 1))
    np.testing.assert_allclose(ra.paired_ratio(o, o)[:2], 1.0, atol=1e-12)
    np.testing.assert_allclose(ra.paired_ratio(2 * o, o)[:2], 2.0, atol=1e-12)


@pytest.mark.parametrize("change, error, match", [
    (dict(group="C0"), ValueError, "unknown group"),
    (dict(group=4), TypeError, "FiniteGroup"),
    (dict(mode="sometimes"), ValueError, "sometimes"),
    (dict(y=np.zeros(6, np.float32)), ValueError, r"\(n, d\)"),
    (dict(y=np.zeros((5, 1), np.float32)), ValueError, "same number of samples"),
    (dict(x_eval=np.zeros((2, 5, 5, 1), np.float32)), ValueError, "x_eval"),
    (dict(epochs=5, record_every=2), ValueError, "divisible"),
    (dict(members=0), ValueError, "members"),
    (dict(learning_rate=-1.0), ValueError, "learning_rate"),
    (dict(arch=cnn([4], out=1)), ValueError, "MLPs only"),
])
def test_bad_input_is_rejected(change, error, match):
    x, y = tiny(n=6)
    kw = dict(arch=mlp([4], out=1), x=x, y=y, group=C4, x_eval=x[:2], mode="random",
              members=2, epochs=2, record_every=1, learning_rate=0.1)
    kw.update(change)
    with pytest.raises(error, match=match):
        ra.train_with_augmentation(**kw)


def test_bad_covariance_and_ratio_inputs_are_rejected():
    with pytest.raises(ValueError, match="covariance"):
        ra.expected_member_square_spread(np.eye(6), 4)
    with pytest.raises(ValueError, match="one shape"):
        ra.paired_ratio(np.zeros((3, 4, 2, 1)), np.zeros((3, 4, 3, 1)))
    with pytest.raises(ValueError, match="mode"):
        ra.linearised_members(mlp([1], out=1), *tiny(), C4, tiny()[0], mode="full", members=2,
                              epochs=1, record_every=1, learning_rate=1.0)


def test_paired_mean_ratio_and_its_standard_error():
    rng = np.random.default_rng(0)
    b = rng.exponential(size=(400,))
    np.testing.assert_allclose(ra.paired_mean_ratio(4 * b, b), [2.0, 0.0], atol=1e-12)
    # the delta-method s.e. of √(mean a / mean b) against its spread over 300 repetitions
    draws = [ra.paired_mean_ratio(*(lambda b: (b + 0.1 * rng.exponential(size=200), b))(
        rng.exponential(size=200))) for _ in range(300)]
    values, ses = np.array(draws).T
    assert 0.8 < values.std() / ses.mean() < 1.25
    with pytest.raises(ValueError, match="paired"):
        ra.paired_mean_ratio(np.ones(3), np.ones(4))
