"""Canonicalisation for C4: exact invariance where the rule has a unique maximum; ties counted."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqlib.canonicalize import (Canonicalized, canonical_rotation, canonicalize, direction_template,
                                orientation_scores, ties)
from eqlib.models import cnn


def _rot(x, k=1):
    return jnp.rot90(x, k, axes=(1, 2))


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.PRNGKey(0), (16, 8, 8, 1))


def test_scores_shift_bit_for_bit_under_rotation(images):
    s = orientation_scores(images)
    for k in range(1, 4):
        np.testing.assert_array_equal(orientation_scores(_rot(images, k)), jnp.roll(s, -k, axis=-1))
        np.testing.assert_array_equal(canonical_rotation(_rot(images, k)),
                                      (canonical_rotation(images) - k) % 4)


def test_canonical_images_are_equal_on_orbits_without_ties(images):
    assert not ties(images).any()                     # random images: no exact ties
    canonical = canonicalize(images)
    for k in range(1, 4):
        np.testing.assert_array_equal(canonicalize(_rot(images, k)), canonical)
    # the canonical image has its centre of ink lowest among the four rotations
    s = orientation_scores(canonical)
    assert bool((s[:, 0] >= s.max(-1)).all())


def test_invariance_fails_only_on_ties():
    """Every single-pixel 8×8 image: invariance fails only where the rule ties — and it does fail."""
    x = jnp.eye(64).reshape(64, 8, 8, 1)
    tied = ties(x)
    canonical = canonicalize(x)
    broken = np.zeros(64, bool)
    for k in range(1, 4):
        broken |= np.asarray((canonicalize(_rot(x, k)) != canonical).any(axis=(1, 2, 3)))
    assert broken.any()                               # the tie-break is not equivariant …
    assert not (broken & ~tied).any()                 # … and nothing else breaks


def test_canonicalized_network_is_exactly_invariant(images):
    net = Canonicalized(cnn([2, 4], 3, head="flatten", parametrization="standard").flax())
    params = jax.jit(net.init)(jax.random.PRNGKey(1), images[:1])
    apply = jax.jit(net.apply)
    orbit = jnp.concatenate([_rot(images, k) for k in range(4)])
    logits = np.asarray(apply(params, orbit)).reshape(4, len(images), 3)
    np.testing.assert_array_equal(logits, np.broadcast_to(logits[:1], logits.shape))
    plain = cnn([2, 4], 3, head="flatten", parametrization="standard").flax()
    raw = np.asarray(jax.jit(plain.apply)({"params": params["params"]["net"]}, orbit))
    raw = raw.reshape(4, len(images), 3)
    assert np.abs(raw - raw[:1]).max() > 1e-3        # the network alone is not invariant


def test_templates_and_bad_input():
    T = direction_template(4)
    np.testing.assert_allclose(T[:, 0], [-1.5, -0.5, 0.5, 1.5])
    np.testing.assert_allclose(T[0], -1.5)
    with pytest.raises(ValueError, match="direction must not be zero"):
        direction_template(4, (0.0, 0.0))
    with pytest.raises(ValueError, match="square images"):
        canonicalize(jnp.zeros((2, 4, 6, 1)))
    with pytest.raises(ValueError, match="rtol must be non-negative"):
        ties(jnp.zeros((1, 4, 4, 1)), rtol=-1.0)
    assert ties(jnp.zeros((1, 4, 4, 1))).all()       # a blank image ties everywhere
