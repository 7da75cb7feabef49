"""Symmetry metrics on arrays of outputs evaluated over group orbits.

Every metric takes ``outputs_on_orbit`` of shape ``(..., |G|, n, d)``: the outputs ``f(ρ_X(g) x_i)``
for every element ``g`` (index 0 the identity) and input ``i``; leading axes (e.g. members) are
kept. Use :func:`orbit_outputs` to produce it from a function and a group.

Ensembles of every size M drawn from one pool of members — their mean, spread, OSP, … with
bootstrap intervals — come from one function, :func:`subensemble_statistics`, which every
experiment and chapter uses.
"""
from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from .groups import ActFn, Transformations


def orbit_outputs(apply_fn: Callable, x, group: Transformations, inputs_per_call: int | None = None):
    """``apply_fn: (N, ...) -> (..., N, d)`` evaluated on the orbit of ``x: (n, ...)`` → ``(..., |G|, n, d)``.

    ``inputs_per_call``: evaluate the orbits of this many inputs per call of ``apply_fn``
    (``|G|·inputs_per_call`` rows, to bound memory) and return a NumPy array; without it, one
    call and a JAX array.
    """
    if inputs_per_call is not None:
        if inputs_per_call < 1:
            raise ValueError(f"inputs_per_call must be a positive number of inputs, got {inputs_per_call}")
        step = inputs_per_call
        parts = [np.asarray(orbit_outputs(apply_fn, x[s:s + step], group)) for s in range(0, len(x), step)]
        return np.concatenate(parts, axis=-2)
    x = jnp.asarray(x)
    orbit = group.orbit(x)  # (|G|, n, ...)
    out = apply_fn(orbit.reshape((-1,) + x.shape[1:]))
    return out.reshape(out.shape[:-2] + (group.order, x.shape[0], out.shape[-1]))


def _check_orbit_axis(outputs, what: str):
    outputs = np.asarray(outputs)
    if outputs.ndim < 3:
        raise ValueError(f"{what} expects outputs (..., |G|, n, d), got shape {outputs.shape}")
    return outputs


class OSP(NamedTuple):
    """Orbit same prediction: how many g keep the predicted class of x."""
    counts: np.ndarray       # (..., n) in 1..|G|
    mean: np.ndarray         # (...)   mean count over inputs
    fraction: np.ndarray     # (...)   mean / |G|
    consistent: np.ndarray   # (...)   share of inputs whose whole orbit gets one class
    group_order: int


def orbit_same_prediction(outputs_on_orbit) -> OSP:
    """OSP, the orbit same prediction of Gerken & Kessel (2024): ``#{g : argmax f(ρ_X(g)x) = argmax f(x)}`` for logits ``(..., |G|, n, C)``."""
    outputs = _check_orbit_axis(outputs_on_orbit, "orbit_same_prediction")
    pred = outputs.argmax(-1)                                 # (..., |G|, n)
    counts = (pred == pred[..., :1, :]).sum(-2)               # (..., n)
    order = outputs.shape[-3]
    mean = counts.mean(-1)
    return OSP(counts, mean, mean / order, (counts == order).mean(-1), order)


