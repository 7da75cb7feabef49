"""Group averaging: the exactly equivariant reference model built from any function.

    f^G(x) = 1/|G| Σ_g ρ_Y(g)⁻¹ f(ρ_X(g) x)

is equivariant for every f when ρ_X, ρ_Y are representations of the finite group G: the
manifestly symmetric counterpart of the emergent symmetry of ensembles (cost: |G| evaluations).
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from .groups import ActFn, FiniteGroup


def group_average(apply_fn: Callable, group: FiniteGroup, act_y: ActFn | None = None) -> Callable:
    """Return f^G: ``(n, ...) -> (..., n, d)`` from ``apply_fn`` with the same signature.

    (f^G, not f̄: the book keeps the bar for ensemble means f̄_M.)
    """

    def averaged(x):
        x = jnp.asarray(x)
        total = 0.0
        for g in range(group.order):
            out = apply_fn(group.act(g, x))
            total = total + (act_y(group.inverse(g), out) if act_y is not None else out)
        return total / group.order

    return averaged
