"""Deep ensembles: M members initialised and trained together behind one API (optax, jit).

Member ``m`` is a pure function of ``(seed, m)``: its initial parameters come from
``fold_in(PRNGKey(seed), m)`` and its minibatch order from ``numpy.random.default_rng([seed, m,
epoch])``. So an ensemble, whatever its training strategy, has the same members as training each
member alone (``member_ids=[m]``).

Strategies (``TrainConfig.strategy``; ``"auto"`` picks by backend):

* ``"vmap"`` — one compiled step over stacked parameters (``jax.vmap``); right on GPU/TPU; members
  sharded over devices when there are several.
* ``"unrolled"`` — one compiled step per chunk of members, the member loop unrolled inside the
  trace; the CPU default (XLA overlaps the independent member programs; see benchmarks/).
* ``"loop"`` — a Python loop over members of a jit-compiled single-member step (leanest memory).

With full augmentation (``group=``) every minibatch of B samples is expanded inside the step to
its |G|·B orbit, targets transformed by ``act_y`` (default: invariant targets).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from .augment import check_same_length
from .groups import ActFn, FiniteGroup

STRATEGIES = ("auto", "vmap", "unrolled", "loop")
LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """How members are trained. ``batch_size=None`` is full-batch gradient descent."""

    loss: str = "mse"
    optimizer: str = "sgd"
    learning_rate: float = 1.0
    momentum: float = 0.0
    epochs: int = 1
    batch_size: int | None = None
    strategy: str = "auto"
    chunk: int = 8  # members per compiled program for the "unrolled" strategy

    def __post_init__(self):
        for name, value, allowed in (("loss", self.loss, LOSSES), ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("strategy", self.strategy, STRATEGIES)):
            if value not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {allowed}, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.epochs < 0 or self.chunk < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ValueError(f"epochs ≥ 0, chunk ≥ 1 and batch_size ≥ 1 required, got {self}")


class EnsembleState(NamedTuple):
    params: Any           # pytree, every leaf (M, ...)
    opt_state: Any        # pytree, every leaf (M, ...)
    member_ids: tuple     # the member index m of each slot (seeds derive from it)
    epoch: int            # finished epochs


def resolve_strategy(strategy: str) -> str:
    """``auto`` → ``vmap`` on accelerators, ``unrolled`` on CPU."""
    if strategy != "auto":
        return strategy
    return "unrolled" if jax.default_backend() == "cpu" else "vmap"


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    if config.optimizer == "adam":
        return optax.adam(config.learning_rate)
    return optax.sgd(config.learning_rate, momentum=config.momentum or None)


def loss_value(kind: str, outputs: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """``mse``: ½·mean((f − y)²) (the neural-tangents convention); ``cross_entropy``: integer labels ``(n,)``."""
    if kind == "mse":
        return 0.5 * jnp.mean((outputs - targets) ** 2)
    return optax.softmax_cross_entropy_with_integer_labels(outputs, targets).mean()


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def _unstack(tree: Any, num: int) -> list[Any]:
    return [jax.tree_util.tree_map(lambda leaf: leaf[m], tree) for m in range(num)]


def init_ensemble(module: nn.Module, example_x, num_members: int | None = None, seed: int = 0,
                  config: TrainConfig = TrainConfig(), member_ids: Sequence[int] | None = None) -> EnsembleState:
    """Initialise members ``0 … num_members-1`` (or the given ``member_ids``); ``example_x: (n, ...)``."""
    if member_ids is None:
        if not num_members or num_members < 1:
            raise ValueError(f"num_members must be a positive integer, got {num_members!r}")
        member_ids = range(num_members)
    member_ids = tuple(int(m) for m in member_ids)
    example_x = jnp.asarray(example_x)[:1]
    tx = make_optimizer(config)
    params = [module.init(jax.random.fold_in(jax.random.PRNGKey(seed), m), example_x) for m in member_ids]
    return EnsembleState(_stack(params), _stack([tx.init(p) for p in params]), member_ids, 0)


def _augment_fn(group: FiniteGroup | None, act_y: ActFn | None) -> Callable:
    if group is None:
        return lambda x, y: (x, y)
    act_y = act_y or (lambda g, y: y)
    return lambda x, y: (jnp.concatenate([group.act(g, x) for g in range(group.order)]),
                         jnp.concatenate([act_y(g, y) for g in range(group.order)]))


def _make_member_step(module: nn.Module, config: TrainConfig, augment: Callable) -> Callable:
    tx = make_optimizer(config)

    def step(params, opt_state, x_all, y_all, idx):
        xb, yb = augment(x_all[idx], y_all[idx])
        loss, grads = jax.value_and_grad(lambda p: loss_value(config.loss, module.apply(p, xb), yb))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def batch_indices(seed: int, member: int, epoch: int, n: int, batch_size: int | None) -> np.ndarray:
    """Minibatch indices ``(steps, B)`` of one member in one epoch (full batch: ``arange(n)``, one step)."""
    if batch_size is None or batch_size >= n:
        return np.arange(n)[None]
    perm = np.random.default_rng([seed, member, epoch]).permutation(n)
    steps = n // batch_size  # the incomplete last batch is dropped
    return perm[: steps * batch_size].reshape(steps, batch_size)


class _Epoch:
    """Runs one epoch for all members with the chosen strategy; compiled functions are cached.

    ``loop`` and ``unrolled`` share one compiled program over the *stacked* parameters: it takes
    the members ``start … start+c−1`` (``c`` = 1 for ``loop``, ``chunk`` for ``unrolled``; ``start``
    is traced, so one compilation serves every chunk), runs their steps with the member loop
    unrolled in the trace, and writes them back in place. So an epoch costs no per-member slicing
    or re-stacking outside the program, which matters for small models and full-batch training
    (one step per epoch). Every strategy donates the stacked buffers to its compiled step, so each
    epoch first copies the trees it is given: the caller's arrays, and those handed to
    ``on_epoch_end``, stay valid.
    """

    def __init__(self, module, config: TrainConfig, augment: Callable, num_members: int):
        self.strategy = resolve_strategy(config.strategy)
        self.num_members = num_members
        self.chunk = 1 if self.strategy == "loop" else max(1, min(config.chunk, num_members))
        step = _make_member_step(module, config, augment)
        if self.strategy == "vmap":
            self._fn = jax.jit(jax.vmap(step, in_axes=(0, 0, None, None, 0)), donate_argnums=(0, 1))
            return

        def members_step(params, opt_state, x_all, y_all, idx, start):
            """Steps of members ``start + k`` (``idx: (c, B)``, c static) → updated stacked trees, losses (c,)."""
            def take(tree, k):
                return jax.tree_util.tree_map(lambda l: jax.lax.dynamic_index_in_dim(l, start + k, keepdims=False), tree)

            def put(tree, new):
                return jax.tree_util.tree_map(lambda l, n: jax.lax.dynamic_update_slice_in_dim(l, n, start, 0), tree, new)

            outs = [step(take(params, k), take(opt_state, k), x_all, y_all, idx[k]) for k in range(idx.shape[0])]
            return (put(params, _stack([o[0] for o in outs])), put(opt_state, _stack([o[1] for o in outs])),
                    jnp.stack([o[2] for o in outs]))

        self._fn = jax.jit(members_step, donate_argnums=(0, 1))

    def __call__(self, params, opt_state, x, y, idx: np.ndarray):
        """``idx: (M, steps, B)`` → new stacked params, opt_state and losses ``(M, steps)``."""
        M, steps = idx.shape[:2]
        params, opt_state = jax.tree_util.tree_map(jnp.copy, (params, opt_state))  # ours to donate
        if self.strategy == "vmap":
            losses = []
            for s in range(steps):
                params, opt_state, loss = self._fn(params, opt_state, x, y, jnp.asarray(idx[:, s]))
                losses.append(loss)
            return params, opt_state, jnp.stack(losses, 1)
        # loop: member after member (c = 1); unrolled: chunk after chunk, each chunk's steps in one program
        out = []
        for start in range(0, M, self.chunk):
            stop = min(start + self.chunk, M)
            ls = []
            for s in range(steps):
                params, opt_state, loss = self._fn(params, opt_state, x, y, idx[start:stop, s], np.int32(start))
                ls.append(loss)
            out.append(jnp.stack(ls, 1))
        return params, opt_state, jnp.concatenate(out)


def train_ensemble(module: nn.Module, state: EnsembleState, x, y, config: TrainConfig, seed: int = 0,
                   group: FiniteGroup | None = None, act_y: ActFn | None = None,
                   on_epoch_end: Callable[[int, Any], dict] | None = None,
                   checkpoint: str | Path | None = None, checkpoint_every: int = 1,
                   progress: bool = True) -> tuple[EnsembleState, dict]:
    """Train every member for ``config.epochs`` epochs on ``(x: (n, ...), y: (n, ...))``.

    ``group``: full augmentation (each minibatch expanded to its orbit). ``on_epoch_end(epoch,
    params)`` is called at epoch 0 (initialisation) and after every epoch; its dict of numbers or
    arrays is stacked into the history. ``checkpoint``: a file where the state and history are saved
    atomically every ``checkpoint_every`` epochs and after the last; an interrupted call with the
    same file resumes after the last saved epoch. Returns the new state and
    ``history = {"loss": (epochs, M), "epoch": …, **metrics}``. Raises FloatingPointError naming member, epoch and step when a loss is not finite.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    check_same_length(x, y)
    if config.loss == "cross_entropy" and (y.ndim != 1 or not jnp.issubdtype(y.dtype, jnp.integer)):
        raise ValueError(f"cross_entropy needs integer labels of shape (n,), got {y.dtype} {tuple(y.shape)}")
    if config.batch_size is not None and config.batch_size > x.shape[0]:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {x.shape[0]} training samples")
    M = len(state.member_ids)
    history: dict[str, list] = {"loss": [], "epoch": []}
    if checkpoint is not None and Path(checkpoint).exists():
        state, history = _load_checkpoint(checkpoint, state)
    elif on_epoch_end is not None:
        _record(history, on_epoch_end(state.epoch, state.params), state.epoch, None)
    runner = _Epoch(module, config, _augment_fn(group, act_y), M)
    params, opt_state = state.params, state.opt_state
    if runner.strategy == "vmap" and jax.device_count() > 1 and M % jax.device_count() == 0:
        params, opt_state = _shard_members(params), _shard_members(opt_state)
    bar = tqdm(range(state.epoch, config.epochs), desc=f"training {M} member(s) [{runner.strategy}]",
               unit="epoch", disable=not progress, initial=state.epoch, total=config.epochs)
    for epoch in bar:
        idx = np.stack([batch_indices(seed, m, epoch, x.shape[0], config.batch_size) for m in state.member_ids])
        params, opt_state, losses = runner(params, opt_state, x, y, idx)
        losses = np.asarray(losses)
        _check_finite(losses, state.member_ids, epoch)
        state = EnsembleState(params, opt_state, state.member_ids, epoch + 1)
        metrics = on_epoch_end(epoch + 1, params) if on_epoch_end is not None else None
        _record(history, metrics, epoch + 1, losses.mean(1))
        bar.set_postfix(loss=f"{losses[:, -1].mean():.4g}")
        if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == config.epochs):
            _save_checkpoint(checkpoint, state, history)
    return state, {k: np.asarray(v) for k, v in history.items()}


