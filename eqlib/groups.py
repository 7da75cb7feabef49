"""Finite groups, their actions on batches of arrays, and checks that an action is a representation.

Conventions
-----------
* Images and lattices are ``(..., H, W, c)``: rotations, reflections and translations act on the
  axes ``-3`` (rows) and ``-2`` (columns); leading axes are batch axes.
* Vectors (``MatrixGroup``) are ``(..., d)``: ``g`` acts as ``x @ R_g.T`` on the last axis.
* Group elements are integers ``0 … order-1``; element ``0`` is the identity. ``compose(g, h)`` is
  "first ``h``, then ``g``", so ``act(compose(g, h), x) == act(g, act(h, x))``.
* A ``Transformations`` object is only a finite set of maps (e.g. randomly sampled rotations of
  SO(3)); a ``FiniteGroup`` adds the Cayley table (composition and inverses).
"""
from __future__ import annotations

import itertools
import math
import re
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np

Array = jnp.ndarray
ActFn = Callable[[int, Array], Array]


class Transformations:
    """A finite, indexed set of linear maps acting on batches of arrays."""

    name: str = "transformations"
    labels: tuple[str, ...] = ()
    exact: bool = True  # False where the action is only approximate (interpolated rotations)

    @property
    def order(self) -> int:
        return len(self.labels)

    def act(self, g: int, x: Array) -> Array:
        """Apply element ``g`` to every array of the batch ``x``."""
        raise NotImplementedError

    def _check_element(self, g) -> int:
        if isinstance(g, (bool, np.bool_)) or not isinstance(g, (int, np.integer)):
            raise TypeError(f"{self.name}: group elements are integers 0..{self.order - 1}, got {g!r}")
        if not 0 <= int(g) < self.order:
            raise ValueError(f"{self.name}: element {g} out of range 0..{self.order - 1}")
        return int(g)

    def orbit(self, x: Array) -> Array:
        """All transforms of a batch: ``x: (n, ...) -> (order, n, ...)``, index 0 the identity."""
        return jnp.stack([self.act(g, x) for g in range(self.order)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, order={self.order})"


class FiniteGroup(Transformations):
    """A finite group: a ``Transformations`` with a Cayley table ``table[g, h] = g∘h``."""

    table: np.ndarray

    def _set_table(self, table: np.ndarray) -> None:
        table = np.asarray(table, dtype=np.int64)
        n = self.order
        if table.shape != (n, n):
            raise ValueError(f"{self.name}: Cayley table must be ({n}, {n}), got {table.shape}")
        self.table = table
        self._inverse = np.argmax(table == 0, axis=1)

    @property
    def identity(self) -> int:
        return 0

    def compose(self, g: int, h: int) -> int:
        """The element ``g∘h`` (apply ``h`` first)."""
        return int(self.table[self._check_element(g), self._check_element(h)])

    def inverse(self, g: int) -> int:
        return int(self._inverse[self._check_element(g)])

    def check_axioms(self) -> None:
        """Raise ValueError unless the Cayley table satisfies closure, identity, inverse, associativity."""
        t, n = self.table, self.order
        if t.min() < 0 or t.max() >= n:
            raise ValueError(f"{self.name}: table not closed (entries outside 0..{n - 1})")
        ids = np.arange(n)
        if not (np.array_equal(t[0], ids) and np.array_equal(t[:, 0], ids)):
            raise ValueError(f"{self.name}: element 0 is not the identity")
        for g in range(n):
            if sorted(t[g]) != list(ids) or sorted(t[:, g]) != list(ids):
                raise ValueError(f"{self.name}: row/column {g} of the table is not a permutation (no inverse)")
        lhs = t[t[:, :, None], ids[None, None, :]]  # (gh)k
        rhs = t[ids[:, None, None], t[None, :, :]]  # g(hk)
        if not np.array_equal(lhs, rhs):
            g, h, k = np.argwhere(lhs != rhs)[0]
            raise ValueError(f"{self.name}: not associative for g={g}, h={h}, k={k}")


# ----------------------------------------------------------------------------------------- helpers

def _require_square(x: Array, what: str) -> None:
    if x.ndim < 3:
        raise ValueError(f"{what} acts on arrays (..., H, W, c); got shape {tuple(x.shape)} (rank {x.ndim})")
    if x.shape[-3] != x.shape[-2]:
        raise ValueError(f"{what} needs square images, got H×W = {x.shape[-3]}×{x.shape[-2]} in shape {tuple(x.shape)}")


def table_from_action(group: Transformations, probe: np.ndarray) -> np.ndarray:
    """Cayley table of an exact, faithful action, read off the orbit of a generic ``probe`` array.

    Raises ValueError if the set of maps is not closed under composition or the probe does not
    tell the elements apart.
    """
    orbit = np.asarray(group.orbit(jnp.asarray(probe)[None]))[:, 0]  # (n, *probe.shape)
    keys = {np.round(o, 6).tobytes(): i for i, o in enumerate(orbit)}
    if len(keys) != group.order:
        raise ValueError(f"{group.name}: the action is not faithful on the probe (elements coincide)")
    table = np.empty((group.order, group.order), dtype=np.int64)
    for g in range(group.order):
        moved = np.asarray(group.act(g, jnp.asarray(orbit)))
        for h, m in enumerate(moved):
            k = keys.get(np.round(m, 6).tobytes())
            if k is None:
                raise ValueError(f"{group.name}: not closed: g={group.labels[g]} after h={group.labels[h]} is not an element")
            table[g, h] = k
    return table


def rotate_image(x: Array, angle: float) -> Array:
    """Rotate square images ``(..., H, W, c)`` counter-clockwise by ``angle`` radians.

    Multiples of π/2 are exact (``jnp.rot90``). Other angles use bilinear interpolation about the
    image centre with zeros outside the image: a linear map, but neither orthogonal nor exactly
    invertible, so C_n for n ∤ 4 acts only approximately (measure it with ``check_representation``).
    """
    _require_square(x, "rotation")
    quarter = angle / (math.pi / 2)
    if abs(quarter - round(quarter)) < 1e-9:
        return jnp.rot90(x, k=int(round(quarter)) % 4, axes=(-3, -2))
    size = x.shape[-3]
    index, weight = _bilinear_rotation_weights(size, float(angle))
    flat = x.reshape(x.shape[:-3] + (size * size, x.shape[-1]))
    out = jnp.einsum("...pkc,pk->...pc", flat[..., index, :], weight.astype(x.dtype))
    return out.reshape(x.shape)


def _bilinear_rotation_weights(size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Source pixel indices ``(size², 4)`` and bilinear weights ``(size², 4)`` for a rotation."""
    c = (size - 1) / 2
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    u, v = i - c, j - c
    # jnp.rot90(k=1) maps out[i, j] = in[j, N-1-i], i.e. source (u, v) -> (v, -u): rotation R(θ)ᵀ
    su = np.cos(angle) * u + np.sin(angle) * v + c
    sv = -np.sin(angle) * u + np.cos(angle) * v + c
    i0, j0 = np.floor(su).astype(int), np.floor(sv).astype(int)
    fi, fj = su - i0, sv - j0
    index, weight = [], []
    for di, dj, w in ((0, 0, (1 - fi) * (1 - fj)), (0, 1, (1 - fi) * fj), (1, 0, fi * (1 - fj)), (1, 1, fi * fj)):
        ii, jj = i0 + di, j0 + dj
        inside = (ii >= 0) & (ii < size) & (jj >= 0) & (jj < size)
        index.append(np.where(inside, ii * size + jj, 0).ravel())
        weight.append(np.where(inside, w, 0.0).ravel())
    return np.stack(index, 1), np.stack(weight, 1).astype(np.float32)


# ----------------------------------------------------------------------------------- the groups

class CyclicRotations(FiniteGroup):
    """C_n: rotations of square images by multiples of 2π/n (exact for n ∈ {1, 2, 4})."""

    def __init__(self, n: int = 4):
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"CyclicRotations needs a positive integer n, got {n!r}")
        self.n = int(n)
        self.name = f"C{n}"
        self.labels = tuple(f"r{360 * k / n:g}°" for k in range(n))
        self.exact = 4 % n == 0
        ks = np.arange(n)
        self._set_table((ks[:, None] + ks[None, :]) % n)

    def angle(self, g: int) -> float:
        return 2 * math.pi * self._check_element(g) / self.n

    def act(self, g: int, x: Array) -> Array:
        return rotate_image(x, self.angle(g))


class Dihedral4(FiniteGroup):
    """D4: the 8 rotations and reflections of a square image; element ``4s + k`` is rot90^k ∘ flip^s."""

    def __init__(self):
        self.name = "D4"
        self.labels = tuple(("s" if s else "") + f"r{90 * k}°" for s in (0, 1) for k in range(4))
        self._set_table(table_from_action(self, np.random.default_rng(0).normal(size=(5, 5, 1))))

    def act(self, g: int, x: Array) -> Array:
        s, k = divmod(self._check_element(g), 4)
        _require_square(x, "D4")
        if s:
            x = jnp.flip(x, axis=-2)
        return jnp.rot90(x, k=k, axes=(-3, -2))


class LatticeTranslations(FiniteGroup):
    """Z_L²: the periodic translations τ_(a,b) of an L×L lattice ``(..., L, L, c)``; element ``a·L + b`` shifts by (a, b).

    Named ``ZL²`` with labels ``τ(a,b)`` (the book writes τ_a for a translation by a ∈ Z_L²).
    """

    def __init__(self, size: int):
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"LatticeTranslations needs a positive lattice size, got {size!r}")
        self.size = int(size)
        self.name = f"Z{size}²"
        self.labels = tuple(f"τ({a},{b})" for a in range(size) for b in range(size))
        a, b = np.divmod(np.arange(size * size), size)
        self._set_table(((a[:, None] + a[None, :]) % size) * size + (b[:, None] + b[None, :]) % size)

    def act(self, g: int, x: Array) -> Array:
        a, b = divmod(self._check_element(g), self.size)
        if x.ndim < 3 or x.shape[-3] != self.size or x.shape[-2] != self.size:
            raise ValueError(f"{self.name} acts on (..., {self.size}, {self.size}, c) lattices, got shape {tuple(x.shape)}")
        return jnp.roll(x, shift=(a, b), axis=(-3, -2))


class SpinFlip(FiniteGroup):
    """Z2 acting by a global sign flip ``x -> -x`` (on any array)."""

    def __init__(self):
        self.name = "Z2"
        self.labels = ("id", "flip")
        self._set_table(np.array([[0, 1], [1, 0]]))

    def act(self, g: int, x: Array) -> Array:
        return -x if self._check_element(g) else x


class Trivial(FiniteGroup):
    """The trivial group, or: the trivial representation used for invariant outputs."""

    def __init__(self):
        self.name = "trivial"
        self.labels = ("id",)
        self._set_table(np.zeros((1, 1)))

    def act(self, g: int, x: Array) -> Array:
        self._check_element(g)
        return x


class ProductGroup(FiniteGroup):
    """The set of products g₁∘g₂∘… of elements of the factors, acting by composing their actions.

    Not assumed to be a direct product: rotations and translations of a periodic lattice generate a
    semidirect product. The Cayley table is read off the action on a generic probe of shape
    ``probe_shape``, which also proves closure.
    """

    def __init__(self, *factors: FiniteGroup, probe_shape: Sequence[int]):
        if len(factors) < 2:
            raise ValueError("ProductGroup needs at least two factors")
        if not all(f.exact for f in factors):
            raise ValueError("ProductGroup needs exact actions (no interpolated rotations)")
        self.factors = factors
        self.name = "×".join(f.name for f in factors)
        self._parts = list(itertools.product(*(range(f.order) for f in factors)))
        self.labels = tuple("·".join(f.labels[p] for f, p in zip(factors, parts)) for parts in self._parts)
        self._set_table(table_from_action(self, np.random.default_rng(0).normal(size=tuple(probe_shape))))

    def act(self, g: int, x: Array) -> Array:
        for factor, p in reversed(list(zip(self.factors, self._parts[self._check_element(g)]))):
            x = factor.act(p, x)
        return x


class MatrixGroup(FiniteGroup):
    """A finite group of d×d matrices acting on vectors ``(..., d)`` by ``x @ R.T``."""

    def __init__(self, matrices: np.ndarray, name: str = "matrix group"):
        mats = np.asarray(matrices, dtype=np.float64)
        if mats.ndim != 3 or mats.shape[1] != mats.shape[2]:
            raise ValueError(f"{name}: matrices must be (n, d, d), got {mats.shape}")
        eye = np.eye(mats.shape[1])
        first = int(np.argmin(np.abs(mats - eye).reshape(len(mats), -1).max(1)))
        if not np.allclose(mats[first], eye, atol=1e-8):
            raise ValueError(f"{name}: the identity matrix is not among the matrices")
        self.matrices = np.concatenate([mats[first:first + 1], np.delete(mats, first, axis=0)])
        self.name = name
        self.labels = tuple(f"R{i}" for i in range(len(mats)))
        flat = self.matrices.reshape(len(mats), -1)
        prod = np.einsum("gij,hjk->ghik", self.matrices, self.matrices).reshape(len(mats), len(mats), -1)
        dist = np.abs(prod[:, :, None, :] - flat[None, None]).max(-1)
        table = dist.argmin(-1)
        if dist.min(-1).max() > 1e-6:
            raise ValueError(f"{name}: the matrices are not closed under multiplication")
        self._set_table(table)

    @classmethod
    def generated_by(cls, generators: Sequence[np.ndarray], name: str, max_order: int = 10_000) -> "MatrixGroup":
        """Close a set of generator matrices under multiplication."""
        gens = [np.asarray(g, dtype=np.float64) for g in generators]
        elements = [np.eye(gens[0].shape[0])]
        frontier = list(elements)
        while frontier:
            new = []
            for a in frontier:
                for g in gens:
                    b = g @ a
                    if not any(np.allclose(b, e, atol=1e-8) for e in elements):
                        elements.append(b)
                        new.append(b)
                        if len(elements) > max_order:
                            raise ValueError(f"{name}: more than {max_order} elements (infinite group?)")
            frontier = new
        return cls(np.stack(elements), name)

    def act(self, g: int, x: Array) -> Array:
        r = self.matrices[self._check_element(g)]
        if x.shape[-1] != r.shape[0]:
            raise ValueError(f"{self.name} acts on vectors (..., {r.shape[0]}), got shape {tuple(x.shape)}")
        x = jnp.asarray(x)  # float64 input stays float64 only when jax_enable_x64 is on
        return x @ jnp.asarray(r.T).astype(x.dtype)


class MatrixSet(Transformations):
    """A finite set of matrices acting on vectors (e.g. Haar-random rotations of SO(3)); not a group."""

    def __init__(self, matrices: np.ndarray, name: str = "matrix set"):
        mats = np.asarray(matrices, dtype=np.float64)
        if mats.ndim != 3 or mats.shape[1] != mats.shape[2]:
            raise ValueError(f"{name}: matrices must be (n, d, d), got {mats.shape}")
        self.matrices, self.name = mats, name
        self.labels = tuple(f"R{i}" for i in range(len(mats)))

    act = MatrixGroup.act


def octahedral_group() -> MatrixGroup:
    """The 24 rotations of a cube: the largest finite subgroup of SO(3) preserving the lattice Z³."""
    rz = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    rx = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    return MatrixGroup.generated_by([rz, rx], "O (octahedral)")


def random_rotations(num: int, seed: int = 0) -> np.ndarray:
    """Haar-random rotation matrices ``(num, 3, 3)`` of SO(3) (from uniform unit quaternions)."""
    q = np.random.default_rng(seed).normal(size=(num, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], 1)


# ------------------------------------------------------------------------- the group registry

def _ising_group(size: int) -> FiniteGroup:
    """D4, the periodic translations and the global spin flip of an L×L lattice (order 16·L²)."""
    return ProductGroup(Dihedral4(), LatticeTranslations(size), SpinFlip(), probe_shape=(size, size, 1))


#: The one registry of groups by name: ``name → (constructor, needs the lattice size)``. Lattice
#: groups are built as ``constructor(size)``, the others as ``constructor()``; ``Cn`` for any n ≥ 1
#: is ``CyclicRotations(n)`` without an entry. Add entries with :func:`register_group`.
GROUP_REGISTRY: dict[str, tuple[Callable[..., FiniteGroup], bool]] = {
    "trivial": (Trivial, False),
    "D4": (Dihedral4, False),
    "Z2": (SpinFlip, False),
    "O": (octahedral_group, False),
    "T": (LatticeTranslations, True),
    "D4xTxZ2": (_ising_group, True),
}


def register_group(name: str, constructor: Callable[..., FiniteGroup], *, needs_size: bool = False) -> None:
    """Make ``get_group(name)`` build ``constructor()`` (``constructor(size)`` with ``needs_size``)."""
    if not isinstance(name, str) or not name or re.fullmatch(r"C[0-9]+", name):
        raise ValueError(f"group names are non-empty strings other than Cn, got {name!r}")
    if name in GROUP_REGISTRY:
        raise ValueError(f"group {name!r} is already registered")
    GROUP_REGISTRY[name] = (constructor, needs_size)


def group_names() -> tuple[str, ...]:
    """The registered names (``Cn`` for any n ≥ 1 works besides)."""
    return tuple(GROUP_REGISTRY)


def get_group(name: str, size: int | None = None) -> FiniteGroup:
    """A group by name: trivial, D4, Z2, O, Cn for any n ≥ 1 (``CyclicRotations(n)``), and the
    lattice groups T (``LatticeTranslations(size)``) and D4xTxZ2 (D4, translations and spin flip).

    ``size`` is the side L of the L×L lattice a lattice group acts on; groups that act on any
    square image or on vectors do not need it and ignore it, so a caller can pass it always.
    """
    match = re.fullmatch(r"C([1-9][0-9]*)", name) if isinstance(name, str) else None
    if match and name not in GROUP_REGISTRY:
        return CyclicRotations(int(match.group(1)))
    if not isinstance(name, str) or name not in GROUP_REGISTRY:
        known = ", ".join(f"{n} (needs size)" if lattice else n for n, (_, lattice) in GROUP_REGISTRY.items())
        raise ValueError(f"unknown group {name!r}; known: {known}, and Cn for n = 1, 2, 3, … (e.g. C4)")
    constructor, needs_size = GROUP_REGISTRY[name]
    if not needs_size:
        return constructor()
    if size is None:
        raise ValueError(f"group {name!r} acts on L×L lattices: pass the lattice size, get_group({name!r}, size=L)")
    return constructor(size)


# ------------------------------------------------------------------------- representations

def representation_matrix(group: Transformations, g: int, event_shape: Sequence[int], act: ActFn | None = None) -> np.ndarray:
    """The matrix ``ρ(g)`` of shape ``(D, D)``, D = prod(event_shape), such that ``vec(g·x) = ρ(g) vec(x)``."""
    act = act or group.act
    dim = int(np.prod(event_shape))
    basis = np.eye(dim, dtype=np.float32).reshape((dim, *event_shape))
    return np.asarray(act(g, jnp.asarray(basis))).reshape(dim, dim).T


def check_representation(group: FiniteGroup, event_shape: Sequence[int], act: ActFn | None = None,
                         atol: float = 1e-5, require_orthogonal: bool = True,
                         strict: bool = True) -> dict[str, float]:
    """Check that ``act`` (default: the group's own action) is an orthogonal representation.

    Verifies ρ(g)ρ(h) = ρ(g∘h) for all pairs and ρ(g)ᵀρ(g) = 1. Returns the largest deviations
    ``{"homomorphism": …, "orthogonality": …}``; with ``strict`` raises ValueError naming the first
    offending element(s) when a deviation exceeds ``atol`` (``strict=False`` only measures, e.g. the
    interpolation error of C8).
    """
    mats = np.stack([representation_matrix(group, g, event_shape, act) for g in range(group.order)])
    eye = np.eye(mats.shape[1])
    hom = 0.0
    for g in range(group.order):
        dev = np.abs(np.einsum("ij,hjk->hik", mats[g], mats) - mats[group.table[g]]).reshape(group.order, -1).max(1)
        if strict and dev.max() > atol:
            h = int(dev.argmax())
            raise ValueError(
                f"{group.name}: the action on {tuple(event_shape)} is not a homomorphism: "
                f"ρ({group.labels[g]})ρ({group.labels[h]}) ≠ ρ({group.labels[group.table[g, h]]}) "
                f"(max deviation {dev.max():.3g} > atol {atol:g})")
        hom = max(hom, float(dev.max()))
    orth_dev = np.abs(np.einsum("gji,gjk->gik", mats, mats) - eye).reshape(group.order, -1).max(1)
    if strict and require_orthogonal and orth_dev.max() > atol:
        g = int(orth_dev.argmax())
        raise ValueError(f"{group.name}: ρ({group.labels[g]}) is not orthogonal (max |ρᵀρ - 1| = {orth_dev.max():.3g})")
    return {"homomorphism": hom, "orthogonality": float(orth_dev.max())}


class SampledRotations(Transformations):
    """Rotations of square images by given angles (radians), e.g. a fine sample of SO(2); not a group.

    Multiples of π/2 are exact; other angles interpolate bilinearly (see :func:`rotate_image`).
    """

    def __init__(self, angles: Sequence[float], name: str | None = None):
        angles = np.asarray(angles, dtype=np.float64)
        if angles.ndim != 1 or len(angles) == 0 or not np.all(np.isfinite(angles)):
            raise ValueError(f"angles must be a non-empty 1-d array of finite numbers, got {angles}")
        self.angles = angles
        self.name = name or f"{len(angles)} rotations"
        self.labels = tuple(f"{np.degrees(a):.4g}°" for a in angles)
        self.exact = bool(np.all(np.isclose(np.mod(angles, np.pi / 2), 0) | np.isclose(np.mod(angles, np.pi / 2), np.pi / 2)))

    @classmethod
    def uniform(cls, num: int) -> "SampledRotations":
        """``num`` equally spaced angles ``2πk/num`` (the first is the identity)."""
        return cls(2 * np.pi * np.arange(num) / num, name=f"SO(2) sampled at {num} angles")

    def act(self, g: int, x: Array) -> Array:
        return rotate_image(x, float(self.angles[self._check_element(g)]))


# ------------------------------------------------------------------- graphs, stabilisers, commutants

def torus_adjacency(size: int) -> np.ndarray:
    """Adjacency matrix ``(L², L²)`` (0/1 ints) of the periodic L×L square lattice, sites row-major.

    Site ``(r, c)`` is index ``r·L + c``; its neighbours are ``(r±1, c)`` and ``(r, c±1)`` mod L.
    Needs L ≥ 3 (for L = 2 the two neighbours in a direction coincide: a multigraph).
    """
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size < 3:
        raise ValueError(f"torus_adjacency needs an integer lattice size L ≥ 3, got {size!r}")
    L = int(size)
    site = np.arange(L * L).reshape(L, L)
    adjacency = np.zeros((L * L, L * L), dtype=np.int64)
    for axis in (0, 1):
        for step in (1, -1):
            adjacency[site.ravel(), np.roll(site, step, axis=axis).ravel()] = 1
    return adjacency


def graph_automorphisms(adjacency) -> np.ndarray:
    """All automorphisms of a simple graph, by an exact backtracking search: ``(V, V) -> (|Aut|, V)``.

    Row ``a`` is a permutation σ of the vertices with ``A[σ(u), σ(v)] = A[u, v]`` for all u, v.
    Vertices are mapped one at a time in breadth-first order; a candidate image must be unused and
    have, towards every already-mapped vertex, exactly the adjacency that the vertex has. Every
    complete assignment is therefore an automorphism and every automorphism is found once. Fast for
    sparse, connected graphs such as lattices (a few hundred vertices); exponential in general.
    """
    A = np.asarray(adjacency)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"adjacency must be a square (V, V) matrix, got shape {A.shape}")
    if not np.array_equal(A, A.T) or not np.isin(A, (0, 1)).all() or np.any(np.diag(A)):
        raise ValueError("adjacency must be a symmetric 0/1 matrix with zero diagonal (a simple graph)")
    A = A.astype(bool)
    V = A.shape[0]
    order: list[int] = []  # breadth-first over every component
    seen = np.zeros(V, dtype=bool)
    for root in range(V):
        if seen[root]:
            continue
        seen[root], queue = True, [root]
        while queue:
            u = queue.pop(0)
            order.append(u)
            for v in np.flatnonzero(A[u] & ~seen):
                seen[v] = True
                queue.append(int(v))
    degree = A.sum(1)
    found: list[np.ndarray] = []
    image = np.full(V, -1)
    used = np.zeros(V, dtype=bool)

    def extend(depth: int) -> None:
        if depth == V:
            found.append(image.copy())
            return
        v, mapped = order[depth], order[:depth]
        ok = ~used & (degree == degree[v])
        if mapped:
            # candidate w must satisfy A[w, σ(u)] = A[v, u] for every mapped u
            ok &= (A[:, image[mapped]] == A[v, mapped][None, :]).all(1)
        for w in np.flatnonzero(ok):
            image[v], used[w] = w, True
            extend(depth + 1)
            image[v], used[w] = -1, False

    extend(0)
    return np.stack(found)


def stabiliser(group: Transformations, x, atol: float = 1e-6) -> np.ndarray:
    """The elements ``g`` with ``ρ(g) x = x`` (within ``atol``) for one input ``x: (...)``: int array.

    Always contains the identity 0. By the orbit–stabiliser theorem the orbit of ``x`` has
    ``|G| / |Stab(x)|`` distinct points, so full augmentation repeats each of them |Stab(x)| times.
    """
    x = jnp.asarray(x)
    orbit = np.asarray(group.orbit(x[None]))[:, 0]  # (|G|, ...)
    dev = np.abs(orbit - np.asarray(x)[None]).reshape(group.order, -1).max(1)
    return np.flatnonzero(dev <= atol)


def commutant_basis(matrices, atol: float = 1e-8) -> np.ndarray:
    """An orthonormal basis ``(k, d, d)`` of the commutant {A : A R = R A for every R in ``matrices: (m, d, d)``}.

    Solves the linear system ``(R ⊗ 1 − 1 ⊗ Rᵀ) vec(A) = 0`` (row-major vec) for all R at once by an
    SVD; ``k`` is the dimension of the space of equivariant linear maps of the representation into
    itself. For a real representation that is irreducible over ℝ, k is 1 (real type: Schur's lemma
    gives A = a·1), 2 (complex type) or 4 (quaternionic type).
    """
    R = np.asarray(matrices, dtype=np.float64)
    if R.ndim != 3 or R.shape[1] != R.shape[2]:
        raise ValueError(f"matrices must be (m, d, d), got shape {R.shape}")
    d = R.shape[1]
    eye = np.eye(d)
    system = np.concatenate([np.kron(r, eye) - np.kron(eye, r.T) for r in R])  # (m·d², d²)
    _, sv, vt = np.linalg.svd(system)
    sv = np.concatenate([sv, np.zeros(d * d - len(sv))])
    return vt[sv <= atol * max(1.0, sv.max(initial=0.0))].reshape(-1, d, d)
