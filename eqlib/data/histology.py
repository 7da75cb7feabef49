"""Colorectal histology: NCT-CRC-HE-100K and CRC-VAL-HE-7K (Kather, Halama & Marx 2018), PathMNIST.

The published archives (Zenodo record 1214456, CC-BY 4.0) unpack to ::

    <root>/NCT-CRC-HE-100K/<CLASS>/<name>.tif   100,000 patches (training data)
    <root>/CRC-VAL-HE-7K/<CLASS>/<name>.tif       7,180 patches (independent patients)

224×224 RGB TIFFs at 0.5 µm/px in 9 tissue classes; the label is the index in :data:`CLASSES`
(ADI, BACK, DEB, LYM, MUC, MUS, NORM, STR, TUM). MedMNIST's PathMNIST (a 28×28 resize of the same
data: train/val from NCT-CRC-HE-100K, test = CRC-VAL-HE-7K) numbers its labels 0 adipose,
1 background, 2 debris, 3 lymphocytes, 4 mucus, 5 smooth muscle, 6 normal colon mucosa,
7 cancer-associated stroma, 8 colorectal adenocarcinoma epithelium — the same order, so its
labels are used unchanged (:data:`PATHMNIST_TO_CLASSES` is the identity).

The repository carries 27 real patches (3 per class; 2 in NCT-CRC-HE-100K, 1 in CRC-VAL-HE-7K) in
this layout under ``data/histology`` (:func:`bundled_histology_dir`), verified against
``data/SHA256SUMS`` on every load; :func:`mini_task` cuts them into 32×32 crops for a *tiny*
classification task that runs on a CPU in seconds. It is a stand-in for testing the pipeline,
far too small to say anything about the full data set — results from it must be labelled so.

Memory: :func:`load_histology` returns float32; the full NCT-CRC-HE-100K is 60 GB at 224 px, so
load it resized (``size=32``: 1.2 GB; ``size=64``: 4.9 GB) or a part of it (``max_per_class``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence

import numpy as np

from ..io import load_arrays, save_arrays
from .bundled import bundled_data_dir, verify_bundled
from .cache import cache_dir, download_file

__all__ = [
    "CLASSES",
    "CLASS_DESCRIPTIONS",
    "SUBSETS",
    "PATCH_SIZE",
    "ZENODO_RECORD",
    "ZenodoFile",
    "ZENODO_FILES",
    "PATHMNIST_MD5",
    "PATHMNIST_URL",
    "PATHMNIST_TO_CLASSES",
    "bundled_histology_dir",
    "list_histology_files",
    "read_patch",
    "resize_patches",
    "load_histology",
    "load_pathmnist",
    "download_histology",
    "histology_crops",
    "HistologyTask",
    "mini_task",
]

CLASSES = ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")
CLASS_DESCRIPTIONS = {
    "ADI": "adipose",
    "BACK": "background",
    "DEB": "debris",
    "LYM": "lymphocytes",
    "MUC": "mucus",
    "MUS": "smooth muscle",
    "NORM": "normal colon mucosa",
    "STR": "cancer-associated stroma",
    "TUM": "colorectal adenocarcinoma epithelium",
}
SUBSETS = ("NCT-CRC-HE-100K", "CRC-VAL-HE-7K")
PATCH_SIZE = 224
_TIFF_SUFFIXES = (".tif", ".tiff")
_CACHE_FORMAT = 1  # bump when the cached arrays change meaning


@dataclasses.dataclass(frozen=True)
class ZenodoFile:
    """One archive of the record: file name, download URLs (mirrors), MD5 and size when known."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None
    size: int | None


ZENODO_RECORD = "1214456"


def _zenodo(name: str, md5: str, size: int) -> ZenodoFile:
    return ZenodoFile(name, (f"https://zenodo.org/records/{ZENODO_RECORD}/files/{name}?download=1",
                             f"https://zenodo.org/api/records/{ZENODO_RECORD}/files/{name}/content"), md5, size)


