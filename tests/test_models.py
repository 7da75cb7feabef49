"""eqlib.models: the flax module and the neural-tangents stax triple are the same network."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from eqlib.models import (
    Architecture,
    AvgPool,
    Conv,
    Dense,
    Erf,
    Flatten,
    GlobalAvgPool,
    Relu,
    cnn,
    mlp,
)
from eqlib.ntk import kernels


def transplant(arch: Architecture, flax_params, stax_shapes) -> list:
    """stax params ``[(W, b) | (), …]`` built from the flax ``_Linear_k`` kernels and biases.

    ``stax_shapes``: the shapes of stax's own parameters (from ``jax.eval_shape`` of its init_fn);
    every Dense/Conv layer takes the kernel as is and the bias reshaped to stax's bias shape.
    """
    out, k = [], 0
    for layer, shapes in zip(arch.layers, stax_shapes, strict=True):
        if isinstance(layer, (Dense, Conv)):
            p = flax_params["params"][f"_Linear_{k}"]
            W, b = shapes
            assert p["kernel"].shape == W.shape
            out.append((p["kernel"], jnp.reshape(p["bias"], b.shape)))
            k += 1
        else:
            assert shapes == ()
            out.append(())
    assert k == len(flax_params["params"])
    return out


ARCHS = {
    "mlp-ntk-relu": (mlp([7, 5], 3), (2, 2, 3)),
    "mlp-standard-erf": (mlp([6], 2, "erf", parametrization="standard", W_std=1.3, b_std=0.4), (5,)),
    "cnn-ntk-same-relu": (cnn([3, 4], 2), (6, 6, 1)),
    "cnn-standard-circular-erf": (cnn([3, 4], 2, padding="CIRCULAR", nonlinearity="erf",
                                      parametrization="standard"), (6, 6, 2)),
    "conv-even-kernel-flatten": (Architecture((Conv(3, (2, 2), "CIRCULAR"), Erf(), Conv(2, (2, 3), "VALID"),
                                               Relu(), AvgPool((2, 1)), Flatten(), Dense(2))), (5, 5, 1)),
}


@pytest.mark.parametrize("name", list(ARCHS))
def test_flax_equals_stax_with_transplanted_params(name):
    arch, shape = ARCHS[name]
    init_fn, apply_fn, _ = arch.stax()
    stax_shapes = jax.eval_shape(lambda key: init_fn(key, (1, *shape))[1], jax.random.PRNGKey(0))
    net = arch.flax()
    x = jax.random.normal(jax.random.PRNGKey(2), (4, *shape))
    outputs = []
    for seed in (0, 1):
        flax_params = net.init(jax.random.PRNGKey(seed), x[:1])
        ours = net.apply(flax_params, x)
        theirs = apply_fn(transplant(arch, flax_params, stax_shapes), x)
        assert ours.shape == theirs.shape == (4, arch.output_dim)
        # the same operations in the same order: equal to float32 rounding (bit-equal at the time of writing)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
        outputs.append(np.asarray(ours))
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3  # not trivially: the outputs depend on the parameters


def test_num_params_by_hand():
    assert mlp([3], 2).num_params((5,)) == (5 * 3 + 3) + (3 * 2 + 2)
    assert mlp([3], 2).num_params((2, 2, 1)) == (4 * 3 + 3) + (3 * 2 + 2)
    assert mlp([4, 3], 1).num_params((2,)) == (2 * 4 + 4) + (4 * 3 + 3) + (3 + 1)
    assert cnn([3, 4], 2).num_params((6, 6, 1)) == (9 * 1 * 3 + 3) + (9 * 3 * 4 + 4) + (4 * 2 + 2)


def test_standard_parametrisation_init_scales():
    arch = mlp([400], 1, parametrization="standard", W_std=1.5, b_std=0.3)
    p = arch.flax().init(jax.random.PRNGKey(0), jnp.zeros((1, 300)))["params"]["_Linear_0"]
    np.testing.assert_allclose(np.std(np.asarray(p["kernel"])), 1.5 / math.sqrt(300), rtol=0.02)
    np.testing.assert_allclose(np.std(np.asarray(p["bias"])), 0.3, rtol=0.15)
    conv = cnn([64], 1, parametrization="standard", W_std=2.0)
    k = conv.flax().init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 8)))["params"]["_Linear_0"]["kernel"]
    np.testing.assert_allclose(np.std(np.asarray(k)), 2.0 / math.sqrt(8 * 9), rtol=0.05)
    ntk = mlp([400], 1).flax().init(jax.random.PRNGKey(0), jnp.zeros((1, 300)))["params"]["_Linear_0"]
    np.testing.assert_allclose(np.std(np.asarray(ntk["kernel"])), 1.0, rtol=0.02)


def test_empirical_ntk_of_wide_mlp_matches_kernel_fn():
    """Width 2048, NTK parametrisation: the empirical NTK of the flax module is within 10 % (Frobenius)."""
    arch = mlp([2048], 1)
    net = arch.flax()
    x = jax.random.normal(jax.random.PRNGKey(3), (5, 4))
    flat, unravel = ravel_pytree(net.init(jax.random.PRNGKey(0), x[:1]))
    jac = jax.jacrev(lambda f: net.apply(unravel(f), x)[:, 0])(flat)
    empirical = np.asarray(jac @ jac.T, dtype=np.float64)
    _, analytic = kernels(arch.kernel_fn, x)
    rel = np.linalg.norm(empirical - analytic) / np.linalg.norm(analytic)
    assert rel < 0.10, rel
    # the comparison is sharp enough to see a wrong parametrisation: standard is off by a lot
    std_net = mlp([2048], 1, parametrization="standard").flax()
    flat_s, unravel_s = ravel_pytree(std_net.init(jax.random.PRNGKey(0), x[:1]))
    jac_s = jax.jacrev(lambda f: std_net.apply(unravel_s(f), x)[:, 0])(flat_s)
    assert np.linalg.norm(np.asarray(jac_s @ jac_s.T) - analytic) / np.linalg.norm(analytic) > 0.5


@pytest.mark.parametrize("make", [
    lambda: cnn([3], 1, padding="FOO"),
    lambda: Architecture((Conv(3, padding="FOO"), GlobalAvgPool(), Dense(1))),
    lambda: mlp([0], 1),
    lambda: mlp([3], 0),
    lambda: cnn([0], 1),
    lambda: mlp([3], 1, nonlinearity="tanh"),
    lambda: cnn([3], 1, nonlinearity="swish"),
    lambda: mlp([3], 1, parametrization="x"),
    lambda: Architecture(()),
    lambda: cnn([3, 3], 1, pool_after=[True]),
], ids=["cnn-padding", "conv-padding", "width-0", "out-0", "channels-0", "nonlin-mlp", "nonlin-cnn",
        "parametrization", "empty", "pool_after-length"])
def test_invalid_specs_rejected(make):
    with pytest.raises(ValueError):
        make()


def test_unknown_layer_and_bad_input_rank():
    with pytest.raises(TypeError):
        Architecture(("relu",))
    net = cnn([3], 1).flax()
    with pytest.raises(ValueError, match="Conv expects"):
        net.init(jax.random.PRNGKey(0), jnp.zeros((1, 16)))