def _record(history: dict, metrics: dict | None, epoch: int, loss) -> None:
    if loss is not None:
        history["loss"].append(loss)
    history["epoch"].append(epoch)
    for k, v in (metrics or {}).items():
        history.setdefault(k, []).append(np.asarray(v))


def _check_finite(losses: np.ndarray, member_ids: Sequence[int], epoch: int) -> None:
    bad = np.argwhere(~np.isfinite(losses))
    if len(bad):
        m, s = bad[0]
        raise FloatingPointError(
            f"non-finite training loss ({losses[m, s]}) for member {member_ids[m]} in epoch {epoch + 1}, "
            f"step {s + 1}: lower the learning rate or check the data for NaN/inf")


def _shard_members(tree):
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()), ("members",))
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("members")))


def _save_checkpoint(path, state: EnsembleState, history: dict) -> None:
    from .io import save_arrays

    leaves = jax.tree_util.tree_leaves((state.params, state.opt_state))
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    arrays["state/epoch"] = np.asarray(state.epoch)
    arrays["state/member_ids"] = np.asarray(state.member_ids)
    arrays.update({f"history/{k}": np.asarray(v) for k, v in history.items()})
    save_arrays(path, arrays)


def _load_checkpoint(path, like: EnsembleState) -> tuple[EnsembleState, dict]:
    from .io import load_arrays

    arrays = load_arrays(path)
    if tuple(arrays["state/member_ids"].tolist()) != like.member_ids:
        raise ValueError(f"checkpoint {path} holds members {arrays['state/member_ids'].tolist()}, "
                         f"this ensemble has {list(like.member_ids)}")
    leaves, treedef = jax.tree_util.tree_flatten((like.params, like.opt_state))
    loaded = [arrays[f"leaf_{i:05d}"] for i in range(len(leaves))]
    for i, (a, b) in enumerate(zip(leaves, loaded)):
        if a.shape != b.shape:
            raise ValueError(f"checkpoint {path}: leaf {i} has shape {b.shape}, expected {a.shape}")
    params, opt_state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(b) for b in loaded])
    history = {k.split("/", 1)[1]: list(v) for k, v in arrays.items() if k.startswith("history/")}
    return EnsembleState(params, opt_state, like.member_ids, int(arrays["state/epoch"])), history


