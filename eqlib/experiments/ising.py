"""The Ising experiment (the Ising model experiment of Gerken & Kessel 2024): finite ensembles against the infinite-width prediction.

Inputs are spin configurations of a periodic L×L lattice sampled by Metropolis at the training
temperatures; the target is the nearest-neighbour energy, standardised with the training
statistics. The energy is invariant under rotations (the paper's group C4), reflections,
translations and the global spin flip; ``group`` selects C4, D4 or D4xTxZ2. The evaluation sets
are cleaned against the training set: no evaluation input lies in the orbit of a training input,
none is fixed by the whole group (its orbit spread would be 0 for any function), no two lie in one
orbit; more inputs are drawn to keep ``n_eval``, and the counts are stored.

Ensembles of MLPs (one hidden layer, several widths) and of CNNs with circular padding (global
average pooling, dense head) in the NTK parametrisation are trained by full-batch gradient descent
on the MSE, with full augmentation over the group and, as a control, without. At a few training
times (log-spaced gradient steps, including initialisation) the runner measures, on the test set
and off the training distribution (uniformly random configurations, configurations at another
temperature, Gaussian "non-spin" lattices):

* the orbit spread, the relative orbit spread (spread over the RMS output on the orbit) and the
  equivariance error of every member and of ensembles of every size in ``ensemble_sizes``
  (averaged over disjoint sub-ensembles of the member pool, with 95 % bootstrap intervals);
* at the last time, members against the full ensemble with 95 % jackknife intervals over members
  (:func:`eqlib.metrics.member_vs_ensemble`) and the slope of log spread vs log M with a bootstrap
  interval (:func:`slope_in_members`);
* the energy RMSE (in units of J) of members and ensembles on the spin-configuration sets;
* the infinite-width ensemble from ``eqlib.ntk`` at the same times: the orbit spread of its mean
  μ_t (zero under full augmentation, the theorem) and, from the covariance Σ_t of each orbit, the
  predicted (relative) orbit spread of an M-member ensemble (Lemma B.4: the M-average is μ_t plus
  a Gaussian of covariance Σ_t/M), by Monte Carlo over that Gaussian, plus the simpler scale
  √(Σ_t(x,x)/M).

Every trained ensemble stores its loss at every step (``loss``: full batch, one step per epoch)
and ``first_epoch_step_loss``, so a test can replay the first steps of a stored run. Every stage
is a cached ``run.step``; training checkpoints itself, so an interrupted run resumes. ``quick``
fits a 2-core CPU in about two minutes, ``reference`` in about twenty; ``full`` is sized for one GPU.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import jax
import numpy as np

from ..augment import augment_full_orbit
from ..data.ising import (gaussian_inputs, ising_energy, metropolis, random_configurations, sample_temperatures,
                          symmetry_group)
from ..ensemble import TrainConfig, ensemble_apply
from ..groups import FiniteGroup
from ..breaking import predicted_subensemble_violation
from ..metrics import (ensemble_sizes, equivariance_error, member_vs_ensemble, orbit_spread,
                       relative_orbit_spread, subensemble_means, subensemble_statistics)
from ..models import Architecture, cnn, mlp
from ..ntk import ensemble_mean_cov
from ..runner import Run, experiment

#: Evaluation sets, in the order the runner stores them. ``test`` is the training distribution.
EVAL_SETS = ("test", "other_T", "random", "gaussian")
#: Sets made of spin configurations, whose energy is a meaningful target (RMSE is reported there).
SPIN_SETS = ("test", "other_T", "random")
#: What ``data/removed_<set>`` counts, in order (see :func:`clean_evaluation_set`).
REMOVAL_COUNTS = ("drawn", "leaked", "trivial", "duplicate", "kept")


@dataclass(frozen=True)
class IsingConfig:
    seed: int = 0
    size: int = 6                                  # L: the lattice is L×L, periodic
    group: str = "C4"                              # C4 (paper) | D4 | D4xTxZ2
    coupling: float = 1.0                          # J
    train_temperatures: tuple[float, ...] = (2.5, 3.5)
    other_temperature: float = 2.0                 # the off-distribution set (ordered phase, below T_c)
    sweeps: int = 200                              # Metropolis sweeps per sample (independent chains)
    n_train: int = 48                              # configurations before augmentation
    n_eval: int = 64                               # inputs per evaluation set
    clean_eval: bool = True                        # drop eval inputs in a training orbit, group-fixed, or repeated
    widths: tuple[int, ...] = (32, 128, 512)       # hidden widths of the one-hidden-layer MLPs
    plain_width: int = 512                         # MLP width of the no-augmentation control
    members: int = 128                             # MLP members per width
    ensemble_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    cnn_channels: tuple[int, ...] = (32,)          # conv layers (3×3, circular padding, no pooling)
    cnn_members: int = 64
    cnn_ntk: bool = False                          # the CNN kernel costs L⁴ per pair: off on CPU
    learning_rate: float = 1.5                     # MLPs: stable below 2N/λ_max(Θ) ≈ 2.4 here
    cnn_learning_rate: float = 1.5                 # CNNs: limit ≈ 2.1 for one conv layer, ≈ 1.2 for two
    mlp_strategy: str = "vmap"                     # vmap measured ~10× faster than the default for MLPs on CPU
    cnn_strategy: str = "loop"                     # tiny convolutions on CPU: a member loop measured fastest
    steps: int = 200                               # full-batch gradient steps
    n_times: int = 7                               # measurement times: 0 and log-spaced in [1, steps]
    ntk_samples: int = 512                         # Monte Carlo samples of the predicted spread
    ntk_batch: int = 1024                          # orbit points per kernel evaluation
    member_chunk: int | None = None                # train members in chunks of this size (memory); None: all
    checkpoint_every: int = 50


QUICK = IsingConfig()
#: The largest widths and ensemble sizes of ``FULL`` that fit about 20 minutes on 2 idle CPU cores
#: (MLP training dominates: ~0.2 / 2 / 9 ms per member-step at widths 128 / 512 / 2048 and 192
#: training points, measured on the 2-core CPU under load; the estimate for the whole run is ~17 min).
REFERENCE = IsingConfig(n_eval=128, widths=(128, 512, 2048), plain_width=2048, members=300,
                        ensemble_sizes=(1, 3, 10, 30, 100, 300), cnn_members=256, n_times=9,
                        ntk_samples=1000, ntk_batch=256, member_chunk=100)
FULL = IsingConfig(n_train=128, n_eval=128, widths=(128, 512, 2048, 8192), plain_width=2048, members=1000,
                   ensemble_sizes=(1, 3, 10, 30, 100, 300, 1000), cnn_channels=(64, 64), cnn_members=256,
                   cnn_ntk=True, cnn_strategy="auto", cnn_learning_rate=0.75, steps=1000, n_times=9,
                   ntk_samples=1000, ntk_batch=256, member_chunk=250)

#: Bootstrap resamples of the intervals over sub-ensembles (spread vs M) and over members (slope in M).
NUM_BOOTSTRAP = 1000
SLOPE_BOOTSTRAP = 200
#: The slope of log spread vs log M is fitted over the sizes with at least this many disjoint sub-ensembles.
SLOPE_MIN_SUBENSEMBLES = 4


# ------------------------------------------------------------------------------------ data

def orbit_keys(x: np.ndarray, group: FiniteGroup) -> list[bytes]:
    """A canonical key per input, equal for two inputs iff they lie in one orbit: ``x: (n, L, L, 1)``.

    The key is the lexicographically smallest of the byte strings of ``g·x`` over the group.
    """
    orbit = np.ascontiguousarray(np.asarray(group.orbit(np.asarray(x, np.float32))))   # (|G|, n, L, L, 1)
    flat = orbit.reshape(group.order, len(x), -1)
    return [min(flat[g, i].tobytes() for g in range(group.order)) for i in range(len(x))]


def is_group_fixed(x: np.ndarray, group: FiniteGroup) -> np.ndarray:
    """True for inputs that every group element maps to themselves (orbit of one point): ``(n,)``."""
    orbit = np.asarray(group.orbit(np.asarray(x, np.float32)))
    return np.all(orbit == orbit[:1], axis=tuple(range(2, orbit.ndim))).all(0)


def clean_evaluation_set(draw: Callable[[int], np.ndarray], num: int, train_keys: set[bytes], group: FiniteGroup,
                         max_rounds: int = 100) -> tuple[np.ndarray, dict[str, int]]:
    """``num`` inputs from ``draw(round)`` (a batch per round), none in a training orbit.

    An input is dropped when it lies in the orbit of a training input (``train_keys``, from
    :func:`orbit_keys`: leaked), when the group fixes it (trivial: its orbit spread is 0 for every
    function), or when it lies in the orbit of an input already kept (duplicate). Rounds are drawn
    until ``num`` inputs are kept; round 0 is the batch a set without cleaning would have used.
    Returns the inputs ``(num, ...)`` and the counts ``drawn, leaked, trivial, duplicate, kept``.
    """
    kept: list[np.ndarray] = []
    seen: set[bytes] = set()
    counts = {"drawn": 0, "leaked": 0, "trivial": 0, "duplicate": 0}
    for r in range(max_rounds):
        batch = draw(r)
        fixed = is_group_fixed(batch, group)
        for x, key, trivial in zip(batch, orbit_keys(batch, group), fixed):
            if len(kept) == num:
                break
            counts["drawn"] += 1
            reason = ("leaked" if key in train_keys else "trivial" if trivial
                      else "duplicate" if key in seen else None)
            if reason:
                counts[reason] += 1
                continue
            seen.add(key)
            kept.append(x)
        if len(kept) == num:
            return np.stack(kept), {**counts, "kept": num}
    raise ValueError(f"only {len(kept)} of {num} clean evaluation inputs after {max_rounds} rounds "
                     f"({counts}); the distribution has too few distinct orbits")


def ising_data(cfg: IsingConfig) -> dict[str, np.ndarray]:
    """Training set and the four evaluation sets; energies standardised with training statistics.

    Returns ``x: (n_train, L, L, 1)``, ``y: (n_train, 1)``, ``x_<set>: (n_eval, L, L, 1)``,
    ``y_<set>: (n_eval, 1)``, ``energy_mean``/``energy_std`` (in J) and the temperature of each
    training sample ``t_train``. Seeds: training data ``seed``, test ``seed+1``, other sets
    ``seed+2 … seed+4`` (round r > 0 of the cleaning: ``seed+1+7919·r`` for test, ``[seed+k, r]``
    otherwise). Evaluation sets contain no input in the orbit of a training input under
    ``cfg.group``, no input that the group fixes and no two inputs of one orbit
    (:func:`clean_evaluation_set`; ``clean_eval=False`` keeps the first draw as it is);
    ``removed_<set>`` holds the counts ``(drawn, leaked, trivial, duplicate, kept)``.
    """
    L, temps_train = cfg.size, cfg.train_temperatures
    group = symmetry_group(cfg.group, L)
    x, temps = sample_temperatures(cfg.n_train, L, temps_train, cfg.sweeps, cfg.seed, cfg.coupling)
    energy = ising_energy(x, cfg.coupling)
    mean, std = float(energy.mean()), float(energy.std())
    if not std > 0:
        raise ValueError(f"all {cfg.n_train} training energies are equal ({mean}); "
                         "sample more configurations or at a higher temperature")
    n, s0 = cfg.n_eval, cfg.seed

    def seeded(k: int, r: int) -> list[int]:
        return [s0 + k] if r == 0 else [s0 + k, r]

    draws = {
        "test": lambda r: sample_temperatures(n, L, temps_train, cfg.sweeps, s0 + 1 + 7919 * r, cfg.coupling)[0],
        "other_T": lambda r: metropolis(n, L, cfg.other_temperature, cfg.sweeps, seeded(2, r), cfg.coupling),
        "random": lambda r: random_configurations(n, L, seeded(3, r)),
        "gaussian": lambda r: gaussian_inputs(n, L, seeded(4, r)),
    }
    train_keys = set(orbit_keys(x, group))

    def target(s):
        return ((ising_energy(s, cfg.coupling) - mean) / std)[:, None].astype(np.float32)

    out = {"x": x, "y": target(x), "t_train": temps, "energy_mean": np.asarray(mean), "energy_std": np.asarray(std)}
    for name, draw in draws.items():
        if cfg.clean_eval:
            s, counts = clean_evaluation_set(draw, n, train_keys, group)
        else:
            s, counts = draw(0), {"drawn": n, "leaked": 0, "trivial": 0, "duplicate": 0, "kept": n}
        out[f"x_{name}"], out[f"y_{name}"] = s, target(s)
        out[f"removed_{name}"] = np.asarray([counts[k] for k in REMOVAL_COUNTS])
    return out


def measurement_times(steps: int, n_times: int) -> np.ndarray:
    """``0`` and up to ``n_times − 1`` distinct, roughly log-spaced integers in ``[1, steps]``."""
    if steps < 1 or n_times < 2:
        raise ValueError(f"need steps ≥ 1 and n_times ≥ 2, got steps={steps}, n_times={n_times}")
    return np.unique(np.concatenate([[0], np.round(np.geomspace(1, steps, n_times - 1)).astype(int), [steps]]))


# ------------------------------------------------------------------------------ predictions

def predicted_orbit_spread(mean: np.ndarray, cov: np.ndarray, group_order: int, sizes: Sequence[int],
                           samples: int = 512, seed: int | Sequence[int] = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distribution of the input-averaged orbit spread of an M-member ensemble, by Monte Carlo.

    ``mean: (|G|·n,)`` and ``cov: (|G|·n, |G|·n)`` are μ_t and Σ_t on the orbit points, stacked
    group-element-major (index ``g·n + i``, as ``group.orbit`` gives them). By Lemma B.4 of
    Gerken & Kessel (2024) the M-average is ``μ_t + ε`` with ``ε ~ N(0, Σ_t/M)``; for each M in
    ``sizes`` this draws ``samples`` such outputs (:func:`eqlib.breaking.predicted_subensemble_violation`)
    and returns the mean and the standard deviation over draws of ``mean_i orbit_spread_i``: two
    arrays of shape ``(len(sizes),)``.
    """
    mean = np.asarray(mean, np.float64)
    if mean.ndim != 1 or mean.shape[0] % group_order:
        raise ValueError(f"mean {mean.shape} and cov {np.shape(cov)} must be (|G|·n,) and (|G|·n, |G|·n) "
                         f"with |G| = {group_order}")
    spread = predicted_subensemble_violation(mean.reshape(group_order, -1, 1), cov, sizes, samples, seed)
    return spread.mean(1), spread.std(1)                                      # over the draws


