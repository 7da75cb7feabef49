"""The small real data carried by the repository in ``data/``, verified on every read.

``data/`` holds the MNIST test set and 27 NCT-CRC-HE patches (see ``data/README.md``) and a
``SHA256SUMS`` list in ``sha256sum`` format, paths relative to ``data/``. Loaders call
:func:`verify_bundled` before they decode or cache anything from it: a missing, altered or
unlisted file raises ``ValueError`` naming the file and both sums.

The folder is ``$EQLIB_DATA`` when set (a copy of ``data/`` for an ``eqlib`` installed without
the repository), else ``<repository>/data``.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .cache import repo_root

__all__ = ["DATA_ENV_VAR", "MANIFEST", "bundled_data_dir", "read_manifest", "sha256_file",
           "verify_bundled"]

DATA_ENV_VAR = "EQLIB_DATA"
MANIFEST = "SHA256SUMS"


def bundled_data_dir(name: str | None = None) -> Path:
    """``$EQLIB_DATA`` (else ``<repo>/data``), or its subfolder ``name``.

    Raises FileNotFoundError saying where it looked when the folder does not exist.
    """
    env = os.environ.get(DATA_ENV_VAR)
    base = Path(env).expanduser() if env else repo_root() / "data"
    path = base / name if name else base
    if not path.is_dir():
        origin = f"${DATA_ENV_VAR}" if env else "the repository's data/ folder"
        raise FileNotFoundError(
            f"bundled data folder {path} not found ({origin}). The book's small data sets live in "
            f"data/ of its repository: run from a clone, or set ${DATA_ENV_VAR} to a copy of it")
    return path


def read_manifest(root: Path | None = None) -> dict[str, str]:
    """``{relative path: sha256 hex}`` from ``root/SHA256SUMS`` (root: the bundled folder)."""
    root = bundled_data_dir() if root is None else Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the bundled data cannot be verified")
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf8").splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise ValueError(f"{path}, line {number}: expected '<sha256>  <path>', got {line!r}")
        sums[name.strip()] = digest.lower()
    return sums


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_bundled(folder: str, root: Path | None = None) -> Path:
    """Check every file of ``root/folder`` against ``SHA256SUMS``; return the folder's path.

    ``folder`` is relative to the bundled root (e.g. ``"mnist"``,
    ``"histology/CRC-VAL-HE-7K"``). Raises ValueError naming the file and both sums when a
    file's SHA-256 differs from the list, naming the file when one listed is missing or one
    present is not listed (READMEs are exempt).
    """
    root = bundled_data_dir() if root is None else Path(root)
    base = root / folder
    if not base.is_dir():
        raise FileNotFoundError(f"bundled data folder {base} not found")
    prefix = folder.strip("/") + "/"
    listed = {k: v for k, v in read_manifest(root).items() if k.startswith(prefix)}
    if not listed:
        raise ValueError(f"{root / MANIFEST} lists no file under {folder}/")
    present = {p.relative_to(root).as_posix() for p in base.rglob("*")
               if p.is_file() and p.name != "README.md"}
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise ValueError(f"{root / unlisted[0]} is not listed in {root / MANIFEST} "
                         f"({len(unlisted)} unlisted file(s)); the bundled data was modified")
    for name, expected in sorted(listed.items()):
        path = root / name
        if not path.is_file():
            raise ValueError(f"bundled file {path} is missing (listed in {root / MANIFEST})")
        actual = sha256_file(path)
        if actual != expected:
            raise ValueError(f"bundled file {path} is corrupt: SHA-256 {actual}, "
                             f"expected {expected} (from {root / MANIFEST}); restore it from "
                             "the repository (git checkout -- data/)")
    return base
