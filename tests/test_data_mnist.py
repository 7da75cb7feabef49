"""IDX parsing, Fashion-MNIST and MNIST loaders, their checksums and downloads, noise images."""
from __future__ import annotations

import gzip
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from eqlib.data import bundled
from eqlib.data import cache as dcache
from eqlib.data import fashion_mnist as fm
from eqlib.data import mnist as mn
from eqlib.data.idx import IMAGES_MAGIC, LABELS_MAGIC, parse_idx, read_idx
from eqlib.data.noise import noise_images

REAL_DEBIAN = fm.DEBIAN_DIR  # captured before any test patches fm.DEBIAN_DIR
DEBIAN_FILES = [REAL_DEBIAN / name for pair in fm.FILES.values() for name in pair]
HAVE_DEBIAN = all(p.is_file() for p in DEBIAN_FILES)
needs_debian = pytest.mark.skipif(
    not HAVE_DEBIAN,
    reason=f"Debian package dataset-fashion-mnist not installed (no IDX files in {REAL_DEBIAN})",
)
BUNDLED_MNIST = bundled.bundled_data_dir("mnist")


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX (the writer the tests need; the library only reads)."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No env overrides, an empty cache in tmp, no Debian folder: only what the test provides."""
    for var in (fm.ENV_VAR, mn.ENV_VAR, bundled.DATA_ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(dcache.CACHE_ENV_VAR, str(tmp_path / "cache"))
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    return tmp_path


# --------------------------------------------------------------------------- IDX


def test_idx_round_trip_raw_and_gzip(tmp_path, rng):
    images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(5,), dtype=np.uint8)
    (tmp_path / "img").write_bytes(idx_bytes(images))
    (tmp_path / "lab.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(tmp_path / "img", IMAGES_MAGIC), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "lab.gz", LABELS_MAGIC), labels)


def test_idx_big_endian_wider_types():
    values = np.array([[1, -2], [300, 70000]], dtype=">i4")
    data = bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") * 2 + values.tobytes()
    out = parse_idx(data)
    assert out.dtype == np.int32 and out.dtype.isnative
    np.testing.assert_array_equal(out, [[1, -2], [300, 70000]])


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\x00\x00", "too short"),
        (bytes([0, 0, 0x08, 1]) + b"\x00\x00", "ends inside the IDX header"),
        (bytes([0, 0, 0x08, 1]) + (5).to_bytes(4, "big") + b"\x01\x02", r"truncated"),
        (bytes([0, 0, 0x08, 1]) + (2).to_bytes(4, "big") + b"\x01\x02\x03", "trailing bytes"),
        (bytes([1, 2, 3, 4]) + b"\x00" * 8, "not a valid IDX magic"),
    ],
)
def test_idx_malformed_raises_naming_file(data, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_idx(data, "some-file.idx")
    assert "some-file.idx" in str(info.value)


def test_idx_wrong_magic_and_corrupt_gzip_name_the_file(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(3, np.uint8))))
    with pytest.raises(ValueError, match=r"magic number 2049 .* expected 2051") as info:
        read_idx(path, IMAGES_MAGIC)
    assert str(path) in str(info.value)
    path.write_bytes(path.read_bytes()[:-6])  # cut the gzip trailer
    with pytest.raises(ValueError, match="corrupt or truncated gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- Fashion-MNIST (real files)


@pytest.fixture(scope="module")
def fashion_train():
    if not HAVE_DEBIAN:
        pytest.skip(f"Debian package dataset-fashion-mnist not installed (no IDX files in {REAL_DEBIAN})")
    return fm.load_fashion_mnist("train", data_dir=REAL_DEBIAN, download=False)


@pytest.fixture(scope="module")
def fashion_test():
    if not HAVE_DEBIAN:
        pytest.skip(f"Debian package dataset-fashion-mnist not installed (no IDX files in {REAL_DEBIAN})")
    return fm.load_fashion_mnist("test", data_dir=REAL_DEBIAN, download=False)


def test_fashion_train_shapes_and_counts(fashion_train):
    x, y = fashion_train
    assert x.shape == (60000, 28, 28, 1) and x.dtype == np.float32
    assert y.shape == (60000,) and y.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [6000] * 10)
    assert len(fm.CLASS_NAMES) == 10


def test_fashion_test_shapes_and_counts(fashion_test):
    x, y = fashion_test
    assert x.shape == (10000, 28, 28, 1) and y.shape == (10000,)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [1000] * 10)
    # the pixel values are exactly k/255
    np.testing.assert_array_equal(np.round(x[:50] * 255) / 255, x[:50])


