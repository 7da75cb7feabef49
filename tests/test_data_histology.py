"""Histology loader on the 27 real patches in data/histology, bad-file errors, resizing, cache, crops, PathMNIST,
and the archive download (served from file:// URLs)."""
from __future__ import annotations

import hashlib
import re
import shutil
import zipfile

import numpy as np
import pytest

from eqlib.data import bundled
from eqlib.data import cache as dcache
from eqlib.data import histology as H

BUNDLED = H.bundled_histology_dir()


def write_tif(path, array):
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, photometric="rgb" if array.ndim == 3 else "minisblack")


def make_root(base, subset="NCT-CRC-HE-100K", per_class=1, seed=0):
    """A synthetic data set in the published layout: ``per_class`` random 224×224 RGB TIFFs per class."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(H.CLASSES):
        for k in range(per_class):
            image = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
            image[0, 0] = label  # recognisable
            write_tif(base / subset / name / f"{name}-{k:04d}.tif", image)
    return base


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv(dcache.CACHE_ENV_VAR, str(tmp_path / "cache"))
    return tmp_path / "cache"


# --------------------------------------------------------------------------- the 27 bundled patches


def test_bundled_patches_are_27_tiffs_in_the_published_layout():
    on_disk = sorted(p.relative_to(BUNDLED).as_posix() for p in BUNDLED.rglob("*.tif"))
    assert len(on_disk) == 27
    for subset, per_class in (("NCT-CRC-HE-100K", 2), ("CRC-VAL-HE-7K", 1)):
        for name in H.CLASSES:
            assert len([f for f in on_disk if f.startswith(f"{subset}/{name}/")]) == per_class


def _corrupt_copy(tmp_path, monkeypatch, rel):
    """A copy of data/ with one byte of ``rel`` flipped, made the bundled folder."""
    root = tmp_path / "data"
    shutil.copytree(bundled.bundled_data_dir(), root)
    path = root / rel
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    monkeypatch.setenv(bundled.DATA_ENV_VAR, str(root))
    return path


def test_corrupt_bundled_patch_is_named_and_nothing_cached(tmp_path, monkeypatch, cache_env):
    rel = "histology/CRC-VAL-HE-7K/MUC/val7k_muc.tif"
    path = _corrupt_copy(tmp_path, monkeypatch, rel)
    expected = bundled.read_manifest()[rel]
    with pytest.raises(ValueError) as err:
        H.load_histology(subset="CRC-VAL-HE-7K", size=32)
    message = str(err.value)
    assert str(path) in message and expected in message
    assert bundled.sha256_file(path) in message
    assert not cache_env.exists() or not list(cache_env.rglob("*.npz"))
    with pytest.raises(ValueError, match="val7k_muc.tif"):
        H.mini_task()


def test_unlisted_file_in_bundled_data_is_rejected(tmp_path, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(bundled.bundled_data_dir(), root)
    write_tif(root / "histology" / "CRC-VAL-HE-7K" / "ADI" / "extra.tif",
              np.zeros((224, 224, 3), np.uint8))
    monkeypatch.setenv(bundled.DATA_ENV_VAR, str(root))
    with pytest.raises(ValueError, match="extra.tif is not listed"):
        H.load_histology(subset="CRC-VAL-HE-7K")


@pytest.mark.parametrize("subset, per_class", [("NCT-CRC-HE-100K", 2), ("CRC-VAL-HE-7K", 1)])
def test_load_bundled_subsets(subset, per_class):
    x, y, files = H.load_histology(subset=subset, cache=False)
    n = 9 * per_class
    assert x.shape == (n, 224, 224, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(y, np.repeat(np.arange(9), per_class))
    assert len(files) == n and all(f.split("/")[0] == H.CLASSES[label] for f, label in zip(files, y))
    np.testing.assert_array_equal(x[0], H.read_patch(BUNDLED / subset / files[0]) / np.float32(255))


def test_mini_task_holds_out_whole_patches():
    task = H.mini_task()
    assert task.x_train.shape == (18 * 49, 32, 32, 3) and task.x_test.shape == (9 * 49, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(task.y_train), [98] * 9)
    np.testing.assert_array_equal(np.bincount(task.y_test), [49] * 9)
    np.testing.assert_array_equal(np.bincount(task.patch_train), [49] * 18)
    assert len(task.files_train) == 18 and len(task.files_test) == 9
    assert not set(task.files_train) & set(task.files_test)  # disjoint by patch
    assert all(f.startswith("NCT-CRC-HE-100K/") for f in task.files_train)
    assert all(f.startswith("CRC-VAL-HE-7K/") for f in task.files_test)
    # every crop carries its patch's label
    labels_of_patch = np.array([H.CLASSES.index(f.split("/")[1]) for f in task.files_test])
    np.testing.assert_array_equal(task.y_test, labels_of_patch[task.patch_test])


# --------------------------------------------------------------------------- crops and resizing


def test_crops_are_the_windows_of_their_patch(rng):
    images = rng.random((2, 224, 224, 3), dtype=np.float32)
    crops, labels, patch = H.histology_crops(images, np.array([4, 7]), crop=32)
    assert crops.shape == (98, 32, 32, 3)
    np.testing.assert_array_equal(labels, [4] * 49 + [7] * 49)
    np.testing.assert_array_equal(patch, [0] * 49 + [1] * 49)
    # crop 49 + 9 = patch 1, row 1, column 2
    np.testing.assert_array_equal(crops[49 + 9], images[1, 32:64, 64:96])
    overlapping, _, _ = H.histology_crops(images[:1], np.array([0]), crop=32, stride=16)
    assert overlapping.shape[0] == 13 * 13
    with pytest.raises(ValueError, match="crop"):
        H.histology_crops(images, np.array([0, 1]), crop=300)


def test_resize_block_average_and_linear(rng):
    images = rng.integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    small = H.resize_patches(images, 32)
    assert small.shape == (2, 32, 32, 3) and small.dtype == np.float32
    np.testing.assert_allclose(small[1, 3, 5], images[1, 21:28, 35:42].reshape(-1, 3).mean(0) / 255, rtol=1e-6)
    np.testing.assert_allclose(small.mean(), images.mean() / 255, rtol=1e-5)
    flat = np.full((1, 224, 224, 3), 200, np.uint8)
    out64 = H.resize_patches(flat, 64)  # 224/64 is not an integer: antialiased linear resize
    assert out64.shape == (1, 64, 64, 3)
    np.testing.assert_allclose(out64, 200 / 255, rtol=1e-5)
    np.testing.assert_allclose(H.resize_patches(images, 64).mean(), images.mean() / 255, rtol=1e-2)
    with pytest.raises(ValueError, match="downsampling only"):
        H.resize_patches(images, 448)


# --------------------------------------------------------------------------- cache


def test_resized_cache_is_written_verified_and_rebuilt(tmp_path, cache_env):
    root = make_root(tmp_path / "data")
    x, y, files = H.load_histology(root, size=32)
    cached = list((cache_env / "histology").glob("*.npz"))
    assert len(cached) == 1 and "NCT-CRC-HE-100K-32px-n9-" in cached[0].name
    x2, y2, files2 = H.load_histology(root, size=32)
    np.testing.assert_array_equal(x, x2), np.testing.assert_array_equal(y, y2)
    assert files == files2

    # tamper with the cached images while keeping a valid npz: the digest catches it
    from eqlib.io import load_arrays, save_arrays

    stored = load_arrays(cached[0])
    stored["images"][0, 0, 0, 0] += 0.5
    save_arrays(cached[0], stored)
    with pytest.warns(UserWarning, match="failed its checksum"):
        x3, _, _ = H.load_histology(root, size=32)
    np.testing.assert_array_equal(x, x3)

    cached[0].write_bytes(cached[0].read_bytes()[:100])  # truncated file
    with pytest.warns(UserWarning, match="unreadable"):
        x4, _, _ = H.load_histology(root, size=32)
    np.testing.assert_array_equal(x, x4)
    H.load_histology(root, size=32)  # rebuilt cache is good again: no warning

    # a different file list gets a different cache entry
    write_tif(root / "NCT-CRC-HE-100K" / "ADI" / "ADI-9999.tif", np.zeros((224, 224, 3), np.uint8))
    H.load_histology(root, size=32)
    assert len(list((cache_env / "histology").glob("*.npz"))) == 2


# --------------------------------------------------------------------------- bad files and folders


def test_text_file_named_tif(tmp_path):
    root = make_root(tmp_path)
    bad = root / "NCT-CRC-HE-100K" / "MUC" / "MUC-bad.tif"
    bad.write_text("this is not an image\n")
    with pytest.raises(ValueError, match="not a readable TIFF") as info:
        H.load_histology(root, cache=False)
    assert str(bad) in str(info.value)


def test_wrong_size_tif(tmp_path):
    root = make_root(tmp_path)
    bad = root / "NCT-CRC-HE-100K" / "STR" / "STR-small.tif"
    write_tif(bad, np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(100, 100, 3\)") as info:
        H.load_histology(root, cache=False)
    assert str(bad) in str(info.value)
    bad.unlink()
    grey = root / "NCT-CRC-HE-100K" / "STR" / "STR-grey.tif"
    write_tif(grey, np.zeros((224, 224), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(224, 224\)"):
        H.load_histology(root, cache=False)


def test_unknown_empty_missing_folders(tmp_path):
    root = make_root(tmp_path)
    base = root / "NCT-CRC-HE-100K"
    (base / "FOO").mkdir()
    with pytest.raises(ValueError, match=r"unknown class folder\(s\) \['FOO'\]"):
        H.list_histology_files(root)
    (base / "FOO").rmdir()
    (base / ".hidden").mkdir()  # hidden entries and stray non-TIFF files are ignored
    (base / "ADI" / "notes.txt").write_text("x")
    assert len(H.list_histology_files(root)[0]) == 9

    for f in (base / "LYM").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match="LYM holds no .tif files"):
        H.list_histology_files(root)
    shutil.rmtree(base / "LYM")
    with pytest.raises(ValueError, match=r"\['LYM'\] missing"):
        H.list_histology_files(root)
    with pytest.raises(FileNotFoundError, match="CRC-VAL-HE-7K does not exist"):
        H.load_histology(root, "CRC-VAL-HE-7K")
    with pytest.raises(ValueError, match="subset must be one of"):
        H.load_histology(root, "NCT-CRC-HE-1M")


def test_max_per_class(tmp_path):
    root = make_root(tmp_path, per_class=3)
    paths, labels = H.list_histology_files(root, max_per_class=2)
    assert len(paths) == 18 and all(p.name.endswith(("0000.tif", "0001.tif")) for p in paths)


# --------------------------------------------------------------------------- PathMNIST


def test_load_pathmnist(tmp_path, rng):
    arrays = {}
    for split, n in (("train", 12), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 9, size=(n, 1), dtype=np.uint8)
    path = tmp_path / "pathmnist.npz"
    np.savez(path, **arrays)
    for split in ("train", "val", "test"):
        x, y = H.load_pathmnist(path, split)
        assert x.shape == arrays[f"{split}_images"].shape and x.dtype == np.float32
        np.testing.assert_array_equal(y, arrays[f"{split}_labels"][:, 0])
        np.testing.assert_allclose(x * 255, arrays[f"{split}_images"], atol=1e-4)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    H.load_pathmnist(path, "test", md5=md5)
    with pytest.raises(ValueError, match="MD5 mismatch"):
        H.load_pathmnist(path, "test", md5=H.PATHMNIST_MD5)
    bad = dict(arrays, test_labels=np.full((6, 1), 9, np.uint8))
    np.savez(path, **bad)
    with pytest.raises(ValueError, match="outside 0..8"):
        H.load_pathmnist(path, "test")
    np.savez(path, train_images=arrays["train_images"])
    with pytest.raises(ValueError, match="lacks"):
        H.load_pathmnist(path, "train")
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable .npz"):
        H.load_pathmnist(path, "train")
    assert H.PATHMNIST_TO_CLASSES == tuple(range(9))


# --------------------------------------------------------------------------- download + unzip


def make_zip(src_root, subset, zip_path, prefix=""):
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as zf:
        for f in sorted((src_root / subset).rglob("*.tif")):
            zf.write(f, prefix + f.relative_to(src_root).as_posix())
    return zip_path


def source_for(zip_path, md5=True):
    data = zip_path.read_bytes()
    return H.ZenodoFile("CRC-VAL-HE-7K.zip", (zip_path.as_uri(),),
                        hashlib.md5(data).hexdigest() if md5 else None, len(data) if md5 else None)


def test_download_histology_verifies_and_unpacks(tmp_path):
    src = make_root(tmp_path / "src", "CRC-VAL-HE-7K")
    served = make_zip(src, "CRC-VAL-HE-7K", tmp_path / "served.zip", prefix="extra-level/")
    root = tmp_path / "data"
    done = H.download_histology(root, ["CRC-VAL-HE-7K"], sources={"CRC-VAL-HE-7K": source_for(served)})
    assert done == {"CRC-VAL-HE-7K": root / "CRC-VAL-HE-7K"}
    assert sorted(p.name for p in root.iterdir()) == ["CRC-VAL-HE-7K"]  # zip removed, no temp left
    x, y, _ = H.load_histology(root, "CRC-VAL-HE-7K", cache=False)
    assert x.shape == (9, 224, 224, 3)
    np.testing.assert_array_equal(y, np.arange(9))
    # present: nothing downloaded again (the source URL is gone)
    served.unlink()
    gone = H.ZenodoFile("CRC-VAL-HE-7K.zip", (served.as_uri(),), None, None)
    assert H.download_histology(root, ["CRC-VAL-HE-7K"], sources={"CRC-VAL-HE-7K": gone}) == done


def test_download_histology_rejects_corrupt_archives(tmp_path):
    src = make_root(tmp_path / "src", "CRC-VAL-HE-7K")
    good = make_zip(src, "CRC-VAL-HE-7K", tmp_path / "good.zip")
    expected = source_for(good)
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    root = tmp_path / "data"

    wrong = H.ZenodoFile(expected.filename, (corrupt.as_uri(),), expected.md5, expected.size)
    with pytest.raises(ValueError, match="failed verification") as info:
        H.download_histology(root, ["CRC-VAL-HE-7K"], sources={"CRC-VAL-HE-7K": wrong})
    assert "CRC-VAL-HE-7K.zip" in str(info.value) and "expected" in str(info.value)
    assert list(root.iterdir()) == []  # no partial zip, no partial subset folder

    unchecked = H.ZenodoFile(expected.filename, (corrupt.as_uri(),), None, None)  # falls back to testzip
    with pytest.raises(ValueError, match="not a valid zip archive"):
        H.download_histology(root, ["CRC-VAL-HE-7K"], sources={"CRC-VAL-HE-7K": unchecked})
    assert list(root.iterdir()) == []

    (src / "CRC-VAL-HE-7K" / "FOO").mkdir()  # an archive without the expected layout is rejected whole
    shutil.rmtree(src / "CRC-VAL-HE-7K" / "TUM")
    odd = make_zip(src, "CRC-VAL-HE-7K", tmp_path / "odd.zip")
    with pytest.raises(ValueError, match="does not contain the class folders"):
        H.download_histology(root, ["CRC-VAL-HE-7K"], sources={"CRC-VAL-HE-7K": source_for(odd)})
    assert not (root / "CRC-VAL-HE-7K").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no extraction folder left


def test_zenodo_sources_recorded():
    assert set(H.ZENODO_FILES) == set(H.SUBSETS)
    for subset, f in H.ZENODO_FILES.items():
        assert f.filename == f"{subset}.zip" and re.fullmatch(r"[0-9a-f]{32}", f.md5)
        assert all(H.ZENODO_RECORD in u and f.filename in u for u in f.urls)
