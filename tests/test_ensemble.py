"""eqlib.ensemble: members are pure functions of (seed, m) whatever the strategy; training, checks, resume."""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eqlib.augment import augment_full_orbit
from eqlib.ensemble import (
    Batch,
    EnsembleState,
    TrainConfig,
    batch_indices,
    ensemble_apply,
    ensemble_core,
    init_ensemble,
    loss_value,
    make_optimizer,
    member_keys,
    member_params,
    resolve_strategy,
    scan_epoch,
    train_ensemble,
    train_in_chunks,
)
from eqlib.groups import SpinFlip
from eqlib.models import mlp

NET = mlp([8], 1).flax()


def data(n: int = 8, seed: int = 0, out: int = 1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, out)).astype(np.float32)


def train(config: TrainConfig, x, y, members=3, member_ids=None, seed=1, **kwargs):
    state = init_ensemble(NET, x, members, seed=seed, config=config, member_ids=member_ids)
    return train_ensemble(NET, state, x, y, config, seed=seed, progress=False, **kwargs)


def max_diff(a, b) -> float:
    return max(float(jnp.abs(u - v).max()) for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def slot(params, m: int):
    return jax.tree_util.tree_map(lambda leaf: leaf[m], params)


# ------------------------------------------------------------------------------ strategies

def test_strategies_give_the_same_members_as_training_alone():
    x, y = data()
    base = dict(learning_rate=0.05, momentum=0.9, epochs=2, batch_size=3)  # minibatches: order matters
    alone = [train(TrainConfig(strategy="loop", **base), x, y, member_ids=[m])[0].params for m in range(3)]
    assert max_diff(alone[0], alone[1]) > 1e-2  # members differ
    for strategy, unroll in (("loop", 8), ("unrolled", 2), ("vmap", 8)):
        state, history = train(TrainConfig(strategy=strategy, unroll=unroll, **base), x, y)
        assert state.member_ids == (0, 1, 2) and state.epoch == 2
        assert history["loss"].shape == (2, 3)
        for m in range(3):
            assert max_diff(slot(state.params, m), slot(alone[m], 0)) <= 1e-6, (strategy, m)
            assert max_diff(member_params(state, m), slot(state.params, m)) == 0.0


def test_train_in_chunks_gives_the_members_of_one_call_with_a_checkpoint_per_chunk(tmp_path):
    x, y = data()
    config = TrainConfig(learning_rate=0.05, epochs=2, batch_size=3)
    whole, _ = train(config, x, y, members=5)
    names = []

    def checkpoint(name):
        names.append(name)
        return tmp_path / f"{name}.npz"

    chunks = list(train_in_chunks(NET, x, y, config, 5, 2, seed=1, checkpoint=checkpoint, name="train_a",
                                  progress=False))
    assert [state.member_ids for state, _ in chunks] == [(0, 1), (2, 3), (4,)]
    assert names == ["train_a_members0-1", "train_a_members2-3", "train_a_members4-4"]
    assert all((tmp_path / f"{n}.npz").exists() for n in names)
    for m in range(5):
        state, history = chunks[m // 2]
        assert history["loss"].shape == (2, len(state.member_ids))
        assert max_diff(slot(state.params, m % 2), slot(whole.params, m)) <= 1e-6, m
    [(single, _)] = train_in_chunks(NET, x, y, config, 5, None, seed=1, checkpoint=checkpoint, progress=False)
    assert names[-1] == "train" and max_diff(single.params, whole.params) == 0.0
    with pytest.raises(ValueError, match="chunk"):
        next(train_in_chunks(NET, x, y, config, 5, 0))


def test_resolve_strategy():
    one_cpu = jax.default_backend() == "cpu" and jax.device_count() == 1
    assert resolve_strategy("auto") == ("unrolled" if one_cpu else "vmap")
    for s in ("vmap", "unrolled", "loop"):
        assert resolve_strategy(s) == s
    with pytest.raises(ValueError, match="pmap"):
        resolve_strategy("pmap")


@pytest.mark.parametrize("strategy", ["loop", "unrolled", "vmap"])
def test_training_leaves_the_callers_state_usable(strategy):
    """train_ensemble returns a new state; the one passed in (and params handed to on_epoch_end) stay valid,
    e.g. to train the same initial members once with and once without augmentation."""
    x, y = data()
    config = TrainConfig(learning_rate=0.1, epochs=2, strategy=strategy)
    init = init_ensemble(NET, x, 2, seed=1, config=config)
    before = jax.tree_util.tree_map(np.array, init.params)
    seen = []
    train_ensemble(NET, init, x, y, config, seed=1, progress=False, on_epoch_end=lambda e, p: seen.append(p) or {})
    assert max_diff(init.params, before) == 0.0  # raises "Array has been deleted" if the buffers were donated
    assert max_diff(seen[0], before) == 0.0
    jax.tree_util.tree_map(np.asarray, seen)  # every epoch's params handed to the callback are still alive
    again, _ = train_ensemble(NET, init, x, y, config, seed=1, progress=False)  # a second run from the same init
    assert again.epoch == 2


# ------------------------------------------------------------------------------ seeds

def test_members_are_seeded_and_reproducible():
    x, y = data()
    state = init_ensemble(NET, x, 2, seed=4)
    for m in range(2):
        own = NET.init(jax.random.fold_in(jax.random.PRNGKey(4), m), jnp.asarray(x[:1]))
        assert max_diff(slot(state.params, m), own) == 0.0
    config = TrainConfig(learning_rate=0.1, epochs=2, batch_size=4, strategy="loop")
    a, ha = train(config, x, y, members=2, seed=4)
    b, hb = train(config, x, y, members=2, seed=4)
    assert max_diff(a.params, b.params) == 0.0
    np.testing.assert_array_equal(ha["loss"], hb["loss"])
    c, _ = train(config, x, y, members=2, seed=5)
    assert max_diff(a.params, c.params) > 1e-3


def test_batch_indices():
    np.testing.assert_array_equal(batch_indices(0, 0, 0, 5, None), [[0, 1, 2, 3, 4]])
    np.testing.assert_array_equal(batch_indices(0, 0, 0, 5, 5), [[0, 1, 2, 3, 4]])
    idx = batch_indices(3, 1, 2, 10, 3)
    assert idx.shape == (3, 3) and len(set(idx.ravel().tolist())) == 9  # incomplete last batch dropped
    np.testing.assert_array_equal(idx, batch_indices(3, 1, 2, 10, 3))
    assert not np.array_equal(idx, batch_indices(3, 2, 2, 10, 3))  # other member
    assert not np.array_equal(idx, batch_indices(3, 1, 3, 10, 3))  # other epoch


# ------------------------------------------------------------------------------ training

def test_full_batch_gradient_descent_decreases_mse():
    x, y = data()
    config = TrainConfig(learning_rate=0.2, epochs=15, strategy="loop")
    init = init_ensemble(NET, x, 2, seed=1, config=config)
    state, history = train_ensemble(NET, init, x, y, config, seed=1, progress=False)
    loss = history["loss"]
    assert loss.shape == (15, 2)
    assert (np.diff(loss, axis=0) < 0).all(), loss  # small-step full-batch GD: monotone
    assert (loss[-1] < 0.8 * loss[0]).all(), loss
    np.testing.assert_array_equal(history["epoch"], np.arange(1, 16))
    # the loss of epoch 1 is ½·mean((f − y)²) at the initial parameters (one full-batch step)
    for m in range(2):
        expected = 0.5 * np.mean((np.asarray(NET.apply(slot(init.params, m), x)) - y) ** 2)
        np.testing.assert_allclose(loss[0, m], expected, rtol=1e-5)
        np.testing.assert_allclose(loss_value("mse", NET.apply(slot(init.params, m), x), y), expected, rtol=1e-6)


def test_augmentation_inside_the_step_equals_augmented_data():
    """Full batch: training with ``group=`` equals training on the explicitly augmented set."""
    x, y = data()
    Z2 = SpinFlip()
    config = TrainConfig(learning_rate=0.1, epochs=2, strategy="loop")
    inside, _ = train(config, x, y, members=2, group=Z2, act_y=Z2.act)
    aug = augment_full_orbit(x, y, Z2, act_y=Z2.act)
    outside, _ = train(config, aug.x, aug.y, members=2)
    assert max_diff(inside.params, outside.params) <= 1e-5
    plain, _ = train(config, x, y, members=2)
    assert max_diff(inside.params, plain.params) > 1e-3


def test_nan_data_names_member_and_epoch():
    x, y = data()
    x[3, 1] = np.nan
    with pytest.raises(FloatingPointError, match=r"member 2 in epoch 1"):
        train(TrainConfig(epochs=2, strategy="loop"), x, y, member_ids=[2, 5])


def test_cross_entropy_needs_integer_labels():
    x, _ = data()
    net3 = mlp([4], 3).flax()
    config = TrainConfig(loss="cross_entropy", epochs=1, strategy="loop")
    state = init_ensemble(net3, x, 1, config=config)
    with pytest.raises(ValueError, match="integer labels"):
        train_ensemble(net3, state, x, np.zeros(8, np.float32), config, progress=False)
    with pytest.raises(ValueError, match="integer labels"):
        train_ensemble(net3, state, x, np.zeros((8, 1), np.int32), config, progress=False)
    _, history = train_ensemble(net3, state, x, np.arange(8) % 3, config, progress=False)
    assert np.isfinite(history["loss"]).all()


def test_batch_size_larger_than_data():
    x, y = data()
    with pytest.raises(ValueError, match="batch_size"):
        train(TrainConfig(batch_size=9, strategy="loop"), x, y, members=1)
    with pytest.raises(ValueError, match="same number"):
        train(TrainConfig(strategy="loop"), x, y[:5], members=1)


@pytest.mark.parametrize("kwargs", [
    dict(loss="hinge"), dict(optimizer="rmsprop"), dict(strategy="pmap"), dict(learning_rate=0.0),
    dict(learning_rate=-1.0), dict(learning_rate=float("nan")), dict(epochs=-1), dict(unroll=0),
    dict(batch_size=0), dict(optimizer=optax.adam), dict(strategy="loop", scan=True),
], ids=lambda kw: next(iter(kw)) + "=" + getattr(v := next(iter(kw.values())), "__name__", str(v)))
# (ids by name, not repr: a function's repr holds its address, which differs between the
# pytest-xdist workers, and the workers must collect the same test ids)
def test_train_config_rejects_invalid_values(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_chunk_is_a_deprecated_name_of_unroll():
    with pytest.warns(DeprecationWarning, match="unroll"):
        config = TrainConfig(chunk=3)
    assert config.unroll == 3 and config == TrainConfig(unroll=3)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError):
        TrainConfig(chunk=0)


def test_init_ensemble_needs_members():
    x, _ = data()
    for bad in (0, -2, 2.5, None, True):
        with pytest.raises(ValueError, match="num_members"):
            init_ensemble(NET, x, bad)
    for ids in ([], [1, 1], [-1, 2]):
        with pytest.raises(ValueError, match="member_ids"):
            init_ensemble(NET, x, member_ids=ids)


# ------------------------------------------------------------------------------ the optimiser

def test_an_injected_optax_transformation_equals_its_named_twin():
    x, y = data()
    named = TrainConfig(optimizer="adam", learning_rate=0.01, epochs=2, batch_size=4, strategy="unrolled")
    injected = TrainConfig(optimizer=optax.adam(0.01), epochs=2, batch_size=4, strategy="unrolled")
    a, ha = train(named, x, y)
    b, hb = train(injected, x, y)
    assert max_diff(a.params, b.params) == 0.0
    np.testing.assert_array_equal(ha["loss"], hb["loss"])
    assert make_optimizer(injected) is injected.optimizer
    assert make_optimizer(named) is make_optimizer(TrainConfig(optimizer="adam", learning_rate=0.01, epochs=7))
    clipped = TrainConfig(optimizer=optax.chain(optax.clip_by_global_norm(1e-3), optax.sgd(0.1)), epochs=1)
    c, _ = train(clipped, x, y)
    free, _ = train(TrainConfig(learning_rate=0.1, epochs=1), x, y)
    init = init_ensemble(NET, x, 3, seed=1)
    assert max_diff(c.params, init.params) <= 0.1 * 1e-3 + 1e-7 < max_diff(free.params, init.params)


def test_an_optimiser_state_of_another_optimiser_is_an_error():
    x, y = data()
    state = init_ensemble(NET, x, 2, seed=1, config=TrainConfig())  # plain SGD: no optimiser state
    for other in (TrainConfig(optimizer="adam", learning_rate=0.01), TrainConfig(momentum=0.9)):
        with pytest.raises(ValueError, match="optimiser state"):
            train_ensemble(NET, state, x, y, other, progress=False)
    train_ensemble(NET, state, x, y, TrainConfig(learning_rate=0.3), progress=False)  # same state: fine


# ------------------------------------------------------------------------------ the core

def test_the_core_is_the_engine():
    """init_ensemble is the core's vmapped init; one vmap epoch of full-batch GD is one core step."""
    x, y = data()
    config = TrainConfig(optimizer="adam", learning_rate=0.01, epochs=1, strategy="vmap")
    core = ensemble_core(NET, make_optimizer(config), "mse")
    keys = member_keys(1, [0, 1, 2])
    state = jax.jit(core.init)(keys, jnp.asarray(x[:1]))
    ens = init_ensemble(NET, x, 3, seed=1, config=config)
    assert max_diff(state, (ens.params, ens.opt_state)) == 0.0
    stepped, loss = jax.jit(core.step)(state, Batch(jnp.asarray(x), jnp.asarray(y), jnp.tile(jnp.arange(8), (3, 1))))
    trained, history = train_ensemble(NET, ens, x, y, config, seed=1, progress=False)
    assert loss.shape == (3,)
    assert max_diff(stepped.params, trained.params) == 0.0
    np.testing.assert_array_equal(np.asarray(loss), history["loss"][0])
    with pytest.raises(TypeError, match="GradientTransformation"):
        ensemble_core(NET, "adam")


def test_scan_epoch_equals_steps_from_python_and_checks_on_the_device():
    x, y = data()
    base = dict(learning_rate=0.05, momentum=0.9, epochs=2, batch_size=3, strategy="vmap")
    stepped, hs = train(TrainConfig(scan=False, **base), x, y)
    scanned, hc = train(TrainConfig(scan=True, **base), x, y)
    assert max_diff(stepped.params, scanned.params) <= 1e-6
    np.testing.assert_allclose(hs["loss"], hc["loss"], rtol=1e-6)
    core = ensemble_core(NET, make_optimizer(TrainConfig(**base)))
    state = core.init(member_keys(1, [0, 1]), jnp.asarray(x[:1]))
    idx = np.stack([batch_indices(1, m, 0, 8, 3) for m in range(2)])  # (2 members, 2 steps, 3)
    x_nan = x.copy()
    x_nan[3] = np.nan  # seed 1: only in member 1's second minibatch of epoch 1
    assert 3 in idx[1, 1] and 3 not in idx[0] and 3 not in idx[1, 0]
    _, losses, finite = scan_epoch(core)(state, jnp.asarray(x_nan), jnp.asarray(y), jnp.asarray(idx))
    assert losses.shape == (2, 2) and not bool(finite)
    np.testing.assert_array_equal(np.isfinite(losses), [[True, True], [True, False]])
    with pytest.raises(FloatingPointError, match=r"member 1 in epoch 1, step 2"):
        train(TrainConfig(scan=True, **base), x_nan, y, members=2, seed=1)


# ------------------------------------------------------------------------------ callbacks, checkpoints

def test_on_epoch_end_called_at_zero_and_after_every_epoch():
    x, y = data()
    calls = []

    def on_epoch_end(epoch, params):
        calls.append((epoch, params))
        return {"norm": float(jnp.abs(params["params"]["_Linear_0"]["kernel"]).sum()), "tag": 10 * epoch}

    config = TrainConfig(learning_rate=0.1, epochs=3, strategy="loop")
    init = init_ensemble(NET, x, 2, seed=1, config=config)
    state, history = train_ensemble(NET, init, x, y, config, seed=1, on_epoch_end=on_epoch_end, progress=False)
    assert [e for e, _ in calls] == [0, 1, 2, 3]
    assert max_diff(calls[0][1], init.params) == 0.0
    assert max_diff(calls[-1][1], state.params) == 0.0
    np.testing.assert_array_equal(history["epoch"], [0, 1, 2, 3])
    np.testing.assert_array_equal(history["tag"], [0, 10, 20, 30])
    assert history["norm"].shape == (4,) and history["loss"].shape == (3, 2)
    assert len(set(history["norm"].tolist())) == 4  # params changed every epoch


def test_checkpoint_resume_runs_only_the_missing_epochs(tmp_path):
    x, y = data(n=9)
    ckpt = tmp_path / "ensemble.npz"
    base = dict(optimizer="adam", learning_rate=0.01, batch_size=4, strategy="loop")  # stateful optimiser
    calls = []

    def record(epoch, params):
        calls.append(epoch)
        return {"tag": epoch}

    first, _ = train(TrainConfig(epochs=2, **base), x, y, members=2, on_epoch_end=record, checkpoint=ckpt)
    assert calls == [0, 1, 2] and ckpt.exists()
    calls.clear()
    resumed, history = train(TrainConfig(epochs=3, **base), x, y, members=2, on_epoch_end=record, checkpoint=ckpt)
    assert calls == [3]  # only the third epoch ran
    assert resumed.epoch == 3
    straight, straight_history = train(TrainConfig(epochs=3, **base), x, y, members=2, on_epoch_end=lambda e, p: {"tag": e})
    assert max_diff(resumed.params, straight.params) <= 1e-7
    assert max_diff(resumed.opt_state, straight.opt_state) <= 1e-7
    assert max_diff(resumed.params, first.params) > 1e-4
    np.testing.assert_array_equal(history["epoch"], [0, 1, 2, 3])
    np.testing.assert_array_equal(history["tag"], [0, 1, 2, 3])
    np.testing.assert_allclose(history["loss"], straight_history["loss"], rtol=1e-6)
    # a finished run resumes to nothing; another ensemble cannot use the file
    calls.clear()
    again, _ = train(TrainConfig(epochs=3, **base), x, y, members=2, on_epoch_end=record, checkpoint=ckpt)
    assert calls == [] and max_diff(again.params, resumed.params) == 0.0
    with pytest.raises(ValueError, match="members"):
        train(TrainConfig(epochs=3, **base), x, y, members=3, checkpoint=ckpt)


# ------------------------------------------------------------------------------ apply

@pytest.mark.parametrize("strategy", ["loop", "unrolled", "vmap"])
def test_ensemble_apply_matches_members(strategy):
    x, _ = data(n=7)
    state: EnsembleState = init_ensemble(NET, x, 3, seed=2)
    out = ensemble_apply(NET, state.params, x, batch_size=3, strategy=strategy)
    assert out.shape == (3, 7, 1)
    for m in range(3):
        np.testing.assert_allclose(out[m], NET.apply(slot(state.params, m), x), rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(out[0] - out[1]).max()) > 1e-3


# ------------------------------------------------------------------------------ bit-identity with a stored reference
# tests/data/ensemble_reference.npz (12 kB) was written by the engine before its rewrite into a core and a
# driver (commit c41cef5, TrainConfig's `unroll` then called `chunk`), on the 2-core CPU VM with jax 0.5.3:
# `python tests/test_ensemble.py` rewrites it — only do that on purpose, with the engine it should pin.

REFERENCE = Path(__file__).parent / "data" / "ensemble_reference.npz"
REFERENCE_STRATEGIES = (("loop", 8), ("unrolled", 2), ("vmap", 8))


def reference_cases():
    """(name, net, x, y, group, TrainConfig kwargs): an MLP (MSE, Z2) and a CNN (cross-entropy, C4)."""
    from eqlib.groups import CyclicRotations
    from eqlib.models import cnn

    rng = np.random.default_rng(7)
    xv, yv = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    xi, yi = rng.normal(size=(8, 4, 4, 1)).astype(np.float32), rng.integers(0, 2, 8)
    nets = {"mlp": (NET, xv, yv, SpinFlip(), "mse"), "cnn": (cnn([2, 3], 2).flax(), xi, yi, CyclicRotations(4),
                                                            "cross_entropy")}
    optimisers = {"sgd": dict(optimizer="sgd", learning_rate=0.05, momentum=0.9),
                  "adam": dict(optimizer="adam", learning_rate=0.01)}
    for net_name, opt_name, aug in (("mlp", "sgd", False), ("mlp", "adam", True), ("cnn", "sgd", True),
                                    ("cnn", "adam", False)):
        net, x, y, group, loss = nets[net_name]
        name = f"{net_name}_{opt_name}_{'aug' if aug else 'plain'}"
        yield name, net, x, y, group if aug else None, optimisers[opt_name] | dict(loss=loss, epochs=3, batch_size=4)


def run_reference_case(net, x, y, group, strategy: str, unroll: int, **config_kwargs):
    """3 members (seed 3), 3 epochs of 2 steps, trained with the public API → (params leaves, losses (3, 3))."""
    config = TrainConfig(strategy=strategy, unroll=unroll, **config_kwargs)
    state = init_ensemble(net, x, 3, seed=3, config=config)
    state, history = train_ensemble(net, state, x, y, config, seed=3, group=group, progress=False)
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(state.params)], history["loss"]


def write_reference(path: Path = REFERENCE) -> None:
    arrays = {}
    for name, net, x, y, group, kwargs in reference_cases():
        for strategy, unroll in REFERENCE_STRATEGIES:
            leaves, loss = run_reference_case(net, x, y, group, strategy, unroll, **kwargs)
            arrays[f"{name}/{strategy}"] = np.concatenate([leaf.ravel() for leaf in leaves] + [loss.ravel()])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


@pytest.mark.parametrize("strategy,unroll", REFERENCE_STRATEGIES, ids=[s for s, _ in REFERENCE_STRATEGIES])
def test_members_are_bit_identical_to_the_stored_reference(strategy, unroll):
    """Every strategy reproduces, bit for bit, the members and losses the engine gave before its rewrite."""
    if jax.default_backend() != "cpu":
        pytest.skip("the reference was computed on the CPU")
    ref = np.load(REFERENCE)
    for name, net, x, y, group, kwargs in reference_cases():
        leaves, loss = run_reference_case(net, x, y, group, strategy, unroll, **kwargs)
        key = f"{name}/{strategy}"
        got = np.concatenate([leaf.ravel() for leaf in leaves] + [loss.ravel()])
        assert got.shape == ref[key].shape and got.dtype == ref[key].dtype, key
        assert np.array_equal(got, ref[key]), (key, np.flatnonzero(got != ref[key])[:10])


if __name__ == "__main__":
    write_reference()
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size} bytes)")
