"""A C4 group-convolutional network (Cohen & Welling 2016), invariant by construction.

Feature maps of the hidden layers live on the group p4 = translations ⋊ C4: an array
``(n, h, w, 4, c)`` holds, for every pixel and every rotation ``r`` of C4, ``c`` channels. C4 acts
on it by the *regular representation*: rotate the pixel grid by a quarter turn and cycle the
rotation axis,

    (g·f)[p, r] = f[g⁻¹p, r − 1]          (:func:`rotate_fields`, ``g`` the quarter turn).

* the **lifting convolution** correlates the image with the four rotated copies of each filter:
  ``out[:, :, :, r] = x ⋆ rot^r(W)`` (:func:`lifting_conv`);
* a **group convolution** correlates a field with filters ``ψ: (k, k, 4, c, f)`` that are rotated
  *and* cycled along their own rotation axis: ``out[r] = Σ_s f[s] ⋆ rot^r(ψ[s − r])``
  (:func:`group_conv`).

Both are equivariant, ``layer(g·x) = g·layer(x)``, for square inputs with odd filters and SAME
padding (the zero padding is symmetric); point-wise ReLU, 2×2 average pooling of even-sided maps
and biases shared over the rotations keep that. The read-out maps an invariant of the last fields
to the logits with a dense layer — the mean of their C4 orbit, flattened (:func:`orbit_average`,
the default), or the mean over pixels and maximum over rotations (:func:`invariant_pool`): the
network is invariant up to the rounding of float32 sums taken in another order.

:class:`GCNN` mirrors the members of the FashionMNIST experiment: three 3×3 layers of ``c, 2c,
4c`` fields (each field has 4 rotation channels), 2×2 average pooling after the first two,
standard parametrisation with He-scaled initialisation.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["ORDER", "rotate_fields", "lifting_filters", "group_filters", "lifting_conv", "group_conv",
           "invariant_pool", "orbit_average", "GCNN", "gcnn", "num_params"]

#: Order of the group C4.
ORDER = 4
_DIMS = ("NHWC", "HWIO", "NHWC")


def rotate_fields(f: jnp.ndarray, k: int = 1) -> jnp.ndarray:
    """The regular representation of C4 on fields ``f: (n, h, w, 4, c)``: ``k`` quarter turns.

    Rotates the pixel grid by ``k`` quarter turns (``jnp.rot90`` on axes 1, 2) and cycles the
    rotation axis by ``k``: ``out[:, :, :, r] = rot^k(f[:, :, :, r − k])``.
    """
    f = jnp.asarray(f)
    if f.ndim != 5 or f.shape[3] != ORDER:
        raise ValueError(f"fields must be (n, h, w, {ORDER}, c), got shape {f.shape}")
    return jnp.roll(jnp.rot90(f, k, axes=(1, 2)), k, axis=3)


def lifting_filters(kernel: jnp.ndarray, rotate: bool = True) -> jnp.ndarray:
    """``kernel: (k, k, c_in, f)`` → the filter bank ``(k, k, c_in, 4·f)`` of the lifting layer.

    Output channel ``r·f + j`` is filter ``j`` rotated by ``r`` quarter turns. ``rotate=False``
    stacks four *unrotated* copies: the control that is not equivariant.
    """
    if kernel.ndim != 4 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"lifting kernel must be (k, k, c_in, f), got shape {kernel.shape}")
    bank = [jnp.rot90(kernel, r if rotate else 0, axes=(0, 1)) for r in range(ORDER)]
    return jnp.stack(bank, axis=-2).reshape(kernel.shape[:3] + (ORDER * kernel.shape[3],))


def group_filters(kernel: jnp.ndarray, rotate: bool = True) -> jnp.ndarray:
    """``kernel: (k, k, 4, c, f)`` → the bank ``(k, k, 4·c, 4·f)`` of a group convolution.

    Output rotation ``r`` uses ``rot^r(ψ[s − r])`` on input rotation ``s``: the kernel cycled by
    ``r`` along its rotation axis and rotated by ``r`` quarter turns. ``rotate=False`` cycles but
    does not rotate (the control).
    """
    if kernel.ndim != 5 or kernel.shape[2] != ORDER or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"group kernel must be (k, k, {ORDER}, c, f), got shape {kernel.shape}")
    k, _, _, c, f = kernel.shape
    bank = [jnp.rot90(jnp.roll(kernel, r, axis=2), r if rotate else 0, axes=(0, 1))
            .reshape(k, k, ORDER * c, f) for r in range(ORDER)]
    return jnp.stack(bank, axis=-2).reshape(k, k, ORDER * c, ORDER * f)


def lifting_conv(x: jnp.ndarray, kernel: jnp.ndarray, bias: jnp.ndarray, rotate: bool = True) -> jnp.ndarray:
    """Lifting convolution: images ``x: (n, h, w, c_in)`` → fields ``(n, h, w, 4, f)`` (SAME padding)."""
    if x.ndim != 4:
        raise ValueError(f"lifting_conv expects images (n, h, w, c), got shape {x.shape}")
    z = jax.lax.conv_general_dilated(x, lifting_filters(kernel, rotate).astype(x.dtype), (1, 1), "SAME",
                                     dimension_numbers=_DIMS)
    return z.reshape(z.shape[:3] + (ORDER, kernel.shape[-1])) + bias


def group_conv(f: jnp.ndarray, kernel: jnp.ndarray, bias: jnp.ndarray, rotate: bool = True) -> jnp.ndarray:
    """Group convolution on C4: fields ``f: (n, h, w, 4, c)`` → ``(n, h, w, 4, f_out)`` (SAME padding)."""
    if f.ndim != 5 or f.shape[3] != ORDER:
        raise ValueError(f"group_conv expects fields (n, h, w, {ORDER}, c), got shape {f.shape}")
    x = f.reshape(f.shape[:3] + (-1,))
    z = jax.lax.conv_general_dilated(x, group_filters(kernel, rotate).astype(x.dtype), (1, 1), "SAME",
                                     dimension_numbers=_DIMS)
    return z.reshape(z.shape[:3] + (ORDER, kernel.shape[-1])) + bias


def invariant_pool(f: jnp.ndarray) -> jnp.ndarray:
    """``(n, h, w, 4, c) → (n, c)``: mean over the pixels, maximum over the rotations (C4-invariant)."""
    return f.mean(axis=(1, 2)).max(axis=1)


def orbit_average(f: jnp.ndarray) -> jnp.ndarray:
    """``(n, h, w, 4, c) → (n, h·w·4·c)``: the mean of the C4 orbit of the fields, flattened.

    Invariant (the orbit of ``g·f`` is the orbit of ``f``), yet it keeps *where* features lie up to
    the rotation: a dense read-out of it is the most general invariant linear read-out of ``f``.
    """
    return sum(rotate_fields(f, k) for k in range(ORDER)).reshape(f.shape[0], -1) / ORDER


class GCNN(nn.Module):
    """C4-invariant group-convolutional network: ``(n, h, w, c) → (n, out)`` logits.

    ``channels``: fields per layer (each 4 rotation channels: layer ``i`` has ``4·channels[i]``
    feature maps); ``pool_after[i]``: a 2×2 average pool after layer ``i`` (default: all but the
    last). ``head``: ``"flatten"`` (a dense read-out of :func:`orbit_average`, like the members'
    flattening read-out) or ``"gap"`` (of :func:`invariant_pool`). ``rotate=False`` builds the
    control whose filters are not rotated (not equivariant).
    Feature maps after every layer are sown into the ``"intermediates"`` collection as
    ``fields_<i>`` (read them with ``apply(..., mutable=["intermediates"])``).
    """

    channels: tuple[int, ...]
    out: int = 10
    pool_after: tuple[bool, ...] | None = None
    rotate: bool = True
    head: str = "flatten"
    b_std: float = 0.05

    @nn.compact
    def __call__(self, x):
        if self.head not in ("flatten", "gap"):
            raise ValueError(f"head must be 'flatten' or 'gap', got {self.head!r}")
        if x.ndim != 4 or x.shape[1] != x.shape[2]:
            raise ValueError(f"GCNN expects square images (n, h, h, c), got shape {x.shape}")
        pool_after = self.pool_after or tuple(i < len(self.channels) - 1 for i in range(len(self.channels)))
        f = x
        for i, (c, pool) in enumerate(zip(self.channels, pool_after)):
            lifting = i == 0
            c_in = f.shape[-1]
            shape = (3, 3, c_in, c) if lifting else (3, 3, ORDER, c_in, c)
            fan_in = 9 * c_in * (1 if lifting else ORDER)
            kernel = self.param(f"kernel_{i}", nn.initializers.normal(math.sqrt(2.0 / fan_in)), shape)
            bias = self.param(f"bias_{i}", nn.initializers.normal(self.b_std), (c,))
            conv = lifting_conv if lifting else group_conv
            f = nn.relu(conv(f, kernel, bias, self.rotate))
            if pool:
                n, h, w = f.shape[:3]
                f = nn.avg_pool(f.reshape(n, h, w, -1), (2, 2), (2, 2)).reshape(n, h // 2, w // 2, ORDER, c)
            if not self.is_initializing():        # keeps ``init``'s variables to the parameters
                self.sow("intermediates", f"fields_{i}", f)
        z = orbit_average(f) if self.head == "flatten" else invariant_pool(f)
        W = self.param("readout", nn.initializers.normal(math.sqrt(2.0 / z.shape[-1])),
                       (z.shape[-1], self.out))
        b = self.param("readout_bias", nn.initializers.normal(self.b_std), (self.out,))
        return z @ W.astype(z.dtype) + b


def gcnn(width: int, out: int = 10, rotate: bool = True, head: str = "flatten") -> GCNN:
    """The GCNN that mirrors a FashionMNIST member ``cnn([c, 2c, 4c], head=head)``: fields ``(c, 2c, 4c)``."""
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    return GCNN(channels=(width, 2 * width, 4 * width), out=out, rotate=rotate, head=head)


def num_params(module: nn.Module, input_shape: Sequence[int] = (28, 28, 1)) -> int:
    """Trainable parameters of ``module`` for inputs of shape ``input_shape`` (no batch axis)."""
    params = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, *input_shape)))
    return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params))
