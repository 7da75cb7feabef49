"""Deep ensembles: M members initialised and trained together behind one API (optax, jit).

Member ``m`` is a pure function of ``(seed, m)``: its initial parameters come from
``fold_in(PRNGKey(seed), m)`` and its minibatch order from ``numpy.random.default_rng([seed, m,
epoch])``. So an ensemble, whatever its training strategy or number of devices, has the same members
as training each member alone (``member_ids=[m]``).

The module is a **core** and a **driver**, in the style of optax:

* core — pure functions, every one jit-able: :func:`ensemble_core` bundles ``init(keys, example) →
  state`` (vmapped ``module.init`` and ``tx.init``) and ``step(state, batch) → (state, loss)`` for an
  injected ``optax.GradientTransformation``; :func:`scan_epoch` runs an epoch's steps in one
  ``lax.scan`` and checks the losses on the device.
* driver — :func:`train_ensemble` owns epochs, minibatch order, callbacks, the progress bar,
  checkpoints (orbax, atomic; see :func:`checkpoint_info`), and places members on devices
  (:mod:`eqlib.sharding`) — those of one process or, with :mod:`eqlib.distributed`, of several;
  :func:`init_ensemble` and :func:`train_in_chunks` are its companions.

Strategies (``TrainConfig.strategy``; ``"auto"`` picks by backend and device count):

* ``"vmap"`` — one compiled step over stacked parameters (``jax.vmap``); right on GPU/TPU. With
  several devices the members are split over a mesh (padded to a multiple of the device count) and
  the data replicated once. On accelerators (``TrainConfig.scan``) an epoch's steps run in one
  ``lax.scan`` with one host sync per epoch.
* ``"unrolled"`` — one compiled step per ``unroll`` members, the member loop unrolled inside the
  trace; the CPU default (XLA overlaps the independent member programs; see benchmarks/).
* ``"loop"`` — a Python loop over members of a jit-compiled single-member step (leanest memory).

On the CPU convolutions inside ``lax.scan`` lower to slow naive loops, so there steps are driven
from Python (see the performance notes in the project guide).

With full augmentation (``group=``) every minibatch of B samples is expanded inside the step to
its |G|·B orbit, targets transformed by ``act_y`` (default: invariant targets).

Words: a *slot* is a position on the stacked member axis; an *unroll group* is the members one
compiled program of the ``unrolled`` strategy steps; a *chunk* is the members one
:func:`train_ensemble` call trains in :func:`train_in_chunks`.
"""
from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm.auto import tqdm

from . import distributed
from .augment import check_same_length
from .groups import ActFn, FiniteGroup
from .sharding import member_mesh, member_sharding, padded_count, padding_member_ids, replicated, to_mesh

STRATEGIES = ("auto", "vmap", "unrolled", "loop")
LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """How members are trained. ``batch_size=None`` is full-batch gradient descent.

    ``optimizer``: ``"sgd"`` (with ``momentum``) or ``"adam"`` at ``learning_rate`` — or any
    ``optax.GradientTransformation`` (schedules, clipping, …), used as given (``learning_rate`` and
    ``momentum`` are then ignored). ``unroll``: members per compiled program of the ``"unrolled"``
    strategy. ``scan``: run an epoch's steps inside one ``lax.scan`` (``"vmap"`` only; None: on
    accelerators, never on the CPU). ``chunk``: deprecated name of ``unroll``.
    """

    loss: str = "mse"
    optimizer: str | optax.GradientTransformation = "sgd"
    learning_rate: float = 1.0
    momentum: float = 0.0
    epochs: int = 1
    batch_size: int | None = None
    strategy: str = "auto"
    chunk: int | None = None  # deprecated: use ``unroll``
    unroll: int = 8
    scan: bool | None = None

    def __post_init__(self):
        if self.chunk is not None:
            warnings.warn("TrainConfig(chunk=…) is deprecated: it is the number of members unrolled into one "
                          "compiled program, now TrainConfig(unroll=…)", DeprecationWarning, stacklevel=3)
            object.__setattr__(self, "unroll", self.chunk)
            object.__setattr__(self, "chunk", None)
        for name, value, allowed in (("loss", self.loss, LOSSES), ("strategy", self.strategy, STRATEGIES)):
            if value not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {allowed}, got {value!r}")
        if not isinstance(self.optimizer, optax.GradientTransformation) and self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {OPTIMIZERS} or an "
                             f"optax.GradientTransformation, got {self.optimizer!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.epochs < 0 or self.unroll < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ValueError(f"epochs ≥ 0, unroll ≥ 1 and batch_size ≥ 1 required, got {self}")
        if self.scan and self.strategy in ("loop", "unrolled"):
            raise ValueError(f"scan=True needs the 'vmap' strategy (or 'auto'), got {self.strategy!r}")


class EnsembleState(NamedTuple):
    """An ensemble between epochs: stacked member trees plus the host-side bookkeeping."""

    params: Any           # pytree, every leaf (M, ...)
    opt_state: Any        # pytree, every leaf (M, ...)
    member_ids: tuple     # the member index m of each slot (seeds derive from it)
    epoch: int            # finished epochs


class TrainState(NamedTuple):
    """What the core steps: stacked parameters and optimiser state, every leaf ``(M, ...)``."""

    params: Any
    opt_state: Any