# MD5 and byte size as listed on the Zenodo record page, quoted by several independent projects
# (not checked against a live download here: this machine is offline).
ZENODO_FILES = {
    "NCT-CRC-HE-100K": _zenodo("NCT-CRC-HE-100K.zip", "6fd702d11df6292bc054397ae038a464", 11_690_284_003),
    "CRC-VAL-HE-7K": _zenodo("CRC-VAL-HE-7K.zip", "2fd1651b4f94ebd818ebf90ad2b6ce06", 800_276_929),
}
# MedMNIST v2 pathmnist.npz (28×28), Zenodo record 6496656, MD5 from medmnist/info.py.
PATHMNIST_MD5 = "a8b06965200029087d5bd730944a56c1"
PATHMNIST_URL = "https://zenodo.org/record/6496656/files/pathmnist.npz?download=1"
PATHMNIST_TO_CLASSES = tuple(range(9))  # PathMNIST label i is CLASSES[i]


# --------------------------------------------------------------------------- files


def bundled_histology_dir() -> Path:
    """The 27-patch sample in the repository's ``data/histology``; FileNotFoundError when absent."""
    return bundled_data_dir("histology")


def _check_subset(subset: str) -> None:
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")


def list_histology_files(root: str | os.PathLike, subset: str = "NCT-CRC-HE-100K",
                         max_per_class: int | None = None) -> tuple[list[Path], np.ndarray]:
    """TIFF paths under ``root/subset/<CLASS>/`` sorted by class then name, and their int32 labels.

    Hidden entries and non-TIFF files are ignored; a missing subset folder, a folder that is not
    one of :data:`CLASSES`, a missing class folder or one without TIFFs raise, naming it.
    ``max_per_class`` keeps the first files (by name) of each class.
    """
    _check_subset(subset)
    base = Path(root) / subset
    if not base.is_dir():
        raise FileNotFoundError(
            f"histology subset folder {base} does not exist (expected layout: "
            f"<root>/{subset}/<CLASS>/*.tif; see download_histology)"
        )
    folders = {p.name: p for p in base.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    unknown = sorted(set(folders) - set(CLASSES))
    if unknown:
        raise ValueError(f"unknown class folder(s) {unknown} in {base}; expected only {list(CLASSES)}")
    missing = [c for c in CLASSES if c not in folders]
    if missing:
        raise ValueError(f"class folder(s) {missing} missing from {base}")
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"max_per_class must be >= 1, got {max_per_class}")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CLASSES):
        files = sorted(p for p in folders[name].iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in _TIFF_SUFFIXES)
        if not files:
            raise ValueError(f"class folder {folders[name]} holds no .tif files")
        files = files[:max_per_class] if max_per_class else files
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, dtype=np.int32)


def read_patch(path: str | os.PathLike) -> np.ndarray:
    """One patch as ``(224, 224, 3)`` uint8; not a readable TIFF or another shape → ValueError naming it."""
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            image = tif.pages[0].asarray()
    except (FileNotFoundError, PermissionError):
        raise
    except Exception as err:  # noqa: BLE001 - any decoder failure means a bad file
        hint = " (install imagecodecs for this TIFF compression)" if "imagecodecs" in str(err) else ""
        raise ValueError(f"{path} is not a readable TIFF image: {type(err).__name__}: {err}{hint}") from err
    if image.shape != (PATCH_SIZE, PATCH_SIZE, 3) or image.dtype != np.uint8:
        raise ValueError(
            f"{path} has shape {image.shape} and dtype {image.dtype}; expected a "
            f"{PATCH_SIZE}×{PATCH_SIZE} RGB uint8 patch, shape ({PATCH_SIZE}, {PATCH_SIZE}, 3)"
        )
    return image


