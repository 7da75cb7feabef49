"""The augmented infinite ensemble equals kernel regression with Θ_G (eqlib.group_kernel)."""
from __future__ import annotations

import numpy as np
import pytest

from eqlib.group_kernel import (augmented_kernel_regression, formulation_costs, group_blocks,
                                group_circulant, group_kernel, group_kernel_regression,
                                kernel_invariance_defect, orbit_stack, reduced_time)
from eqlib.groups import get_group, octahedral_group
from eqlib.models import mlp
from eqlib.ntk import ensemble_mean_cov, kernels

TIMES = [0.0, 3.0, 40.0, np.inf]
C4 = get_group("C4")
O = octahedral_group()
KERNEL = mlp([64], out=1).kernel_fn
#: A smooth kernel for exact structure checks: the ReLU NTK's arc-cosine has infinite slope at
#: cos = 1, so two kernel calls that round ⟨x, x⟩ differently disagree by ~1e-9 on the diagonal.
SMOOTH = mlp([64], out=1, nonlinearity="erf").kernel_fn


def _images(n: int, seed: int) -> np.ndarray:
    """Float32 values held in float64, like the book's image data: inner products of rotated
    copies are then exact, while for generic float64 pixels their rounding (~1e-16) moves the
    ReLU NTK's diagonal by ~1e-9 through its arc-cosine (see the chapter)."""
    x = np.random.default_rng(seed).normal(size=(n, 4, 4, 1))
    return x.astype(np.float32).astype(np.float64)


def _weighted_kernel(kernel_fn, weights):
    """A kernel that is NOT rotation-invariant: Θ(w ⊙ x, w ⊙ x′) for fixed pixel weights w."""
    def fn(x1, x2=None, get=None, **kwargs):
        return kernel_fn(x1 * weights, None if x2 is None else x2 * weights, get, **kwargs)
    return fn


def _augmented_mean(kernel_fn, x, y, x_test, group, times, lr, rho=None, elements=None,
                    method="spectral"):
    """μ_t of the ensemble trained on the (full or partial) orbit, by eqlib.ntk (independent code).

    ``method="spectral"`` (eqlib's float64 evaluation) compiles nothing per call; the invariant
    test also uses neural-tangents' solver."""
    elements = range(group.order) if elements is None else elements
    xa = orbit_stack(x, group).reshape((group.order, len(x)) + x.shape[1:])[list(elements)]
    ya = np.stack([y if rho is None else y @ rho[h].T for h in elements])
    return ensemble_mean_cov(kernel_fn, xa.reshape((-1,) + x.shape[1:]), ya.reshape(-1, y.shape[1]),
                             x_test, times, learning_rate=lr, method=method).mean


def test_invariant_task_matches_augmented_ensemble():
    x, x_test = _images(6, 0), _images(4, 1)
    y = np.random.default_rng(2).normal(size=(6, 2))
    ref = _augmented_mean(KERNEL, x, y, x_test, C4, TIMES, 2.0, method="neural_tangents")
    ours = group_kernel_regression(KERNEL, x, y, x_test, C4, TIMES, 2.0)
    assert ours.shape == ref.shape == (len(TIMES), 4, 2)
    assert np.abs(ours - ref).max() <= 1e-10 * max(1.0, np.abs(ref).max())
    assert np.abs(ref[-1]).max() > 0.1                        # not a comparison of zeros
    direct = augmented_kernel_regression(KERNEL, x, y, x_test, C4, TIMES, 2.0)
    assert np.abs(direct - ref).max() <= 1e-10 * max(1.0, np.abs(ref).max())