class Batch(NamedTuple):
    """One step's data for every member: the whole set once, each member's minibatch as indices."""

    x: jax.Array    # (n, ...) inputs (replicated on every device)
    y: jax.Array    # (n, ...) targets
    idx: jax.Array  # (M, B) integer: member m trains on x[idx[m]]


class EnsembleCore(NamedTuple):
    """The pure functions of ensemble training (like ``optax.GradientTransformation``: a pair of functions).

    ``init(keys: (M, 2), example: (1, ...)) → TrainState``; ``step(state, batch: Batch) → (state,
    loss: (M,))``; ``member_step(params, opt_state, x: (n, ...), y: (n, ...), idx: (B,)) → (params,
    opt_state, loss: ())`` is the step of one member, which ``step`` vmaps; ``tx`` the optimiser both
    use.
    """

    init: Callable[[jax.Array, jax.Array], TrainState]
    step: Callable[[TrainState, Batch], tuple[TrainState, jax.Array]]
    member_step: Callable
    tx: optax.GradientTransformation


# ----------------------------------------------------------------------------------------- the core

def resolve_strategy(strategy: str) -> str:
    """``auto`` → ``vmap`` on accelerators or several devices, ``unrolled`` on one CPU."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if strategy != "auto":
        return strategy
    return "unrolled" if jax.default_backend() == "cpu" and jax.device_count() == 1 else "vmap"


@functools.lru_cache(maxsize=64)
def _named_optimizer(name: str, learning_rate: float, momentum: float) -> optax.GradientTransformation:
    if name == "adam":
        return optax.adam(learning_rate)
    return optax.sgd(learning_rate, momentum=momentum or None)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optax transformation of ``config``: the one given, or the named one (one object per setting)."""
    if isinstance(config.optimizer, optax.GradientTransformation):
        return config.optimizer
    return _named_optimizer(config.optimizer, config.learning_rate, config.momentum)


