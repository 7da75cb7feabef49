"""Random versus systematic augmentation: one random group element per sample per step.

*Systematic* (full) augmentation trains every member on the whole orbit of the training set, the
|G|·n points ``X_aug`` of :func:`eqlib.augment.augment_full_orbit` (stacked group-element-major,
index ``g·n + i`` holds ``ρ_X(g) x_i``). *Random* augmentation gives every member, at every step,
each training sample once, turned by a group element drawn uniformly and independently per sample,
per step and per member: the batch ``{X_aug[g_i·n + i]}_{i<n}`` (:func:`orbit_indices`).

**Equal compute.** One full-batch step costs |G|·n per-sample gradients with systematic
augmentation and n with random augmentation, so at equal numbers of gradient evaluations the random
members take |G| steps for every systematic one. An *epoch* here is |G|·n gradient evaluations:
one systematic step, |G| random steps.

**Learning rate.** The loss is ½·mean over the batch (the convention of :mod:`eqlib.ntk`). Its
gradient on a random batch is, in expectation over the draws, the full-orbit gradient
(:func:`expected_random_gradient`); so one random step at rate η/|G| has expected update 1/|G|
times the systematic step at rate η, and the |G| random steps of an epoch move the parameters, in
expectation and to first order in η, as one systematic step: both schemes follow the same gradient
flow in the time τ = η·epochs. (Same η for both would run random augmentation |G| times further
along that flow.) For the linearised (infinitely wide) network the statement is exact for the
*mean*: averaged over the draws, random augmentation is systematic gradient descent at rate η/|G|
for |G| times as many steps (:func:`expected_linearised_mean`), which is the systematic flow only
to first order in η.

Members are trained by the pure step of :func:`eqlib.ensemble.ensemble_core` (the same loss and
optax update as every ensemble of the book), vmapped over members, the steps of each recording
interval in one ``lax.scan`` (MLPs only: no convolutions in a scan on the CPU). Member ``m``'s
initial parameters come from ``eqlib.ensemble.member_keys(seed, [m])`` in both schemes, so member m
of the random ensemble and member m of the systematic one start from the same network (paired);
its draws come from ``fold_in(fold_in(PRNGKey(seed), DRAW_STREAM), m)`` folded with the step.

:func:`linearised_members` simulates the same two trainings for infinitely wide members: the
linearised network in function space, f_0 ~ GP(0, K) on the training and evaluation orbits, every
step ``f ← f − η_mode/(B·d)·Θ(·, X_b)(f(X_b) − Y_b)`` with the analytic NTK Θ — Monte-Carlo members
of the infinite-width random-augmentation ensemble, for which no closed-form covariance is used.
"""
from __future__ import annotations

import functools
import itertools
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .augment import augment_full_orbit, check_same_length
from .ensemble import ensemble_core, loss_value, member_keys
from .groups import ActFn, FiniteGroup, get_group
from .metrics import member_vs_ensemble, orbit_spread
from .models import Architecture, Flatten
from .ntk import flow_matrix, kernels

MODES = ("systematic", "random")
#: Folded into ``PRNGKey(seed)`` before the member index: the stream of the random draws, apart
#: from the members' initialisation keys (``fold_in(PRNGKey(seed), m)``).
DRAW_STREAM = 0x5EED


class AugmentationHistory(NamedTuple):
    """One ensemble's outputs on the evaluation orbits during training.

    ``epochs: (T,)`` — gradient evaluations / (|G|·n) at each recording (0: initialisation);
    ``outputs: (T, M, |G|, n_eval, d)`` — every member on every orbit point (index 0 the identity);
    ``loss: (T, M)`` — each member's ½·mean squared error on the whole augmented training set.
    """

    epochs: np.ndarray
    outputs: np.ndarray
    loss: np.ndarray


# ------------------------------------------------------------------------------ the draws

def orbit_indices(elements, n: int):
    """Indices into ``X_aug`` of ``ρ_X(g_i) x_i``: ``elements: (..., n)`` ints in 0..|G|−1 → ``(..., n)``."""
    return elements * n + jnp.arange(n)


def draw_keys(seed: int, member_ids: Sequence[int]) -> jax.Array:
    """PRNG keys ``(M, 2)`` of the members' draws: ``fold_in(fold_in(PRNGKey(seed), DRAW_STREAM), m)``."""
    root = jax.random.fold_in(jax.random.PRNGKey(seed), DRAW_STREAM)
    return jax.vmap(lambda m: jax.random.fold_in(root, m))(jnp.asarray(member_ids, jnp.uint32))


