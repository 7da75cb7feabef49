"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70,000 28×28 grey images of 10 clothing classes.

Where the files are looked for, in order (the first folder holding a file wins):

1. the ``data_dir`` argument, else ``$EQLIB_FASHION_MNIST_DIR``;
2. ``/usr/share/datasets/fashion-mnist/`` — Debian's package ``dataset-fashion-mnist``;
3. the cache, ``$EQLIB_CACHE/fashion-mnist`` (default ``~/.cache/eqlib/fashion-mnist``), where the
   official files are downloaded when ``download=True`` and nothing was found before.

A folder may hold the ``.gz`` files or their gunzipped versions.

Integrity is checked on the **decompressed** IDX bytes (SHA-256 in :data:`PAYLOAD_SHA256`), not on
the ``.gz`` wrapper: Debian recompressed the files (their gzip headers carry the 2020-06-05 build
time), so the ``.gz`` MD5s differ from the ones the official repository publishes (listed in
:data:`OFFICIAL_GZ_MD5`), while the decompressed content is byte-identical to the official release —
its MD5s are the published raw-file MD5s (:data:`PAYLOAD_MD5`). A download from the official
mirrors passes the same check.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .cache import cache_dir
from .idx import locate_idx_pair, read_idx_pair

__all__ = [
    "CLASS_NAMES",
    "SPLITS",
    "FILES",
    "MIRRORS",
    "DEBIAN_DIR",
    "ENV_VAR",
    "PAYLOAD_SHA256",
    "PAYLOAD_MD5",
    "OFFICIAL_GZ_MD5",
    "load_fashion_mnist",
    "fashion_mnist_files",
]

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SPLITS = ("train", "test")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "EQLIB_FASHION_MNIST_DIR"

# SHA-256 of the decompressed IDX bytes, computed from Debian's dataset-fashion-mnist
# 0.0~git20200523.55506a9-1 and matching digests published independently for the official files.
PAYLOAD_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
# MD5 of the decompressed IDX bytes (the widely published raw-file MD5s; documentation only).
PAYLOAD_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}
# MD5 of the official .gz files (zalandoresearch/fashion-mnist README; documentation only).
OFFICIAL_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def fashion_mnist_files(split: str = "train", data_dir: str | os.PathLike | None = None,
                        download: bool = True) -> tuple[Path, Path]:
    """Paths of the (images, labels) files of ``split``, downloading them into the cache if needed."""
    _check_split(split)
    return locate_idx_pair(FILES[split], PAYLOAD_SHA256, data_dir, ENV_VAR, ("Debian dataset-fashion-mnist", DEBIAN_DIR),
                           cache_dir("fashion-mnist", create=False), MIRRORS, download)


def load_fashion_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
                       download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 28, 28, 1)`` float32 in [0, 1] and labels ``(n,)`` int32 (names: CLASS_NAMES).

    ``n`` = 60,000 (train) or 10,000 (test). Every file is checked (IDX structure, SHA-256 of the
    decompressed bytes); a corrupt or foreign file raises ``ValueError`` naming it.
    """
    return read_idx_pair(fashion_mnist_files(split, data_dir, download), FILES[split], PAYLOAD_SHA256)