def expected_squared_orbit_spread(cov_blocks: np.ndarray, num_members: int = 1) -> np.ndarray:
    """E[orbit_spread²] of a centred Gaussian orbit: ``tr(P C)/(|G|·M)`` with P = 1 − 𝟙𝟙ᵀ/|G|.

    ``cov_blocks: (..., |G|, |G|)`` is the covariance of the outputs on one orbit (per input);
    returns ``(...)``. For uncorrelated orbit points of variance σ² this is σ²(1 − 1/|G|)/M.
    """
    c = np.asarray(cov_blocks, np.float64)
    if c.ndim < 2 or c.shape[-1] != c.shape[-2]:
        raise ValueError(f"cov_blocks must be (..., |G|, |G|), got shape {c.shape}")
    order = c.shape[-1]
    return (np.trace(c, axis1=-2, axis2=-1) - c.sum((-2, -1)) / order) / (order * num_members)


def orbit_blocks(cov: np.ndarray, group_order: int) -> np.ndarray:
    """The per-input orbit covariance ``(n, |G|, |G|)`` from ``cov: (|G|·n, |G|·n)`` (index ``g·n + i``)."""
    n = cov.shape[-1] // group_order
    c = np.asarray(cov).reshape(group_order, n, group_order, n)
    return np.einsum("gihi->igh", c)


