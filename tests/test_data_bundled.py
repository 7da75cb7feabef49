"""The repository's own data/: the manifest covers exactly its files, each with the right sum."""
from __future__ import annotations

import pytest

from eqlib.data import bundled
from eqlib.data.cache import repo_root


def test_bundled_data_lives_in_the_repository():
    assert bundled.bundled_data_dir() == repo_root() / "data"
    assert (repo_root() / "data" / "README.md").is_file()


def test_manifest_lists_exactly_the_files_and_their_sums():
    root = bundled.bundled_data_dir()
    sums = bundled.read_manifest(root)
    present = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                     if p.is_file() and p.name not in ("README.md", bundled.MANIFEST))
    assert sorted(sums) == present
    assert len(present) == 29  # 27 histology patches + 2 MNIST files
    for name, digest in sums.items():
        assert bundled.sha256_file(root / name) == digest, name
    for folder in ("mnist", "histology"):
        assert bundled.verify_bundled(folder) == root / folder


def test_malformed_manifest_line_is_named(tmp_path):
    (tmp_path / bundled.MANIFEST).write_text("abc  x.tif\n")
    with pytest.raises(ValueError, match="line 1"):
        bundled.read_manifest(tmp_path)


def test_missing_listed_file_is_named(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "a.gz").write_bytes(b"a")
    (tmp_path / bundled.MANIFEST).write_text(
        f"{bundled.sha256_file(tmp_path / 'mnist' / 'a.gz')}  mnist/a.gz\n{'0' * 64}  mnist/b.gz\n")
    with pytest.raises(ValueError, match="b.gz is missing"):
        bundled.verify_bundled("mnist", tmp_path)
