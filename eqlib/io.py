"""Atomic storage of arrays, JSON and pytrees; SHA-256 checks.

Every writer goes through :func:`atomic_write_bytes`: the data lands in a temporary file in the
target directory, is fsync'ed, and is moved into place with ``os.replace``. A reader therefore
sees either the old file or the complete new one, never a half-written file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_write_bytes",
    "save_arrays",
    "load_arrays",
    "save_json",
    "load_json",
    "to_jsonable",
    "save_pytree",
    "load_pytree",
    "sha256_file",
    "verify_sha256",
]

PathLike = str | os.PathLike


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in same dir, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


# --------------------------------------------------------------------------- arrays (npz)


def save_arrays(path: PathLike, arrays: dict[str, Any], compress: bool = False) -> Path:
    """Save a flat ``{name: array}`` dict to an ``.npz`` file atomically (zip-deflated if ``compress``)."""
    if not isinstance(arrays, dict):
        raise TypeError(f"arrays must be a dict of name -> array, got {type(arrays).__name__}")
    converted = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"array names must be non-empty strings, got {key!r}")
        arr = np.asarray(value)
        if arr.dtype == object:
            raise ValueError(f"array {key!r} has dtype object; only numeric/str arrays can be saved")
        converted[key] = arr
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **converted)
    return atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: PathLike) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file into memory; corrupt file → ValueError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such array file: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as err:
        raise ValueError(
            f"array file {path} is corrupt or truncated ({type(err).__name__}: {err}); "
            "delete it and recompute"
        ) from err


# --------------------------------------------------------------------------- JSON


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/jax scalars and arrays, dataclasses, paths, tuples and sets to plain JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(to_jsonable(v) for v in obj)
    if isinstance(obj, (str, bool, int, type(None))):
        return obj
    if isinstance(obj, float):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "__array__"):  # numpy / jax arrays
        return np.asarray(obj).tolist()
    raise TypeError(f"cannot serialise object of type {type(obj).__name__} to JSON: {obj!r}")


def save_json(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (numpy values become plain numbers/lists)."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=True)
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def load_json(path: PathLike) -> Any:
    """Read a JSON file; malformed JSON → ValueError naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such JSON file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"JSON file {path} is corrupt or truncated: {err}") from err


# --------------------------------------------------------------------------- pytrees


def _leaf_key(i: int) -> str:
    return f"leaf_{i:05d}"


def save_pytree(path: PathLike, tree: Any) -> Path:
    """Save the array leaves of a pytree (params, optax state, …) to ``.npz`` (keys leaf_00000 …).

    Only the leaves are stored; :func:`load_pytree` restores them into the structure of ``like``.
    """
    import jax

    leaves, _ = jax.tree_util.tree_flatten(tree)
    return save_arrays(path, {_leaf_key(i): np.asarray(leaf) for i, leaf in enumerate(leaves)})


def load_pytree(path: PathLike, like: Any) -> Any:
    """Load leaves saved by :func:`save_pytree` into the structure of ``like``.

    Each leaf must match the shape and dtype of the corresponding leaf of ``like``; returns numpy
    leaves (pass through ``jax.device_put`` to place them).
    """
    import jax

    like_leaves, treedef = jax.tree_util.tree_flatten(like)
    stored = load_arrays(path)
    if len(stored) != len(like_leaves):
        raise ValueError(
            f"pytree file {path} holds {len(stored)} leaves but `like` has {len(like_leaves)}"
        )
    leaves = []
    for i, ref in enumerate(like_leaves):
        key = _leaf_key(i)
        if key not in stored:
            raise ValueError(f"pytree file {path} has no leaf {key}")
        arr = stored[key]
        ref_shape = tuple(np.shape(ref))
        ref_dtype = np.dtype(ref.dtype) if hasattr(ref, "dtype") else np.asarray(ref).dtype
        if arr.dtype.kind == "V" and arr.dtype.itemsize == ref_dtype.itemsize:
            arr = arr.view(ref_dtype)  # npz stores extension dtypes (bfloat16) as raw bytes
        if arr.shape != ref_shape or arr.dtype != ref_dtype:
            raise ValueError(
                f"pytree file {path}: leaf {key} has shape {arr.shape} dtype {arr.dtype}, "
                f"expected shape {ref_shape} dtype {ref_dtype}"
            )
        leaves.append(arr)
    return jax.tree_util.tree_unflatten(treedef, leaves)


# --------------------------------------------------------------------------- checksums


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: PathLike, expected: str) -> None:
    """Raise ValueError naming the file, expected and actual digest when they differ."""
    actual = sha256_file(path)
    if actual.lower() != expected.strip().lower():
        raise ValueError(
            f"SHA-256 mismatch for {path}: expected {expected}, got {actual}; "
            "the file is corrupt or not the expected version — delete it and download again"
        )
