"""The C4 group-convolutional network: equivariant layers, an invariant network, a control that fails."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqlib.gcnn import (GCNN, ORDER, gcnn, group_conv, group_filters, invariant_pool, lifting_conv,
                        lifting_filters, num_params, rotate_fields)

TOL = 1e-5          # float32: sums taken in another order differ by a few ulps


def _rel(a, b) -> float:
    return float(jnp.abs(a - b).max() / jnp.abs(b).max())


def _rot(x, k=1):
    return jnp.rot90(x, k, axes=(1, 2))


@pytest.fixture(scope="module")
def images():
    return jax.random.normal(jax.random.PRNGKey(0), (3, 12, 12, 2))


def test_rotate_fields_is_a_representation_of_c4():
    f = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 6, ORDER, 3))
    np.testing.assert_array_equal(rotate_fields(rotate_fields(f, 1), 3), f)
    np.testing.assert_array_equal(rotate_fields(rotate_fields(f, 1), 1), rotate_fields(f, 2))
    assert _rel(rotate_fields(f, 1), f) > 0.1                       # not the trivial action
    with pytest.raises(ValueError, match="fields must be"):
        rotate_fields(jnp.zeros((2, 6, 6, 3, 3)))


def test_lifting_and_group_convolutions_are_equivariant(images):
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    W, b = jax.random.normal(keys[0], (3, 3, 2, 5)), jax.random.normal(keys[1], (5,))
    psi, c = jax.random.normal(keys[2], (3, 3, ORDER, 5, 4)), jax.random.normal(keys[3], (4,))
    lift = jax.jit(lambda x: lifting_conv(x, W, b))
    conv = jax.jit(lambda f: group_conv(f, psi, c))
    lifted = lift(images)
    convolved = conv(lifted)
    for k in range(1, ORDER):
        assert _rel(lift(_rot(images, k)), rotate_fields(lifted, k)) < TOL
        assert _rel(conv(rotate_fields(lifted, k)), rotate_fields(convolved, k)) < TOL
        assert _rel(invariant_pool(conv(rotate_fields(lifted, k))), invariant_pool(convolved)) < TOL


def test_unrotated_filters_break_equivariance(images):
    """The control: the same layers with filters that are not rotated are far from equivariant."""
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    W, psi = jax.random.normal(keys[0], (3, 3, 2, 5)), jax.random.normal(keys[1], (3, 3, ORDER, 5, 4))
    lifted = lifting_conv(images, W, 0.0, rotate=False)
    assert _rel(lifting_conv(_rot(images), W, 0.0, rotate=False), rotate_fields(lifted)) > 0.1
    good = lifting_conv(images, W, 0.0)
    assert _rel(group_conv(rotate_fields(good), psi, 0.0, rotate=False),
                rotate_fields(group_conv(good, psi, 0.0, rotate=False))) > 0.1


def test_filter_banks_hold_rotated_copies():
    W = jnp.arange(3 * 3 * 1 * 2, dtype=jnp.float32).reshape(3, 3, 1, 2)
    bank = lifting_filters(W).reshape(3, 3, 1, ORDER, 2)
    for r in range(ORDER):
        np.testing.assert_array_equal(bank[:, :, :, r], jnp.rot90(W, r))
    psi = jnp.arange(3 * 3 * ORDER * 2 * 3, dtype=jnp.float32).reshape(3, 3, ORDER, 2, 3)
    gbank = group_filters(psi).reshape(3, 3, ORDER, 2, ORDER, 3)
    np.testing.assert_array_equal(gbank[:, :, :, :, 0], psi)                          # r = 0: ψ itself
    np.testing.assert_array_equal(gbank[:, :, 1, :, 1], jnp.rot90(psi[:, :, 0], 1))   # rot(ψ[s − r])
    with pytest.raises(ValueError, match="lifting kernel"):
        lifting_filters(jnp.zeros((3, 2, 1, 2)))
    with pytest.raises(ValueError, match="group kernel"):
        group_filters(jnp.zeros((3, 3, 3, 1, 2)))


@pytest.mark.parametrize("head", ["flatten", "gap"])
def test_gcnn_is_invariant_and_its_feature_maps_equivariant(head):
    x = jax.random.uniform(jax.random.PRNGKey(4), (4, 12, 12, 1))
    net = gcnn(2, head=head)
    params = jax.jit(net.init)(jax.random.PRNGKey(5), x[:1])
    assert set(params) == {"params"}                 # init keeps only the parameters
    apply = jax.jit(lambda p, z: net.apply(p, z, mutable=["intermediates"]))
    logits, state = apply(params, x)
    assert logits.shape == (4, 10)
    for k in range(1, ORDER):
        rotated, rstate = apply(params, _rot(x, k))
        assert _rel(rotated, logits) < TOL
        for name, (fields,) in state["intermediates"].items():
            assert _rel(rstate["intermediates"][name][0], rotate_fields(fields, k)) < TOL, name
    control = GCNN(channels=(2, 4, 8), rotate=False, head=head)
    capply = jax.jit(lambda p, z: control.apply(p, z, mutable=["intermediates"]))
    (_, cstate), (_, crot) = capply(params, x), capply(params, _rot(x))
    first = cstate["intermediates"]["fields_0"][0]
    assert _rel(crot["intermediates"]["fields_0"][0], rotate_fields(first)) > 0.1


def test_gcnn_parameters_and_bad_input():
    # lifting 3·3·1·w + w, group convs 3·3·4·w·2w + 2w and 3·3·4·2w·4w + 4w, then the read-out:
    # "gap" 4w·10 + 10; "flatten" (7·7·4·4w)·10 + 10 on 28×28 images
    w = 3
    convs = (9 * w + w) + (9 * 4 * w * 2 * w + 2 * w) + (9 * 4 * 2 * w * 4 * w + 4 * w)
    assert num_params(gcnn(w, head="gap")) == convs + 4 * w * 10 + 10
    assert num_params(gcnn(w)) == convs + 7 * 7 * 4 * 4 * w * 10 + 10
    with pytest.raises(ValueError, match="width must be a positive integer"):
        gcnn(0)
    with pytest.raises(ValueError, match="head must be"):
        gcnn(1, head="max").init(jax.random.PRNGKey(0), jnp.zeros((1, 12, 12, 1)))
    net = gcnn(1)
    with pytest.raises(ValueError, match="square images"):
        net.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 20, 1)))
