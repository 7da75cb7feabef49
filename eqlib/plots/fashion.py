"""Figures of the FashionMNIST chapter (quick run beside the stored reference run, intervals)."""
from __future__ import annotations

__all__: list[str] = []
