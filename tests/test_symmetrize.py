"""Group averaging gives exactly equivariant models; sampled SO(2) rotations act as stated."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from eqlib.groups import CyclicRotations, Dihedral4, SampledRotations, octahedral_group
from eqlib.metrics import equivariance_error, orbit_outputs, orbit_spread
from eqlib.symmetrize import group_average


def test_group_average_of_a_linear_map_is_invariant(rng):
    x = rng.normal(size=(5, 6, 6, 2)).astype(np.float32)
    w = rng.normal(size=(72, 3)).astype(np.float32)
    f = lambda z: z.reshape(z.shape[0], -1) @ w
    for group in (CyclicRotations(4), Dihedral4()):
        assert orbit_spread(orbit_outputs(f, x, group)).max() > 0.1          # f itself is not invariant
        assert orbit_spread(orbit_outputs(group_average(f, group), x, group)).max() < 1e-5


def test_group_average_with_vector_outputs_is_equivariant(rng):
    group = octahedral_group()
    a = rng.normal(size=(6, 3)).astype(np.float32)
    f = lambda v: v.reshape(v.shape[0], -1) @ a
    v = rng.normal(size=(4, 2, 3)).astype(np.float32)
    assert equivariance_error(orbit_outputs(f, v, group), group, group.act).max() > 0.1
    averaged = group_average(f, group, group.act)
    assert equivariance_error(orbit_outputs(averaged, v, group), group, group.act).max() < 1e-5


def test_group_average_of_an_invariant_function_is_unchanged(rng):
    x = rng.normal(size=(3, 5, 5, 1)).astype(np.float32)
    f = lambda z: (z ** 2).sum(axis=(1, 2, 3))[:, None]
    np.testing.assert_allclose(group_average(f, CyclicRotations(4))(x), f(x), rtol=1e-5)


def test_sampled_rotations_uniform_and_exactness(rng):
    s = SampledRotations.uniform(8)
    assert s.order == 8 and s.angles[0] == 0 and not s.exact
    quarter = SampledRotations([0, math.pi / 2, math.pi, 3 * math.pi / 2])
    assert quarter.exact
    x = rng.normal(size=(2, 7, 7, 1)).astype(np.float32)
    np.testing.assert_array_equal(quarter.act(1, x), np.rot90(x, 1, axes=(1, 2)))
    # a multiple of 90° inside a fine sample is exact too
    np.testing.assert_array_equal(s.act(2, jnp.asarray(x)), np.rot90(x, 1, axes=(1, 2)))


def test_sampled_rotations_reject_bad_angles():
    for bad in ([], [[0.0, 1.0]], [0.0, float("nan")]):
        with pytest.raises(ValueError, match="angles"):
            SampledRotations(bad)


def test_group_average_is_a_projection(rng):
    """f^G is equivariant, so averaging it again changes nothing: (f^G)^G = f^G."""
    group = octahedral_group()
    a = rng.normal(size=(6, 3)).astype(np.float32)
    f = lambda v: v.reshape(v.shape[0], -1) @ a
    v = rng.normal(size=(4, 2, 3)).astype(np.float32)
    once = group_average(f, group, group.act)
    twice = group_average(once, group, group.act)
    np.testing.assert_allclose(twice(v), once(v), atol=1e-5)
    assert np.abs(np.asarray(once(v)) - np.asarray(f(v))).max() > 0.1      # f itself changed