@needs_debian
def test_debian_files_are_the_official_content():
    """The .gz wrappers were recompressed by Debian; the decompressed bytes are the official ones."""
    import hashlib

    for name in fm.PAYLOAD_SHA256:
        gz = (REAL_DEBIAN / name).read_bytes()
        payload = gzip.decompress(gz)
        assert hashlib.sha256(payload).hexdigest() == fm.PAYLOAD_SHA256[name]
        assert hashlib.md5(payload).hexdigest() == fm.PAYLOAD_MD5[name]
        assert hashlib.md5(gz).hexdigest() != fm.OFFICIAL_GZ_MD5[name]  # documented difference


@needs_debian
def test_fashion_corrupted_copy_raises_naming_it(tmp_path):
    src = REAL_DEBIAN / "t10k-labels-idx1-ubyte.gz"
    payload = bytearray(gzip.decompress(src.read_bytes()))
    payload[100] = (payload[100] + 1) % 10  # one wrong label, structure intact
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(ValueError, match="SHA-256 mismatch") as info:
        fm.load_fashion_mnist("test", data_dir=tmp_path, download=False)
    assert str(bad) in str(info.value)

    bad.write_bytes(src.read_bytes()[:2000])  # truncated download
    with pytest.raises(ValueError, match="truncated") as info:
        fm.load_fashion_mnist("test", data_dir=tmp_path, download=False)
    assert str(bad) in str(info.value)

    bad.unlink()  # a gunzipped copy is accepted too
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(gzip.decompress(src.read_bytes())))
    _, y = fm.load_fashion_mnist("test", data_dir=tmp_path, download=False)
    assert y.shape == (10000,)


def test_fashion_bad_split():
    with pytest.raises(ValueError, match="split must be one of"):
        fm.load_fashion_mnist("validation")


# --------------------------------------------------------------------------- downloads (file:// mirrors)


@needs_debian
def test_fashion_download_verifies_before_caching(isolated, monkeypatch):
    good, corrupt = isolated / "good", isolated / "corrupt"
    good.mkdir(), corrupt.mkdir()
    for name in fm.FILES["test"]:
        shutil.copy(REAL_DEBIAN / name, good / name)
        (corrupt / name).write_bytes((REAL_DEBIAN / name).read_bytes()[:1000])
    cache = isolated / "cache" / "fashion-mnist"

    # only a corrupt mirror: ValueError, and the cache holds nothing (no partial or temp file)
    monkeypatch.setattr(fm, "MIRRORS", (corrupt.as_uri() + "/",))
    with pytest.raises(ValueError, match="failed verification") as info:
        fm.load_fashion_mnist("test")
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)
    assert not cache.exists() or list(cache.iterdir()) == []

    # corrupt first, then a good mirror: the good bytes land in the cache, nothing else
    monkeypatch.setattr(fm, "MIRRORS", (corrupt.as_uri() + "/", good.as_uri() + "/"))
    x, y = fm.load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(y), [1000] * 10)
    assert sorted(p.name for p in cache.iterdir()) == sorted(fm.FILES["test"])

    # now found in the cache without any mirror
    monkeypatch.setattr(fm, "MIRRORS", ())
    assert fm.load_fashion_mnist("test")[1].shape == (10000,)


def test_fashion_offline_and_download_false_say_where_they_looked(isolated, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"download=False") as info:
        fm.load_fashion_mnist("test", download=False)
    assert "no-debian" in str(info.value) and "cache" in str(info.value)

    def offline(url, path, **kwargs):
        raise urllib.error.URLError("network is unreachable (simulated)")

    monkeypatch.setattr(dcache, "fetch_to_file", offline)
    with pytest.raises(FileNotFoundError, match="simulated"):
        fm.load_fashion_mnist("test")
    assert not any((isolated / "cache").rglob("*.part"))


def test_env_var_directory_is_searched_first(isolated, monkeypatch):
    folder = isolated / "mine"
    folder.mkdir()
    for name in fm.FILES["test"]:
        (folder / name).write_bytes(b"not idx at all")
    monkeypatch.setenv(fm.ENV_VAR, str(folder))
    with pytest.raises(ValueError) as info:
        fm.load_fashion_mnist("test", download=False)
    assert str(folder) in str(info.value)


# --------------------------------------------------------------------------- MNIST test set