def orbit_spread(outputs_on_orbit, group: Transformations | None = None, act_y: ActFn | None = None) -> np.ndarray:
    """Std of f over each orbit, ``sqrt(mean_g ‖f(gx) − mean_g' f(g'x)‖²)``: ``(..., |G|, n, d) -> (..., n)``.

    Zero exactly for an invariant f. With ``act_y`` (ρ_Y, which needs ``group`` for the inverses) the
    outputs are first aligned, ``ρ_Y(g)⁻¹ f(ρ_X(g)x)``: the *aligned* spread, zero exactly for an
    equivariant f. Only for trivial ρ_Y is the plain spread a (semi)norm of the defects
    ``f(ρ_X(g)x) − ρ_Y(g) f(x)``; an equivariant f with non-trivial ρ_Y has a plain spread > 0.
    """
    outputs = _check_orbit_axis(outputs_on_orbit, "orbit_spread")
    if act_y is not None:
        if group is None or not hasattr(group, "inverse"):
            raise ValueError("orbit_spread with act_y needs the group (a FiniteGroup, for ρ_Y(g)⁻¹ = ρ_Y(g⁻¹))")
        if outputs.shape[-3] != group.order:
            raise ValueError(f"outputs have {outputs.shape[-3]} orbit entries, {group.name} has {group.order} elements")
        outputs = np.stack([np.asarray(act_y(group.inverse(g), outputs[..., g, :, :]))
                            for g in range(group.order)], axis=-3)
    centred = outputs - outputs.mean(-3, keepdims=True)
    return np.sqrt((centred ** 2).sum(-1).mean(-2))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def orbit_symmetric_kl(logits_on_orbit) -> np.ndarray:
    """Mean KL divergence between the predicted class distributions on an orbit: ``(..., |G|, n, C) -> (..., n)``.

    ``D(x) = 1/(|G|(|G|−1)) Σ_{g≠h} KL(p_g ‖ p_h)`` with ``p_g = softmax f(ρ_X(g) x)`` — the mean
    over ordered pairs, i.e. the mean symmetrised KL ``KL(p‖q) + KL(q‖p)`` over unordered pairs,
    halved. A continuous invariance measure in the spirit of Nordenfors & Flinth (2024): zero
    exactly when every element of the orbit gets the same distribution, and, unlike the OSP, it
    sees changes of confidence that do not change the argmax (near-ties, confident constant
    classifiers). In nats; computed in float64. Logits, not probabilities, are expected.
    """
    logits = _check_orbit_axis(logits_on_orbit, "orbit_symmetric_kl").astype(np.float64)
    order = logits.shape[-3]
    if order < 2:
        return np.zeros(logits.shape[:-3] + logits.shape[-2:-1])
    logp = _log_softmax(logits)                                   # (..., |G|, n, C)
    p = np.exp(logp)
    # Σ_{g,h} KL(p_g‖p_h) = Σ_g Σ_c p_gc log p_gc · |G| − Σ_c (Σ_g p_gc)(Σ_h log p_hc)
    neg_entropy = (p * logp).sum(-1).sum(-2)                      # (..., n)
    cross = (p.sum(-3) * logp.sum(-3)).sum(-1)                    # (..., n)
    total = order * neg_entropy - cross
    return np.maximum(total, 0.0) / (order * (order - 1))


def relative_orbit_spread(outputs_on_orbit, centre: bool = True) -> np.ndarray:
    """Orbit spread over the RMS size of the outputs on the orbit: ``(..., |G|, n, d) -> (..., n)``.

    ``spread(x) / sqrt(mean_g ‖f(gx)‖²)`` with :func:`orbit_spread`; with ``centre`` (the default,
    for logits, whose softmax ignores a common shift) each output is first centred over its ``d``
    entries. Scale-free: 0 for an invariant f, at most 1, and near 1 when the orbit's outputs vary
    about as much as they are large. 0/0 (all outputs zero) is reported as 0.
    """
    outputs = _check_orbit_axis(outputs_on_orbit, "relative_orbit_spread").astype(np.float64)
    if centre:
        outputs = outputs - outputs.mean(-1, keepdims=True)
    size = np.sqrt((outputs ** 2).sum(-1).mean(-2))
    spread = orbit_spread(outputs)
    return np.divide(spread, size, out=np.zeros_like(spread), where=size > 0)


def equivariance_error(outputs_on_orbit, group: Transformations, act_y: ActFn | None = None) -> np.ndarray:
    """Mean over g ≠ e of ``‖f(ρ_X(g)x) − ρ_Y(g) f(x)‖``: ``(..., |G|, n, d) -> (..., n)``.

    ``act_y`` defaults to the trivial representation (then this measures invariance).
    """
    outputs = _check_orbit_axis(outputs_on_orbit, "equivariance_error")
    if outputs.shape[-3] != group.order:
        raise ValueError(f"outputs have {outputs.shape[-3]} orbit entries, {group.name} has {group.order} elements")
    if group.order == 1:
        return np.zeros(outputs.shape[:-3] + outputs.shape[-2:-1])
    f_x = outputs[..., 0, :, :]
    errors = [np.linalg.norm(outputs[..., g, :, :] - (np.asarray(act_y(g, f_x)) if act_y else f_x), axis=-1)
              for g in range(1, group.order)]
    return np.mean(errors, axis=0)


