"""Figures of the book (see eqlib.plots)."""
from __future__ import annotations

__all__: list[str] = []
