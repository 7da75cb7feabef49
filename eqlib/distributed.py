"""Several processes (hosts), one program: JAX's multi-controller runtime for the ensemble engine.

Every process runs the same script on the same (replicated) data; after :func:`initialize`,
``jax.devices()`` lists the devices of all processes, :func:`eqlib.sharding.member_mesh` spans them
and :func:`eqlib.ensemble.train_ensemble` splits the members over that one global mesh. Arrays
sharded over it are *global*: a process holds only its own members, so ``np.asarray`` fails on
them — :func:`gather` collects them (``multihost_utils.process_allgather``) on every process. Only
the writer (process 0, :func:`is_writer`) writes results and checkpoints.

Launch (one process per host, or several per host for a test)::

    EQLIB_COORDINATOR=host0:1234 EQLIB_NUM_PROCESSES=2 EQLIB_PROCESS_ID=0 python script.py
    EQLIB_COORDINATOR=host0:1234 EQLIB_NUM_PROCESSES=2 EQLIB_PROCESS_ID=1 python script.py

or under SLURM (``srun``), where ``SLURM_PROCID``/``SLURM_NTASKS`` give the process id and count
and the coordinator is ``EQLIB_COORDINATOR`` or, if unset, port 12355 (``EQLIB_PORT``) of the first
host of ``SLURM_JOB_NODELIST``. On the CPU the cross-process collectives use gloo, which
:func:`initialize` switches on before the runtime starts.
"""
from __future__ import annotations

import os
import re
from typing import Any, Mapping

import jax
import numpy as np

__all__ = ["initialize", "settings_from_env", "is_initialized", "process_count", "process_index",
           "is_writer", "gather", "broadcast_bytes", "barrier", "is_global"]

DEFAULT_PORT = 12355


def _int(env: Mapping[str, str], name: str) -> int:
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _first_slurm_host(nodelist: str) -> str:
    """The first host name of a SLURM node list: ``node[03-05,7],gpu1`` → ``node03``."""
    head = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if head is None or not head.group(1):
        raise ValueError(f"cannot read a host name from SLURM_JOB_NODELIST={nodelist!r}")
    prefix, ranges = head.group(1), head.group(2)
    if ranges is None:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def settings_from_env(env: Mapping[str, str] | None = None) -> dict | None:
    """``{coordinator, num_processes, process_id}`` from the environment, or None for one process.

    ``EQLIB_COORDINATOR`` (``host:port``), ``EQLIB_NUM_PROCESSES``, ``EQLIB_PROCESS_ID`` take
    precedence; otherwise SLURM's ``SLURM_NTASKS``/``SLURM_PROCID`` (coordinator: the first host of
    ``SLURM_JOB_NODELIST``, port ``EQLIB_PORT`` or 12355). One process (none set, or a count of 1)
    → None.
    """
    env = os.environ if env is None else env
    if "EQLIB_NUM_PROCESSES" in env:
        count = _int(env, "EQLIB_NUM_PROCESSES")
        if count == 1:
            return None
        missing = [k for k in ("EQLIB_COORDINATOR", "EQLIB_PROCESS_ID") if k not in env]
        if missing:
            raise ValueError(f"EQLIB_NUM_PROCESSES={count} needs {' and '.join(missing)} as well")
        settings = dict(coordinator=env["EQLIB_COORDINATOR"], num_processes=count,
                        process_id=_int(env, "EQLIB_PROCESS_ID"))
    elif "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        count = _int(env, "SLURM_NTASKS")
        if count == 1:
            return None
        coordinator = env.get("EQLIB_COORDINATOR")
        if coordinator is None:
            if "SLURM_JOB_NODELIST" not in env:
                raise ValueError("under SLURM set EQLIB_COORDINATOR=host:port (SLURM_JOB_NODELIST is unset)")
            port = _int(env, "EQLIB_PORT") if "EQLIB_PORT" in env else DEFAULT_PORT
            coordinator = f"{_first_slurm_host(env['SLURM_JOB_NODELIST'])}:{port}"
        settings = dict(coordinator=coordinator, num_processes=count, process_id=_int(env, "SLURM_PROCID"))
    else:
        return None
    _check(**settings)
    return settings