def test_mnist_test_set_shapes_and_counts(monkeypatch):
    monkeypatch.delenv(mn.ENV_VAR, raising=False)
    x, y = mn.load_mnist("test", download=False)
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(y, minlength=10), mn.CLASS_COUNTS_TEST)
    np.testing.assert_array_equal(mn.CLASS_COUNTS_TEST, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_mnist_decompressed_md5_matches_published():
    import hashlib

    for name, md5 in mn.PAYLOAD_MD5.items():
        assert hashlib.md5(gzip.decompress((BUNDLED_MNIST / name).read_bytes())).hexdigest() == md5


def test_mnist_corrupted_copy_raises_naming_it(tmp_path):
    src = BUNDLED_MNIST / "t10k-images-idx3-ubyte.gz"
    payload = bytearray(gzip.decompress(src.read_bytes()))
    payload[5000] ^= 0xFF
    bad = tmp_path / "t10k-images-idx3-ubyte"
    bad.write_bytes(bytes(payload))
    with pytest.raises(ValueError, match="SHA-256 mismatch") as info:
        mn.load_mnist(data_dir=tmp_path, download=False)
    assert str(bad) in str(info.value)
    with pytest.raises(ValueError, match="only the MNIST test split"):
        mn.load_mnist("train")


def test_mnist_download_from_file_mirror(isolated, monkeypatch):
    monkeypatch.setenv(bundled.DATA_ENV_VAR, str(isolated / "no-bundled-data"))
    monkeypatch.setattr(mn, "MIRRORS", (BUNDLED_MNIST.as_uri() + "/",))
    x, y = mn.load_mnist()
    assert x.shape == (10000, 28, 28, 1)
    assert sorted(p.name for p in (isolated / "cache" / "mnist").iterdir()) == sorted(mn.FILES["test"])


def test_bundled_data_dir_env_override(tmp_path, monkeypatch):
    (tmp_path / "mnist").mkdir()
    monkeypatch.setenv(bundled.DATA_ENV_VAR, str(tmp_path))
    assert bundled.bundled_data_dir("mnist") == tmp_path / "mnist"
    with pytest.raises(FileNotFoundError, match="nothing-here.*EQLIB_DATA"):
        bundled.bundled_data_dir("nothing-here")


def test_corrupt_bundled_mnist_file_is_named_with_both_sums(isolated, monkeypatch):
    """A flipped byte in the bundled .gz fails the file-level SHA-256 before any decoding."""
    root = isolated / "data"
    shutil.copytree(bundled.bundled_data_dir(), root)
    path = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01
    path.write_bytes(bytes(raw))
    monkeypatch.setenv(bundled.DATA_ENV_VAR, str(root))
    expected = bundled.read_manifest(root)["mnist/t10k-labels-idx1-ubyte.gz"]
    with pytest.raises(ValueError) as info:
        mn.load_mnist(download=False)
    message = str(info.value)
    assert str(path) in message and expected in message and bundled.sha256_file(path) in message


def test_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv(dcache.CACHE_ENV_VAR, str(tmp_path / "c"))
    assert dcache.cache_dir("x") == tmp_path / "c" / "x" and (tmp_path / "c" / "x").is_dir()


def test_download_file_leaves_nothing_on_failure(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload")
    dest = tmp_path / "out" / "file.bin"

    def reject(path: Path) -> None:
        raise ValueError("bad bytes")

    with pytest.raises(ValueError, match="bad bytes"):
        dcache.download_file([src.as_uri()], dest, reject)
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(ConnectionError):
        dcache.download_file([(tmp_path / "missing.bin").as_uri()], dest, lambda p: None)
    assert list(dest.parent.iterdir()) == []
    assert dcache.download_file([src.as_uri()], dest, lambda p: None).read_bytes() == b"payload"


# --------------------------------------------------------------------------- noise


def test_noise_images():
    g = noise_images(500, (8, 8, 1), "gaussian", seed=3)
    assert g.shape == (500, 8, 8, 1) and g.dtype == np.float32
    assert abs(g.mean()) < 0.02 and abs(g.std() - 1) < 0.02
    np.testing.assert_array_equal(g, noise_images(500, (8, 8, 1), "gaussian", seed=3))
    assert not np.array_equal(g, noise_images(500, (8, 8, 1), "gaussian", seed=4))
    u = noise_images(200, (28, 28, 1), "uniform", seed=0)
    assert u.min() >= 0.0 and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.01
    with pytest.raises(ValueError, match="kind must be one of"):
        noise_images(2, (4, 4, 1), "pink")
    with pytest.raises(ValueError, match="positive sizes"):
        noise_images(2, (0, 4, 1))
