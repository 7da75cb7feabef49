"""eqlib.augment: full-orbit augmentation and the index permutations π_g (the permutation lemma's setting)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eqlib.augment import augment_full_orbit, orbit_permutations, permutation_matrix
from eqlib.groups import CyclicRotations, Dihedral4, SpinFlip, octahedral_group

FEW = settings(max_examples=8, deadline=None, derandomize=True)
O = octahedral_group()
D4 = Dihedral4()


def cross_data(n: int, seed: int = 0):
    """Pairs of 3-vectors ``x: (n, 2, 3)`` and the equivariant target ``y = x₁ × x₂``."""
    x = np.random.default_rng(seed).normal(size=(n, 2, 3)).astype(np.float32)
    return x, np.cross(x[:, 0], x[:, 1])


def test_shapes_and_layout(rng):
    x = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
    y = rng.normal(size=(3, 2)).astype(np.float32)
    aug = augment_full_orbit(x, y, D4)
    assert aug.x.shape == (8 * 3, 4, 4, 1) and aug.y.shape == (8 * 3, 2)
    assert aug.permutations.shape == (8, 8 * 3)
    # group-element-major: index h·n + i holds ρ_X(h) x_i, and invariant targets are repeated
    for h in range(8):
        np.testing.assert_array_equal(aug.x[h * 3:(h + 1) * 3], D4.act(h, jnp.asarray(x)))
        np.testing.assert_array_equal(aug.y[h * 3:(h + 1) * 3], y)


def test_cross_product_targets_are_equivariant():
    x, y = cross_data(5)
    aug = augment_full_orbit(x, y, O, act_y=O.act)
    assert aug.x.shape == (24 * 5, 2, 3) and aug.y.shape == (24 * 5, 3)
    X, Y = np.asarray(aug.x), np.asarray(aug.y)
    np.testing.assert_allclose(Y, np.cross(X[:, 0], X[:, 1]), atol=1e-5)


@pytest.mark.parametrize("which", ["D4-images", "O-cross"])
def test_group_acts_on_augmented_set_as_permutation(which, rng):
    if which == "D4-images":
        G, act_y = D4, None
        x, y = rng.normal(size=(3, 4, 4, 2)).astype(np.float32), rng.normal(size=(3, 1)).astype(np.float32)
    else:
        G, act_y = O, O.act
        x, y = cross_data(4)
    aug = augment_full_orbit(x, y, G, act_y=act_y)
    for g in range(G.order):
        perm = aug.permutations[g]
        np.testing.assert_allclose(G.act(g, aug.x), aug.x[perm], atol=1e-6)
        np.testing.assert_allclose((act_y or (lambda g, v: v))(g, aug.y), aug.y[perm], atol=1e-5)


@pytest.mark.parametrize("G", [D4, O, CyclicRotations(4)], ids=["D4", "O", "C4"])
@FEW
@given(data=st.data())
def test_permutations_compose_like_the_group(G, data):
    n = data.draw(st.integers(1, 4))
    perms = orbit_permutations(G, n)
    g, h = data.draw(st.integers(0, G.order - 1)), data.draw(st.integers(0, G.order - 1))
    for p in (perms[g], perms[h]):
        assert sorted(p.tolist()) == list(range(G.order * n))
    # ρ(g)ρ(h)X[k] = ρ(g)X[π_h(k)] = X[π_g(π_h(k))], hence π_{g∘h} = π_g ∘ π_h as index arrays:
    np.testing.assert_array_equal(perms[G.compose(g, h)], perms[g][perms[h]])
    np.testing.assert_array_equal(perms[0], np.arange(G.order * n))
    # and as matrices Π(g∘h) = Π(h)·Π(g) for (Π v)_k = v_{π(k)}
    P = permutation_matrix
    np.testing.assert_array_equal(P(perms[G.compose(g, h)]), P(perms[h]) @ P(perms[g]))


def test_permutation_matrix(rng):
    perm = rng.permutation(7)
    P = permutation_matrix(perm)
    v = rng.normal(size=7)
    np.testing.assert_array_equal(P @ v, v[perm])
    np.testing.assert_array_equal(P @ P.T, np.eye(7))
    with pytest.raises(ValueError, match="permutation"):
        permutation_matrix(np.array([0, 1, 1]))
    with pytest.raises(ValueError):
        permutation_matrix(np.array([1, 2, 3]))


def _rbf(X: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    X = X.reshape(len(X), -1).astype(np.float64)
    diff = X[:, None] - X[None] - (0 if shift is None else shift)
    return np.exp(-0.1 * (diff ** 2).sum(-1))


def test_invariant_gram_matrix_commutes_with_permutations(rng):
    x = rng.normal(size=(3, 4, 4, 1)).astype(np.float32)
    aug = augment_full_orbit(x, np.zeros((3, 1), np.float32), D4)
    theta = _rbf(np.asarray(aug.x))
    shifted = _rbf(np.asarray(aug.x), shift=rng.normal(size=16))  # not invariant: depends on direction
    broken = 0.0
    for g in range(D4.order):
        P = permutation_matrix(aug.permutations[g])
        np.testing.assert_allclose(P @ theta @ P.T, theta, atol=1e-12)
        np.testing.assert_allclose(P @ theta, theta @ P, atol=1e-12)
        broken = max(broken, np.abs(P @ shifted @ P.T - shifted).max())
    assert broken > 1e-2  # the test can tell an invariant kernel from a non-invariant one


def test_mismatched_lengths(rng):
    with pytest.raises(ValueError, match="same number"):
        augment_full_orbit(rng.normal(size=(3, 4, 4, 1)), rng.normal(size=(2, 1)), D4)
    with pytest.raises(ValueError):
        augment_full_orbit(rng.normal(size=(3, 4, 4, 1)), np.float32(1.0), D4)


class _BadC4(CyclicRotations):
    """Rotates by 90° for g = 1 and does nothing otherwise: not a representation of C4."""

    def act(self, g, x):
        return jnp.rot90(x, 1, axes=(-3, -2)) if self._check_element(g) == 1 else x


def test_non_homomorphic_actions_are_rejected(rng):
    x = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
    y = rng.normal(size=(2, 1)).astype(np.float32)
    with pytest.raises(ValueError, match="ρ_X"):
        augment_full_orbit(x, y, _BadC4(4))

    def bad_act_y(g, v):  # sign flip for g = 1 only
        return -v if g == 1 else v

    with pytest.raises(ValueError, match="ρ_Y"):
        augment_full_orbit(x, y, CyclicRotations(4), act_y=bad_act_y)
    # a genuine representation on the targets passes
    augment_full_orbit(x, y, CyclicRotations(2), act_y=lambda g, v: SpinFlip().act(g, v))


def test_interpolated_group_is_checked_only_on_request(rng):
    x = rng.normal(size=(2, 5, 5, 1)).astype(np.float32)
    y = np.zeros((2, 1), np.float32)
    aug = augment_full_orbit(x, y, CyclicRotations(8))  # inexact: no check by default
    assert aug.x.shape == (16, 5, 5, 1)
    with pytest.raises(ValueError, match="not a representation"):
        augment_full_orbit(x, y, CyclicRotations(8), check=True)