def random_elements(key: jax.Array, step, n: int, order: int):
    """The group elements ``(n,)`` of one member's step ``step``: uniform, independent per sample."""
    return jax.random.randint(jax.random.fold_in(key, step), (n,), 0, order)


def batch_indices(mode: str, key: jax.Array, step, n: int, order: int):
    """One member's batch at ``step`` as indices into ``X_aug``: ``(|G|·n,)`` systematic, ``(n,)`` random."""
    if mode == "systematic":
        return jnp.arange(order * n)
    return orbit_indices(random_elements(key, step, n, order), n)


def step_learning_rate(mode: str, learning_rate: float, order: int) -> float:
    """η for systematic steps, η/|G| for random ones (see the module docstring)."""
    _check_mode(mode)
    return learning_rate if mode == "systematic" else learning_rate / order


def steps_per_epoch(mode: str, order: int) -> int:
    """Steps per |G|·n gradient evaluations: 1 systematic, |G| random."""
    _check_mode(mode)
    return 1 if mode == "systematic" else order


# ----------------------------------------------------------------------------- gradients

def batch_loss(apply_fn: Callable, params, x_aug, y_aug, idx) -> jnp.ndarray:
    """½·mean squared error of ``apply_fn(params, ·)`` on the batch ``x_aug[idx]``: ``idx: (B,)``."""
    return loss_value("mse", apply_fn(params, x_aug[idx]), y_aug[idx])


def expected_random_gradient(apply_fn: Callable, params, x_aug, y_aug, n: int, order: int):
    """The gradient of :func:`batch_loss` averaged over **all** |G|ⁿ random batches (tiny n only).

    Equals the gradient of the full-orbit loss (the identity the learning-rate convention rests on;
    tests/test_random_augmentation.py checks it). ``x_aug: (|G|·n, ...)``, ``y_aug: (|G|·n, d)``.
    """
    if order ** n > 4096:
        raise ValueError(f"|G|^n = {order}^{n} batches is too many to enumerate (at most 4096)")
    grad = jax.grad(lambda p, idx: batch_loss(apply_fn, p, x_aug, y_aug, idx))
    every = jnp.asarray(list(itertools.product(range(order), repeat=n)))     # (|G|^n, n)
    grads = jax.vmap(grad, in_axes=(None, 0))(params, orbit_indices(every, n))
    return jax.tree_util.tree_map(lambda leaf: leaf.mean(0), grads)


# ------------------------------------------------------------------------------ validation

def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _resolve_group(group: FiniteGroup | str, size: int | None = None) -> FiniteGroup:
    if isinstance(group, str):
        return get_group(group, size)
    if not isinstance(group, FiniteGroup):
        raise TypeError(f"group must be a FiniteGroup or a group name, got {type(group).__name__}")
    return group


