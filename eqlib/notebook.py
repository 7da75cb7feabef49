"""Helpers for the chapters themselves.

:func:`glue` hands a number to the book's prose (myst-nb's ``{glue:text}`` role) when the notebook
runs inside a book build, and keeps it in :data:`GLUED` everywhere (Colab, a plain Jupyter
kernel), where myst-nb — a build-time package, not in the runtime requirements — is not
installed and nothing would render the role anyway.
"""
from __future__ import annotations

from typing import Any

__all__ = ["glue", "GLUED"]

#: Every value glued in this kernel, by name (what a reader on Colab can inspect).
GLUED: dict[str, Any] = {}


def glue(name: str, value: Any) -> Any:
    """Glue ``value`` under ``name`` without displaying it; returns ``value``.

    Numbers are converted to plain Python floats/ints first (a numpy scalar would be glued as its
    repr). Names must be non-empty identifiers-with-dashes; reusing a name overwrites it, as in
    myst-nb.
    """
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ValueError(f"glue name must be a non-empty string of letters, digits, '_' and '-', got {name!r}")
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    GLUED[name] = value
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return value
    myst_glue(name, value, display=False)
    return value
