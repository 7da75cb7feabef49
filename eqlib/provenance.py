"""Provenance of a result: when, with which versions, on which device and commit, by which command."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata as _md
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["provenance", "package_versions", "device_info", "git_info", "utc_now_iso"]

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "neural-tangents", "eqlib")


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 with microseconds, e.g. ``2024-05-01T12:00:00.000000+00:00``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def package_versions() -> dict[str, str | None]:
    """Installed versions (from package metadata, nothing imported); None when absent."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = _md.version(name)
        except _md.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info() -> dict[str, Any]:
    """JAX backend, device descriptions and count; errors are reported, not raised."""
    try:
        import jax

        devices = jax.devices()
        return {
            "backend": jax.default_backend(),
            "devices": [str(d) for d in devices],
            "device_kinds": sorted({getattr(d, "device_kind", "unknown") for d in devices}),
            "device_count": len(devices),
        }
    except Exception as err:  # noqa: BLE001 - provenance must never fail a run
        return {"backend": None, "devices": [], "device_count": 0, "error": repr(err)}


def git_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"commit": sha | None, "dirty": bool | None}`` of the git checkout containing ``path``.

    ``path`` defaults to the directory of the eqlib package. Never raises.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parent

    def _git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=where, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = _git("rev-parse", "HEAD")
    if not commit:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def provenance(seed: int | None = None) -> dict[str, Any]:
    """Everything needed to say where a result came from (JSON-serialisable dict)."""
    return {
        "timestamp": utc_now_iso(),
        "seed": seed,
        "versions": package_versions(),
        "device": device_info(),
        "host": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(),
        },
        "git": git_info(),
        "command": list(sys.argv),
    }