# -------------------------------------------------------------------------------- measuring

def _architectures(cfg: IsingConfig) -> dict[str, tuple[Architecture, int]]:
    archs = {f"mlp_w{w}": (architecture(cfg, f"mlp_w{w}"), cfg.members) for w in cfg.widths}
    archs["cnn"] = (architecture(cfg, "cnn"), cfg.cnn_members)
    return archs


def _orbit_inputs(data: dict, group: FiniteGroup) -> tuple[np.ndarray, list[int]]:
    """The orbits of all evaluation sets stacked: ``(Σ_sets |G|·n, L, L, 1)`` and the count per set."""
    inputs = [data[f"x_{name}"] for name in EVAL_SETS]
    orbit_x = np.concatenate([np.asarray(group.orbit(x)).reshape((-1,) + x.shape[1:]) for x in inputs])
    return orbit_x, [group.order * len(x) for x in inputs]


def _spreads(outputs: np.ndarray) -> dict[str, np.ndarray]:
    """Input-averaged orbit spread and relative orbit spread: ``(..., |G|, n, 1) -> (...)`` each."""
    return {"spread": orbit_spread(outputs).mean(-1),
            "rel_spread": relative_orbit_spread(outputs, centre=False).mean(-1)}


def _subensemble_metrics(data: dict, name: str) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Per sub-ensemble of means ``(T, S, |G|, n, 1)``: input-averaged orbit spread, relative
    spread and, on spin sets, the energy RMSE in units of the standardised target, each ``(T, S)``."""

    def statistic(ens: np.ndarray) -> dict[str, np.ndarray]:
        out = _spreads(ens)
        if name in SPIN_SETS:
            err = ens[:, :, 0, :, 0] - data[f"y_{name}"][None, None, :, 0]
            out["rmse"] = np.sqrt((err ** 2).mean(-1))
        return out

    return statistic


def slope_in_members(member_outputs: np.ndarray, sizes: np.ndarray,
                     statistic: Callable[[np.ndarray], dict[str, np.ndarray]],
                     num_bootstrap: int = SLOPE_BOOTSTRAP, level: float = 0.95,
                     min_subensembles: int = SLOPE_MIN_SUBENSEMBLES, seed: int = 0) -> dict[str, np.ndarray]:
    """Slope of log(mean statistic) against log M, with a bootstrap interval over members.

    ``member_outputs: (M, ...)``; ``statistic`` maps sub-ensemble means ``(S, ...)`` to a dict of
    one value per sub-ensemble ``(S,)`` each. For each size k the statistic is averaged over the
    ``M // k`` disjoint sub-ensembles of consecutive members; the fit uses the sizes with at
    least ``min_subensembles`` of them (an ensemble that is the whole pool, or half of it, says
    nothing about its own variability).

    **Interval.** Each replicate resamples the M members with replacement
    (``np.random.default_rng(seed)``), recomputes the whole curve — so the correlation between
    sizes, which share members, is kept — and refits. Repeated members make a resampled pool
    less diverse: its mean is as far from invariant as the original pool's (≈ variance/M), which
    flattens the replicate curves a little. So the interval takes its *width* from the bootstrap
    and its *centre* from the data: ``estimate + (q_(1−level)/2 − median, q_(1+level)/2 − median)``
    of the replicate slopes. Returns ``{key: (3,)}`` (estimate, low, high) per key of the
    statistic, and ``sizes``: the sizes fitted.
    """
    outputs = np.asarray(member_outputs)
    sizes = np.asarray(sizes)
    M = len(outputs)
    use = sizes[(M // sizes) >= min_subensembles]
    if len(use) < 2:
        raise ValueError(f"need two sizes with ≥ {min_subensembles} disjoint sub-ensembles of the {M} members "
                         f"to fit a slope, got sizes {sizes.tolist()}")
    logm = np.log(use.astype(float))
    centred = logm - logm.mean()

    def fits(pool: np.ndarray) -> dict[str, float]:
        curves: dict[str, list[float]] = {}
        for k in use:
            for key, v in statistic(subensemble_means(pool, int(k), axis=0)).items():
                curves.setdefault(key, []).append(float(np.mean(v)))
        return {key: float((np.log(c) * centred).sum() / (centred ** 2).sum()) for key, c in curves.items()}

    estimate = fits(outputs)
    rng = np.random.default_rng(seed)
    reps = [fits(outputs[rng.integers(0, M, size=M)]) for _ in range(num_bootstrap)]
    out: dict[str, np.ndarray] = {"sizes": use}
    for key, value in estimate.items():
        r = np.array([rep[key] for rep in reps])
        lo, hi = np.percentile(r, [50 * (1 - level), 50 * (1 + level)]) - np.median(r)
        out[key] = np.array([value, value + lo, value + hi])
    return out


def orbit_metrics(outputs: np.ndarray, counts: list[int], data: dict, group: FiniteGroup, sizes: np.ndarray,
                  energy_std: float, num_bootstrap: int = NUM_BOOTSTRAP) -> dict[str, np.ndarray]:
    """Orbit spreads, equivariance error and RMSE of members and sub-ensembles, with intervals.

    ``outputs: (T, M, P, 1)`` are member outputs on the stacked orbits of the evaluation sets
    (``P = Σ |G|·n``, split by ``counts``). For ensemble size k the M members are split into
    ``M // k`` disjoint sub-ensembles of consecutive members; their metrics are averaged.
    Returns per set, for ``s`` in ``spread`` (orbit spread) and ``rel_spread`` (relative orbit
    spread, :func:`eqlib.metrics.relative_orbit_spread` without centring):

    * ``member_<s> (T, M)``; ``ensemble_<s>``, ``ensemble_<s>_std``, ``ensemble_<s>_low``,
      ``ensemble_<s>_high (T, K)``: mean, std and 95 % bootstrap interval over sub-ensembles;
    * ``mve_<s> (3, 3)`` at the last time: rows member mean, full ensemble, ensemble − member;
      columns estimate, low, high (:func:`eqlib.metrics.member_vs_ensemble`, jackknife over members);
    * ``slope_<s> (3,)`` at the last time: slope of log spread vs log M (:func:`slope_in_members`)
      over the sizes ``slope_sizes``;
    * ``member_eqerr``/``ensemble_eqerr (T,)``, ``ensemble_orbit_output (T, |G|, n)`` (all M members);
    * on spin sets ``member_rmse (T, M)``, ``ensemble_rmse (T, K)`` and ``mve_rmse (3, 3)`` in J.
    """
    T, M = outputs.shape[:2]
    metrics: dict[str, np.ndarray] = {}
    for name, part in zip(EVAL_SETS, np.split(outputs, np.cumsum(counts)[:-1], axis=2)):
        orbit = part.reshape(T, M, group.order, -1, 1)                                # (T, M, |G|, n, 1)
        for stat, value in _spreads(orbit).items():
            metrics[f"member_{stat}/{name}"] = value                                  # (T, M)
        stats = subensemble_statistics(orbit, sizes, _subensemble_metrics(data, name), axis=1,
                                       num_bootstrap=num_bootstrap)                   # blocks on axis 1
        final = orbit[-1]                                                              # (M, |G|, n, 1)
        for stat in ("spread", "rel_spread"):
            st = stats[stat]
            for part_name, value in (("", st.estimate), ("_std", st.std), ("_low", st.low), ("_high", st.high)):
                metrics[f"ensemble_{stat}{part_name}/{name}"] = value.T                # (T, K)
            if M >= 2:
                mve = member_vs_ensemble(final, lambda o, stat=stat: _spreads(o)[stat])
                metrics[f"mve_{stat}/{name}"] = _interval_table(mve)
        if np.sum(M // sizes >= SLOPE_MIN_SUBENSEMBLES) >= 2:
            fit = slope_in_members(final, sizes, _spreads, min(num_bootstrap, SLOPE_BOOTSTRAP))
            for stat in ("spread", "rel_spread"):
                metrics[f"slope_{stat}/{name}"] = fit[stat]                            # (3,)
            metrics["slope_sizes"] = fit["sizes"]
        full = orbit.mean(1)                                                           # (T, |G|, n, 1)
        metrics[f"member_eqerr/{name}"] = equivariance_error(orbit, group).mean((1, 2))
        metrics[f"ensemble_eqerr/{name}"] = equivariance_error(full, group).mean(1)
        metrics[f"ensemble_orbit_output/{name}"] = full[..., 0]                        # (T, |G|, n)
        if name in SPIN_SETS:
            target = data[f"y_{name}"][:, 0]
            err = orbit[:, :, 0, :, 0] - target[None, None]
            metrics[f"member_rmse/{name}"] = energy_std * np.sqrt((err ** 2).mean(-1))    # (T, M) in J
            metrics[f"ensemble_rmse/{name}"] = energy_std * stats["rmse"].estimate.T      # (T, K) in J
            if M >= 2:
                def rmse(o):                                                            # (m, |G|, n, 1) -> (m,)
                    return energy_std * np.sqrt(((o[:, 0, :, 0] - target) ** 2).mean(-1))
                metrics[f"mve_rmse/{name}"] = _interval_table(member_vs_ensemble(final, rmse))
    return metrics


def _interval_table(mve: dict) -> np.ndarray:
    """``member_vs_ensemble``'s answer as ``(3, 3)``: rows member, ensemble, difference; columns estimate, low, high."""
    return np.array([[float(mve[k].estimate), float(mve[k].low), float(mve[k].high)]
                     for k in ("member", "ensemble", "difference")])