def loss_value(kind: str, outputs: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """``mse``: ½·mean((f − y)²) (the neural-tangents convention); ``cross_entropy``: integer labels ``(n,)``."""
    if kind == "mse":
        return 0.5 * jnp.mean((outputs - targets) ** 2)
    return optax.softmax_cross_entropy_with_integer_labels(outputs, targets).mean()


def member_keys(seed: int, member_ids: Sequence[int]) -> jax.Array:
    """PRNG keys ``(M, 2)``: member m's is ``fold_in(PRNGKey(seed), m)``."""
    root = jax.random.PRNGKey(seed)
    return jax.vmap(lambda m: jax.random.fold_in(root, m))(jnp.asarray(member_ids, dtype=jnp.uint32))


def _augment_fn(group: FiniteGroup | None, act_y: ActFn | None) -> Callable:
    if group is None:
        return lambda x, y: (x, y)
    act_y = act_y or (lambda g, y: y)
    return lambda x, y: (jnp.concatenate([group.act(g, x) for g in range(group.order)]),
                         jnp.concatenate([act_y(g, y) for g in range(group.order)]))


def ensemble_core(module: nn.Module, tx: optax.GradientTransformation, loss: str | Callable = "mse",
                  group: FiniteGroup | None = None, act_y: ActFn | None = None) -> EnsembleCore:
    """The pure init and step of an ensemble of ``module`` trained with ``tx`` on ``loss``.

    ``loss``: ``"mse"``, ``"cross_entropy"`` or a function ``(outputs, targets) → scalar``.
    ``group``: full augmentation — each minibatch ``(B, ...)`` becomes its orbit ``(|G|·B, ...)``
    inside the step, targets acted on by ``act_y`` (default: invariant).
    """
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
    augment = _augment_fn(group, act_y)
    loss_fn = loss if callable(loss) else functools.partial(loss_value, loss)

    def member_step(params, opt_state, x_all, y_all, idx):
        xb, yb = augment(x_all[idx], y_all[idx])
        value, grads = jax.value_and_grad(lambda p: loss_fn(module.apply(p, xb), yb))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    def init(keys, example):
        params = jax.vmap(module.init, in_axes=(0, None))(keys, example)
        return TrainState(params, jax.vmap(tx.init)(params))

    members_step = jax.vmap(member_step, in_axes=(0, 0, None, None, 0))

    def step(state: TrainState, batch: Batch):
        params, opt_state, value = members_step(state.params, state.opt_state, batch.x, batch.y, batch.idx)
        return TrainState(params, opt_state), value

    return EnsembleCore(init, step, member_step, tx)


def scan_epoch(core: EnsembleCore) -> Callable:
    """``epoch(state, x: (n, ...), y: (n, ...), idx: (M, steps, B)) → (state, losses: (M, steps), finite: ())``.

    All steps of an epoch in one ``lax.scan``; ``finite`` (every loss finite) is computed on the device.
    """
    def epoch(state: TrainState, x, y, idx):
        def body(carry, step_idx):
            return core.step(carry, Batch(x, y, step_idx))

        state, losses = jax.lax.scan(body, state, jnp.swapaxes(idx, 0, 1))
        losses = losses.T
        return state, losses, jnp.isfinite(losses).all()

    return epoch


def batch_indices(seed: int, member: int, epoch: int, n: int, batch_size: int | None) -> np.ndarray:
    """Minibatch indices ``(steps, B)`` of one member in one epoch (full batch: ``arange(n)``, one step)."""
    if batch_size is None or batch_size >= n:
        return np.arange(n)[None]
    perm = np.random.default_rng([seed, member, epoch]).permutation(n)
    steps = n // batch_size  # the incomplete last batch is dropped
    return perm[: steps * batch_size].reshape(steps, batch_size)


def check_optimizer_state(tx: optax.GradientTransformation, params: Any, opt_state: Any) -> None:
    """Raise ValueError unless ``opt_state`` (leaves ``(M, ...)``) is the state ``tx`` keeps for ``params``."""
    expected = jax.eval_shape(jax.vmap(tx.init), params)
    want, want_def = jax.tree_util.tree_flatten(expected)
    got, got_def = jax.tree_util.tree_flatten(opt_state)
    same = want_def == got_def and all(tuple(a.shape) == tuple(np.shape(b)) and a.dtype == b.dtype
                                       for a, b in zip(want, got))
    if not same:
        raise ValueError(
            "the ensemble's optimiser state does not belong to the optimiser it is trained with: initialise "
            "with the same TrainConfig (or optax transformation) as you train with, e.g. "
            f"init_ensemble(..., config=config). Expected {want_def} {[a.shape for a in want]}, "
            f"got {got_def} {[np.shape(b) for b in got]}")


# ---------------------------------------------------------------------- compiled runners of an epoch

class _VmapRunner:
    """Steps all slots at once: ``core.step`` compiled, per step from Python or one ``lax.scan`` per epoch.

    With a ``mesh`` the member axis of the state and indices is split over its devices and the data
    replicated; the compiled programs keep that layout.
    """

    def __init__(self, core: EnsembleCore, mesh: Mesh | None, scan: bool):
        self.scan, self.mesh = scan, mesh
        kw: dict = {}
        if mesh is not None:
            members, rep = member_sharding(mesh), replicated(mesh)
            kw = dict(in_shardings=(members, Batch(rep, rep, members)), out_shardings=(members, members))
            if scan:
                kw = dict(in_shardings=(members, rep, rep, members), out_shardings=(members, members, rep))
        if scan:
            self._epoch = jax.jit(scan_epoch(core), donate_argnums=0, **kw)
        else:
            self._step = jax.jit(core.step, donate_argnums=0, **kw)

    def _put_idx(self, idx: np.ndarray):
        return jnp.asarray(idx) if self.mesh is None else to_mesh(idx, member_sharding(self.mesh))

    def __call__(self, state: TrainState, x, y, idx: np.ndarray, unroll: int):
        """``idx: (M, steps, B)`` → new state, losses ``(M, steps)``, finite flag (or None) on the device."""
        if self.scan:
            return self._epoch(state, x, y, self._put_idx(idx))
        losses = []
        for s in range(idx.shape[1]):
            state, loss = self._step(state, Batch(x, y, self._put_idx(idx[:, s])))
            losses.append(loss)
        return state, jnp.stack(losses, 1), None


class _MemberLoopRunner:
    """``loop`` and ``unrolled``: one compiled program steps the members ``first … first+c−1`` of the
    *stacked* trees (``c`` = 1 for ``loop``, ``unroll`` for ``unrolled``; ``first`` is traced, so one
    compilation serves every unroll group), the member loop unrolled in the trace, and writes them
    back in place. So an epoch costs no per-member slicing or re-stacking outside the program, which
    matters for small models and full-batch training (one step per epoch).
    """

    def __init__(self, core: EnsembleCore):
        step = core.member_step

        def group_step(params, opt_state, x_all, y_all, idx, first):
            """Steps of members ``first + k`` (``idx: (c, B)``, c static) → updated stacked trees, losses (c,)."""
            def take(tree, k):
                return jax.tree_util.tree_map(lambda l: jax.lax.dynamic_index_in_dim(l, first + k, keepdims=False),
                                              tree)

            def put(tree, new):
                return jax.tree_util.tree_map(lambda l, n: jax.lax.dynamic_update_slice_in_dim(l, n, first, 0),
                                              tree, new)

            outs = [step(take(params, k), take(opt_state, k), x_all, y_all, idx[k]) for k in range(idx.shape[0])]
            return (put(params, _stack([o[0] for o in outs])), put(opt_state, _stack([o[1] for o in outs])),
                    jnp.stack([o[2] for o in outs]))

        self._fn = jax.jit(group_step, donate_argnums=(0, 1))

    def __call__(self, state: TrainState, x, y, idx: np.ndarray, unroll: int):
        """``idx: (M, steps, B)`` → new state, losses ``(M, steps)`` on the device, None (checked on the host)."""
        params, opt_state = state
        M, steps = idx.shape[:2]
        out = []
        for first in range(0, M, unroll):
            stop = min(first + unroll, M)
            group_losses = []
            for s in range(steps):
                params, opt_state, loss = self._fn(params, opt_state, x, y, idx[first:stop, s], np.int32(first))
                group_losses.append(loss)
            out.append(jnp.stack(group_losses, 1))
        return TrainState(params, opt_state), jnp.concatenate(out), None


def _hashable(*items) -> bool:
    try:
        hash(items)
        return True
    except TypeError:
        return False


_CACHE: dict = {}
_CACHE_SIZE = 32


def _cached(key: tuple, build: Callable):
    """One compiled object per key (so repeated calls and chunks reuse compilations); FIFO-bounded."""
    if not _hashable(key):
        return build()
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = build()
    return _CACHE[key]


def _core(module, tx, loss, group, act_y) -> EnsembleCore:
    return _cached(("core", module, tx, loss, group, act_y), lambda: ensemble_core(module, tx, loss, group, act_y))


def _runner(core: EnsembleCore, strategy: str, mesh: Mesh | None, scan: bool):
    if strategy == "vmap":
        return _cached(("vmap", core, mesh, scan), lambda: _VmapRunner(core, mesh, scan))
    return _cached(("loop", core), lambda: _MemberLoopRunner(core))


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def _unstack(tree: Any, num: int) -> list[Any]:
    return [jax.tree_util.tree_map(lambda leaf: leaf[m], tree) for m in range(num)]


# ------------------------------------------------------------------------------- placement on devices

def _resolve(config: TrainConfig) -> str:
    """The strategy of ``config`` on this machine (``scan=True`` makes ``auto`` mean ``vmap``)."""
    return "vmap" if config.scan and config.strategy == "auto" else resolve_strategy(config.strategy)


class _Plan(NamedTuple):
    strategy: str
    mesh: Mesh | None   # members split over its devices (None: one device)
    scan: bool


def _plan(config: TrainConfig, mesh: Mesh | None = None) -> _Plan:
    """Strategy, mesh and scan for ``config`` on this machine (several devices: members sharded)."""
    strategy = _resolve(config)
    if config.scan and strategy != "vmap":
        raise ValueError(f"scan=True needs the 'vmap' strategy, got {strategy!r}")
    devices = mesh.size if mesh is not None else jax.device_count()
    if strategy != "vmap":
        if devices > 1:
            warnings.warn(f"strategy {strategy!r} runs every member on one device, not split over the {devices} "
                          f"devices: use strategy='vmap' (or 'auto') to shard the members", stacklevel=3)
        mesh = None
    elif mesh is None and devices > 1:
        mesh = member_mesh()
    scan = config.scan if config.scan is not None else (strategy == "vmap" and jax.default_backend() != "cpu")
    return _Plan(strategy, mesh, bool(scan))


def place_data(x, y, mesh: Mesh | None):
    """``x: (n, ...)``, ``y: (n, ...)`` on the device — one full copy per device of ``mesh`` (None: the default one)."""
    if mesh is None:
        return jnp.asarray(x), jnp.asarray(y)
    return to_mesh((x, y), replicated(mesh))


def shard_members(core: EnsembleCore, state: TrainState, member_ids: Sequence[int], seed: int, example,
                  mesh: Mesh) -> tuple[TrainState, tuple[int, ...]]:
    """``state`` (leaves ``(M, ...)``) padded and split over ``mesh`` → (state ``(M′, ...)``, the M′ member ids).

    M′ is M rounded up to a multiple of the mesh size; the padding members ``max(member_ids) + 1, …``
    are initialised by ``core.init`` from ``(seed, m)`` inside the one program that lays the state
    out (``out_shardings``), so no member is gathered on one device.
    """
    member_ids = tuple(member_ids)
    slots = padded_count(len(member_ids), mesh.size)
    padding = padding_member_ids(member_ids, slots)
    layout = member_sharding(mesh)
    if not padding:
        return to_mesh(state, layout), member_ids

    def pad(state, keys, example):
        extra = core.init(keys, example)
        return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), state, extra)

    fn = _cached(("pad", core, mesh), lambda: jax.jit(pad, out_shardings=layout))
    inputs = (state, member_keys(seed, padding), jnp.asarray(example))
    if jax.process_count() > 1:  # several processes: the inputs as global (replicated) arrays
        inputs = to_mesh(inputs, replicated(mesh))
    return fn(*inputs), member_ids + padding


