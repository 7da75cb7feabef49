"""The Ising experiment (the Ising model experiment of Gerken & Kessel 2024): finite ensembles against the infinite-width prediction.

Inputs are spin configurations of a periodic L×L lattice sampled by Metropolis at the training
temperatures; the target is the nearest-neighbour energy, standardised with the training
statistics. The energy is invariant under rotations (the paper's group C4), reflections,
translations and the global spin flip; ``group`` selects C4, D4 or D4xTxZ2.

Ensembles of MLPs (one hidden layer, several widths) and of CNNs with circular padding (global
average pooling, dense head) in the NTK parametrisation are trained by full-batch gradient descent
on the MSE, with full augmentation over the group and, as a control, without. At a few training
times (log-spaced gradient steps, including initialisation) the runner measures, on the test set
and off the training distribution (uniformly random configurations, configurations at another
temperature, Gaussian "non-spin" lattices):

* the orbit spread and equivariance error of every member and of ensembles of every size in
  ``ensemble_sizes`` (averaged over disjoint sub-ensembles of the member pool);
* the energy RMSE (in units of J) of members and ensembles on the spin-configuration sets;
* the infinite-width ensemble from ``eqlib.ntk`` at the same times: the orbit spread of its mean
  μ_t (zero under full augmentation, the theorem) and, from the covariance Σ_t of each orbit, the
  predicted orbit spread of an M-member ensemble (Lemma B.4: the M-average is μ_t plus a Gaussian
  of covariance Σ_t/M), by Monte Carlo over that Gaussian, plus the simpler scale √(Σ_t(x,x)/M).

Every stage is a cached ``run.step``; training checkpoints itself, so an interrupted run resumes.
``quick`` fits a 2-core CPU in about two minutes; ``full`` is sized for one GPU.
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
from ..ensemble import TrainConfig, ensemble_apply, train_in_chunks
from ..groups import FiniteGroup
from ..breaking import predicted_subensemble_violation
from ..metrics import ensemble_sizes, equivariance_error, orbit_spread, subensemble_statistics
from ..models import Architecture, cnn, mlp
from ..ntk import ensemble_mean_cov
from ..runner import Run, experiment

#: Evaluation sets, in the order the runner stores them. ``test`` is the training distribution.
EVAL_SETS = ("test", "other_T", "random", "gaussian")
#: Sets made of spin configurations, whose energy is a meaningful target (RMSE is reported there).
SPIN_SETS = ("test", "other_T", "random")


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
FULL = IsingConfig(n_train=128, n_eval=128, widths=(128, 512, 2048, 8192), plain_width=2048, members=1000,
                   ensemble_sizes=(1, 3, 10, 30, 100, 300, 1000), cnn_channels=(64, 64), cnn_members=256,
                   cnn_ntk=True, cnn_strategy="auto", cnn_learning_rate=0.75, steps=1000, n_times=9,
                   ntk_samples=1000, ntk_batch=256, member_chunk=250)


# ------------------------------------------------------------------------------------ data

def ising_data(cfg: IsingConfig) -> dict[str, np.ndarray]:
    """Training set and the four evaluation sets; energies standardised with training statistics.

    Returns ``x: (n_train, L, L, 1)``, ``y: (n_train, 1)``, ``x_<set>: (n_eval, L, L, 1)``,
    ``y_<set>: (n_eval, 1)``, ``energy_mean``/``energy_std`` (in J) and the temperature of each
    training sample ``t_train``. Seeds: training data ``seed``, test ``seed+1``, other sets
    ``seed+2 … seed+4``.
    """
    L, temps_train = cfg.size, cfg.train_temperatures
    x, temps = sample_temperatures(cfg.n_train, L, temps_train, cfg.sweeps, cfg.seed, cfg.coupling)
    energy = ising_energy(x, cfg.coupling)
    mean, std = float(energy.mean()), float(energy.std())
    if not std > 0:
        raise ValueError(f"all {cfg.n_train} training energies are equal ({mean}); "
                         "sample more configurations or at a higher temperature")
    sets = {
        "test": sample_temperatures(cfg.n_eval, L, temps_train, cfg.sweeps, cfg.seed + 1, cfg.coupling)[0],
        "other_T": metropolis(cfg.n_eval, cfg.size, cfg.other_temperature, cfg.sweeps, [cfg.seed + 2], cfg.coupling),
        "random": random_configurations(cfg.n_eval, cfg.size, [cfg.seed + 3]),
        "gaussian": gaussian_inputs(cfg.n_eval, cfg.size, [cfg.seed + 4]),
    }

    def target(s):
        return ((ising_energy(s, cfg.coupling) - mean) / std)[:, None].astype(np.float32)

    out = {"x": x, "y": target(x), "t_train": temps, "energy_mean": np.asarray(mean), "energy_std": np.asarray(std)}
    for name, s in sets.items():
        out[f"x_{name}"], out[f"y_{name}"] = s, target(s)
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
    archs = {f"mlp_w{w}": (mlp([w], out=1), cfg.members) for w in cfg.widths}
    conv = cnn(list(cfg.cnn_channels), out=1, pool_after=[False] * len(cfg.cnn_channels), padding="CIRCULAR")
    archs["cnn"] = (conv, cfg.cnn_members)
    return archs


def _orbit_inputs(data: dict, group: FiniteGroup) -> tuple[np.ndarray, list[int]]:
    """The orbits of all evaluation sets stacked: ``(Σ_sets |G|·n, L, L, 1)`` and the count per set."""
    inputs = [data[f"x_{name}"] for name in EVAL_SETS]
    orbit_x = np.concatenate([np.asarray(group.orbit(x)).reshape((-1,) + x.shape[1:]) for x in inputs])
    return orbit_x, [group.order * len(x) for x in inputs]


def _subensemble_metrics(data: dict, name: str) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Per sub-ensemble of means ``(T, S, |G|, n, 1)``: input-averaged orbit spread and, on spin
    sets, the energy RMSE in units of the standardised target, each ``(T, S)``."""

    def statistic(ens: np.ndarray) -> dict[str, np.ndarray]:
        out = {"spread": orbit_spread(ens).mean(-1)}
        if name in SPIN_SETS:
            err = ens[:, :, 0, :, 0] - data[f"y_{name}"][None, None, :, 0]
            out["rmse"] = np.sqrt((err ** 2).mean(-1))
        return out

    return statistic


