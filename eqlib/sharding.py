"""Members over devices: a one-axis mesh (``members``) and member-count padding.

An ensemble of M members is laid out over the D devices of a :class:`jax.sharding.Mesh` whose only
axis, ``members``, splits every stacked leaf ``(M, ...)`` into D blocks of M/D members. When D does
not divide M the ensemble is padded with members ``max(member_ids) + 1, …``: genuine members (a
member is a pure function of ``(seed, m)``), trained with the others and then dropped.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MEMBERS = "members"

__all__ = ["MEMBERS", "member_mesh", "member_sharding", "replicated", "padded_count", "padding_member_ids",
           "member_layout", "to_mesh"]


def member_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all of ``jax.devices()``) with the axis ``members``."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("member_mesh needs at least one device")
    return Mesh(np.array(devices), (MEMBERS,))


def _check_mesh(mesh: Mesh) -> None:
    if MEMBERS not in mesh.axis_names:
        raise ValueError(f"the mesh needs an axis named {MEMBERS!r}, got axes {mesh.axis_names}")


def member_sharding(mesh: Mesh) -> NamedSharding:
    """Leaves ``(M, ...)`` split along the member axis over the mesh's ``members`` axis."""
    _check_mesh(mesh)
    return NamedSharding(mesh, PartitionSpec(MEMBERS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh (the training data)."""
    return NamedSharding(mesh, PartitionSpec())


def padded_count(num_members: int, num_devices: int) -> int:
    """The smallest multiple of ``num_devices`` that is ≥ ``num_members`` (≥ 1 each)."""
    if num_members < 1 or num_devices < 1:
        raise ValueError(f"need num_members ≥ 1 and num_devices ≥ 1, got {num_members} and {num_devices}")
    return -(-num_members // num_devices) * num_devices


def padding_member_ids(member_ids: Sequence[int], num_slots: int) -> tuple[int, ...]:
    """The ``num_slots − M`` members that pad ``member_ids`` (M of them): ``max + 1, max + 2, …``."""
    if num_slots < len(member_ids):
        raise ValueError(f"{num_slots} slots cannot hold {len(member_ids)} members")
    top = max(member_ids) + 1
    return tuple(range(top, top + num_slots - len(member_ids)))


def member_layout(tree: Any) -> list[dict]:
    """Where the members of each leaf ``(M, ...)`` live: per leaf, its spec and ``{device id: (first, stop)}``.

    For tests and benchmarks: a leaf split over D devices lists D disjoint member ranges; a replicated
    leaf lists ``(0, M)`` on every device.
    """
    out = []
    for leaf in jax.tree_util.tree_leaves(tree):
        ranges = {}
        for shard in leaf.addressable_shards:
            rows = shard.index[0] if shard.index else slice(None)
            first, stop, _ = rows.indices(leaf.shape[0])
            ranges[shard.device.id] = (first, stop)
        spec = getattr(leaf.sharding, "spec", None)
        out.append({"shape": tuple(leaf.shape), "spec": None if spec is None else tuple(spec), "members": ranges,
                    "bytes_per_device": max(s.data.nbytes for s in leaf.addressable_shards)})
    return out


def to_mesh(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """``jax.device_put(tree, sharding)``, also when ``sharding`` spans the devices of several processes.

    With one process this is ``jax.device_put``. With several (:mod:`eqlib.distributed`) every
    process holds the same host values: leaves that are not yet global arrays are read to numpy and
    each process puts its own shards (a leaf already global is resharded by jax).
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return jax.device_put(leaf, sharding)
        return jax.device_put(np.asarray(leaf), sharding)

    return jax.tree_util.tree_map(put, tree)
