"""eqlib.groups: group axioms, actions as representations, conventions, interpolated rotations, bad input."""
from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eqlib.groups import (
    CyclicRotations,
    Dihedral4,
    FiniteGroup,
    LatticeTranslations,
    MatrixGroup,
    MatrixSet,
    ProductGroup,
    SpinFlip,
    Trivial,
    GROUP_REGISTRY,
    _bilinear_rotation_weights,
    check_representation,
    get_group,
    group_names,
    octahedral_group,
    random_rotations,
    register_group,
    representation_matrix,
    rotate_image,
)

FEW = settings(max_examples=8, deadline=None, derandomize=True)

# name -> (constructor, event shape of one sample, expected order, representation has signs)
CASES = {
    "C1-1ch": (lambda: CyclicRotations(1), (5, 5, 1), 1, False),
    "C1-3ch": (lambda: CyclicRotations(1), (4, 4, 3), 1, False),
    "C2-1ch": (lambda: CyclicRotations(2), (5, 5, 1), 2, False),
    "C2-3ch": (lambda: CyclicRotations(2), (4, 4, 3), 2, False),
    "C4-1ch": (lambda: CyclicRotations(4), (5, 5, 1), 4, False),
    "C4-3ch": (lambda: CyclicRotations(4), (4, 4, 3), 4, False),
    "D4-1ch": (Dihedral4, (5, 5, 1), 8, False),
    "D4-3ch": (Dihedral4, (4, 4, 3), 8, False),
    "T3": (lambda: LatticeTranslations(3), (3, 3, 1), 9, False),
    "T4": (lambda: LatticeTranslations(4), (4, 4, 2), 16, False),
    "Z2": (SpinFlip, (4, 4, 1), 2, True),
    "trivial": (Trivial, (3,), 1, False),
    "O": (octahedral_group, (3,), 24, True),
    "D4xT4xZ2": (lambda: ProductGroup(Dihedral4(), LatticeTranslations(4), SpinFlip(), probe_shape=(4, 4, 1)),
                 (4, 4, 1), 256, True),
    "C4xZ2": (lambda: ProductGroup(CyclicRotations(4), SpinFlip(), probe_shape=(5, 5, 1)), (5, 5, 1), 8, True),
}
NAMES = list(CASES)


@functools.cache
def group(name: str) -> FiniteGroup:
    return CASES[name][0]()


def shape(name: str) -> tuple[int, ...]:
    return CASES[name][1]


def batch(name: str, seed: int, n: int = 2) -> jnp.ndarray:
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, *shape(name))).astype(np.float32))


def elements(name: str):
    return st.integers(0, group(name).order - 1)


# ------------------------------------------------------------------------------ axioms and laws