def train_in_chunks(module: nn.Module, x, y, config: TrainConfig, num_members: int, chunk: int | None,
                    seed: int = 0, checkpoint: Callable[[str], str | Path] | None = None, name: str = "train",
                    **train_kwargs) -> Iterator[tuple[EnsembleState, dict]]:
    """Initialise and train members ``0 … num_members−1`` in chunks of ``chunk`` members (None: all at once).

    One :func:`train_ensemble` call per chunk bounds memory; with ``checkpoint`` (e.g.
    ``Run.checkpoint_path``) every chunk has its own checkpoint, ``checkpoint(name)`` for a single
    chunk and ``checkpoint(f"{name}_members{first}-{last}")`` otherwise, so an interrupted run loses
    at most the chunk in progress. Member m gets the same parameters whatever the chunking. Yields
    ``(state, history)`` chunk by chunk; ``train_kwargs`` (``group``, ``on_epoch_end``, ``progress``
    …) go to :func:`train_ensemble`.
    """
    if num_members < 1 or (chunk is not None and chunk < 1):
        raise ValueError(f"need num_members ≥ 1 and chunk ≥ 1 (or None), got {num_members} and {chunk}")
    chunk = min(chunk or num_members, num_members)
    for start in range(0, num_members, chunk):
        ids = range(start, min(start + chunk, num_members))
        state = init_ensemble(module, x, seed=seed, config=config, member_ids=ids)
        path = None
        if checkpoint is not None:
            path = checkpoint(name if chunk == num_members else f"{name}_members{ids[0]}-{ids[-1]}")
        yield train_ensemble(module, state, x, y, config, seed=seed, checkpoint=path, **train_kwargs)


def ensemble_apply(module: nn.Module, params, x, batch_size: int = 2048, strategy: str = "auto") -> jnp.ndarray:
    """Outputs of every member: stacked ``params`` (M, ...), ``x: (n, ...)`` → ``(M, n, d)``."""
    x = jnp.asarray(x)
    M = jax.tree_util.tree_leaves(params)[0].shape[0]
    apply = _compiled_apply(module, resolve_strategy(strategy) == "vmap")
    outs = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size]
        if resolve_strategy(strategy) == "vmap":
            outs.append(apply(params, xb))
        else:
            outs.append(jnp.stack([apply(p, xb) for p in _unstack(params, M)]))
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
