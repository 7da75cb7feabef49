"""Atomic storage, npz/json/pytree round trips and checksum errors (eqlib.io)."""
from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eqlib import io as eio


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    eio.atomic_write_bytes(path, b"old")
    eio.atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"new contents"
    assert os.listdir(path.parent) == ["f.bin"]


def test_atomic_write_leaves_nothing_when_writer_fails(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    eio.atomic_write_bytes(path, b"original")

    def failing_fsync(fd):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(eio.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="simulated"):
        eio.atomic_write_bytes(path, b"half written")
    assert path.read_bytes() == b"original"  # old file untouched
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]  # no temp file left behind

    new = tmp_path / "never.bin"
    with pytest.raises(OSError):
        eio.save_arrays(new, {"x": np.arange(3)})
    assert not new.exists() and sorted(os.listdir(tmp_path)) == ["f.bin"]


def test_arrays_round_trip_and_corrupt_file(tmp_path):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.array([1, 2], np.int32), "s": np.array(["x", "yz"])}
    path = eio.save_arrays(tmp_path / "a.npz", arrays)
    back = eio.load_arrays(path)
    assert set(back) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
        assert back[k].dtype == arrays[k].dtype

    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncate
    with pytest.raises(ValueError, match=r"a\.npz.*corrupt or truncated"):
        eio.load_arrays(path)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        eio.load_arrays(tmp_path / "missing.npz")


def test_json_serialises_numpy(tmp_path):
    obj = {"f": np.float32(0.5), "i": np.int64(3), "arr": np.arange(3), "t": (1, 2), "b": np.bool_(True)}
    back = eio.load_json(eio.save_json(tmp_path / "x.json", obj))
    assert back == {"f": 0.5, "i": 3, "arr": [0, 1, 2], "t": [1, 2], "b": True}
    (tmp_path / "bad.json").write_text('{"a": ')
    with pytest.raises(ValueError, match="bad.json"):
        eio.load_json(tmp_path / "bad.json")


def test_pytree_round_trip_with_adam_state(tmp_path):
    params = {"dense": {"w": jnp.ones((2, 3, 4)), "b": jnp.zeros((2, 4))}, "scale": jnp.float32(2.0)}
    opt_state = optax.adam(1e-3).init(params)
    opt_state = optax.adam(1e-3).update(params, opt_state, params)[1]  # non-trivial count/moments
    tree = {"params": params, "opt_state": opt_state, "epoch": np.int32(7)}
    path = eio.save_pytree(tmp_path / "ckpt.npz", tree)
    assert sorted(eio.load_arrays(path))[0] == "leaf_00000"
    back = eio.load_pytree(path, tree)
    import jax

    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(tree)
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(tree)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert np.asarray(a).dtype == np.asarray(b).dtype
    assert int(back["opt_state"][0].count) == 1


def test_pytree_mismatch_names_leaf(tmp_path):
    path = eio.save_pytree(tmp_path / "p.npz", {"a": np.zeros(3), "b": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"leaf_00001 has shape \(2, 2\).*expected shape \(4,\)"):
        eio.load_pytree(path, {"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="leaf_00000.*dtype float64.*dtype int32"):
        eio.load_pytree(path, {"a": np.zeros(3, np.int32), "b": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="holds 2 leaves.*has 1"):
        eio.load_pytree(path, {"a": np.zeros(3)})


def test_sha256(tmp_path):
    path = tmp_path / "d.bin"
    path.write_bytes(b"abc")
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert eio.sha256_file(path) == digest
    eio.verify_sha256(path, digest.upper())
    with pytest.raises(ValueError, match=rf"d\.bin: expected {'0' * 64}, got {digest}"):
        eio.verify_sha256(path, "0" * 64)