@pytest.mark.parametrize("name", NAMES)
def test_axioms_and_order(name):
    G = group(name)
    G.check_axioms()
    assert G.order == CASES[name][2]
    assert len(G.labels) == G.order == len(set(G.labels))
    assert G.table.shape == (G.order, G.order)
    assert G.exact


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(data=st.data())
def test_act_of_composition_is_composition_of_acts(name, data):
    G = group(name)
    g, h = data.draw(elements(name)), data.draw(elements(name))
    x = batch(name, data.draw(st.integers(0, 2**16)))
    np.testing.assert_allclose(G.act(G.compose(g, h), x), G.act(g, G.act(h, x)), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(data=st.data())
def test_inverse_undoes_action(name, data):
    G = group(name)
    g = data.draw(elements(name))
    x = batch(name, data.draw(st.integers(0, 2**16)))
    np.testing.assert_allclose(G.act(G.inverse(g), G.act(g, x)), x, atol=1e-6)
    np.testing.assert_allclose(G.act(g, G.act(G.inverse(g), x)), x, atol=1e-6)
    assert G.compose(g, G.inverse(g)) == 0 == G.compose(G.inverse(g), g)


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(data=st.data())
def test_composition_is_associative(name, data):
    G = group(name)
    g, h, k = (data.draw(elements(name)) for _ in range(3))
    assert G.compose(G.compose(g, h), k) == G.compose(g, G.compose(h, k))
    x = batch(name, 1)
    np.testing.assert_allclose(G.act(G.compose(G.compose(g, h), k), x), G.act(g, G.act(h, G.act(k, x))), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_identity_is_element_zero(name):
    G = group(name)
    x = batch(name, 2, n=3)
    np.testing.assert_array_equal(G.act(0, x), x)
    assert G.identity == 0 and G.inverse(0) == 0
    assert all(G.compose(0, g) == g == G.compose(g, 0) for g in range(G.order))
    orbit = G.orbit(x)
    assert orbit.shape == (G.order, *x.shape)
    np.testing.assert_array_equal(orbit[0], x)


@pytest.mark.parametrize("name", NAMES)
def test_elements_act_distinctly(name):
    """Every exact action is faithful on a generic input: the orbit has |G| different members."""
    G = group(name)
    orbit = np.asarray(G.orbit(batch(name, 3, n=1)))[:, 0].reshape(G.order, -1)
    dist = np.abs(orbit[:, None] - orbit[None]).max(-1)
    assert (dist + np.eye(G.order) > 1e-3).all()


@pytest.mark.parametrize("name", NAMES)
def test_check_representation_is_orthogonal_homomorphism(name):
    report = check_representation(group(name), shape(name))
    assert report["homomorphism"] <= 1e-6
    assert report["orthogonality"] <= 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_representation_matrix_is_signed_permutation(name):
    G, signed = group(name), CASES[name][3]
    x = np.asarray(batch(name, 4, n=1))[0]
    for g in range(G.order):
        rho = representation_matrix(G, g, shape(name))
        d = int(np.prod(shape(name)))
        assert rho.shape == (d, d)
        assert set(np.unique(rho)) <= ({-1.0, 0.0, 1.0} if signed else {0.0, 1.0})
        assert (np.count_nonzero(rho, axis=0) == 1).all() and (np.count_nonzero(rho, axis=1) == 1).all()
        # and it is the matrix of the action
        np.testing.assert_allclose(rho @ x.reshape(-1), np.asarray(G.act(g, jnp.asarray(x)[None]))[0].reshape(-1),
                                   atol=1e-6)


# ------------------------------------------------------------------------------ conventions

def test_c4_is_counter_clockwise_rot90():
    G = CyclicRotations(4)
    img = jnp.asarray([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]
    # counter-clockwise: the top-right pixel moves to the top-left
    np.testing.assert_array_equal(G.act(1, img)[0, :, :, 0], [[2.0, 4.0], [1.0, 3.0]])
    x = np.random.default_rng(0).normal(size=(3, 5, 5, 2)).astype(np.float32)
    for k in range(4):
        np.testing.assert_array_equal(G.act(k, jnp.asarray(x)), np.rot90(x, k, axes=(-3, -2)))
    np.testing.assert_array_equal(CyclicRotations(2).act(1, jnp.asarray(x)), np.rot90(x, 2, axes=(-3, -2)))


def test_d4_element_convention():
    G = Dihedral4()
    x = np.random.default_rng(1).normal(size=(2, 4, 4, 1)).astype(np.float32)
    for s in (0, 1):
        for k in range(4):
            expected = np.rot90(np.flip(x, axis=-2) if s else x, k, axes=(-3, -2))
            np.testing.assert_array_equal(G.act(4 * s + k, jnp.asarray(x)), expected)


@pytest.mark.parametrize("size", [3, 4])
def test_lattice_translation_convention(size):
    G = LatticeTranslations(size)
    x = np.random.default_rng(2).normal(size=(2, size, size, 1)).astype(np.float32)
    for a in range(size):
        for b in range(size):
            np.testing.assert_array_equal(G.act(a * size + b, jnp.asarray(x)), np.roll(x, (a, b), axis=(-3, -2)))


def test_spin_flip_and_trivial():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 3, 3, 1)), dtype=jnp.float32)
    np.testing.assert_array_equal(SpinFlip().act(1, x), -x)
    np.testing.assert_array_equal(Trivial().act(0, x), x)


def test_matrix_group_puts_identity_first():
    r = np.array([[0.0, -1.0], [1.0, 0.0]])
    G = MatrixGroup(np.stack([r, np.eye(2), r @ r, r @ r @ r]), "C4 on R^2")
    G.check_axioms()
    np.testing.assert_array_equal(G.matrices[0], np.eye(2))
    x = jnp.asarray([[1.0, 2.0]])
    np.testing.assert_array_equal(G.act(0, x), x)
    assert check_representation(G, (2,))["homomorphism"] == 0.0


# ------------------------------------------------------------------------------ interpolated rotations

