"""The 2-D Ising model on a periodic L×L lattice: energy, a seeded Monte Carlo sampler, exact averages.

Spin configurations are ``s ∈ {−1, +1}^{L×L}``, stored as float32 arrays ``(n, L, L, 1)`` (NHWC)
so that the lattice groups of :mod:`eqlib.groups` act on them directly (``CyclicRotations(4)``,
``Dihedral4``, ``LatticeTranslations(L)``, ``SpinFlip``, their ``ProductGroup``). The energy is the
nearest-neighbour Hamiltonian with periodic boundaries,

    E(s) = −J Σ_⟨ij⟩ s_i s_j = −J Σ_i s_i (s_{i+x̂} + s_{i+ŷ}),

which counts each of the 2L² bonds once (for L = 2 the two neighbours in a direction coincide and
the bond is counted twice, as the right-hand side says). E is invariant under every rotation and
reflection of the lattice, every periodic translation and the global spin flip s → −s.

The sampler is random-scan single-spin-flip Metropolis run on ``n`` independent chains at once
(vectorised in numpy over chains): one sample per chain after ``sweeps`` sweeps from a random start,
so samples are independent. (A checkerboard update, flipping a whole sublattice at once, is faster
but not ergodic on tiny lattices: on L = 2 the stripe states, whose flips cost ΔE = 0 and are always
accepted, map onto each other forever. Random site choice avoids that for every L.)
:func:`exact_averages` enumerates all 2^(L²) states for L ≤ 4 to give the exact thermal averages
the sampler is tested against.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..groups import FiniteGroup, get_group

#: Onsager's critical temperature of the infinite 2-D Ising model, T_c = 2J / ln(1 + √2) ≈ 2.269 J.
CRITICAL_TEMPERATURE = 2.0 / np.log1p(np.sqrt(2.0))
#: Largest lattice for exact enumeration (2^16 = 65,536 states).
MAX_EXACT_SIZE = 4
#: The symmetry groups of the Ising energy that :func:`symmetry_group` builds (by their registry names).
GROUPS = ("C4", "D4", "D4xTxZ2")


def _as_lattice(spins, what: str = "spins") -> np.ndarray:
    """``(n, L, L)`` or ``(n, L, L, 1)`` → float64 ``(n, L, L)``."""
    s = np.asarray(spins)
    if s.ndim == 4 and s.shape[-1] == 1:
        s = s[..., 0]
    if s.ndim != 3 or s.shape[1] != s.shape[2]:
        raise ValueError(f"{what} must be (n, L, L) or (n, L, L, 1) with square lattices, got shape {s.shape}")
    return s.astype(np.float64)


def _check_size(size) -> int:
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"lattice size L must be an integer ≥ 2, got {size!r}")
    return int(size)


def _check_temperature(temperature) -> float:
    t = float(temperature)
    if not t > 0 or not np.isfinite(t):
        raise ValueError(f"temperature must be positive and finite (in units of J/k_B), got {temperature!r}")
    return t


def ising_energy(spins, coupling: float = 1.0) -> np.ndarray:
    """E(s) = −J Σ_i s_i (s_{i+x̂} + s_{i+ŷ}) with periodic boundaries: ``(n, L, L[, 1]) -> (n,)``.

    Works for any real-valued input (e.g. Gaussian "non-spin" inputs), not only ±1.
    """
    s = _as_lattice(spins)
    bonds = s * (np.roll(s, -1, axis=1) + np.roll(s, -1, axis=2))
    return -coupling * bonds.sum(axis=(1, 2))


def magnetisation(spins) -> np.ndarray:
    """Mean spin m(s) = Σ_i s_i / L²: ``(n, L, L[, 1]) -> (n,)``."""
    return _as_lattice(spins).mean(axis=(1, 2))


def random_configurations(num: int, size: int, seed: int | Sequence[int] = 0) -> np.ndarray:
    """``num`` uniformly random configurations (infinite temperature): ``(num, L, L, 1)`` float32 ±1."""
    size = _check_size(size)
    if num < 0:
        raise ValueError(f"num must be ≥ 0, got {num}")
    rng = np.random.default_rng(seed)
    return (2 * rng.integers(0, 2, size=(num, size, size, 1)) - 1).astype(np.float32)


def metropolis(num: int, size: int, temperature: float, sweeps: int = 200, seed: int | Sequence[int] = 0,
               coupling: float = 1.0) -> np.ndarray:
    """``num`` independent Metropolis chains at ``temperature``, one sample each: ``(num, L, L, 1)`` float32.

    Each chain starts from a uniformly random configuration and performs ``sweeps`` sweeps of L²
    steps; a step picks a site uniformly at random and proposes to flip it. A flip of spin s_i with
    local field h_i = Σ_{j∼i} s_j is accepted with probability min(1, exp(−2J s_i h_i / T)). The
    result is a pure function of ``(num, size, temperature, sweeps, seed, coupling)``.
    """
    size = _check_size(size)
    temperature = _check_temperature(temperature)
    if num < 0 or sweeps < 0:
        raise ValueError(f"num and sweeps must be ≥ 0, got num={num}, sweeps={sweeps}")
    rng = np.random.default_rng(seed)
    s = (2 * rng.integers(0, 2, size=(num, size, size)) - 1).astype(np.int8)
    beta, rows = 1.0 / temperature, np.arange(num)
    for _ in range(sweeps):
        sites = rng.integers(0, size * size, size=(size * size, num))
        u = rng.random((size * size, num))
        for site, uk in zip(sites, u):
            a, b = np.divmod(site, size)
            h = (s[rows, (a + 1) % size, b] + s[rows, (a - 1) % size, b] + s[rows, a, (b + 1) % size]
                 + s[rows, a, (b - 1) % size])
            delta = 2.0 * coupling * s[rows, a, b] * h            # energy change of flipping s_ab
            flip = uk < np.exp(-beta * np.maximum(delta, 0.0))
            s[rows, a, b] = np.where(flip, -s[rows, a, b], s[rows, a, b])
    return s[..., None].astype(np.float32)


def sample_temperatures(num: int, size: int, temperatures: Sequence[float], sweeps: int = 200, seed: int = 0,
                        coupling: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``num`` samples split as evenly as possible over ``temperatures``, in that order.

    Returns spins ``(num, L, L, 1)`` float32 and the temperature of each sample ``(num,)``;
    temperature ``k`` uses the seed ``[seed, k]``.
    """
    temperatures = [_check_temperature(t) for t in temperatures]
    if not temperatures:
        raise ValueError("temperatures must be a non-empty sequence")
    counts = np.full(len(temperatures), num // len(temperatures))
    counts[: num % len(temperatures)] += 1
    spins = [metropolis(int(c), size, t, sweeps, seed=[seed, k], coupling=coupling)
             for k, (c, t) in enumerate(zip(counts, temperatures))]
    temps = np.repeat(np.asarray(temperatures, dtype=np.float64), counts)
    return np.concatenate(spins), temps


def all_configurations(size: int) -> np.ndarray:
    """Every configuration of an L×L lattice (L ≤ 4): ``(2^(L²), L, L, 1)`` float32 ±1."""
    size = _check_size(size)
    if size > MAX_EXACT_SIZE:
        raise ValueError(f"exact enumeration needs L ≤ {MAX_EXACT_SIZE} (2^(L²) states), got L = {size}")
    n = size * size
    bits = (np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1
    return (2 * bits - 1).reshape(-1, size, size, 1).astype(np.float32)


def exact_averages(size: int, temperature: float, coupling: float = 1.0) -> dict[str, float]:
    """Exact Boltzmann averages by enumerating all 2^(L²) states (L ≤ 4).

    Returns ``{"energy_per_spin": ⟨E⟩/L², "abs_magnetisation": ⟨|m|⟩, "energy_per_spin_std":
    std(E)/L², "abs_magnetisation_std": std(|m|)}`` (the stds are of a single sample, for error bars).
    """
    temperature = _check_temperature(temperature)
    states = all_configurations(size)
    energy = ising_energy(states, coupling) / size ** 2
    absm = np.abs(magnetisation(states))
    logw = -energy * size ** 2 / temperature
    w = np.exp(logw - logw.max())
    w /= w.sum()
    e_mean, m_mean = float(w @ energy), float(w @ absm)
    return {"energy_per_spin": e_mean, "abs_magnetisation": m_mean,
            "energy_per_spin_std": float(np.sqrt(w @ (energy - e_mean) ** 2)),
            "abs_magnetisation_std": float(np.sqrt(w @ (absm - m_mean) ** 2))}


def gaussian_inputs(num: int, size: int, seed: int | Sequence[int] = 0) -> np.ndarray:
    """Off-manifold "non-spin" inputs: i.i.d. standard normal lattices ``(num, L, L, 1)`` float32."""
    size = _check_size(size)
    return np.random.default_rng(seed).normal(size=(num, size, size, 1)).astype(np.float32)


def symmetry_group(name: str, size: int) -> FiniteGroup:
    """A symmetry group of the Ising energy acting on ``(n, L, L, 1)`` lattices.

    ``"C4"`` (rotations by 90°, as in the paper, order 4), ``"D4"`` (rotations and reflections,
    order 8) or ``"D4xTxZ2"`` (D4, periodic translations and the global spin flip, order 16·L²):
    the entries of :data:`GROUPS`, built by :func:`eqlib.groups.get_group`.
    """
    size = _check_size(size)
    if name not in GROUPS:
        raise ValueError(f"unknown Ising symmetry group {name!r}; choose from {GROUPS}")
    return get_group(name, size=size)