def _check(coordinator: str, num_processes: int, process_id: int) -> None:
    if num_processes < 1:
        raise ValueError(f"the number of processes must be ≥ 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process id must be in 0..{num_processes - 1}, got {process_id}")
    host, _, port = str(coordinator).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"the coordinator must be 'host:port', got {coordinator!r}")


def is_initialized() -> bool:
    """True once JAX's distributed runtime runs in this process."""
    from jax._src import distributed as _dist  # the only place jax keeps this state

    return _dist.global_state.client is not None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Start JAX's multi-controller runtime (call before any other jax work); True if several processes.

    Arguments left None come from the environment (:func:`settings_from_env`); with neither, the
    process runs alone and nothing is started. Calling again after a start is a no-op. On the CPU
    the cross-process collectives are switched to gloo first (jax ≥ 0.4.34 has them).
    """
    if is_initialized():
        return jax.process_count() > 1
    given = (coordinator, num_processes, process_id)
    if all(v is None for v in given):
        settings = settings_from_env()
        if settings is None:
            return False
    elif any(v is None for v in given):
        raise ValueError(f"give coordinator, num_processes and process_id together, got {given}")
    else:
        settings = dict(coordinator=coordinator, num_processes=int(num_processes), process_id=int(process_id))
        _check(**settings)
        if settings["num_processes"] == 1:
            return False
    platforms = os.environ.get("JAX_PLATFORMS", "") or str(jax.config.jax_platforms or "")
    if not platforms or "cpu" in platforms.split(","):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=settings["coordinator"],
                               num_processes=settings["num_processes"], process_id=settings["process_id"])
    return jax.process_count() > 1


def process_count() -> int:
    """How many processes run the program (1 without :func:`initialize`)."""
    return jax.process_count()


def process_index() -> int:
    """This process's index, 0 … process_count() − 1."""
    return jax.process_index()


def is_writer() -> bool:
    """True on the one process that writes results and checkpoints (process 0)."""
    return jax.process_index() == 0


def is_global(leaf: Any) -> bool:
    """True for a jax.Array with shards on other processes (``np.asarray`` cannot read it)."""
    return isinstance(leaf, jax.Array) and not leaf.is_fully_addressable


def gather(tree: Any) -> Any:
    """Every leaf as a full numpy array on every process (a collective when any leaf is global).

    Global arrays are collected with ``multihost_utils.process_allgather(tiled=True)`` (all
    processes must call this together, with the same tree); local arrays and numbers are simply
    converted. One process: ``np.asarray`` of every leaf.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    if any(is_global(leaf) for leaf in leaves):
        from jax.experimental import multihost_utils

        leaves = [np.asarray(multihost_utils.process_allgather(leaf, tiled=True)) if is_global(leaf)
                  else np.asarray(leaf) for leaf in leaves]
    else:
        leaves = [np.asarray(leaf) for leaf in leaves]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def broadcast_bytes(data: bytes | None) -> bytes:
    """The writer's ``data`` on every process (others pass anything, e.g. None); a collective."""
    if jax.process_count() == 1:
        if data is None:
            raise ValueError("broadcast_bytes needs data on the writer")
        return data
    from jax.experimental import multihost_utils

    mine = np.frombuffer(data, np.uint8) if is_writer() else np.zeros(0, np.uint8)
    length = int(multihost_utils.broadcast_one_to_all(np.asarray(len(mine), np.int64)))
    buf = np.zeros(length, np.uint8)
    if is_writer():
        buf[:] = mine
    return np.asarray(multihost_utils.broadcast_one_to_all(buf)).astype(np.uint8).tobytes()  # it sums in uint32


def barrier(name: str) -> None:
    """Wait until every process reaches ``name`` (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