@pytest.mark.parametrize("n", [8, 16])
def test_interpolated_rotations_are_not_representations(n):
    G = CyclicRotations(n)
    assert not G.exact
    G.check_axioms()  # the table is Z_n; only the action is approximate
    report = check_representation(G, (5, 5, 1), strict=False)
    assert report["homomorphism"] > 0.1
    assert report["orthogonality"] > 0.1
    with pytest.raises(ValueError, match="homomorphism"):
        check_representation(G, (5, 5, 1))
    # the quarter turns inside C_n are still exact
    x = jnp.asarray(np.random.default_rng(4).normal(size=(1, 5, 5, 1)), dtype=jnp.float32)
    np.testing.assert_array_equal(G.act(n // 4, x), jnp.rot90(x, 1, axes=(-3, -2)))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_bilinear_path_at_quarter_turns_equals_rot90(k):
    x = np.random.default_rng(5).normal(size=(2, 5, 5, 3)).astype(np.float32)
    index, weight = _bilinear_rotation_weights(5, k * math.pi / 2)
    assert index.shape == weight.shape == (25, 4)
    direct = np.einsum("npkc,pk->npc", x.reshape(2, 25, 3)[:, index, :], weight).reshape(x.shape)
    np.testing.assert_allclose(direct, np.rot90(x, k, axes=(-3, -2)), atol=1e-6)
    for eps in (1e-7, -1e-7):  # off the exact multiple: rotate_image takes the bilinear path
        np.testing.assert_allclose(rotate_image(jnp.asarray(x), k * math.pi / 2 + eps),
                                   np.rot90(x, k, axes=(-3, -2)), atol=1e-5)


def _gaussian_blob(size: int, centre: tuple[float, float], sigma: float = 2.5) -> np.ndarray:
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return np.exp(-((i - centre[0]) ** 2 + (j - centre[1]) ** 2) / (2 * sigma**2))[None, :, :, None].astype(np.float32)


@pytest.mark.parametrize("angle", [math.pi / 8, math.pi / 4, 1.0])
def test_bilinear_rotation_of_smooth_images(angle):
    size, c = 20, 9.5
    radial = _gaussian_blob(size, (c, c))
    np.testing.assert_allclose(rotate_image(jnp.asarray(radial), angle), radial, atol=0.05)
    # a blob above the centre moves counter-clockwise (towards the left) by `angle`
    off = _gaussian_blob(size, (c - 4, c))
    moved = _gaussian_blob(size, (c - 4 * math.cos(angle), c - 4 * math.sin(angle)))
    rotated = np.asarray(rotate_image(jnp.asarray(off), angle))
    np.testing.assert_allclose(rotated, moved, atol=0.05)
    assert np.abs(rotated - off).max() > 0.3  # and it did move (bilinear error alone is < 0.05)


def test_random_rotations():
    R = random_rotations(6, seed=3)
    assert R.shape == (6, 3, 3)
    np.testing.assert_allclose(np.einsum("nji,njk->nik", R, R), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    np.testing.assert_array_equal(R, random_rotations(6, seed=3))
    assert np.abs(R - random_rotations(6, seed=4)).max() > 0.1
    S = MatrixSet(R)
    x = jnp.asarray([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(S.act(2, x), x @ R[2].T.astype(np.float32), atol=1e-6)


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("G", [CyclicRotations(4), CyclicRotations(8), Dihedral4()], ids=["C4", "C8", "D4"])
def test_rotations_need_square_images(G):
    with pytest.raises(ValueError, match="square"):
        G.act(1, jnp.zeros((2, 4, 5, 1)))
    with pytest.raises(ValueError, match="rank|shape"):
        G.act(1, jnp.zeros((4, 4)))


def test_lattice_size_mismatch():
    with pytest.raises(ValueError):
        LatticeTranslations(4).act(1, jnp.zeros((2, 3, 3, 1)))
    with pytest.raises(ValueError):
        LatticeTranslations(4).act(1, jnp.zeros((4, 4)))
    with pytest.raises(ValueError):
        LatticeTranslations(0)


@pytest.mark.parametrize("bad", [4, -1, 100])
def test_element_out_of_range(bad):
    G = CyclicRotations(4)
    with pytest.raises(ValueError, match="out of range"):
        G.act(bad, jnp.zeros((1, 3, 3, 1)))
    with pytest.raises(ValueError):
        G.compose(bad, 0)
    with pytest.raises(ValueError):
        G.inverse(bad)


@pytest.mark.parametrize("bad", [1.0, "1", True, None])
def test_element_must_be_an_integer(bad):
    with pytest.raises(TypeError):
        CyclicRotations(4).act(bad, jnp.zeros((1, 3, 3, 1)))
    with pytest.raises(TypeError):
        SpinFlip().compose(0, bad)


def test_get_group_known_and_unknown():
    for name, order in {"trivial": 1, "C2": 2, "C4": 4, "C8": 8, "C16": 16, "D4": 8, "Z2": 2, "O": 24}.items():
        assert get_group(name).order == order
    with pytest.raises(ValueError, match="C5x") as err:
        get_group("C5x")
    for known in ("trivial", "C4", "D4", "Z2", "O"):
        assert known in str(err.value)


def test_one_registry_serves_every_lookup():
    """The Ising and histology lookups go through get_group: same groups, same names."""
    from eqlib.data.ising import GROUPS, symmetry_group

    for name in GROUPS:
        G, H = symmetry_group(name, 3), get_group(name, size=3)
        assert type(G) is type(H) and G.name == H.name and G.order == H.order
        np.testing.assert_array_equal(G.table, H.table)
    assert get_group("D4xTxZ2", size=3).order == 16 * 9 and get_group("D4xTxZ2", size=3).name == "D4×Z3²×Z2"
    assert get_group("T", size=5).order == 25 and get_group("C4", size=5).order == 4   # size ignored
    with pytest.raises(ValueError, match="lattice size"):
        get_group("T")
    assert set(group_names()) >= {"trivial", "D4", "Z2", "O", "T", "D4xTxZ2"}


def test_register_group(monkeypatch):
    import eqlib.groups

    monkeypatch.setattr(eqlib.groups, "GROUP_REGISTRY", dict(GROUP_REGISTRY))   # restored after the test
    register_group("placeholder", lambda: CyclicRotations(3))
    assert get_group("placeholder").order == 3
    for bad in ("D4", "C7", ""):
        with pytest.raises(ValueError):
            register_group(bad, Trivial)


@pytest.mark.parametrize("n", [3, 6])
def test_get_group_other_cyclic_orders(n):
    """The docstring of get_group promises ``CyclicRotations(n)`` for any other n."""
    G = get_group(f"C{n}")
    assert isinstance(G, CyclicRotations) and G.order == n


def test_non_homomorphic_action_is_detected():
    def quarter_turn_only_for_one(g, x):  # ρ(1)ρ(1) = rot180 but ρ(2) = 1
        return jnp.rot90(x, 1, axes=(-3, -2)) if g == 1 else x

    with pytest.raises(ValueError, match="homomorphism"):
        check_representation(CyclicRotations(4), (3, 3, 1), act=quarter_turn_only_for_one)
    report = check_representation(CyclicRotations(4), (3, 3, 1), act=quarter_turn_only_for_one, strict=False)
    assert report["homomorphism"] >= 1.0


def test_non_orthogonal_action_is_detected():
    A = np.array([[1.0, 1.0], [0.0, -1.0]])  # an involution, A @ A = 1, but not orthogonal
    np.testing.assert_array_equal(A @ A, np.eye(2))

    def act(g, x):
        return x @ jnp.asarray(A.T, dtype=x.dtype) if g else x

    with pytest.raises(ValueError, match="orthogonal"):
        check_representation(SpinFlip(), (2,), act=act)
    report = check_representation(SpinFlip(), (2,), act=act, require_orthogonal=False)
    assert report["homomorphism"] <= 1e-6 and report["orthogonality"] >= 1.0


def test_matrix_group_bad_input():
    r = np.array([[0.0, -1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="closed"):
        MatrixGroup(np.stack([np.eye(2), r]))
    with pytest.raises(ValueError, match="identity"):
        MatrixGroup(np.stack([r, r @ r]))
    with pytest.raises(ValueError):
        MatrixGroup(np.eye(2))
    c, s = math.cos(1.0), math.sin(1.0)
    with pytest.raises(ValueError, match="infinite|more than"):
        MatrixGroup.generated_by([np.array([[c, -s], [s, c]])], "irrational rotation", max_order=50)
    with pytest.raises(ValueError):
        octahedral_group().act(0, jnp.zeros((2, 2)))


def test_product_group_bad_input():
    with pytest.raises(ValueError, match="exact"):
        ProductGroup(CyclicRotations(8), SpinFlip(), probe_shape=(5, 5, 1))
    with pytest.raises(ValueError):
        ProductGroup(SpinFlip(), probe_shape=(3,))


class _TableOnly(FiniteGroup):
    def __init__(self, table):
        self.name = "table"
        self.labels = tuple(str(i) for i in range(len(table)))
        self._set_table(np.asarray(table))


def test_check_axioms_rejects_bad_tables():
    loop5 = [[0, 1, 2, 3, 4],  # a Latin square with identity 0 in which every element is its own
             [1, 0, 3, 4, 2],  # inverse: a loop of order 5, necessarily not associative
             [2, 4, 0, 1, 3],
             [3, 2, 4, 0, 1],
             [4, 3, 1, 2, 0]]
    with pytest.raises(ValueError, match="associative"):
        _TableOnly(loop5).check_axioms()
    with pytest.raises(ValueError, match="identity"):
        _TableOnly([[1, 0], [0, 1]]).check_axioms()
    with pytest.raises(ValueError, match="closed"):
        _TableOnly([[0, 1], [1, 2]]).check_axioms()
    with pytest.raises(ValueError, match="permutation"):
        _TableOnly([[0, 1, 2], [1, 1, 0], [2, 0, 1]]).check_axioms()


# ------------------------------------------------------------- lattice graphs, stabilisers, commutants

from eqlib.groups import commutant_basis, graph_automorphisms, stabiliser, torus_adjacency  # noqa: E402


def test_torus_adjacency_is_the_periodic_lattice():
    A = torus_adjacency(5)
    assert A.shape == (25, 25) and np.array_equal(A, A.T) and not np.diag(A).any()
    assert (A.sum(1) == 4).all()
    assert A[0, 1] and A[0, 4] and A[0, 5] and A[0, 20] and not A[0, 6]  # (0,0) ~ (0,1),(0,4),(1,0),(4,0)
    for bad in (2, 0, 3.0, True):
        with pytest.raises(ValueError):
            torus_adjacency(bad)


@pytest.mark.parametrize("size, count", [(3, 72), (4, 384), (5, 200), (6, 288)])
def test_torus_automorphism_counts(size, count):
    """8·L² for L ≠ 4 (the square's point group and the translations); 384 = 2⁴·4! for the 4-cube Q4."""
    A = torus_adjacency(size)
    autos = graph_automorphisms(A)
    assert len(autos) == count == len({tuple(a) for a in autos})
    for a in autos[:: max(1, len(autos) // 20)]:
        assert sorted(a) == list(range(size * size))
        assert np.array_equal(A[np.ix_(a, a)], A)


def test_automorphisms_of_small_graphs():
    path = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])
    assert len(graph_automorphisms(path)) == 2
    complete = 1 - np.eye(4, dtype=int)
    assert len(graph_automorphisms(complete)) == 24
    two_edges = np.zeros((4, 4), dtype=int)  # disconnected: edges 0-1 and 2-3
    two_edges[0, 1] = two_edges[1, 0] = two_edges[2, 3] = two_edges[3, 2] = 1
    assert len(graph_automorphisms(two_edges)) == 8
    with pytest.raises(ValueError):
        graph_automorphisms(np.array([[0, 1], [0, 0]]))  # not symmetric
    with pytest.raises(ValueError):
        graph_automorphisms(np.ones((3, 3)))  # self-loops


def test_lattice_group_is_the_whole_automorphism_group_for_L_6():
    L = 6
    sites = jnp.arange(L * L, dtype=jnp.float32).reshape(1, L, L, 1)
    maps = {tuple(np.asarray(Dihedral4().act(d, LatticeTranslations(L).act(t, sites))).ravel().astype(int))
            for d in range(8) for t in range(L * L)}
    assert maps == {tuple(a) for a in graph_automorphisms(torus_adjacency(L))}


def test_stabiliser():
    C4 = CyclicRotations(4)
    plus = np.zeros((5, 5, 1), np.float32)
    plus[2, :] = plus[:, 2] = 1.0
    assert stabiliser(C4, plus).tolist() == [0, 1, 2, 3]
    bar = np.zeros((5, 5, 1), np.float32)
    bar[2, :] = 1.0
    assert stabiliser(C4, bar).tolist() == [0, 2]
    generic = np.random.default_rng(0).normal(size=(5, 5, 1))
    assert stabiliser(C4, generic).tolist() == [0]
    assert stabiliser(SpinFlip(), np.zeros((3, 3, 1))).tolist() == [0, 1]


def test_commutant_dimensions():
    O = octahedral_group()
    basis = commutant_basis(O.matrices)
    assert basis.shape == (1, 3, 3)
    assert np.allclose(basis[0] / basis[0, 0, 0], np.eye(3))  # real type: multiples of 1
    quarter = np.array([[0.0, -1.0], [1.0, 0.0]])
    rotations = np.stack([np.linalg.matrix_power(quarter, k) for k in range(4)])
    basis2 = commutant_basis(rotations)  # complex type: a·1 + b·J
    assert basis2.shape == (2, 2, 2)
    for A in basis2:
        assert all(np.allclose(A @ R, R @ A) for R in rotations)
    assert commutant_basis(np.eye(3)[None]).shape == (9, 3, 3)  # trivial: everything commutes
    two_copies = np.stack([np.kron(np.eye(2), R) for R in O.matrices])  # R ⊕ R: 2×2 matrices ⊗ 1
    assert commutant_basis(two_copies).shape == (4, 6, 6)
    with pytest.raises(ValueError):
        commutant_basis(np.eye(3))