def _example(x) -> jax.Array:
    """The first sample ``(1, ...)`` of ``x``, moved to the device alone."""
    return jnp.asarray(x[:1] if hasattr(x, "shape") else np.asarray(x)[:1])


def _member_ids(num_members: int | None, member_ids: Sequence[int] | None) -> tuple[int, ...]:
    if member_ids is None:
        if isinstance(num_members, bool) or not isinstance(num_members, (int, np.integer)) or num_members < 1:
            raise ValueError(f"num_members must be a positive integer, got {num_members!r}")
        return tuple(range(int(num_members)))
    ids = tuple(int(m) for m in member_ids)
    if not ids or min(ids) < 0 or len(set(ids)) != len(ids):
        raise ValueError(f"member_ids must be distinct non-negative integers (at least one), got {list(ids)}")
    return ids


# ------------------------------------------------------------------------------------------ the driver

def init_ensemble(module: nn.Module, example_x, num_members: int | None = None, seed: int = 0,
                  config: TrainConfig = TrainConfig(), member_ids: Sequence[int] | None = None) -> EnsembleState:
    """Initialise members ``0 … num_members-1`` (or the given ``member_ids``); ``example_x: (n, ...)``.

    The optimiser state is ``config``'s (train with the same config: a mismatch is an error). With
    several devices and the ``vmap`` strategy, an M divisible by the device count is initialised
    directly split over the devices.
    """
    ids = _member_ids(num_members, member_ids)
    core = _core(module, make_optimizer(config), "mse", None, None)
    sharded = (_resolve(config) == "vmap" and jax.device_count() > 1 and len(ids) % jax.device_count() == 0)
    kw = dict(out_shardings=member_sharding(member_mesh())) if sharded else {}
    init = _cached(("init", core, sharded), lambda: jax.jit(core.init, **kw))
    inputs = (member_keys(seed, ids), _example(example_x))
    if sharded and jax.process_count() > 1:  # several processes: the inputs as global (replicated) arrays
        inputs = to_mesh(inputs, replicated(member_mesh()))
    state = init(*inputs)
    return EnsembleState(state.params, state.opt_state, ids, 0)