def test_equivariant_cross_product_matches_and_needs_the_right_transpose():
    rng = np.random.default_rng(3)
    p, p_test = rng.normal(size=(4, 2, 3)), rng.normal(size=(3, 2, 3))
    y = np.cross(p[:, 0], p[:, 1])
    rho = O.matrices                                          # ρ_Y(g) = R_g: (a×b) turns with R
    ref = _augmented_mean(KERNEL, p, y, p_test, O, TIMES, 1.0, rho)
    ours = group_kernel_regression(KERNEL, p, y, p_test, O, TIMES, 1.0, rho_y=rho)
    assert np.abs(ours - ref).max() <= 1e-10 * max(1.0, np.abs(ref).max())
    wrong = group_kernel_regression(KERNEL, p, y, p_test, O, TIMES, 1.0,
                                    rho_y=np.transpose(rho, (0, 2, 1)))
    assert np.abs(wrong - ref)[1:].max() > 1e-3 * np.abs(ref[1:]).max()


def test_controls_break_the_identity():
    x, x_test = _images(6, 7), _images(4, 8)
    y = np.random.default_rng(9).normal(size=(6, 1))
    times = TIMES
    weights = np.linspace(0.5, 1.5, 16).reshape(1, 4, 4, 1)
    bent = _weighted_kernel(KERNEL, weights)
    assert kernel_invariance_defect(KERNEL, x, C4) < 1e-12
    assert kernel_invariance_defect(bent, x, C4) > 1e-3
    gap_bent = np.abs(_augmented_mean(bent, x, y, x_test, C4, times, 1.0)
                      - group_kernel_regression(bent, x, y, x_test, C4, times, 1.0)).max()
    partial = _augmented_mean(KERNEL, x, y, x_test, C4, times, 1.0, elements=[0, 1])
    gap_partial = np.abs(partial - group_kernel_regression(KERNEL, x, y, x_test, C4, times,
                                                           1.0)).max()
    assert gap_bent > 1e-4 and gap_partial > 1e-4            # ≥ 1e6 × the tolerance


def test_gram_is_group_circulant_and_theta_g_symmetric_psd():
    x = _images(6, 10)
    _, big = kernels(SMOOTH, orbit_stack(x, C4))
    circulant = group_circulant(group_blocks(SMOOTH, x, x, C4), C4)
    assert np.abs(circulant - big).max() < 1e-12 * np.abs(big).max()
    tg = group_kernel(SMOOTH, x, x, C4)
    assert np.abs(tg - tg.T).max() < 1e-12 * np.abs(tg).max()
    assert np.linalg.eigvalsh(tg).min() > -1e-10 * np.abs(tg).max()
    p = np.random.default_rng(11).normal(size=(3, 2, 3))
    tge = group_kernel(SMOOTH, p, p, O, O.matrices).reshape(9, 9)
    assert np.abs(tge - tge.T).max() < 1e-12 * np.abs(tge).max()


def test_reduced_time_and_bad_input():
    assert reduced_time(12.0, 4) == 3.0 and np.isinf(reduced_time(np.inf, 4))
    with pytest.raises(ValueError, match="group_order"):
        reduced_time(1.0, 0)
    p = np.zeros((2, 2, 3))
    y = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"rho_y must be \(\|G\|, d, d\)"):
        group_kernel(KERNEL, p, p, O, np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="orthogonal"):
        group_kernel(KERNEL, p, p, O, 2 * O.matrices)
    with pytest.raises(ValueError, match="y_train must be"):
        group_kernel_regression(KERNEL, p, y[:, 0], p, O, [1.0], rho_y=O.matrices)
    with pytest.raises(ValueError, match="3-dim outputs"):
        group_kernel_regression(KERNEL, p, np.zeros((2, 2)), p, O, [1.0], rho_y=O.matrices)
    with pytest.raises(ValueError, match="training times"):
        group_kernel_regression(KERNEL, p, y, p, O, [-1.0], rho_y=O.matrices)
    with pytest.raises(ValueError, match="samples have shape"):
        group_blocks(KERNEL, p, np.zeros((2, 3)), O)


def test_formulation_costs_reports_every_stage():
    costs = formulation_costs(KERNEL, _images(6, 12), C4)
    assert set(costs) == {"augmented_gram", "augmented_solve", "group_gram", "group_solve"}
    assert all(v > 0 for v in costs.values())
    with pytest.raises(ValueError, match="repeats"):
        formulation_costs(KERNEL, _images(6, 12), C4, repeats=0)
