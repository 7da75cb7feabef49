"""Presets: every experiment runs at up to three sizes — ``quick`` (2-core CPU, minutes; what the
book runs live), ``reference`` (the largest honest run a 2-core CPU makes in about two hours; run
once with the CLI and stored under ``results/reference/``) and ``full`` (paper scale, GPU). A preset is a frozen dataclass of the experiment's settings; this module chooses which
one to use and fingerprints a configuration.

Choose with an explicit argument, else the environment variable ``EQLIB_PRESET``, else ``quick``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from eqlib.io import to_jsonable

__all__ = ["PRESETS", "REQUIRED_PRESETS", "ENV_VAR", "DEFAULT_PRESET", "preset_name", "config_dict",
           "config_hash", "config_from_dict"]

#: Every preset name an experiment may define, smallest first.
PRESETS: tuple[str, ...] = ("quick", "reference", "full")
#: The presets every experiment must define (``reference`` is optional, e.g. for the tour).
REQUIRED_PRESETS: tuple[str, ...] = ("quick", "full")
ENV_VAR = "EQLIB_PRESET"
DEFAULT_PRESET = "quick"


def preset_name(name: str | None = None, valid: tuple[str, ...] = PRESETS) -> str:
    """Resolve the preset: ``name`` if given, else ``$EQLIB_PRESET``, else ``"quick"``."""
    source = "argument"
    if name is None:
        name, source = os.environ.get(ENV_VAR) or None, f"${ENV_VAR}"
    if name is None:
        return DEFAULT_PRESET
    resolved = name.strip().lower()
    if resolved not in valid:
        raise ValueError(f"unknown preset {name!r} (from {source}); valid presets: {', '.join(valid)}")
    return resolved


def config_dict(config: Any) -> dict[str, Any]:
    """A dataclass instance or mapping as a plain JSON-compatible dict."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return to_jsonable(config)
    if isinstance(config, dict):
        return to_jsonable(config)
    raise TypeError(f"config must be a dataclass instance or a dict, got {type(config).__name__}")


def config_hash(config: Any, length: int = 10) -> str:
    """Stable short hex hash of a config (sorted-key JSON → SHA-256 → first ``length`` chars)."""
    text = json.dumps(config_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def config_from_dict(cls: type, stored: dict[str, Any]) -> Any:
    """The dataclass ``cls`` instance a results file's ``config`` dict describes (JSON lists → tuples).

    ValueError naming the fields when the stored config and the dataclass do not have the same
    fields (the code changed since the run was made).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"cls must be a dataclass type, got {cls!r}")
    fields = {f.name for f in dataclasses.fields(cls)}
    if set(stored) != fields:
        raise ValueError(f"stored config fields differ from {cls.__name__}'s: {sorted(set(stored) ^ fields)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()})