def train_ensemble(module: nn.Module, state: EnsembleState, x, y, config: TrainConfig, seed: int = 0,
                   group: FiniteGroup | None = None, act_y: ActFn | None = None,
                   on_epoch_end: Callable[[int, Any], dict] | None = None,
                   checkpoint: str | Path | None = None, checkpoint_every: int = 1,
                   progress: bool = True, *, mesh: Mesh | None = None) -> tuple[EnsembleState, dict]:
    """Train every member for ``config.epochs`` epochs on ``(x: (n, ...), y: (n, ...))``.

    ``group``: full augmentation (each minibatch expanded to its orbit). ``on_epoch_end(epoch,
    params)`` is called at epoch 0 (initialisation) and after every epoch; its dict of numbers or
    arrays is stacked into the history. ``checkpoint``: a path where the state and history are saved
    atomically (an orbax directory; an npz file of the earlier format is still read) every
    ``checkpoint_every`` epochs and after the last; an interrupted call with the same path resumes
    after the last saved epoch. ``mesh``: devices to split the members over
    (default: all devices when there are several and the strategy is ``vmap``; M is padded to a
    multiple of their number and the padding members dropped). With several processes
    (:mod:`eqlib.distributed`) the mesh spans the devices of all of them, every process must make
    the same call on the same data, losses and metrics are gathered onto every process, only process
    0 writes the checkpoint, and the returned leaves may be global arrays (read them with
    :func:`eqlib.distributed.gather`). Returns the new state and ``history =
    {"loss": (epochs, M), "epoch": …, "first_epoch_step_loss": (M, steps), **metrics}`` — the loss
    of every step of the first epoch is kept so that a stored run can be checked against the code
    (:func:`replay_steps`). Raises FloatingPointError naming member, epoch
    and step when a loss is not finite, ValueError when ``state.opt_state`` is not the state of
    ``config``'s optimiser.
    """
    x, y = (v if isinstance(v, (np.ndarray, jax.Array)) else np.asarray(v) for v in (x, y))
    check_same_length(x, y)
    if config.loss == "cross_entropy" and (np.ndim(y) != 1 or not jnp.issubdtype(y.dtype, jnp.integer)):
        raise ValueError(f"cross_entropy needs integer labels of shape (n,), got {y.dtype} {tuple(np.shape(y))}")
    n = x.shape[0]
    if config.batch_size is not None and config.batch_size > n:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {n} training samples")
    ids = _member_ids(None, state.member_ids)
    M = len(ids)
    tx = make_optimizer(config)
    check_optimizer_state(tx, state.params, state.opt_state)
    plan = _plan(config, mesh)
    core = _core(module, tx, config.loss, group, act_y)
    runner = _runner(core, plan.strategy, plan.mesh, plan.scan)
    unroll = 1 if plan.strategy == "loop" else max(1, min(config.unroll, M))

    history: dict[str, list] = {"loss": [], "epoch": []}
    resumed = _load_checkpoint(checkpoint, state) if checkpoint is not None else None
    if resumed is not None:
        state, history = resumed
    elif on_epoch_end is not None:
        _record(history, on_epoch_end(state.epoch, state.params), state.epoch, None)
    x, y = place_data(x, y, plan.mesh)
    work, slot_ids = TrainState(state.params, state.opt_state), ids
    shared = True  # `work` may alias arrays the caller holds: copy before the next program donates them
    if plan.mesh is not None:
        work, slot_ids = shard_members(core, work, ids, seed, _example(x), plan.mesh)
        shared = len(slot_ids) == M

    where = f"{plan.strategy}" + (f", {plan.mesh.size} devices" if plan.mesh is not None else "")
    if jax.process_count() > 1:
        where += f" of {jax.process_count()} processes"
    bar = tqdm(range(state.epoch, config.epochs), desc=f"training {M} member(s) [{where}]", unit="epoch",
               disable=not progress or not distributed.is_writer(), initial=state.epoch, total=config.epochs)
    for epoch in bar:
        idx = np.stack([batch_indices(seed, m, epoch, n, config.batch_size) for m in slot_ids])
        if shared:
            work = jax.tree_util.tree_map(jnp.copy, work)
        work, losses, finite = runner(work, x, y, idx, unroll)
        losses, finite = distributed.gather((losses, finite))  # the one host sync of the epoch
        losses = np.asarray(losses)[:M]
        if finite is None or not finite:
            _check_finite(losses, ids, epoch)
        real = _first_members(work, M)
        state = EnsembleState(real.params, real.opt_state, ids, epoch + 1)
        metrics = on_epoch_end(epoch + 1, real.params) if on_epoch_end is not None else None
        shared = on_epoch_end is not None and len(slot_ids) == M
        _record(history, metrics, epoch + 1, losses.mean(1))
        if epoch == 0:  # every step of epoch 1: what a stored run's replay test recomputes
            history["first_epoch_step_loss"] = losses
        bar.set_postfix(loss=f"{losses[:, -1].mean():.4g}")
        if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == config.epochs):
            _save_checkpoint(checkpoint, state, history)
    return state, {k: np.asarray(v) for k, v in history.items()}