def training_config(cfg: IsingConfig, key: str) -> TrainConfig:
    """The optimiser settings of the ensemble ``key`` (``"mlp_w512_aug"``, ``"cnn_plain"`` …)."""
    is_mlp = key.startswith("mlp")
    return TrainConfig(loss="mse", optimizer="sgd", learning_rate=cfg.learning_rate if is_mlp else cfg.cnn_learning_rate,
                       epochs=cfg.steps, strategy=cfg.mlp_strategy if is_mlp else cfg.cnn_strategy)


def training_sets(data: dict, group: FiniteGroup) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The training inputs and targets of each mode: ``aug`` (full orbit) and ``plain``."""
    augmented = augment_full_orbit(data["x"], data["y"], group)
    return {"aug": (np.asarray(augmented.x), np.asarray(augmented.y)), "plain": (data["x"], data["y"])}


def architecture(cfg: IsingConfig, key: str) -> Architecture:
    """The member architecture of the ensemble ``key`` (``"mlp_w512_aug"``, ``"cnn_aug"`` …)."""
    if key.startswith("mlp_w"):
        return mlp([int(key[len("mlp_w"):].split("_")[0])], out=1)
    return cnn(list(cfg.cnn_channels), out=1, pool_after=[False] * len(cfg.cnn_channels), padding="CIRCULAR")


def member_seed(cfg: IsingConfig, key: str) -> int:
    """Seed of the ensemble ``key`` (e.g. ``"mlp_w512_aug"``): a stable function of ``cfg.seed`` and the key.

    Each ensemble gets its own seed so that ensembles of different widths or modes are independent
    draws (with one seed, member m of every width would share its first-layer weights).
    """
    return (cfg.seed * 1_000_003 + zlib.crc32(key.encode())) % 2 ** 31


def _train_and_measure(run: Run, cfg: IsingConfig, key: str, arch: Architecture, members: int, x, y, data,
                       group: FiniteGroup, times: np.ndarray) -> dict:
    """Train ``members`` members (in chunks of ``cfg.member_chunk``), recording their outputs on the
    evaluation orbits at ``times``; then compute the metrics of :func:`orbit_metrics`."""
    net = arch.flax()
    seed = member_seed(cfg, key)
    train = training_config(cfg, key)
    strategy = train.strategy
    orbit_x, counts = _orbit_inputs(data, group)
    wanted = {int(t) for t in times}

    def record(epoch: int, params) -> dict:
        if epoch not in wanted:
            return {}
        return {"time": np.asarray(epoch),
                "outputs": np.asarray(ensemble_apply(net, params, orbit_x, batch_size=1024, strategy=strategy))}

    outputs, losses, first = [], [], []
    for _, history in run.train_in_chunks(f"train_{key}", net, x, y, train, members, cfg.member_chunk, seed,
                                          on_epoch_end=record, per_member_metrics=True,
                                          checkpoint_every=cfg.checkpoint_every):
        if not np.array_equal(history["time"], times):
            raise RuntimeError(f"{key}: measured at steps {history['time']}, expected {times}")
        outputs.append(history["outputs"])                                          # (T, m, P, 1)
        losses.append(history["loss"])                                              # (steps, m)
        first.append(history["first_epoch_step_loss"])                              # (m, 1): full batch
    sizes = ensemble_sizes(cfg.ensemble_sizes, members)
    out = orbit_metrics(np.concatenate(outputs, 1), counts, data, group, sizes, float(data["energy_std"]))
    # full-batch training: one step per epoch, so ``loss`` (steps, M) holds every step's loss
    out.update({"time": times, "loss": np.concatenate(losses, 1), "sizes": sizes, "seed": np.asarray(seed),
                "first_epoch_step_loss": np.concatenate(first, 0)})
    return out


def _relative_spread(outputs: np.ndarray) -> np.ndarray:
    return relative_orbit_spread(outputs, centre=False)


def _ntk_prediction(cfg: IsingConfig, arch: Architecture, x, y, data, group: FiniteGroup, times: np.ndarray,
                    sizes: np.ndarray, learning_rate: float) -> dict:
    """μ_t, Σ_t on the orbits of every evaluation set → spreads, predicted ensemble spreads, RMSE."""
    out: dict[str, np.ndarray] = {"time": times, "sizes": sizes}
    per_call = max(1, cfg.ntk_batch // group.order)               # inputs per kernel evaluation
    kernel_fn = jax.jit(arch.kernel_fn, static_argnames="get")   # compiled once per shape, not traced per call
    energy_std = float(data["energy_std"])
    for s_idx, name in enumerate(EVAL_SETS):
        inputs = data[f"x_{name}"]
        mean_spread, means, variance, pred, pred_std, eq_sq, rmse_sq = [], [], [], [], [], [], []
        pred_rel, pred_rel_var = [], []
        for c_idx, start in enumerate(range(0, len(inputs), per_call)):
            part = inputs[start:start + per_call]
            orbit = np.asarray(group.orbit(part)).reshape((-1,) + part.shape[1:])
            p = ensemble_mean_cov(kernel_fn, x, y, orbit, times, learning_rate=learning_rate)
            mu = p.mean[..., 0]                                                       # (T, |G|·c)
            means.append(mu.reshape(len(times), group.order, -1))                           # (T, |G|, c)
            mean_spread.append(orbit_spread(mu.reshape(len(times), group.order, -1, 1)))   # (T, c)
            blocks = np.stack([orbit_blocks(c, group.order) for c in p.covariance])     # (T, c, |G|, |G|)
            variance.append(blocks[:, :, 0, 0])                                         # Σ_t(x, x)
            eq_sq.append(expected_squared_orbit_spread(blocks))                         # (T, c), M = 1
            mc = [predicted_orbit_spread(mu[t], p.covariance[t], group.order, sizes, cfg.ntk_samples,
                                         seed=[cfg.seed, s_idx, c_idx]) for t in range(len(times))]
            rel = np.stack([predicted_subensemble_violation(
                mu[t].reshape(group.order, -1, 1), p.covariance[t], sizes, cfg.ntk_samples,
                seed=[cfg.seed, s_idx, c_idx], violation=_relative_spread) for t in range(len(times))])
            pred_rel.append(rel.mean(-1) * len(part))                                   # (T, K), weighted
            pred_rel_var.append(rel.var(-1) * len(part) ** 2)
            pred.append(np.stack([m for m, _ in mc]) * len(part))                       # weighted by part size
            pred_std.append(np.stack([s for _, s in mc]) ** 2 * len(part) ** 2)
            if name in SPIN_SETS:
                rmse_sq.append(((mu[:, : len(part)] - data[f"y_{name}"][start:start + per_call, 0]) ** 2).sum(-1))
        n = len(inputs)
        out[f"mean/{name}"] = np.concatenate(means, 2)                                # (T, |G|, n) μ_t on the orbits
        out[f"mean_spread/{name}"] = np.concatenate(mean_spread, 1)                   # (T, n)
        out[f"variance/{name}"] = np.concatenate(variance, 1)                         # (T, n)
        out[f"expected_sq_spread/{name}"] = np.concatenate(eq_sq, 1)                  # (T, n)
        out[f"predicted_spread/{name}"] = sum(pred) / n                               # (T, K)
        # the parts are independent draws: the std of the average combines their variances
        out[f"predicted_spread_std/{name}"] = np.sqrt(sum(pred_std)) / n              # (T, K)
        out[f"predicted_rel_spread/{name}"] = sum(pred_rel) / n                       # (T, K)
        out[f"predicted_rel_spread_std/{name}"] = np.sqrt(sum(pred_rel_var)) / n      # (T, K)
        if name in SPIN_SETS:
            out[f"rmse/{name}"] = energy_std * np.sqrt(sum(rmse_sq) / n)              # (T,) in J
    return out


# ------------------------------------------------------------------------------------- run

@experiment("ising", quick=QUICK, reference=REFERENCE, full=FULL)
def run(run: Run, cfg: IsingConfig) -> dict:
    """Ising energy regression: MLP and CNN ensembles with/without full augmentation vs the NTK prediction."""
    group = symmetry_group(cfg.group, cfg.size)
    data = run.step("data", lambda: ising_data(cfg))
    times = measurement_times(cfg.steps, cfg.n_times)
    train_sets = training_sets(data, group)
    archs = _architectures(cfg)
    jobs = [(f"mlp_w{w}", "aug") for w in cfg.widths] + [(f"mlp_w{cfg.plain_width}", "plain"),
                                                       ("cnn", "aug"), ("cnn", "plain")]
    if f"mlp_w{cfg.plain_width}" not in archs:
        archs[f"mlp_w{cfg.plain_width}"] = (architecture(cfg, f"mlp_w{cfg.plain_width}"), cfg.members)

    arrays: dict[str, np.ndarray] = {"times": times, **{f"data/{k}": v for k, v in data.items()}}
    for arch_key, mode in jobs:
        arch, members = archs[arch_key]
        x, y = train_sets[mode]
        key = f"{arch_key}_{mode}"
        result = run.step(f"train/{key}",
                          lambda: _train_and_measure(run, cfg, key, arch, members, x, y, data, group, times))
        arrays.update({f"{key}/{k}": v for k, v in result.items()})

    ntk_jobs = [("mlp", "aug"), ("mlp", "plain")] + ([("cnn", "aug"), ("cnn", "plain")] if cfg.cnn_ntk else [])
    for arch_name, mode in ntk_jobs:
        arch = mlp([1], out=1) if arch_name == "mlp" else archs["cnn"][0]   # the kernel does not depend on width
        members = cfg.members if arch_name == "mlp" else cfg.cnn_members
        lr = cfg.learning_rate if arch_name == "mlp" else cfg.cnn_learning_rate
        x, y = train_sets[mode]
        result = run.step(f"ntk/{arch_name}_{mode}",
                          lambda: _ntk_prediction(cfg, arch, x, y, data, group, times, ensemble_sizes(cfg.ensemble_sizes, members), lr))
        arrays.update({f"ntk_{arch_name}_{mode}/{k}": v for k, v in result.items()})

    return {"arrays": arrays, "summary": _summary(arrays, group, jobs)}


def _summary(arrays: dict, group: FiniteGroup, jobs) -> dict:
    """Final-time numbers per trained ensemble and evaluation set, with the NTK prediction when there is one.

    ``ensemble_*`` refer to the ensemble of all members; ``member_vs_ensemble_<stat>`` are
    ``[estimate, low, high]`` of the member mean, the full ensemble and their difference (95 %
    jackknife intervals over members); ``slope_<stat>`` the slope of log spread vs log M with its
    95 % bootstrap interval; ``evaluation_sets`` the cleaning counts of each set (leaked into a
    training orbit, fixed by the group, duplicate orbit, kept). ``predicted_ensemble_spread`` is the mean
    input-averaged orbit spread of ``N(μ_t, Σ_t/M)`` draws; ``predicted_distance`` is
    ``√(mean_x Σ_t(x,x)/M)``, the predicted RMS distance of the ensemble from μ_t (at the
    untransformed inputs), measured as ``distance_from_ntk_mean``.
    """
    from ..results import Results

    res = Results("ising", arrays)
    arms = res.arms
    summary: dict = {"group": group.name, "group_order": group.order,
                     "measurement_times": res.array("times").tolist(),
                     "energy_std_J": float(res.data("energy_std")),
                     "evaluation_sets": {name: dict(zip(REMOVAL_COUNTS, res.data("removed", name).tolist()))
                                         for name in EVAL_SETS}}
    for arch_key, mode in jobs:
        key = f"{arch_key}_{mode}"
        arm = res.arm(key)
        ntk_name = f"ntk_{'mlp' if arch_key.startswith('mlp') else 'cnn'}_{mode}"
        ntk = res.arm(ntk_name) if ntk_name in arms else None
        sizes = arm.sizes()
        entry = {"members": int(sizes[-1]), "member_seed": int(arm.seed())}
        for name in EVAL_SETS:
            e = {"member_spread": float(arm.member_spread(name)[-1].mean()),
                 "ensemble_spread": float(arm.ensemble_spread(name)[-1, -1]),
                 "member_eqerr": float(arm.member_eqerr(name)[-1]),
                 "ensemble_eqerr": float(arm.ensemble_eqerr(name)[-1])}
            for stat in ("spread", "rel_spread", "rmse"):
                if stat == "rmse" and name not in SPIN_SETS:
                    continue
                if arm.has(f"mve_{stat}", name):
                    e[f"member_vs_ensemble_{stat}"] = {row: list(iv[:3])
                                                       for row, iv in arm.mve(f"mve_{stat}", name).items()}
                if stat != "rmse" and arm.has(f"slope_{stat}", name):
                    e[f"slope_{stat}"] = list(arm.interval(f"slope_{stat}", name)[:3])
            if name in SPIN_SETS:
                e["member_rmse_J"] = float(arm.member_rmse(name)[-1].mean())
                e["ensemble_rmse_J"] = float(arm.ensemble_rmse(name)[-1, -1])
            if ntk is not None:
                ensemble = arm.ensemble_orbit_output(name)[-1][0]                          # (n,) at g = e
                mu = ntk.mean(name)[-1][0]
                e["ntk_mean_spread_max"] = float(ntk.mean_spread(name).max())
                e["predicted_ensemble_spread"] = float(ntk.predicted_spread(name)[-1, -1])
                e["predicted_ensemble_spread_std"] = float(ntk.predicted_spread_std(name)[-1, -1])
                e["distance_from_ntk_mean"] = float(np.sqrt(np.mean((ensemble - mu) ** 2)))
                variance = ntk.variance(name)[-1].mean()
                e["predicted_distance"] = float(np.sqrt(variance / sizes[-1]))
                if name in SPIN_SETS:
                    e["ntk_rmse_J"] = float(ntk.rmse(name)[-1])
            entry[name] = e
        summary[key] = entry
    return summary