def resize_patches(images: np.ndarray, size: int) -> np.ndarray:
    """``(n, h, h, c)`` uint8 (0–255) → ``(n, size, size, c)`` float32 in [0, 1], by area averaging.

    When ``size`` divides ``h`` this is the exact mean over ``h/size``-pixel blocks; otherwise
    ``jax.image.resize`` with the antialiased linear (triangle) kernel, which averages over the
    footprint of each output pixel. ``size == h`` only rescales the values.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected square images (n, h, h, c), got shape {images.shape}")
    n, h, _, c = images.shape
    if not 1 <= size <= h:
        raise ValueError(f"size must be between 1 and the patch size {h} (downsampling only), got {size}")
    x = images.astype(np.float32)
    x /= np.float32(255.0)
    if size == h:
        return x
    if h % size == 0:
        f = h // size
        return x.reshape(n, size, f, size, f, c).mean(axis=(2, 4), dtype=np.float32)
    import jax
    import jax.numpy as jnp

    out = jax.image.resize(jnp.asarray(x), (n, size, size, c), method="linear", antialias=True)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def _read_patches(paths: Sequence[Path], workers: int) -> np.ndarray:
    out = np.empty((len(paths), PATCH_SIZE, PATCH_SIZE, 3), dtype=np.uint8)
    if workers <= 1 or len(paths) < 64:
        for i, p in enumerate(paths):
            out[i] = read_patch(p)
    else:
        with ThreadPoolExecutor(workers) as pool:
            for i, image in enumerate(pool.map(read_patch, paths)):
                out[i] = image
    return out


# --------------------------------------------------------------------------- cached loading


def _file_list_key(paths: Sequence[Path], base: Path) -> tuple[list[str], str]:
    rel = [p.relative_to(base).as_posix() for p in paths]
    h = hashlib.sha256()
    for r, p in zip(rel, paths):
        h.update(f"{r}\t{p.stat().st_size}\n".encode())
    return rel, h.hexdigest()


def _content_digest(images: np.ndarray, labels: np.ndarray, files: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    h.update("\n".join(files).encode())
    return h.hexdigest()


def _load_cached(path: Path, files: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (images, labels) when the file is intact and for these files; else None (warns)."""
    try:
        stored = load_arrays(path)
        images, labels = stored["images"], stored["labels"]
        ok = (list(stored["files"].tolist()) == files
              and str(stored["digest"]) == _content_digest(images, labels, files))
    except (ValueError, KeyError) as err:
        warnings.warn(f"histology cache {path} is unreadable ({err}); rebuilding it", stacklevel=3)
        return None
    if not ok:
        warnings.warn(f"histology cache {path} failed its checksum; rebuilding it", stacklevel=3)
        return None
    return images, labels