def replay_steps(module: nn.Module, x, y, config: TrainConfig, seed: int = 0, member: int = 0,
                 steps: int = 10, group: FiniteGroup | None = None,
                 act_y: ActFn | None = None) -> np.ndarray:
    """Recompute the first ``steps`` step losses of member ``member`` alone: ``(steps,)``.

    The member is initialised from ``(seed, member)`` and trained on the same minibatches
    (:func:`batch_indices`, epoch 0) with the same optimiser, loss and augmentation as
    :func:`train_ensemble`, one step at a time, so its losses equal ``history[
    "first_epoch_step_loss"][slot, :steps]`` of any run that trained that member (to float
    tolerance: a different strategy may sum in another order). Used to prove that a stored run
    still matches the code that claims it.
    """
    x, y = (np.asarray(v) for v in (x, y))
    check_same_length(x, y)
    idx = batch_indices(seed, member, 0, x.shape[0], config.batch_size)
    if not 1 <= steps <= len(idx):
        raise ValueError(f"steps must be in 1..{len(idx)} (the steps of one epoch), got {steps}")
    state = init_ensemble(module, x, seed=seed, config=config, member_ids=(member,))
    core = _core(module, make_optimizer(config), config.loss, group, act_y)
    step = _cached(("replay", core), lambda: jax.jit(core.member_step))
    params, opt_state = (jax.tree_util.tree_map(lambda leaf: leaf[0], t)
                         for t in (state.params, state.opt_state))
    x_dev, y_dev = jnp.asarray(x), jnp.asarray(y)
    losses = []
    for s in range(steps):
        params, opt_state, value = step(params, opt_state, x_dev, y_dev, jnp.asarray(idx[s]))
        losses.append(float(value))
    return np.asarray(losses)


def _first_members(state: TrainState, M: int) -> TrainState:
    """The first M slots (drops padding members; no copy when there are none)."""
    if jax.tree_util.tree_leaves(state)[0].shape[0] == M:
        return state
    return jax.tree_util.tree_map(lambda leaf: leaf[:M], state)


def _record(history: dict, metrics: dict | None, epoch: int, loss) -> None:
    if loss is not None:
        history["loss"].append(loss)
    history["epoch"].append(epoch)
    for k, v in (metrics or {}).items():  # several processes: global arrays gathered on every process
        history.setdefault(k, []).append(np.asarray(distributed.gather(v)))


def _check_finite(losses: np.ndarray, member_ids: Sequence[int], epoch: int) -> None:
    """``losses: (M, steps)`` of epoch ``epoch`` (0-based); raise naming the first member and step that failed."""
    bad = np.argwhere(~np.isfinite(losses))
    if len(bad):
        m, s = bad[0]
        raise FloatingPointError(
            f"non-finite training loss ({losses[m, s]}) for member {member_ids[m]} in epoch {epoch + 1}, "
            f"step {s + 1}: lower the learning rate or check the data for NaN/inf")


# ------------------------------------------------------------------------------------------ checkpoints
# A checkpoint is an orbax CheckpointManager directory at the given path: one step directory per saved
# epoch (the newest kept), written into a temporary directory and renamed into place when complete,
# so a kill at any moment leaves the previous checkpoint readable. Its items: ``state`` (the stacked
# leaves of params and optimiser state, and the history, as arrays) and ``meta`` (JSON: epoch,
# member ids, leaf shapes, history names). Sharded or global leaves are gathered to the host first
# (:func:`eqlib.distributed.gather`) and only the writer (process 0) writes. orbax 0.11.24's own
# handler of jax.Array leaves calls ``jax.monitoring.record_scalar``, which jax 0.5.3 lacks, so the
# leaves go to orbax as numpy arrays. A path that holds a file is a checkpoint of the earlier format
# (npz leaves): it is read, and replaced by the orbax directory at the next save.

CHECKPOINT_FORMAT = "eqlib-ensemble-checkpoint"
CHECKPOINT_VERSION = 1
_NUMERIC = "biuf"


def _orbax_manager(directory: Path, writing: bool):
    """The manager of ``directory``; ``writing`` also removes what interrupted saves left behind."""
    import orbax.checkpoint as ocp

    several = jax.process_count() > 1
    options = ocp.CheckpointManagerOptions(
        max_to_keep=1, enable_async_checkpointing=False, create=False, cleanup_tmp_directories=writing,
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            primary_host=0, active_processes={0} if several else None))
    return ocp.CheckpointManager(directory.absolute(), options=options)


def _npz_backup(path: Path) -> Path:
    """Where an npz checkpoint waits while the orbax directory replaces it."""
    return path.with_name(f".{path.name}.npz-old")


def _flat_arrays(state: EnsembleState, history: dict) -> dict[str, np.ndarray]:
    """The flat arrays of a checkpoint (the npz layout): ``leaf_00000…``, ``state/…``, ``history/…``."""
    leaves = distributed.gather(jax.tree_util.tree_leaves((state.params, state.opt_state)))
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    arrays["state/epoch"] = np.asarray(state.epoch)
    arrays["state/member_ids"] = np.asarray(state.member_ids)
    arrays.update({f"history/{k}": np.asarray(v) for k, v in history.items()})
    return arrays


