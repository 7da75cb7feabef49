"""The one adapter to neural-tangents: every compatibility measure lives here, nothing else imports it.

neural-tangents 0.6.5 (its last release) was written against jax < 0.4.24:

* it refers to ``jax.random.KeyArray``, removed from jax; we alias it to ``jax.Array``;
* its package ``__init__`` imports ``neural_tangents.experimental`` (a TensorFlow bridge, which
  imports TensorFlow); we install without TensorFlow and register an empty placeholder module for
  that sub-package when TensorFlow is absent, so the import succeeds and the rest works;
* it imports names from ``jax.core`` that jax 0.5 deprecates; those warnings are silenced here;
* it does not import on jax >= 0.6 at all; we say so clearly instead of failing deep inside.

Usage: ``from eqlib._nt import nt, stax``.
"""
from __future__ import annotations

import importlib.util
import sys
import types
import warnings

import jax

_MAX_JAX = (0, 6)


def _jax_version() -> tuple[int, int]:
    major, minor = jax.__version__.split(".")[:2]
    return int(major), int(minor)


def _import_neural_tangents():
    if _jax_version() >= _MAX_JAX:
        raise ImportError(
            f"neural-tangents 0.6.5 does not import on jax {jax.__version__} (needs jax < 0.6). "
            "The kernel functions of eqlib (eqlib.ntk, Architecture.kernel_fn) need the pinned stack: "
            "pip install -r requirements.txt && pip install --no-deps -r requirements-nodeps.txt. "
            "Everything else in eqlib works on your jax."
        )
    if not hasattr(jax.random, "KeyArray"):
        jax.random.KeyArray = jax.Array
    if importlib.util.find_spec("tensorflow") is None and "neural_tangents.experimental" not in sys.modules:
        placeholder = types.ModuleType("neural_tangents.experimental")
        placeholder.__doc__ = "Placeholder registered by eqlib._nt: the TF bridge needs TensorFlow, not installed."
        sys.modules["neural_tangents.experimental"] = placeholder
    with warnings.catch_warnings():  # nt 0.6.5 imports jax.core names deprecated in jax 0.5: harmless, not ours
        warnings.filterwarnings("ignore", message=r"jax\.core\.\w+ is deprecated", category=DeprecationWarning)
        import neural_tangents
        from neural_tangents import stax as _stax

    return neural_tangents, _stax


nt, stax = _import_neural_tangents()