def load_histology(
    root: str | os.PathLike | None = None,
    subset: str = "NCT-CRC-HE-100K",
    size: int | None = None,
    cache: bool = True,
    *,
    max_per_class: int | None = None,
    cache_root: str | os.PathLike | None = None,
    workers: int | None = None,
    chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images ``(n, s, s, 3)`` float32 in [0, 1] (``s`` = ``size`` or 224), labels ``(n,)`` int32,
    and the file names relative to ``root/subset`` (e.g. ``"ADI/ADI-AAQEFMRI.tif"``).

    ``root`` defaults to the repository's 27-patch sample, whose files are first checked against
    ``data/SHA256SUMS`` (ValueError naming a corrupt file; nothing is read or cached). With ``size`` the patches are area-averaged
    to ``size × size`` (see :func:`resize_patches`) and, when ``cache`` is true, the result is
    stored in ``$EQLIB_CACHE/histology`` (or ``cache_root``) as an ``.npz`` keyed by subset, size
    and a hash of the file list (names and byte sizes); it is written atomically and carries a
    SHA-256 of its content, checked on every load (a bad cache is rebuilt, with a warning).
    """
    _check_subset(subset)
    if root is None:
        root = verify_bundled(f"histology/{subset}").parent
    root = Path(root)
    if size is not None and not 1 <= int(size) <= PATCH_SIZE:
        raise ValueError(f"size must be None or between 1 and {PATCH_SIZE}, got {size}")
    paths, labels = list_histology_files(root, subset, max_per_class)
    files, key = _file_list_key(paths, root / subset)
    cache_file = None
    if cache and size is not None:
        folder = Path(cache_root) if cache_root is not None else cache_dir("histology")
        cache_file = folder / f"{subset}-{size}px-n{len(files)}-{key[:16]}-v{_CACHE_FORMAT}.npz"
        if cache_file.is_file():
            hit = _load_cached(cache_file, files)
            if hit is not None:
                return hit[0], hit[1], files
    workers = workers or min(8, os.cpu_count() or 1)
    s = size or PATCH_SIZE
    images = np.empty((len(paths), s, s, 3), dtype=np.float32)
    for start in range(0, len(paths), chunk):
        block = _read_patches(paths[start:start + chunk], workers)
        images[start:start + len(block)] = resize_patches(block, s)
    if cache_file is not None:
        save_arrays(cache_file, {"images": images, "labels": labels, "files": np.asarray(files),
                                 "digest": np.asarray(_content_digest(images, labels, files))})
    return images, labels, files


# --------------------------------------------------------------------------- PathMNIST


def load_pathmnist(path: str | os.PathLike, split: str = "train",
                   md5: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MedMNIST PathMNIST ``.npz`` → images ``(n, s, s, 3)`` float32 in [0, 1], labels ``(n,)`` int32.

    ``split`` is ``"train"``, ``"val"`` or ``"test"`` (keys ``<split>_images``, ``<split>_labels``);
    labels are already in :data:`CLASSES` order. Pass ``md5=PATHMNIST_MD5`` to check the 28×28 file.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such PathMNIST file: {path} (download: {PATHMNIST_URL})")
    if md5 is not None:
        actual = hashlib.md5(path.read_bytes()).hexdigest()
        if actual != md5.lower():
            raise ValueError(f"MD5 mismatch for {path}: expected {md5}, got {actual}; "
                             "the file is corrupt or another version")
    need = (f"{split}_images", f"{split}_labels")
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                raise ValueError("no zip signature")
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            arrays = {k: npz[k] for k in need if k in keys}
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:
        raise ValueError(f"{path} is not a readable .npz file ({type(err).__name__}: {err})") from err
    if len(arrays) != 2:
        raise ValueError(f"{path} lacks {sorted(set(need) - keys)} (has {sorted(keys)}); not a MedMNIST file?")
    images, labels = arrays[need[0]], arrays[need[1]]
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{path}: {split}_images has shape {images.shape} dtype {images.dtype}; "
                         "expected (n, s, s, 3) uint8")
    labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{path}: {split}_labels has shape {labels.shape}, expected ({images.shape[0]},) or "
                         f"({images.shape[0]}, 1)")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise ValueError(f"{path}: {split}_labels outside 0..{len(CLASSES) - 1}")
    x = images.astype(np.float32)
    x /= np.float32(255.0)
    return x, labels.astype(np.int32)


# --------------------------------------------------------------------------- download


def _verify_zip(path: Path, source: ZenodoFile) -> None:
    """Size and MD5 when known, else ``zipfile.testzip`` (CRC of every member); ValueError if bad."""
    if source.size is not None and path.stat().st_size != source.size:
        raise ValueError(f"{path} has {path.stat().st_size} bytes, expected {source.size} (truncated?)")
    if source.md5 is not None:
        h = hashlib.md5()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
        if h.hexdigest() != source.md5:
            raise ValueError(f"MD5 mismatch for {path}: expected {source.md5}, got {h.hexdigest()}")
        return
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a valid zip archive ({type(err).__name__}: {err})") from err
    if bad is not None:
        raise ValueError(f"{path}: member {bad} fails its CRC check (corrupt archive)")


def _find_subset_dir(top: Path, subset: str) -> Path:
    """The folder under ``top`` (at most 3 levels down) holding the class folders of ``subset``."""
    candidates = [top / subset, top]
    candidates += sorted(p for p in top.glob("*/") if p.is_dir())
    candidates += sorted(p for p in top.glob("*/*/") if p.is_dir())
    for c in candidates:
        if all((c / name).is_dir() for name in CLASSES):
            return c
    raise ValueError(f"the archive for {subset} does not contain the class folders {list(CLASSES)}")


def _extract(zip_path: Path, root: Path, subset: str) -> Path:
    """Unzip into a hidden temporary folder of ``root``, then rename the subset folder into place."""
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{subset}.extract-"))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for name in zf.namelist():
                pure = PurePosixPath(name)
                if pure.is_absolute() or ".." in pure.parts:
                    raise ValueError(f"{zip_path} contains an unsafe member name {name!r}")
            zf.extractall(tmp)  # reads every member fully: CRC errors surface here
        found = _find_subset_dir(tmp, subset)
        target = root / subset
        os.replace(found, target)
        return target
    except zipfile.BadZipFile as err:
        raise ValueError(f"{zip_path} is a corrupt zip archive: {err}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_histology(root: str | os.PathLike, subsets: Sequence[str] = SUBSETS, *,
                       keep_zip: bool = False,
                       sources: Mapping[str, ZenodoFile] | None = None) -> dict[str, Path]:
    """Download and unpack the Zenodo archives of ``subsets`` into ``root`` (skips present ones).

    Each zip is downloaded to a temporary file and checked (byte size and MD5 from the record
    page; a source without an MD5 is checked with ``zipfile.testzip``) before it is kept; it is
    extracted to a hidden folder and only the complete subset folder is renamed into place, so
    an interrupted run leaves no half-filled ``root/<subset>``. NCT-CRC-HE-100K.zip is 11.7 GB.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sources = dict(ZENODO_FILES if sources is None else sources)
    done: dict[str, Path] = {}
    for subset in subsets:
        _check_subset(subset)
        target = root / subset
        if target.is_dir():
            list_histology_files(root, subset)  # validate what is there
            done[subset] = target
            continue
        source = sources[subset]
        zip_path = root / source.filename
        if zip_path.is_file():
            _verify_zip(zip_path, source)
        else:
            download_file(source.urls, zip_path, lambda tmp, s=source: _verify_zip(tmp, s))
        done[subset] = _extract(zip_path, root, subset)
        list_histology_files(root, subset)
        if not keep_zip:
            zip_path.unlink()
    return done


# --------------------------------------------------------------------------- crops and the mini task


def histology_crops(images: np.ndarray, labels: np.ndarray, crop: int = 32,
                    stride: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each ``(h, w, c)`` patch into ``crop × crop`` windows every ``stride`` pixels (default:
    ``crop``, non-overlapping) → crops ``(n·k, crop, crop, c)``, their patch's labels ``(n·k,)``
    and ``patch_index`` ``(n·k,)`` (which patch each crop came from); patch-major, row-major."""
    images, labels = np.asarray(images), np.asarray(labels)
    stride = crop if stride is None else stride
    if images.ndim != 4:
        raise ValueError(f"expected images (n, h, w, c), got shape {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"expected labels ({images.shape[0]},), got shape {labels.shape}")
    n, h, w, c = images.shape
    if not (1 <= crop <= min(h, w)) or stride < 1:
        raise ValueError(f"need 1 <= crop <= {min(h, w)} and stride >= 1, got crop={crop}, stride={stride}")
    windows = np.lib.stride_tricks.sliding_window_view(images, (crop, crop), axis=(1, 2))[:, ::stride, ::stride]
    ny, nx = windows.shape[1], windows.shape[2]  # (n, ny, nx, c, crop, crop)
    crops = np.ascontiguousarray(windows.transpose(0, 1, 2, 4, 5, 3)).reshape(n * ny * nx, crop, crop, c)
    k = ny * nx
    return crops, np.repeat(labels, k), np.repeat(np.arange(n, dtype=np.int32), k)


@dataclasses.dataclass(frozen=True)
class HistologyTask:
    """Crops for training and testing, cut from disjoint sets of whole patches.

    ``patch_train[i]`` indexes ``files_train`` (likewise for test); ``x_*`` are ``(m, crop, crop, 3)``
    float32 in [0, 1], ``y_*`` int32 labels in :data:`CLASSES` order.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    patch_train: np.ndarray
    files_train: tuple[str, ...]
    x_test: np.ndarray
    y_test: np.ndarray
    patch_test: np.ndarray
    files_test: tuple[str, ...]
    crop: int
    stride: int
    size: int


def mini_task(root: str | os.PathLike | None = None, crop: int = 32, stride: int | None = None,
              size: int | None = None, train_subset: str = "NCT-CRC-HE-100K",
              test_subset: str = "CRC-VAL-HE-7K") -> HistologyTask:
    """A tiny real classification task: crops of the training subset's patches vs crops of the
    test subset's patches (whole patches held out, from different patients).

    With the default (the repository's sample): 18 NCT-CRC-HE-100K patches → 882 training crops and 9
    CRC-VAL-HE-7K patches → 441 test crops of 32×32 (49 per patch, 2 / 1 patches per class).
    A stand-in for CPU runs and tests — far too small to represent the full data set.
    ``size`` first area-averages the 224-px patches (e.g. ``size=112`` with ``crop=16``).
    """
    if train_subset == test_subset:
        raise ValueError(f"train and test subsets must differ (whole patches held out), got {train_subset!r}")
    stride = crop if stride is None else stride
    x_tr, y_tr, f_tr = load_histology(root, train_subset, size, cache=False)
    x_te, y_te, f_te = load_histology(root, test_subset, size, cache=False)
    c_tr, l_tr, p_tr = histology_crops(x_tr, y_tr, crop, stride)
    c_te, l_te, p_te = histology_crops(x_te, y_te, crop, stride)
    return HistologyTask(c_tr, l_tr, p_tr, tuple(f"{train_subset}/{f}" for f in f_tr),
                         c_te, l_te, p_te, tuple(f"{test_subset}/{f}" for f in f_te),
                         crop, stride, size or PATCH_SIZE)
