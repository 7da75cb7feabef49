"""One architecture description → a flax module and the matching neural-tangents stax triple.

An :class:`Architecture` is a tuple of layer specs (``Dense``, ``Conv``, ``Relu``, ``Erf``,
``AvgPool``, ``GlobalAvgPool``, ``Flatten``) plus the initialisation scales. The flax module uses
exactly the conventions of ``neural_tangents.stax`` so finite and infinite width are the same
network:

* NTK parametrisation (default): ``W ~ N(0, 1)``, ``b ~ N(0, 1)``, layer
  ``z = (W_std/√fan_in) · x W + b_std · b``;
* standard parametrisation: ``W ~ N(0, W_std²/fan_in)``, ``b ~ N(0, b_std²)``, ``z = x W + b``.

``fan_in`` is the input width for Dense and ``in_channels · kh · kw`` for Conv. Inputs are
``(n, features)`` for MLPs and ``(n, h, w, c)`` for CNNs (NHWC).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Dense:
    features: int


@dataclass(frozen=True)
class Conv:
    features: int
    kernel: tuple[int, int] = (3, 3)
    padding: str = "SAME"  # SAME | VALID | CIRCULAR


@dataclass(frozen=True)
class Relu:
    pass


@dataclass(frozen=True)
class Erf:
    pass


@dataclass(frozen=True)
class AvgPool:
    window: tuple[int, int] = (2, 2)
    strides: tuple[int, int] | None = None  # default: window
    padding: str = "VALID"


@dataclass(frozen=True)
class GlobalAvgPool:
    pass


@dataclass(frozen=True)
class Flatten:
    pass


Layer = Union[Dense, Conv, Relu, Erf, AvgPool, GlobalAvgPool, Flatten]
_PADDINGS = ("SAME", "VALID", "CIRCULAR")


@dataclass(frozen=True)
class Architecture:
    """A network as data: ``layers`` plus init scales and parametrisation (``"ntk"`` or ``"standard"``)."""

    layers: tuple[Layer, ...]
    W_std: float = math.sqrt(2.0)
    b_std: float = 0.05
    parametrization: str = "ntk"

    def __post_init__(self):
        if self.parametrization not in ("ntk", "standard"):
            raise ValueError(f"parametrization must be 'ntk' or 'standard', got {self.parametrization!r}")
        if not self.layers:
            raise ValueError("an Architecture needs at least one layer")
        for layer in self.layers:
            if not isinstance(layer, (Dense, Conv, Relu, Erf, AvgPool, GlobalAvgPool, Flatten)):
                raise TypeError(f"unknown layer spec {layer!r}")
            if isinstance(layer, (Dense, Conv)) and layer.features < 1:
                raise ValueError(f"{layer!r}: features must be positive")
            if isinstance(layer, Conv) and layer.padding not in _PADDINGS:
                raise ValueError(f"{layer!r}: padding must be one of {_PADDINGS}")

    @property
    def output_dim(self) -> int:
        dense = [l for l in self.layers if isinstance(l, (Dense, Conv))]
        return dense[-1].features

    def flax(self) -> "Network":
        """The finite-width flax module."""
        return Network(self)

    def stax(self):
        """The neural-tangents triple ``(init_fn, apply_fn, kernel_fn)`` of the same network."""
        from ._nt import stax

        return stax.serial(*[_stax_layer(stax, layer, self) for layer in self.layers])

    @property
    def kernel_fn(self):
        """The analytic NNGP/NTK kernel function (``kernel_fn(x1, x2, ("nngp", "ntk"))``)."""
        return self.stax()[2]

    def num_params(self, input_shape: Sequence[int]) -> int:
        """Number of trainable parameters for inputs of shape ``input_shape`` (without batch axis)."""
        params = jax.eval_shape(self.flax().init, jax.random.PRNGKey(0), jnp.zeros((1, *input_shape)))
        return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params))


def mlp(widths: Sequence[int], out: int, nonlinearity: str = "relu", **kwargs) -> Architecture:
    """Fully connected: ``Flatten → [Dense(w) → φ]* → Dense(out)``."""
    act = _nonlinearity(nonlinearity)
    layers: list[Layer] = [Flatten()]
    for w in widths:
        layers += [Dense(w), act]
    return Architecture(tuple(layers + [Dense(out)]), **kwargs)


def cnn(channels: Sequence[int], out: int, pool_after: Sequence[bool] | None = None, padding: str = "SAME",
        nonlinearity: str = "relu", head: str = "gap", **kwargs) -> Architecture:
    """Convolutional: ``[Conv3×3(c) → φ → (AvgPool2×2)]* → GlobalAvgPool | Flatten → Dense(out)``.

    ``pool_after[i]`` (default: after every layer but the last) adds a 2×2 average pool. ``head``:
    ``"gap"`` (global average pool, then the dense read-out) or ``"flatten"`` (the dense read-out
    sees the whole feature map, so it knows where things are). With SAME or CIRCULAR padding and
    square inputs whose side stays even at every pool, the NNGP/NTK are invariant under the
    rotations and reflections of the square with either head: a rotation permutes the pooled or
    flattened features, and the rows of the dense layer are i.i.d. at initialisation.
    """
    if head not in ("gap", "flatten"):
        raise ValueError(f"head must be 'gap' or 'flatten', got {head!r}")
    act = _nonlinearity(nonlinearity)
    pool_after = [i < len(channels) - 1 for i in range(len(channels))] if pool_after is None else list(pool_after)
    if len(pool_after) != len(channels):
        raise ValueError(f"pool_after has {len(pool_after)} entries for {len(channels)} conv layers")
    layers: list[Layer] = []
    for c, pool in zip(channels, pool_after):
        layers += [Conv(c, padding=padding), act] + ([AvgPool()] if pool else [])
    readout = GlobalAvgPool() if head == "gap" else Flatten()
    return Architecture(tuple(layers + [readout, Dense(out)]), **kwargs)


def _nonlinearity(name: str) -> Layer:
    table = {"relu": Relu(), "erf": Erf()}
    if name not in table:
        raise ValueError(f"unknown nonlinearity {name!r}; choose from {list(table)}")
    return table[name]


# ------------------------------------------------------------------------------ flax side

class _Linear(nn.Module):
    """Dense or Conv layer in NTK or standard parametrisation, matching neural-tangents."""

    spec: Dense | Conv
    W_std: float
    b_std: float
    parametrization: str

    @nn.compact
    def __call__(self, x):
        conv = isinstance(self.spec, Conv)
        kh, kw = self.spec.kernel if conv else (1, 1)
        fan_in = x.shape[-1] * kh * kw
        shape = (kh, kw, x.shape[-1], self.spec.features) if conv else (x.shape[-1], self.spec.features)
        ntk = self.parametrization == "ntk"
        w_init = nn.initializers.normal(1.0) if ntk else nn.initializers.normal(self.W_std / math.sqrt(fan_in))
        b_init = nn.initializers.normal(1.0) if ntk else nn.initializers.normal(self.b_std)
        W = self.param("kernel", w_init, shape)
        b = self.param("bias", b_init, (self.spec.features,))
        if conv:
            padding = self.spec.padding
            if padding == "CIRCULAR":
                ph, pw = (kh - 1) // 2, (kw - 1) // 2
                x = jnp.pad(x, ((0, 0), (ph, kh - 1 - ph), (pw, kw - 1 - pw), (0, 0)), mode="wrap")
                padding = "VALID"
            z = jax.lax.conv_general_dilated(x, W.astype(x.dtype), (1, 1), padding,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        else:
            z = x @ W.astype(x.dtype)
        if ntk:
            return self.W_std / math.sqrt(fan_in) * z + self.b_std * b
        return z + b


class Network(nn.Module):
    """The flax module of an :class:`Architecture`: ``(n, ...) -> (n, output_dim)``."""

    arch: Architecture

    @nn.compact
    def __call__(self, x):
        a = self.arch
        for layer in a.layers:
            if isinstance(layer, (Dense, Conv)):
                if isinstance(layer, Conv) and x.ndim != 4:
                    raise ValueError(f"Conv expects (n, h, w, c) inputs, got shape {x.shape}")
                x = _Linear(layer, a.W_std, a.b_std, a.parametrization)(x)
            elif isinstance(layer, Relu):
                x = nn.relu(x)
            elif isinstance(layer, Erf):
                x = jax.scipy.special.erf(x)
            elif isinstance(layer, AvgPool):
                x = nn.avg_pool(x, layer.window, layer.strides or layer.window, layer.padding)
            elif isinstance(layer, GlobalAvgPool):
                x = x.mean(axis=tuple(range(1, x.ndim - 1)))
            elif isinstance(layer, Flatten):
                x = x.reshape(x.shape[0], -1)
        return x


# ------------------------------------------------------------------------------ stax side

def _stax_layer(stax, layer: Layer, a: Architecture):
    if isinstance(layer, Dense):
        return stax.Dense(layer.features, W_std=a.W_std, b_std=a.b_std, parameterization=a.parametrization)
    if isinstance(layer, Conv):
        return stax.Conv(layer.features, layer.kernel, padding=layer.padding, W_std=a.W_std, b_std=a.b_std,
                         parameterization=a.parametrization)
    if isinstance(layer, Relu):
        return stax.Relu()
    if isinstance(layer, Erf):
        return stax.Erf()
    if isinstance(layer, AvgPool):
        return stax.AvgPool(layer.window, layer.strides or layer.window, layer.padding)
    if isinstance(layer, GlobalAvgPool):
        return stax.GlobalAvgPool()
    return stax.Flatten()