def accuracy(logits, labels) -> np.ndarray:
    """Share of correct argmax predictions: logits ``(..., n, C)``, labels ``(n,)`` → ``(...)``."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim < 2 or labels.ndim != 1:
        raise ValueError(f"accuracy expects logits (..., n, C) and labels (n,), got {logits.shape} and {labels.shape}")
    if logits.shape[-2] != labels.shape[-1]:
        raise ValueError(f"{logits.shape[-2]} predictions but {labels.shape[-1]} labels")
    return (logits.argmax(-1) == labels).mean(-1)


def ensemble_mean(member_outputs, axis: int = 0) -> np.ndarray:
    """The ensemble prediction: the mean of member outputs (logits, as in this book) over ``axis``."""
    return np.asarray(member_outputs).mean(axis)


def ensemble_sizes(requested: Sequence[int], members: int) -> np.ndarray:
    """The ensemble sizes to measure for a pool of ``members``: the requested ones that fit, plus 1 and all."""
    if members < 1:
        raise ValueError(f"members must be positive, got {members}")
    return np.asarray(sorted({int(k) for k in requested if 1 <= k <= members} | {1, members}))


def subensemble_means(member_outputs, size: int, axis: int = 0) -> np.ndarray:
    """Means of the ⌊M/k⌋ disjoint blocks of ``size`` = k consecutive members along ``axis``.

    ``member_outputs: (..., M, ...)`` with M on ``axis`` → ``(..., ⌊M/k⌋, ...)``; members left over
    after the last full block are not used. Independent sub-ensembles of one size, without resampling.
    """
    outputs = np.moveaxis(np.asarray(member_outputs), axis, 0)
    M = outputs.shape[0]
    if not 1 <= size <= M:
        raise ValueError(f"ensemble size {size} outside 1..{M}")
    blocks = M // int(size)
    means = outputs[: blocks * size].reshape((blocks, int(size)) + outputs.shape[1:]).mean(1)
    return np.moveaxis(means, 0, axis)


# ------------------------------------------------------------------- sub-ensembles of size M

#: A statistic of ensemble outputs that keeps the member axis: applied to sub-ensemble means laid
#: out like the members (one sub-ensemble where a member was), it returns one value per
#: sub-ensemble on that axis — an array, or a dict of arrays to compute several at once.
Statistic = Callable[[np.ndarray], "np.ndarray | Mapping[str, np.ndarray]"]

SUBSET_SCHEMES = ("disjoint", "random")
REDUCTIONS = ("mean", "rms")


class SubensembleStatistics(NamedTuple):
    """One statistic of ensembles of every size: a row per size, with bootstrap intervals.

    ``estimate``, ``std``, ``low``, ``high`` are ``(K, ...)``: one row per size in ``sizes``, the
    rest the shape of the statistic without its sub-ensemble axis. ``samples[i]`` holds the
    statistic of every sub-ensemble of size ``sizes[i]`` (sub-ensembles on the member axis).
    """
    sizes: np.ndarray                  # (K,) ensemble sizes
    samples: tuple[np.ndarray, ...]    # per size: the statistic of each sub-ensemble
    estimate: np.ndarray               # (K, ...) mean over sub-ensembles (root mean square for "rms")
    std: np.ndarray                    # (K, ...) standard deviation over sub-ensembles (ddof 0)
    low: np.ndarray | None             # (K, ...) percentile bootstrap interval (None: no bootstrap)
    high: np.ndarray | None
    level: float                       # coverage of [low, high]


def _reduce(values: np.ndarray, how: str, axis: int) -> np.ndarray:
    return values.mean(axis) if how == "mean" else np.sqrt((values ** 2).mean(axis))


def _subensemble_means(outputs: np.ndarray, size: int, axis: int, subsets: str, num_resamples: int,
                       rng: np.random.Generator | None) -> np.ndarray:
    """Means of the sub-ensembles of one size, laid out like the members on ``axis``."""
    if subsets == "disjoint":
        return subensemble_means(outputs, size, axis=axis)
    members = outputs.shape[axis]
    return np.stack([np.take(outputs, rng.choice(members, size=size, replace=False), axis=axis).mean(axis)
                     for _ in range(num_resamples)], axis=axis)


def subensemble_statistics(member_outputs, sizes: Sequence[int], statistic: Statistic, *, axis: int = 0,
                           subsets: str = "disjoint", num_resamples: int = 64, seed: int = 0,
                           reduce: str = "mean", num_bootstrap: int = 1000, level: float = 0.95,
                           bootstrap_seed: int = 0) -> SubensembleStatistics | dict[str, SubensembleStatistics]:
    """``statistic`` of ensembles of each size in ``sizes``, drawn from a pool of members.

    ``member_outputs: (..., M, ...)`` with the M members on ``axis``. For each size k the pool
    gives sub-ensembles of k members, and each sub-ensemble's prediction is the mean of its
    members' outputs (as in this book: the mean of the logits):

    * ``subsets="disjoint"``: the ⌊M/k⌋ blocks of k consecutive members
      (:func:`subensemble_means`); size 1 is every member, size M the whole ensemble;
    * ``subsets="random"``: ``num_resamples`` subsets of k distinct members, drawn uniformly
      with ``np.random.default_rng(seed)`` (one generator, sizes in order).

    ``statistic`` receives those means laid out like the members — sub-ensembles on ``axis`` —
    and returns one value per sub-ensemble, still on ``axis`` (e.g. ``lambda e:
    orbit_spread(e).mean(-1)``), or a dict of such arrays; the answer is then a dict with the same
    keys. ``reduce`` combines the sub-ensembles of one size: their ``"mean"``, or their root mean
    square (``"rms"``, for statistics such as an RMS spread that add in squares).

    **Bootstrap interval** (percentile bootstrap over member subsets): the sub-ensemble values of
    one size are resampled with replacement ``num_bootstrap`` times, each resample is reduced like
    the data, and ``[low, high]`` are the ``(1 ∓ level)/2`` percentiles of those reductions. The
    indices come from ``np.random.default_rng([bootstrap_seed, k])``, so an interval is
    reproducible and the keys of a dict statistic share the resamples. It describes the spread
    of the sub-ensembles of one pool, not of new pools: with a single sub-ensemble (disjoint, k >
    M/2) it has zero width. ``num_bootstrap=0`` skips it (``low``, ``high`` are None).
    """
    outputs = np.asarray(member_outputs)
    if outputs.ndim == 0:
        raise ValueError("member_outputs must have a member axis, got a scalar")
    axis = int(axis)
    if not -outputs.ndim <= axis < outputs.ndim:
        raise ValueError(f"axis {axis} out of range for member_outputs of shape {outputs.shape}")
    axis %= outputs.ndim
    members = outputs.shape[axis]
    sizes = np.asarray(sizes)
    if (sizes.ndim != 1 or len(sizes) == 0 or not np.issubdtype(sizes.dtype, np.integer)
            or np.any(sizes < 1) or np.any(sizes > members)):
        raise ValueError(f"sizes must be a non-empty 1-d sequence of integers in 1..{members} "
                         f"(the members on axis {axis}), got {sizes!r}")
    if subsets not in SUBSET_SCHEMES:
        raise ValueError(f"subsets must be one of {SUBSET_SCHEMES}, got {subsets!r}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if subsets == "random" and num_resamples < 1:
        raise ValueError(f"num_resamples must be positive, got {num_resamples}")
    if num_bootstrap < 0 or not 0 < level < 1:
        raise ValueError(f"need num_bootstrap ≥ 0 and 0 < level < 1, got {num_bootstrap} and {level}")

    rng = np.random.default_rng(seed) if subsets == "random" else None
    samples: dict[str, list[np.ndarray]] = {}
    single = False
    for k in sizes:
        value = statistic(_subensemble_means(outputs, int(k), axis, subsets, num_resamples, rng))
        single = not isinstance(value, Mapping)
        for key, v in ({"": value} if single else value).items():
            v = np.asarray(v)
            if v.ndim <= axis:
                raise ValueError(f"statistic {key or ''} must keep the sub-ensemble axis {axis}, "
                                 f"got shape {v.shape}")
            samples.setdefault(key, []).append(v)

    stats = {}
    for key, per_size in samples.items():
        estimate = np.stack([_reduce(v, reduce, axis) for v in per_size])
        std = np.stack([v.std(axis) for v in per_size])
        low = high = None
        if num_bootstrap:
            bounds = []
            for k, v in zip(sizes, per_size):
                v0 = np.moveaxis(v, axis, 0)                                   # (S, ...)
                draw = np.random.default_rng([bootstrap_seed, int(k)])
                idx = draw.integers(0, len(v0), size=(num_bootstrap, len(v0)))
                boot = _reduce(v0[idx], reduce, 1)                             # (B, ...)
                bounds.append(np.percentile(boot, [50 * (1 - level), 50 * (1 + level)], axis=0))
            low, high = np.stack([b[0] for b in bounds]), np.stack([b[1] for b in bounds])
        stats[key] = SubensembleStatistics(sizes, tuple(per_size), estimate, std, low, high, level)
    return stats[""] if single else stats


class Interval(NamedTuple):
    """A point estimate with a confidence interval ``[low, high]`` at ``level``."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    level: float

    def excludes_zero(self) -> np.ndarray:
        """True where the whole interval lies on one side of 0."""
        return (np.asarray(self.low) > 0) | (np.asarray(self.high) < 0)


