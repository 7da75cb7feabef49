"""The MNIST test set (LeCun, Cortes & Burges): 10,000 28×28 grey digits, used out of distribution.

Where the files are looked for, in order (the first folder holding a file wins):

1. the ``data_dir`` argument, else ``$EQLIB_MNIST_DIR``;
2. the repository's ``data/mnist`` (see :mod:`eqlib.data.bundled`), whose files are checked
   against ``data/SHA256SUMS`` before they are read;
3. the cache, ``$EQLIB_CACHE/mnist`` (default ``~/.cache/eqlib/mnist``), where the files are
   downloaded from a public mirror when ``download=True`` and nothing was found before.

Integrity is checked on the **decompressed** IDX bytes: the bundled ``.gz`` files were recompressed
(2021 gzip timestamp), so their wrappers differ from the original distribution while the content
is identical — its MD5s are the widely published ones (:data:`PAYLOAD_MD5`); we check SHA-256.
Only the test split is provided: the book uses MNIST solely as out-of-distribution data.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .bundled import bundled_data_dir, verify_bundled
from .cache import cache_dir
from .idx import locate_idx_pair, read_idx_pair

__all__ = ["FILES", "MIRRORS", "ENV_VAR", "PAYLOAD_SHA256", "PAYLOAD_MD5", "CLASS_COUNTS_TEST",
           "load_mnist", "mnist_files"]

FILES = {"test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
ENV_VAR = "EQLIB_MNIST_DIR"
# SHA-256 of the decompressed IDX bytes (computed from data/mnist, whose decompressed MD5s
# are the published ones below).
PAYLOAD_SHA256 = {
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
PAYLOAD_MD5 = {
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}
CLASS_COUNTS_TEST = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


def mnist_files(split: str = "test", data_dir: str | os.PathLike | None = None,
                download: bool = True) -> tuple[Path, Path]:
    """Paths of the (images, labels) files of ``split``, downloading them into the cache if needed."""
    if split not in FILES:
        raise ValueError(f"only the MNIST test split is provided (split='test'), got {split!r}")
    try:
        bundled = bundled_data_dir("mnist")
    except FileNotFoundError:
        bundled = None
    paths = locate_idx_pair(FILES[split], PAYLOAD_SHA256, data_dir, ENV_VAR,
                            ("bundled data", bundled), cache_dir("mnist", create=False),
                            MIRRORS, download)
    if bundled is not None and any(p.parent == bundled for p in paths):
        verify_bundled("mnist", bundled.parent)
    return paths


def load_mnist(split: str = "test", data_dir: str | os.PathLike | None = None,
               download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """MNIST test images ``(10000, 28, 28, 1)`` float32 in [0, 1] and labels ``(10000,)`` int32.

    Both files are checked (IDX structure, SHA-256 of the decompressed bytes); a corrupt or
    foreign file raises ``ValueError`` naming it.
    """
    return read_idx_pair(mnist_files(split, data_dir, download), FILES[split], PAYLOAD_SHA256)
