"""Where data lives: the cache directory and downloads (the repository's own ``data/`` is
:mod:`eqlib.data.bundled`).

* :func:`cache_dir` — ``$EQLIB_CACHE``, else ``~/.cache/eqlib`` (downloads and derived arrays).
* :func:`download_file` — fetch a URL into a temporary file beside the destination, verify it,
  then move it into place with ``os.replace``: a failed or corrupt download never leaves a file
  at the destination, so the cache holds either nothing or a verified file.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

__all__ = [
    "CACHE_ENV_VAR",
    "cache_dir",
    "repo_root",
    "fetch_to_file",
    "download_file",
    "find_file",
]

CACHE_ENV_VAR = "EQLIB_CACHE"


def cache_dir(sub: str | None = None, *, create: bool = True) -> Path:
    """``$EQLIB_CACHE`` (else ``~/.cache/eqlib``), optionally a subfolder; created unless asked not to."""
    env = os.environ.get(CACHE_ENV_VAR)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "eqlib"
    path = base / sub if sub else base
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def repo_root() -> Path:
    """The folder holding the ``eqlib`` package (the repository root for a source checkout)."""
    return Path(__file__).resolve().parents[2]


def find_file(names: Sequence[str], dirs: Sequence[Path | None]) -> Path | None:
    """The first ``dir / name`` that is a file, trying every name in each dir in turn."""
    for d in dirs:
        if d is None:
            continue
        for name in names:
            path = Path(d) / name
            if path.is_file():
                return path
    return None


def fetch_to_file(url: str, path: Path, *, timeout: float = 60.0, chunk_size: int = 1 << 20) -> None:
    """Stream ``url`` (http, https or file) into ``path`` and fsync it; network errors propagate."""
    request = urllib.request.Request(url, headers={"User-Agent": "eqlib-data-loader"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as f:
        shutil.copyfileobj(response, f, chunk_size)
        f.flush()
        os.fsync(f.fileno())


def download_file(urls: Sequence[str], dest: Path, verify: Callable[[Path], None]) -> Path:
    """Download the first mirror in ``urls`` that yields bytes passing ``verify``, to ``dest``.

    Each attempt writes to a hidden temporary file in ``dest``'s folder; ``verify(tmp)`` must raise
    ``ValueError`` for wrong content. Only a verified file is renamed to ``dest``; every temporary
    file is removed. Raises ``ValueError`` when some mirror served wrong bytes and none served the
    right ones, ``ConnectionError`` when no mirror could be reached.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not urls:
        raise ValueError(f"no URL given to download {dest.name}")
    failures: list[str] = []
    corrupt = False
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            fetch_to_file(url, tmp)
            verify(tmp)
            os.replace(tmp, dest)
            return dest
        except ValueError as err:
            corrupt = True
            failures.append(f"{url}: wrong content ({err})")
        except (OSError, urllib.error.URLError) as err:  # URLError, HTTPError, timeouts, disk errors
            failures.append(f"{url}: {type(err).__name__}: {err}")
        finally:
            tmp.unlink(missing_ok=True)
    detail = "\n  ".join(failures)
    if corrupt:
        raise ValueError(f"download of {dest.name} failed verification; nothing was saved:\n  {detail}")
    raise ConnectionError(f"could not download {dest.name} (offline?); nothing was saved:\n  {detail}")
