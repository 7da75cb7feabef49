"""The IDX format of (Fashion-)MNIST, read without any third-party loader.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim`` big-endian
uint32 dimensions, then the array in C order, big-endian. MNIST images have magic 2051
(``0x00000803``: uint8, 3 dims ``(n, rows, cols)``), labels magic 2049 (``0x00000801``: uint8,
1 dim ``(n,)``). Files may be gzip-compressed; that is detected from the gzip signature, not the
name. Every malformed input raises ``ValueError`` naming the file.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from .cache import download_file, find_file

__all__ = [
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "read_payload",
    "parse_idx",
    "read_idx",
    "verify_payload_sha256",
    "read_idx_verified",
    "locate_idx_file",
    "as_image_dataset",
]

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# IDX type code -> big-endian numpy dtype
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_SIGNATURE = b"\x1f\x8b"


def read_payload(path: str | os.PathLike) -> bytes:
    """The IDX bytes of ``path``, gunzipped when the file is gzip; corrupt gzip → ValueError naming it."""
    path = Path(path)
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_SIGNATURE):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"{path} is a corrupt or truncated gzip file ({type(err).__name__}: {err}); "
            "delete it and obtain the file again"
        ) from err


def parse_idx(data: bytes, name: str = "<bytes>", magic: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a native-endian array; checks magic (optionally equal to ``magic``),
    dimensions and that the payload length is exactly what the header announces."""
    if len(data) < 4:
        raise ValueError(f"{name}: {len(data)} bytes is too short for an IDX header (truncated file?)")
    found = int.from_bytes(data[:4], "big")
    if magic is not None and found != magic:
        raise ValueError(
            f"{name}: IDX magic number {found} (0x{found:08x}), expected {magic} (0x{magic:08x}); "
            "not an IDX file of the expected kind"
        )
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise ValueError(f"{name}: bytes {data[:4].hex()} are not a valid IDX magic number")
    dtype, ndim = _DTYPES[data[2]], data[3]
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: file ends inside the IDX header ({len(data)} < {header} bytes)")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(
            f"{name}: IDX payload length mismatch — header {dims} ({dtype.name}) needs {expected} bytes, "
            f"file has {len(data)} ({kind})"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike, magic: int | None = None) -> np.ndarray:
    """Read a (gzipped or raw) IDX file into an array; malformed → ValueError naming ``path``."""
    return parse_idx(read_payload(path), str(path), magic)


def verify_payload_sha256(payload: bytes, expected: str, name: str) -> None:
    """Raise ValueError naming ``name`` when ``sha256(payload)`` differs from ``expected``."""
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected.lower():
        raise ValueError(
            f"SHA-256 mismatch for the decompressed content of {name}: expected {expected}, got {actual}; "
            "the file is corrupt or not the official release — delete it and obtain it again"
        )


def read_idx_verified(path: str | os.PathLike, sha256: str, magic: int) -> np.ndarray:
    """Read an IDX file whose decompressed bytes must have SHA-256 ``sha256`` and magic ``magic``."""
    payload = read_payload(path)
    arr = parse_idx(payload, str(path), magic)  # structural errors first: they say more than a digest
    verify_payload_sha256(payload, sha256, str(path))
    return arr


def locate_idx_file(
    filename: str,
    sha256: str,
    magic: int,
    search: Sequence[tuple[str, Path | None]],
    download_dir: Path | None,
    mirrors: Sequence[str],
    download: bool,
) -> Path:
    """Find ``filename`` (``.gz`` or gunzipped) in the ``search`` folders, else download it.

    ``search`` holds ``(description, folder)`` pairs tried in order (None entries are skipped);
    ``download_dir`` is searched last and receives the download from ``mirror + filename``,
    which is verified (structure and SHA-256 of the decompressed bytes) before it is moved into
    place. Raises FileNotFoundError listing every place looked at when the file cannot be had.
    """
    names = [filename, filename[:-3]] if filename.endswith(".gz") else [filename]
    dirs = [d for _, d in search] + [download_dir]
    found = find_file(names, dirs)
    if found is not None:
        return found
    looked = [f"{what}: {d}" for what, d in search if d is not None]
    if download_dir is not None:
        looked.append(f"cache: {download_dir}")
    where = "\n  ".join(looked) or "(nowhere)"
    if not download or download_dir is None:
        raise FileNotFoundError(
            f"{filename} not found; looked in\n  {where}\n(download=False: not downloading)"
        )

    def verify(tmp: Path) -> None:
        read_idx_verified(tmp, sha256, magic)

    try:
        return download_file([m + filename for m in mirrors], download_dir / filename, verify)
    except ConnectionError as err:
        raise FileNotFoundError(f"{filename} not found; looked in\n  {where}\nand {err}") from err


def locate_idx_pair(
    names: Sequence[str],
    sha256: dict[str, str],
    data_dir: str | os.PathLike | None,
    env_var: str,
    fallback: tuple[str, Path | None],
    download_dir: Path | None,
    mirrors: Sequence[str],
    download: bool,
) -> tuple[Path, Path]:
    """Paths of an (images, labels) pair of IDX files, found or downloaded by :func:`locate_idx_file`.

    Looked up in order: ``data_dir`` (else the folder in ``$env_var``), the ``fallback``
    ``(description, folder)``, then ``download_dir``, where a download lands.
    """
    explicit = data_dir if data_dir is not None else os.environ.get(env_var)
    search = [
        ("data_dir argument" if data_dir is not None else f"${env_var}",
         Path(explicit).expanduser() if explicit else None),
        fallback,
    ]
    images, labels = (locate_idx_file(name, sha256[name], magic, search, download_dir, mirrors, download)
                      for name, magic in zip(names, (IMAGES_MAGIC, LABELS_MAGIC)))
    return images, labels


def read_idx_pair(paths: Sequence[Path], names: Sequence[str],
                  sha256: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Read and verify an (images, labels) pair → float32 ``(n, h, w, 1)`` in [0, 1], int32 ``(n,)``."""
    image_path, label_path = paths
    images = read_idx_verified(image_path, sha256[names[0]], IMAGES_MAGIC)
    labels = read_idx_verified(label_path, sha256[names[1]], LABELS_MAGIC)
    return as_image_dataset(images, labels, image_path, label_path)


def as_image_dataset(images: np.ndarray, labels: np.ndarray, image_path: Path | str = "images",
                     label_path: Path | str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(n, h, w)`` images and ``(n,)`` labels → float32 ``(n, h, w, 1)`` in [0, 1], int32."""
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(f"expected images (n, h, w) and labels (n,), got {images.shape} from {image_path} "
                         f"and {labels.shape} from {label_path}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{image_path} holds {images.shape[0]} images but {label_path} "
                         f"{labels.shape[0]} labels")
    x = images.astype(np.float32)[..., None]
    x /= np.float32(255.0)
    return x, labels.astype(np.int32)