def orbit_metrics(outputs: np.ndarray, counts: list[int], data: dict, group: FiniteGroup, sizes: np.ndarray,
                  energy_std: float) -> dict[str, np.ndarray]:
    """Orbit spread, equivariance error and RMSE of members and sub-ensembles at every measurement time.

    ``outputs: (T, M, P, 1)`` are member outputs on the stacked orbits of the evaluation sets
    (``P = Σ |G|·n``, split by ``counts``). For ensemble size k the M members are split into
    ``M // k`` disjoint sub-ensembles of consecutive members; their metrics are averaged.
    Returns per set: ``member_spread (T, M)``, ``ensemble_spread``/``ensemble_spread_std (T, K)``,
    ``member_eqerr``/``ensemble_eqerr (T,)``, ``ensemble_orbit_output (T, |G|, n)`` (all M
    members), and on spin sets ``member_rmse (T, M)``, ``ensemble_rmse (T, K)`` in units of J.
    """
    T, M = outputs.shape[:2]
    metrics: dict[str, np.ndarray] = {}
    for name, part in zip(EVAL_SETS, np.split(outputs, np.cumsum(counts)[:-1], axis=2)):
        orbit = part.reshape(T, M, group.order, -1, 1)                                # (T, M, |G|, n, 1)
        metrics[f"member_spread/{name}"] = orbit_spread(orbit).mean(-1)               # (T, M)
        stats = subensemble_statistics(orbit, sizes, _subensemble_metrics(data, name), axis=1,
                                       num_bootstrap=0)                               # blocks on axis 1
        metrics[f"ensemble_spread/{name}"] = stats["spread"].estimate.T                # (T, K)
        metrics[f"ensemble_spread_std/{name}"] = stats["spread"].std.T                 # (T, K)
        full = orbit.mean(1)                                                           # (T, |G|, n, 1)
        metrics[f"member_eqerr/{name}"] = equivariance_error(orbit, group).mean((1, 2))
        metrics[f"ensemble_eqerr/{name}"] = equivariance_error(full, group).mean(1)
        metrics[f"ensemble_orbit_output/{name}"] = full[..., 0]                        # (T, |G|, n)
        if name in SPIN_SETS:
            err = orbit[:, :, 0, :, 0] - data[f"y_{name}"][None, None, :, 0]
            metrics[f"member_rmse/{name}"] = energy_std * np.sqrt((err ** 2).mean(-1))    # (T, M) in J
            metrics[f"ensemble_rmse/{name}"] = energy_std * stats["rmse"].estimate.T      # (T, K) in J
    return metrics


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
    is_mlp = key.startswith("mlp")
    strategy = cfg.mlp_strategy if is_mlp else cfg.cnn_strategy
    learning_rate = cfg.learning_rate if is_mlp else cfg.cnn_learning_rate
    train = TrainConfig(loss="mse", optimizer="sgd", learning_rate=learning_rate, epochs=cfg.steps, strategy=strategy)
    orbit_x, counts = _orbit_inputs(data, group)
    wanted = {int(t) for t in times}

    def record(epoch: int, params) -> dict:
        if epoch not in wanted:
            return {}
        return {"time": np.asarray(epoch),
                "outputs": np.asarray(ensemble_apply(net, params, orbit_x, batch_size=1024, strategy=strategy))}

    outputs, losses = [], []
    for _, history in train_in_chunks(net, x, y, train, members, cfg.member_chunk, seed, run.checkpoint_path,
                                      f"train_{key}", on_epoch_end=record, checkpoint_every=cfg.checkpoint_every,
                                      progress=run.show_progress):
        if not np.array_equal(history["time"], times):
            raise RuntimeError(f"{key}: measured at steps {history['time']}, expected {times}")
        outputs.append(history["outputs"])                                          # (T, m, P, 1)
        losses.append(history["loss"])                                              # (steps, m)
    sizes = ensemble_sizes(cfg.ensemble_sizes, members)
    out = orbit_metrics(np.concatenate(outputs, 1), counts, data, group, sizes, float(data["energy_std"]))
    out.update({"time": times, "loss": np.concatenate(losses, 1), "sizes": sizes, "seed": np.asarray(seed)})
    return out


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
        if name in SPIN_SETS:
            out[f"rmse/{name}"] = energy_std * np.sqrt(sum(rmse_sq) / n)              # (T,) in J
    return out