def _write_orbax(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save the flat ``arrays`` as step ``state/epoch`` of the orbax manager in ``directory``."""
    import orbax.checkpoint as ocp

    for name, value in arrays.items():
        if value.dtype.kind not in _NUMERIC:
            raise TypeError(f"checkpoint array {name!r} has dtype {value.dtype}: on_epoch_end metrics must be "
                            "numbers or numeric arrays")
    epoch = int(arrays["state/epoch"])
    names = sorted(k for k in arrays if not k.startswith("state/"))
    tree = {f"a{i:05d}": arrays[k] for i, k in enumerate(names) if arrays[k].size}  # orbax: no empty arrays
    meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch,
            "member_ids": [int(m) for m in arrays["state/member_ids"]],
            "arrays": [{"name": k, "shape": list(arrays[k].shape), "dtype": arrays[k].dtype.str} for k in names]}
    with _orbax_manager(directory, writing=True) as manager:
        if epoch in manager.all_steps():  # the same epoch again (a rerun of a finished call): replace it
            manager.delete(epoch)
        manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                    meta=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()


def _read_orbax(directory: Path) -> dict[str, np.ndarray] | None:
    """The flat arrays of the newest complete step in ``directory`` (None: none is complete)."""
    import orbax.checkpoint as ocp

    with _orbax_manager(directory, writing=False) as manager:
        epoch = manager.latest_step()
        if epoch is None:
            return None
        meta = manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{directory} is not an eqlib ensemble checkpoint (format {meta.get('format')!r})")
        specs = meta["arrays"]
        target = {f"a{i:05d}": np.empty(d["shape"], np.dtype(d["dtype"])) for i, d in enumerate(specs)
                  if np.prod(d["shape"], dtype=int)}
        tree = manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
    arrays = {d["name"]: np.asarray(tree[f"a{i:05d}"]) if f"a{i:05d}" in tree
              else np.empty(d["shape"], np.dtype(d["dtype"])) for i, d in enumerate(specs)}
    arrays["state/epoch"] = np.asarray(meta["epoch"])
    arrays["state/member_ids"] = np.asarray(meta["member_ids"], dtype=np.int64)
    return arrays


def _read_checkpoint(path: Path) -> dict[str, np.ndarray] | None:
    """The flat arrays at ``path``: an orbax directory, an npz file (earlier format), or None."""
    from .io import load_arrays

    if path.is_dir():
        arrays = _read_orbax(path)
        if arrays is not None:
            return arrays
    elif path.is_file():
        return load_arrays(path)
    backup = _npz_backup(path)  # a save was replacing an npz checkpoint when it was interrupted
    return load_arrays(backup) if backup.is_file() else None


def _save_checkpoint(path, state: EnsembleState, history: dict) -> None:
    """Save ``state`` and ``history`` at ``path`` (an orbax directory; see above); a collective.

    Every process gathers the state; only the writer writes. An npz checkpoint of the earlier format
    at ``path`` is replaced: the new directory is written beside it, the file moved aside, the
    directory moved in, the file deleted — at every moment one complete checkpoint is readable.
    """
    import shutil

    arrays = _flat_arrays(state, history)
    if not distributed.is_writer():
        return
    path, backup = Path(path), _npz_backup(Path(path))
    if path.is_dir() or not path.exists():
        if not path.exists() and backup.is_file():  # interrupted migration: finish it with this save
            backup.unlink()
        path.mkdir(parents=True, exist_ok=True)
        _write_orbax(path, arrays)
        if backup.exists():
            backup.unlink()
        return
    fresh = path.with_name(f".{path.name}.orbax-new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    _write_orbax(fresh, arrays)
    os.replace(path, backup)
    os.replace(fresh, path)
    backup.unlink()


def _load_checkpoint(path, like: EnsembleState) -> tuple[EnsembleState, dict] | None:
    """The state and history saved at ``path`` for the members of ``like``, or None when there is none.

    With several processes the writer reads the file and sends its arrays to the others (no shared
    file system needed); every process must call this together.
    """
    path = Path(path)
    if jax.process_count() == 1:
        arrays = _read_checkpoint(path)
    else:
        blob = None
        if distributed.is_writer():
            try:
                found = _read_checkpoint(path)
                blob = b"none" if found is None else _npz_bytes(found)
            except (ValueError, OSError) as err:
                blob = b"error" + f"{type(err).__name__}: {err}".encode()
        blob = distributed.broadcast_bytes(blob)
        if blob.startswith(b"error"):
            raise ValueError(f"checkpoint {path}: the writer could not read it: {blob[5:].decode()}")
        arrays = None if blob == b"none" else _npz_load_bytes(blob)
    if arrays is None:
        return None
    return _state_from_arrays(arrays, like, path)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npz_load_bytes(blob: bytes) -> dict[str, np.ndarray]:
    import io

    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _state_from_arrays(arrays: dict[str, np.ndarray], like: EnsembleState, path) -> tuple[EnsembleState, dict]:
    if tuple(arrays["state/member_ids"].tolist()) != like.member_ids:
        raise ValueError(f"checkpoint {path} holds members {arrays['state/member_ids'].tolist()}, "
                         f"this ensemble has {list(like.member_ids)}")
    leaves, treedef = jax.tree_util.tree_flatten((like.params, like.opt_state))
    names = [f"leaf_{i:05d}" for i in range(len(leaves))]
    if any(n not in arrays for n in names) or f"leaf_{len(leaves):05d}" in arrays:
        stored = sum(k.startswith("leaf_") for k in arrays)
        raise ValueError(f"checkpoint {path} holds {stored} leaves, this ensemble's state has {len(leaves)}")
    loaded = [arrays[n] for n in names]
    for i, (a, b) in enumerate(zip(leaves, loaded)):
        if a.shape != b.shape:
            raise ValueError(f"checkpoint {path}: leaf {i} has shape {b.shape}, expected {a.shape}")
    params, opt_state = jax.tree_util.tree_unflatten(
        treedef, loaded if jax.process_count() > 1 else [jnp.asarray(b) for b in loaded])
    history = {k.split("/", 1)[1]: list(v) for k, v in arrays.items() if k.startswith("history/")}
    return EnsembleState(params, opt_state, like.member_ids, int(arrays["state/epoch"])), history


def checkpoint_info(path) -> dict | None:
    """What the checkpoint at ``path`` holds: ``{"format": "orbax" | "npz", "epoch", "member_ids"}``.

    None when there is no complete checkpoint (nothing, or only an interrupted first save).
    """
    path = Path(path)
    arrays = _read_checkpoint(path)
    if arrays is None:
        return None
    return {"format": "orbax" if path.is_dir() else "npz", "epoch": int(arrays["state/epoch"]),
            "member_ids": [int(m) for m in arrays["state/member_ids"]]}


def train_in_chunks(module: nn.Module, x, y, config: TrainConfig, num_members: int, chunk: int | None,
                    seed: int = 0, checkpoint: Callable[[str], str | Path] | None = None, name: str = "train",
                    *, members: range | None = None, **train_kwargs) -> Iterator[tuple[EnsembleState, dict]]:
    """Initialise and train members ``0 … num_members−1`` in chunks of ``chunk`` members (None: all at once).

    One :func:`train_ensemble` call per chunk bounds memory; with ``checkpoint`` (e.g.
    ``Run.checkpoint_path``) every chunk has its own checkpoint, ``checkpoint(name)`` for a single
    chunk of all members and ``checkpoint(f"{name}_members{first}-{last}")`` otherwise, so an
    interrupted run loses at most the chunk in progress. Member m gets the same parameters whatever
    the chunking. ``members``: train only this range of the ``num_members`` (a job-array task; see
    :meth:`eqlib.runner.Run.train_in_chunks`), in chunks of ``chunk`` starting at its first member.
    Yields ``(state, history)`` chunk by chunk; ``train_kwargs`` (``group``, ``on_epoch_end``,
    ``progress``, ``mesh`` …) go to :func:`train_ensemble`. The data go to the device(s) once, and
    every chunk reuses the compiled programs of the first.
    """
    if num_members < 1 or (chunk is not None and chunk < 1):
        raise ValueError(f"need num_members ≥ 1 and chunk ≥ 1 (or None), got {num_members} and {chunk}")
    members = range(num_members) if members is None else members
    if not isinstance(members, range) or members.step != 1 or not 0 <= members.start < members.stop <= num_members:
        raise ValueError(f"members must be a range a..b−1 with 0 ≤ a < b ≤ {num_members}, got {members!r}")
    chunk = min(chunk or len(members), len(members))
    check_same_length(x, y)
    plan = _plan(config, train_kwargs.get("mesh"))
    x_dev, y_dev = place_data(x, y, plan.mesh)
    for first in range(members.start, members.stop, chunk):
        ids = range(first, min(first + chunk, members.stop))
        state = init_ensemble(module, x, seed=seed, config=config, member_ids=ids)
        path = None
        if checkpoint is not None:
            path = checkpoint(name if len(ids) == num_members else f"{name}_members{ids[0]}-{ids[-1]}")
        yield train_ensemble(module, state, x_dev, y_dev, config, seed=seed, checkpoint=path, **train_kwargs)


def ensemble_apply(module: nn.Module, params, x, batch_size: int = 2048, strategy: str = "auto") -> jnp.ndarray:
    """Outputs of every member: stacked ``params`` (M, ...), ``x: (n, ...)`` → ``(M, n, d)``.

    ``batch_size``: samples per compiled call (bounds activation memory).
    """
    x = jnp.asarray(x)
    M = jax.tree_util.tree_leaves(params)[0].shape[0]
    vmapped = resolve_strategy(strategy) == "vmap"
    apply = _compiled_apply(module, vmapped)
    members = None if vmapped else _unstack(params, M)
    outs = []
    for first in range(0, x.shape[0], batch_size):
        xb = x[first:first + batch_size]
        outs.append(apply(params, xb) if vmapped else jnp.stack([apply(p, xb) for p in members]))
    return jnp.concatenate(outs, axis=1)


_APPLY_CACHE: dict = {}


def _compiled_apply(module: nn.Module, vmapped: bool):
    key = (module, vmapped)
    if key not in _APPLY_CACHE:
        fn = jax.vmap(module.apply, in_axes=(0, None)) if vmapped else module.apply
        _APPLY_CACHE[key] = jax.jit(fn)
    return _APPLY_CACHE[key]


def member_params(state: EnsembleState, slot: int) -> Any:
    """Parameters of the member in ``slot`` (unstacked)."""
    return jax.tree_util.tree_map(lambda leaf: leaf[slot], state.params)
