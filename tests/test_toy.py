"""The toy problems of eqlib.data.toy: the symmetry each target is built to have."""
from __future__ import annotations

import numpy as np

from eqlib.data.toy import blob_regression, cross_product_data, second_moment
from eqlib.groups import Dihedral4, octahedral_group


def test_blob_regression_targets_are_d4_invariant():
    x, y = blob_regression(6, size=8, seed=3)
    assert x.shape == (6, 8, 8, 1) and y.shape == (6, 1) and x.dtype == y.dtype == np.float32
    d4 = Dihedral4()
    for g in range(d4.order):
        np.testing.assert_allclose(second_moment(np.asarray(d4.act(g, x))), y,
                                   rtol=1e-5)


def test_cross_product_data_is_equivariant_and_seeded():
    uv, w = cross_product_data(5, np.random.default_rng(0))
    assert uv.shape == (5, 2, 3) and w.shape == (5, 3) and uv.dtype == w.dtype == np.float32
    again, _ = cross_product_data(5, np.random.default_rng(0))
    np.testing.assert_array_equal(uv, again)
    group = octahedral_group()
    for g in range(group.order):
        moved = np.asarray(group.act(g, uv))                       # rotates each vector of every pair
        np.testing.assert_allclose(np.cross(moved[:, 0], moved[:, 1]), np.asarray(group.act(g, w)), atol=1e-5)