def _normal_quantile(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def member_vs_ensemble(member_outputs, statistic: Callable[[np.ndarray], np.ndarray], *, axis: int = 0,
                       level: float = 0.95, **unsupported) -> dict[str, Interval]:
    """The members' mean statistic against the ensemble's, with jackknife intervals over members.

    ``member_outputs: (..., M, ...)`` with the M members on ``axis``; ``statistic`` maps outputs laid
    out like that (any number of members on ``axis``) to one value per member, still on ``axis``
    (e.g. ``lambda o: orbit_symmetric_kl(o).mean(-1)``). Returns

    * ``"member"``: the mean over members of the statistic;
    * ``"ensemble"``: the statistic of the ensemble (the member mean, as this book averages logits);
    * ``"difference"``: ensemble − member (paired: both from the same members).

    Each is an :class:`Interval` ``estimate ± z·se`` with the **delete-one jackknife** standard
    error over members, ``se² = (M−1)/M Σ_i (θ_(i) − θ̄)²``, where ``θ_(i)`` is the value without
    member i. It describes the uncertainty from the finite pool of members (another pool from the
    same recipe), not from the evaluation inputs. Why not the bootstrap: resampling members *with
    replacement* repeats members, and an ensemble of repeated members is less diverse than one of
    M distinct members, so the bootstrap distribution of an ensemble statistic is shifted (its
    percentile interval can miss the estimate altogether: a test shows it); leaving one out keeps
    the members distinct.
    """
    if unsupported:
        raise TypeError(f"member_vs_ensemble got unsupported argument(s) {sorted(unsupported)}: the "
                        "interval is a jackknife over members (no resampling, no seed)")
    outputs = np.asarray(member_outputs)
    if outputs.ndim == 0:
        raise ValueError("member_outputs must have a member axis, got a scalar")
    axis %= outputs.ndim
    members = outputs.shape[axis]
    if members < 2:
        raise ValueError(f"member_vs_ensemble needs at least 2 members on axis {axis}, got {members}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    per_member = np.moveaxis(np.asarray(statistic(outputs), dtype=np.float64), axis, 0)   # (M, ...)
    if per_member.shape[0] != members:
        raise ValueError(f"statistic must return one value per member on axis {axis}, got shape "
                         f"{np.moveaxis(per_member, 0, axis).shape}")
    total = outputs.sum(axis, keepdims=True, dtype=np.float64)

    def ensemble_of(summed: np.ndarray, count: int) -> np.ndarray:
        return np.take(np.asarray(statistic(summed / count), dtype=np.float64), 0, axis=axis)

    member, ensemble = per_member.mean(0), ensemble_of(total, members)
    loo_member = (per_member.sum(0) - per_member) / (members - 1)                        # (M, ...)
    loo_ensemble = np.stack([ensemble_of(total - np.take(outputs, [i], axis=axis), members - 1)
                             for i in range(members)])
    z = _normal_quantile(level)

    def interval(point, leave_one_out):
        se = np.sqrt((members - 1) / members * ((leave_one_out - leave_one_out.mean(0)) ** 2).sum(0))
        return Interval(np.asarray(point), point - z * se, point + z * se, level)

    return {"member": interval(member, loo_member), "ensemble": interval(ensemble, loo_ensemble),
            "difference": interval(ensemble - member, loo_ensemble - loo_member)}