# ------------------------------------------------------------------------------------- run

@experiment("ising", quick=QUICK, full=FULL)
def run(run: Run, cfg: IsingConfig) -> dict:
    """Ising energy regression: MLP and CNN ensembles with/without full augmentation vs the NTK prediction."""
    group = symmetry_group(cfg.group, cfg.size)
    data = run.step("data", lambda: ising_data(cfg))
    times = measurement_times(cfg.steps, cfg.n_times)
    augmented = augment_full_orbit(data["x"], data["y"], group)
    train_sets = {"aug": (np.asarray(augmented.x), np.asarray(augmented.y)), "plain": (data["x"], data["y"])}
    archs = _architectures(cfg)
    jobs = [(f"mlp_w{w}", "aug") for w in cfg.widths] + [(f"mlp_w{cfg.plain_width}", "plain"),
                                                       ("cnn", "aug"), ("cnn", "plain")]
    if f"mlp_w{cfg.plain_width}" not in archs:
        archs[f"mlp_w{cfg.plain_width}"] = (mlp([cfg.plain_width], out=1), cfg.members)

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

    ``ensemble_*`` refer to the ensemble of all members; ``predicted_ensemble_spread`` is the mean
    input-averaged orbit spread of ``N(μ_t, Σ_t/M)`` draws; ``predicted_distance`` is
    ``√(mean_x Σ_t(x,x)/M)``, the predicted RMS distance of the ensemble from μ_t (at the
    untransformed inputs), measured as ``distance_from_ntk_mean``.
    """
    summary: dict = {"group": group.name, "group_order": group.order,
                     "measurement_times": arrays["times"].tolist(), "energy_std_J": float(arrays["data/energy_std"])}
    for arch_key, mode in jobs:
        key = f"{arch_key}_{mode}"
        ntk_key = f"ntk_{'mlp' if arch_key.startswith('mlp') else 'cnn'}_{mode}"
        has_ntk = f"{ntk_key}/time" in arrays
        sizes = arrays[f"{key}/sizes"]
        entry = {"members": int(sizes[-1]), "member_seed": int(arrays[f"{key}/seed"])}
        for name in EVAL_SETS:
            e = {"member_spread": float(arrays[f"{key}/member_spread/{name}"][-1].mean()),
                 "ensemble_spread": float(arrays[f"{key}/ensemble_spread/{name}"][-1, -1]),
                 "member_eqerr": float(arrays[f"{key}/member_eqerr/{name}"][-1]),
                 "ensemble_eqerr": float(arrays[f"{key}/ensemble_eqerr/{name}"][-1])}
            if name in SPIN_SETS:
                e["member_rmse_J"] = float(arrays[f"{key}/member_rmse/{name}"][-1].mean())
                e["ensemble_rmse_J"] = float(arrays[f"{key}/ensemble_rmse/{name}"][-1, -1])
            if has_ntk:
                ensemble = arrays[f"{key}/ensemble_orbit_output/{name}"][-1][0]             # (n,) at g = e
                mu = arrays[f"{ntk_key}/mean/{name}"][-1][0]
                e["ntk_mean_spread_max"] = float(arrays[f"{ntk_key}/mean_spread/{name}"].max())
                e["predicted_ensemble_spread"] = float(arrays[f"{ntk_key}/predicted_spread/{name}"][-1, -1])
                e["predicted_ensemble_spread_std"] = float(
                    arrays[f"{ntk_key}/predicted_spread_std/{name}"][-1, -1])
                e["distance_from_ntk_mean"] = float(np.sqrt(np.mean((ensemble - mu) ** 2)))
                variance = arrays[f"{ntk_key}/variance/{name}"][-1].mean()
                e["predicted_distance"] = float(np.sqrt(variance / sizes[-1]))
                if name in SPIN_SETS:
                    e["ntk_rmse_J"] = float(arrays[f"{ntk_key}/rmse/{name}"][-1])
            entry[name] = e
        summary[key] = entry
    return summary
