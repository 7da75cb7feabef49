"""eqlib.data.shapes: shapes, dtypes, balance, seeding, exact C4 closure of the scenes, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from eqlib.data.shapes import SHAPE_CLASSES, ShapeParams, render_shapes, sample_shape_params, shape_images
from eqlib.groups import CyclicRotations, Dihedral4


def test_shapes_dtypes_and_ranges():
    x, y = shape_images(50, size=16, seed=0)
    assert x.shape == (50, 16, 16, 1) and x.dtype == np.float32
    assert y.shape == (50,) and y.dtype == np.int64
    assert y.min() >= 0 and y.max() < len(SHAPE_CLASSES)
    clean, _ = shape_images(50, size=16, seed=0, noise=0.0)
    assert clean.min() >= 0.0 and clean.max() <= 1.0
    # every image has ink: at least a few pixels fully covered
    assert ((clean[..., 0] > 0.5).sum(axis=(1, 2)) >= 4).all()


@pytest.mark.parametrize("n, classes", [(8, None), (50, None), (7, ("disc", "ring")), (100, ("L", "T", "bar"))])
def test_labels_are_balanced(n, classes):
    _, y = shape_images(n, size=12, classes=classes, seed=1)
    counts = np.bincount(y, minlength=len(classes or SHAPE_CLASSES))
    assert counts.max() - counts.min() <= 1


def test_seed_reproducibility():
    a = shape_images(20, size=16, seed=3)
    b = shape_images(20, size=16, seed=3)
    c = shape_images(20, size=16, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0])


def test_noise_is_added_with_the_requested_std():
    clean, _ = shape_images(200, size=16, seed=5, noise=0.0)
    noisy, _ = shape_images(200, size=16, seed=5, noise=0.2)
    assert abs((noisy - clean).std() - 0.2) < 0.005
    assert abs((noisy - clean).mean()) < 0.005


@pytest.mark.parametrize("size", [8, 15, 16, 28])
@pytest.mark.parametrize("theta", [0.0, 0.3, 2.0])
def test_quarter_turn_of_the_scene_is_rot90_of_the_image(size, theta):
    """The same random draw rendered at θ + 90° is exactly the C4 action (rot90) on the image at θ."""
    params = sample_shape_params(40, size=size, seed=7)
    C4 = CyclicRotations(4)
    base = render_shapes(params, size, theta)
    for k in range(1, 4):
        rotated = render_shapes(params, size, theta + k * math.pi / 2)
        np.testing.assert_allclose(rotated, np.asarray(C4.act(k, base)), atol=1e-5)


def test_rotation_is_the_same_through_shape_images_and_per_image_angles():
    x, _ = shape_images(6, size=16, seed=2, noise=0.0)
    xr, _ = shape_images(6, size=16, seed=2, noise=0.0, rotation=math.pi / 2)
    np.testing.assert_allclose(xr, np.rot90(x, 1, axes=(1, 2)), atol=1e-5)
    params = sample_shape_params(6, size=16, seed=2)
    angles = np.array([0, 1, 2, 3, 0, 1]) * math.pi / 2
    mixed = render_shapes(params, 16, angles)
    for i, a in enumerate(angles):
        np.testing.assert_allclose(mixed[i], np.rot90(x[i], round(a / (math.pi / 2)), axes=(0, 1)), atol=1e-5)


def test_mirroring_the_scene_is_a_reflection_of_the_image():
    """Reflecting the scene (mirror the shape, reflect centre and angle) gives the flipped image: D4 closure."""
    params = sample_shape_params(30, size=16, seed=8)
    reflected = params._replace(centres=params.centres * np.array([1.0, -1.0]), angles=-params.angles,
                                mirror=-params.mirror)
    np.testing.assert_allclose(render_shapes(reflected, 16), np.asarray(Dihedral4().act(4, render_shapes(params, 16))),
                               atol=1e-5)


def _rotation_asymmetry(x: np.ndarray) -> tuple[float, float]:
    """Mean |rot90(m) − m| of the mean image m, and the same statistic between two halves (sampling noise)."""
    m, ma, mb = x.mean(0), x[::2].mean(0), x[1::2].mean(0)
    return float(np.abs(np.rot90(m, 1, axes=(0, 1)) - m).mean()), float(np.abs(ma - mb).mean())


def test_class_distributions_are_c4_invariant():
    """In distribution: each class's mean image changes under a quarter turn no more than sampling noise."""
    params = sample_shape_params(3000, size=12, classes=("L", "T", "triangle"), seed=9)
    x = render_shapes(params, 12)
    for k in range(3):
        asym, noise = _rotation_asymmetry(x[params.labels == k])
        assert asym < 1.5 * noise, (params.classes[k], asym, noise)   # invariant: asym ≈ 0.7–0.9 · noise
    # the statistic has power: orientations restricted to one quadrant are detected
    biased = params._replace(angles=np.mod(params.angles, math.pi / 2))
    xb = render_shapes(biased, 12)
    asym, noise = _rotation_asymmetry(xb[params.labels == 0])
    assert asym > 3 * noise


def test_classes_look_different():
    """Noise-free class means differ: the task is learnable (a nearest-mean check on radial profiles)."""
    x, y = shape_images(800, size=16, seed=10, noise=0.0)
    ink = x.reshape(len(x), -1).sum(1)
    means = np.array([ink[y == k].mean() for k in range(len(SHAPE_CLASSES))])
    assert means.min() > 5 and means.max() / means.min() > 2


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be"), ({"n": 2.5}, "n must be"), ({"size": 4}, "size must be"),
    ({"size": 16.0}, "size must be"), ({"noise": -0.1}, "noise"), ({"noise": float("nan")}, "noise"),
    ({"classes": ("disc", "hexagon")}, "unknown shape"), ({"classes": ()}, "non-empty"),
    ({"classes": ("disc", "disc")}, "distinct"), ({"classes": "disc"}, "string"),
    ({"rotation": np.zeros(3)}, "rotation"), ({"rotation": np.zeros((5, 1))}, "rotation"),
    ({"rotation": float("inf")}, "finite"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    args = {"n": 5, "size": 16} | kwargs
    with pytest.raises(ValueError, match=match):
        shape_images(**args)


def test_params_are_a_namedtuple_of_arrays():
    p = sample_shape_params(10, size=16, seed=0)
    assert isinstance(p, ShapeParams) and p.classes == SHAPE_CLASSES
    for field in ("labels", "radii", "widths", "angles", "mirror", "amplitudes"):
        assert getattr(p, field).shape == (10,)
    assert p.centres.shape == (10, 2)
    assert set(np.unique(p.mirror)) <= {-1.0, 1.0}