def _check_problem(x, y, x_eval, epochs: int, record_every: int, members: int,
                   learning_rate: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y, x_eval = np.asarray(x), np.asarray(y), np.asarray(x_eval)
    check_same_length(x, y)
    if y.ndim != 2:
        raise ValueError(f"y must be (n, d), got shape {y.shape}")
    if x_eval.ndim != x.ndim or x_eval.shape[1:] != x.shape[1:]:
        raise ValueError(f"x_eval samples have shape {x_eval.shape[1:]}, training samples {x.shape[1:]}")
    if epochs < 1 or record_every < 1 or epochs % record_every:
        raise ValueError(f"need epochs ≥ 1 divisible by record_every ≥ 1, got epochs={epochs}, "
                         f"record_every={record_every}")
    if members < 1:
        raise ValueError(f"members must be positive, got {members}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    return x, y, x_eval


def _check_mlp(arch: Architecture) -> None:
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an eqlib.models.Architecture, got {type(arch).__name__}")
    if not isinstance(arch.layers[0], Flatten) or any(type(l).__name__ in ("Conv", "AvgPool")
                                                      for l in arch.layers):
        raise ValueError("train_with_augmentation scans steps inside one program: MLPs only "
                         f"(eqlib.models.mlp), got {arch.layers}")


def _orbit_points(group: FiniteGroup, x_eval: np.ndarray) -> np.ndarray:
    """The evaluation orbits, group-element-major: ``(n_eval, ...) -> (|G|·n_eval, ...)``."""
    return np.asarray(group.orbit(x_eval)).reshape((-1,) + x_eval.shape[1:])


# ------------------------------------------------------------------------ finite width

@functools.lru_cache(maxsize=16)
def _compiled_interval(module, mode: str, learning_rate: float, order: int, n: int, steps: int):
    """Jitted ``interval(state, keys, first_step, x_aug, y_aug) → state``: ``steps`` steps of one scheme."""
    core = ensemble_core(module, optax.sgd(learning_rate), "mse")
    members_step = jax.vmap(core.member_step, in_axes=(0, 0, None, None, 0))

    def interval(state, keys, first, x_aug, y_aug):
        def body(carry, s):
            params, opt_state = carry
            idx = jax.vmap(lambda k: batch_indices(mode, k, s, n, order))(keys)   # (M, B)
            params, opt_state, _ = members_step(params, opt_state, x_aug, y_aug, idx)
            return type(carry)(params, opt_state), None

        carry, _ = jax.lax.scan(body, state, first + jnp.arange(steps))
        return carry

    return jax.jit(interval)


@functools.lru_cache(maxsize=16)
def _compiled_init_measure(module):
    """Jitted ``init(keys, example)`` (sgd state: stateless) and ``measure(params, x_aug, y_aug,
    orbit) → (outputs, loss)``, shared by both schemes."""
    core = ensemble_core(module, optax.sgd(1.0), "mse")

    def measure(params, x_aug, y_aug, orbit):
        apply = jax.vmap(module.apply, in_axes=(0, None))
        loss = jax.vmap(lambda o: loss_value("mse", o, y_aug))(apply(params, x_aug))
        return apply(params, orbit), loss

    return jax.jit(core.init), jax.jit(measure)


def train_with_augmentation(arch: Architecture, x, y, group: FiniteGroup | str, x_eval, *,
                            mode: str, members: int, epochs: int, record_every: int,
                            learning_rate: float, seed: int = 0, act_y: ActFn | None = None,
                            size: int | None = None) -> AugmentationHistory:
    """Train ``members`` MLPs with systematic or random augmentation; record them on the orbits.

    ``x: (n, ...)``, ``y: (n, d)`` the training set, ``x_eval: (n_eval, ...)`` the inputs whose
    orbits are recorded every ``record_every`` epochs (an epoch = |G|·n gradient evaluations: one
    systematic step at rate η = ``learning_rate`` or |G| random steps at rate η/|G|). ``group``: a
    FiniteGroup or a name for :func:`eqlib.groups.get_group` (``size`` for lattice groups);
    ``act_y`` its action on targets (default: invariant). Member m starts from the same parameters
    in both modes (``member_keys(seed, [m])``).
    """
    _check_mode(mode)
    _check_mlp(arch)
    group = _resolve_group(group, size)
    x, y, x_eval = _check_problem(x, y, x_eval, epochs, record_every, members, learning_rate)
    n, order = len(x), group.order
    aug = augment_full_orbit(x, y, group, act_y)
    x_aug, y_aug = jnp.asarray(aug.x), jnp.asarray(aug.y)
    orbit = jnp.asarray(_orbit_points(group, x_eval))
    lr = step_learning_rate(mode, learning_rate, order)
    steps = record_every * steps_per_epoch(mode, order)
    interval = _compiled_interval(arch.flax(), mode, lr, order, n, steps)
    init, measure = _compiled_init_measure(arch.flax())
    ids = list(range(members))
    state = init(member_keys(seed, ids), x_aug[:1])
    keys = draw_keys(seed, ids)
    outputs, losses = [], []
    for k in range(epochs // record_every + 1):
        if k:
            state = interval(state, keys, jnp.asarray((k - 1) * steps), x_aug, y_aug)
        out, loss = measure(state.params, x_aug, y_aug, orbit)
        outputs.append(np.asarray(out).reshape(members, order, len(x_eval), -1))
        losses.append(np.asarray(loss))
    if not np.all(np.isfinite(losses)):
        raise FloatingPointError(f"non-finite training loss with {mode} augmentation at learning rate "
                                 f"{learning_rate}: lower it")
    return AugmentationHistory(np.arange(0, epochs + 1, record_every), np.stack(outputs),
                               np.stack(losses))


# ------------------------------------------------------------------------ infinite width

def linearised_members(arch: Architecture, x, y, group: FiniteGroup | str, x_eval, *, mode: str,
                       members: int, epochs: int, record_every: int, learning_rate: float,
                       seed: int = 0, size: int | None = None) -> AugmentationHistory:
    """Monte-Carlo members of the infinitely wide ensemble, trained like :func:`train_with_augmentation`.

    The linearised network in function space on the points Z = (X_aug, evaluation orbits):
    ``f_0 ~ N(0, K(Z, Z))`` (NNGP), then per step ``f(Z) ← f(Z) − η_mode/(B·d) Θ(Z, X_b) (f(X_b) −
    Y_b)`` with the analytic NTK Θ and the batches of :func:`batch_indices` (B = |G|·n or n). This
    is the infinite-width limit of the trained members (Lee et al. 2019) for both schemes; invariant
    targets only. Draws from ``numpy.random.default_rng([seed, 1])`` (f_0) and
    :func:`draw_keys` (the batches); float32 arithmetic, kernels in float64.
    """
    _check_mode(mode)
    group = _resolve_group(group, size)
    x, y, x_eval = _check_problem(x, y, x_eval, epochs, record_every, members, learning_rate)
    n, order = len(x), group.order
    aug = augment_full_orbit(x, y, group)
    x_aug, y_aug = np.asarray(aug.x), np.asarray(aug.y, np.float64)
    points = np.concatenate([x_aug, _orbit_points(group, x_eval)])
    K, theta = kernels(arch.kernel_fn, points)                            # (D, D) each
    lam, vecs = np.linalg.eigh(K)
    root = vecs * np.sqrt(np.clip(lam, 0.0, None))                        # K = root rootᵀ
    z = np.random.default_rng([seed, 1]).normal(size=(members, len(points), y.shape[1]))
    f0 = np.einsum("De,mec->mDc", root, z)                                # (M, D, d)
    N = order * n
    lr = step_learning_rate(mode, learning_rate, order)
    batch = N if mode == "systematic" else n
    d = y.shape[1]
    steps = record_every * steps_per_epoch(mode, order)
    rows = jnp.asarray(theta[:N], jnp.float32)                            # Θ(X_aug, Z): (N, D)
    targets = jnp.asarray(y_aug, jnp.float32)                              # (N, d)
    keys = draw_keys(seed, list(range(members)))

    @jax.jit
    def interval(f, first):
        def body(f, s):
            if mode == "systematic":
                mask = jnp.ones((members, N), jnp.float32)
            else:
                idx = jax.vmap(lambda k: batch_indices(mode, k, s, n, order))(keys)    # (M, n)
                mask = jax.vmap(lambda i: jnp.zeros(N, jnp.float32).at[i].set(1.0))(idx)
            residual = (f[:, :N] - targets) * mask[..., None]                          # (M, N, d)
            return f - (lr / (batch * d)) * jnp.einsum("nD,mnd->mDd", rows, residual), None

        f, _ = jax.lax.scan(body, f, first + jnp.arange(steps))
        return f

    f = jnp.asarray(f0, jnp.float32)
    outputs, losses = [], []
    for k in range(epochs // record_every + 1):
        if k:
            f = interval(f, jnp.asarray((k - 1) * steps))
        fa = np.asarray(f, np.float64)
        outputs.append(fa[:, N:].reshape(members, order, len(x_eval), -1))
        losses.append(0.5 * ((fa[:, :N] - y_aug) ** 2).mean((1, 2)))
    return AugmentationHistory(np.arange(0, epochs + 1, record_every), np.stack(outputs),
                               np.stack(losses))


def expected_linearised_mean(arch: Architecture, x, y, group: FiniteGroup | str, x_eval, *,
                             mode: str, epochs: Sequence[int], learning_rate: float,
                             size: int | None = None) -> np.ndarray:
    """The exact mean of :func:`linearised_members` (over f_0 and the draws): ``(T, |G|, n_eval, d)``.

    For both modes it is discrete systematic gradient descent on the linearised network,
    ``μ(x) = Θ(x, X_aug) φ(Θ) Y_aug`` with ``φ(λ) = (1 − (1 − η'λ/N)^s)/λ`` (N = |G|·n): η' = η and
    s = epochs for ``systematic``; η' = η/|G| and s = |G|·epochs for ``random`` — averaging a random
    step over its independent draws gives (1/|G|) times the systematic step, and the recursion is
    linear in f, with draws independent of f. So the random ensemble's expected prediction is
    invariant too, and equals the gradient flow :func:`eqlib.ntk.ensemble_mean_cov` at τ = η·epochs
    only to first order in η.
    """
    _check_mode(mode)
    group = _resolve_group(group, size)
    x, y, x_eval = _check_problem(x, y, x_eval, 1, 1, 1, learning_rate)
    order = group.order
    aug = augment_full_orbit(x, y, group)
    x_aug, y_aug = np.asarray(aug.x), np.asarray(aug.y, np.float64)
    orbit = _orbit_points(group, x_eval)
    _, theta = kernels(arch.kernel_fn, x_aug)
    _, theta_eval = kernels(arch.kernel_fn, orbit, x_aug)
    lr = step_learning_rate(mode, learning_rate, order)
    per = steps_per_epoch(mode, order)
    # flow_matrix's |Y| is the number of target entries; ½·mean over N samples of d outputs
    # divides the gradient by N·d, and φ uses η·λ/|Y| with |Y| = N·d: the same convention.
    means = [theta_eval @ flow_matrix(theta, per * int(e), lr, y_aug.size, discrete=True) @ y_aug
             for e in epochs]
    return np.stack(means).reshape(len(epochs), order, len(x_eval), -1)


# ------------------------------------------------------------------------------ statistics

def rms_orbit_spread(outputs_on_orbit) -> np.ndarray:
    """Root mean square over inputs of the orbit spread: ``(..., |G|, n, d) -> (...)``.

    For an ensemble mean of M i.i.d. members whose expectation is invariant, its square has
    expectation (mean square spread of one member)/M exactly (at any width, for both schemes).
    """
    return np.sqrt((orbit_spread(outputs_on_orbit) ** 2).mean(-1))


def expected_member_square_spread(covariance, order: int) -> np.ndarray:
    """Mean over inputs of E[spread²] of a Gaussian with ``covariance: (..., |G|·n, |G|·n)``.

    Orbit points stacked group-element-major (index ``g·n + i``). Per input the orbit block C gives
    ``(tr C − 𝟙ᵀC𝟙/|G|)/|G|``; returns ``(...)``. For Σ_t this is the mean square orbit spread of
    one infinitely wide member about the (invariant) mean; divided by M, that of an M-ensemble.
    """
    c = np.asarray(covariance, np.float64)
    if c.ndim < 2 or c.shape[-1] != c.shape[-2] or c.shape[-1] % order:
        raise ValueError(f"covariance must be (..., |G|·n, |G|·n) with |G| = {order}, got {c.shape}")
    n = c.shape[-1] // order
    blocks = c.reshape(c.shape[:-2] + (order, n, order, n))
    blocks = np.einsum("...gihi->...igh", blocks)                          # (..., n, |G|, |G|)
    per_input = (np.trace(blocks, axis1=-2, axis2=-1) - blocks.sum((-2, -1)) / order) / order
    return per_input.mean(-1)


def paired_ratio(numerator, denominator, level: float = 0.95) -> np.ndarray:
    """RMS orbit spread of ``numerator`` over that of ``denominator``, members paired by index.

    ``numerator``, ``denominator``: ``(M, |G|, n, 1)``, member m of both from one initialisation.
    Returns ``(3, 3)``: rows the mean over members of their ratio, the ratio of the two ensemble
    means, and ensemble − member; columns estimate, low, high (delete-one jackknife over the pairs,
    :func:`eqlib.metrics.member_vs_ensemble`).
    """
    numerator, denominator = np.asarray(numerator), np.asarray(denominator)
    if numerator.shape != denominator.shape or numerator.ndim != 4 or numerator.shape[-1] != 1:
        raise ValueError(f"need two (M, |G|, n, 1) arrays of one shape, got {numerator.shape} and "
                         f"{denominator.shape}")

    def ratio(o):
        return rms_orbit_spread(o[..., :1]) / rms_orbit_spread(o[..., 1:])

    both = np.concatenate([numerator, denominator], -1).astype(np.float64)
    table = member_vs_ensemble(both, ratio, level=level)
    return np.array([[float(table[k].estimate), float(table[k].low), float(table[k].high)]
                     for k in ("member", "ensemble", "difference")])


def ensemble_spread_interval(outputs, level: float = 0.95) -> np.ndarray:
    """RMS orbit spread of the ensemble mean with its jackknife interval: ``(M, |G|, n, d) → (3,)``."""
    table = member_vs_ensemble(np.asarray(outputs, np.float64), rms_orbit_spread, level=level)
    e = table["ensemble"]
    return np.array([float(e.estimate), float(e.low), float(e.high)])


def paired_mean_ratio(numerator, denominator) -> np.ndarray:
    """``√(mean a / mean b)`` over paired samples ``a, b: (..., R)`` and its delta-method s.e.

    Returns ``(..., 2)``. The s.e. of ``r = mean a / mean b`` is ``std(a − r·b)/(√R · mean b)``
    (paired samples: their correlation is used), halved and divided by √r for the square root.
    """
    a, b = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    if a.shape != b.shape or a.shape[-1] < 2:
        raise ValueError(f"need paired samples (..., R ≥ 2) of one shape, got {a.shape}, {b.shape}")
    r = a.mean(-1) / b.mean(-1)
    se = (a - r[..., None] * b).std(-1, ddof=1) / (np.sqrt(a.shape[-1]) * b.mean(-1))
    return np.stack([np.sqrt(r), se / (2 * np.sqrt(r))], -1)


def compare_schemes(arch: Architecture, x, y, group: FiniteGroup | str, eval_sets: dict, *,
                    members: int, epochs: int, record_every: int, learning_rate: float,
                    infinite_members: int, sizes: Sequence[int], seed: int = 0,
                    size: int | None = None, level: float = 0.95) -> dict[str, np.ndarray]:
    """Random against systematic augmentation on one problem, finite and infinite width.

    ``eval_sets``: name → inputs ``(n_s, ...)``. Trains ``members`` MLPs per scheme
    (:func:`train_with_augmentation`), simulates ``infinite_members`` infinitely wide ones
    (:func:`linearised_members`) and evaluates Σ_t of the systematic ensemble
    (:func:`eqlib.ntk.ensemble_mean_cov`, gradient flow at τ = η·epochs). Keys (``<s>`` a set,
    ``<m>`` a mode; T recording times, K = len(sizes)):

    * ``epochs: (T,)``; ``loss/<m>: (T, M)``; ``outputs/<m>/<s>: (T, M, |G|, n_s, 1)``;
    * ``ensemble/<m>/<s>: (T, 3)`` RMS orbit spread of the M-ensemble, estimate, low, high;
    * ``ratio/<s>: (T, 3, 3)`` random over systematic (:func:`paired_ratio`, at t > 0; row 0 at
      t = 0 is 1 by construction);
    * ``sizes: (K,)``; ``by_size/<m>/<s>: (K, 3)`` at the last time, RMS over disjoint
      sub-ensembles with bootstrap interval; ``ratio_by_size/<s>: (K, 3)`` the mean over paired
      sub-ensembles of their ratio, with bootstrap interval;
    * ``member_ms/<m>/<s>: (T,)`` mean square orbit spread of one member (finite width);
    * ``infinite_ms/<m>/<s>: (T, 2)`` the same for the simulated infinitely wide members, with its
      standard error; ``infinite_ratio/<s>: (T, 2)`` the ratio of their RMS spreads, random over
      systematic (:func:`paired_mean_ratio`: the simulations share f_0 member by member), with its
      standard error; ``sigma_ms/<s>: (T,)`` from Σ_t (systematic, gradient flow;
      :func:`expected_member_square_spread`).
    """
    from .metrics import subensemble_statistics
    from .ntk import ensemble_mean_cov

    group = _resolve_group(group, size)
    names = list(eval_sets)
    counts = [len(eval_sets[s]) for s in names]
    x_eval = np.concatenate([np.asarray(eval_sets[s]) for s in names])
    bounds = np.cumsum([0] + counts)
    common = dict(members=members, epochs=epochs, record_every=record_every,
                  learning_rate=learning_rate, seed=seed)
    out: dict[str, np.ndarray] = {"sizes": np.asarray(sizes)}
    infinite_ms: dict[tuple[str, str], np.ndarray] = {}
    for mode in MODES:
        finite = train_with_augmentation(arch, x, y, group, x_eval, mode=mode, **common)
        infinite = linearised_members(arch, x, y, group, x_eval, mode=mode,
                                      **{**common, "members": infinite_members})
        out["epochs"], out[f"loss/{mode}"] = finite.epochs, finite.loss
        for j, s in enumerate(names):
            part = slice(bounds[j], bounds[j + 1])
            o = finite.outputs[:, :, :, part]
            out[f"outputs/{mode}/{s}"] = o
            out[f"ensemble/{mode}/{s}"] = np.stack([ensemble_spread_interval(ot, level) for ot in o])
            out[f"member_ms/{mode}/{s}"] = (rms_orbit_spread(o) ** 2).mean(1)
            ms = rms_orbit_spread(infinite.outputs[:, :, :, part]) ** 2           # (T, R)
            infinite_ms[mode, s] = ms
            out[f"infinite_ms/{mode}/{s}"] = np.stack(
                [ms.mean(1), ms.std(1, ddof=1) / np.sqrt(ms.shape[1])], -1)
            stats = subensemble_statistics(o[-1], sizes, rms_orbit_spread, reduce="rms",
                                           level=level)
            out[f"by_size/{mode}/{s}"] = np.stack([stats.estimate, stats.low, stats.high], -1)
    for s in names:
        out[f"infinite_ratio/{s}"] = paired_mean_ratio(infinite_ms["random", s],
                                                       infinite_ms["systematic", s])
        rnd, sys_ = out[f"outputs/random/{s}"], out[f"outputs/systematic/{s}"]
        out[f"ratio/{s}"] = np.stack([paired_ratio(a, b, level) if t else np.ones((3, 3))
                                      for t, (a, b) in enumerate(zip(rnd, sys_))])
        both = np.concatenate([rnd[-1], sys_[-1]], -1).astype(np.float64)
        stats = subensemble_statistics(
            both, sizes, lambda e: rms_orbit_spread(e[..., :1]) / rms_orbit_spread(e[..., 1:]),
            level=level)
        out[f"ratio_by_size/{s}"] = np.stack([stats.estimate, stats.low, stats.high], -1)
    aug = augment_full_orbit(np.asarray(x), np.asarray(y), group)
    pred = ensemble_mean_cov(arch.kernel_fn, np.asarray(aug.x), np.asarray(aug.y),
                             _orbit_points(group, x_eval), out["epochs"],
                             learning_rate=learning_rate)
    for j, s in enumerate(names):
        idx = np.concatenate([g * len(x_eval) + np.arange(bounds[j], bounds[j + 1])
                              for g in range(group.order)])
        out[f"sigma_ms/{s}"] = expected_member_square_spread(
            pred.covariance[:, idx][:, :, idx], group.order)
    return out


def systematic_linearised_covariance(arch: Architecture, x, y, group: FiniteGroup | str, x_eval, *,
                                     epochs: Sequence[int], learning_rate: float,
                                     size: int | None = None) -> np.ndarray:
    """Exact covariance of the linearised systematic members after ``epochs`` discrete steps.

    ``Σ(x, x') = K(x,x') + B K(X,X) Bᵀ − B K(X,x') − (B K(X,x'))ᵀ`` with ``B = Θ(x,X) φ(Θ)`` and
    the discrete gain ``φ(λ) = (1 − (1 − ηλ/N)^s)/λ`` (N = |G|·n·d target entries, s = epochs):
    the formula of :mod:`eqlib.ntk` with gradient descent in place of gradient flow, on the
    evaluation orbits ``(T, |G|·n_eval, |G|·n_eval)`` (group-element-major). What
    :func:`linearised_members` samples in the systematic mode.
    """
    group = _resolve_group(group, size)
    x, y, x_eval = _check_problem(x, y, x_eval, 1, 1, 1, learning_rate)
    aug = augment_full_orbit(x, y, group)
    x_aug = np.asarray(aug.x)
    orbit = _orbit_points(group, x_eval)
    K_dd, theta = kernels(arch.kernel_fn, x_aug)
    K_td, theta_td = kernels(arch.kernel_fn, orbit, x_aug)
    K_tt, _ = kernels(arch.kernel_fn, orbit)
    covs = []
    for e in epochs:
        B = theta_td @ flow_matrix(theta, int(e), learning_rate, np.asarray(aug.y).size, discrete=True)
        cross = B @ K_td.T
        covs.append(K_tt + B @ K_dd @ B.T - cross - cross.T)
    return np.stack(covs)
