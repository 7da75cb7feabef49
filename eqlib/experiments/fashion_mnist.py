"""FashionMNIST under rotations (Gerken & Kessel 2024, FashionMNIST experiment and appendix): members vs ensembles.

Members are ordinary, non-equivariant CNNs ``cnn([c, 2c, 4c], 10)`` (3×3 convolutions, ReLU, 2×2
average pooling, global average pooling, dense head; standard parametrisation, He-scaled
initialisation). ``c = 36`` gives 119k parameters, the size of the paper's members. They are
trained with **cross-entropy and Adam** on minibatches of ``batch_size`` training images; with
augmentation over a group G every minibatch is expanded inside the step to all |G| rotations of
its images (full augmentation). The control ("none") trains the same members on the same
minibatches without the rotated copies.

**Ensemble prediction = mean of the member logits.** Ensembles of size M are disjoint consecutive
blocks of the member pool (members ``[jM, (j+1)M)``, ``j = 0 … ⌊members/M⌋ − 1``); the runner
reports the mean and standard deviation over the blocks (:func:`eqlib.metrics.subensemble_statistics`).

Measurements, for every trained ensemble:

* **C4 orbit same prediction** (OSP, :func:`eqlib.metrics.orbit_same_prediction`) of every member
  and of ensembles of every size in ``ensemble_sizes``, with its chance level (:func:`chance_osp`)
  and the orbit spread of the logits (:func:`spread_by_ensemble_size`), on three data sets: the
  FashionMNIST test set (``test``), the MNIST test set (``mnist``, off the data manifold) and
  noise images (``noise``, far off it: i.i.d. uniform values in [0, 1] on 4×4-pixel blocks, see
  :func:`block_noise`). Rotations by multiples of 90° are exact (``rot90``).
* accuracy on the test set, upright and over all four rotations;
* the same OSP, orbit spread and accuracy after every epoch (and at initialisation) on a fixed subset of
  ``n_epoch_eval`` images per set — the theory says equivariance holds at all training times;
* for the ensembles of width ``cont_width`` trained without augmentation and with C4, C8 and C16
  augmentation: predictions under ``n_angles`` equally spaced rotations of SO(2), i.e. agreement
  with the unrotated prediction against the angle, and the SO(2)-OSP against κ, the covering radius
  of the augmentation group (:func:`covering_kappa`). Rotations by other angles than multiples of
  90° use **bilinear interpolation about the image centre with zeros outside**
  (:func:`eqlib.groups.rotate_image`) — in training (C8, C16) and in evaluation alike.

``quick`` fits a 2-core CPU in a few minutes (a training subset, 8 small members, 2 epochs);
``full`` is the paper's scale for one GPU (the whole training set, 100 members of 119k
parameters, 10 epochs; members trained vmapped in one program, sharded over several GPUs):
``python -m eqlib run fashion_mnist --preset full``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..data.fashion_mnist import load_fashion_mnist
from ..data.mnist import load_mnist
from ..data.noise import noise_images
from ..ensemble import TrainConfig, ensemble_apply, init_ensemble, train_ensemble
from ..groups import CyclicRotations, SampledRotations, Transformations, get_group
from ..metrics import (accuracy, ensemble_sizes, orbit_outputs, orbit_same_prediction, orbit_spread,
                       subensemble_statistics)
from ..models import Architecture, cnn
from ..runner import Run, experiment

__all__ = [
    "EVAL_SETS",
    "AUGMENTATIONS",
    "FashionMNISTConfig",
    "QUICK",
    "FULL",
    "PAPER",
    "member_architecture",
    "ensemble_keys",
    "covering_kappa",
    "osp_by_ensemble_size",
    "agreement_by_angle",
    "chance_osp",
    "spread_by_ensemble_size",
    "block_noise",
]

#: Evaluation sets, in the order the runner stores them: on the data manifold, then off it.
EVAL_SETS = ("test", "mnist", "noise")
#: Training modes: no augmentation (the control) or full augmentation over C_k.
AUGMENTATIONS = ("none", "C4", "C8", "C16")

#: The authors' FashionMNIST figures, for the side-by-side table. NOT from the ICML paper's text:
#: all come from the authors' replies in the public OpenReview discussion of the earlier ICLR 2024
#: submission of this work; the steerable-CNN comparison was left out of the final paper.
PAPER = {
    "ensemble_accuracy": 0.929,          # 100 members × ~120k parameters, validation accuracy
    "ensemble_members": 100,
    "member_params": 120_000,
    "ensemble_vs_canonicalised": (0.91, 0.87),
    "steerable_invariant_ensembles": (0.853, 0.863),   # C4-invariant steerable CNNs, 51k–184k params
}


@dataclass(frozen=True)
class FashionMNISTConfig:
    """Settings of the FashionMNIST experiment (see the module docstring)."""

    seed: int = 0
    n_train: int = 2048                          # training images (a seeded random subset; 60000 = all)
    n_eval: int = 500                            # images per evaluation set (test, mnist, noise)
    n_epoch_eval: int = 128                      # images per set for the OSP-over-epochs curve
    widths: tuple[int, ...] = (8, 16)            # c: members are cnn([c, 2c, 4c], 10)
    members: int = 8                             # members per (width, augmentation)
    ensemble_sizes: tuple[int, ...] = (1, 2, 4, 8)
    epochs: int = 2
    batch_size: int = 16                         # training images per step (×|G| with augmentation)
    learning_rate: float = 1e-2                  # Adam
    parametrization: str = "standard"
    cont_width: int = 8                          # width of the C4/C8/C16 comparison (must be in widths)
    cont_groups: tuple[str, ...] = ("C8", "C16")  # extra augmentation groups, trained at cont_width
    cont_members: int = 4                        # members per ensemble in the SO(2) comparison
    n_angles: int = 64                           # SO(2) sampled at 2πk/n_angles
    n_cont_eval: int = 128                       # images per set in the SO(2) evaluation
    cont_sets: tuple[str, ...] = ("test",)       # sets evaluated under SO(2)
    noise_block: int = 4                         # noise: uniform values on 4×4-pixel blocks (1 = pixel noise)
    eval_batch: int = 2048                       # images per forward pass in evaluation
    checkpoint_every: int = 1

    def __post_init__(self):
        if self.cont_width not in self.widths:
            raise ValueError(f"cont_width {self.cont_width} must be one of widths {self.widths}")
        if not 1 <= self.cont_members <= self.members:
            raise ValueError(f"cont_members must be in 1..members={self.members}, got {self.cont_members}")
        bad = [g for g in self.cont_groups if g not in AUGMENTATIONS[2:]]
        if bad:
            raise ValueError(f"cont_groups must be among {AUGMENTATIONS[2:]}, got {bad}")
        bad = [s for s in self.cont_sets if s not in EVAL_SETS]
        if bad:
            raise ValueError(f"cont_sets must be among {EVAL_SETS}, got {bad}")
        if self.noise_block < 1 or 28 % self.noise_block:
            raise ValueError(f"noise_block must divide 28, got {self.noise_block}")
        if self.n_epoch_eval > self.n_eval:
            raise ValueError(f"n_epoch_eval ({self.n_epoch_eval}) must not exceed n_eval ({self.n_eval})")
        if self.n_cont_eval > self.n_eval:
            raise ValueError(f"n_cont_eval ({self.n_cont_eval}) must not exceed n_eval ({self.n_eval})")


QUICK = FashionMNISTConfig()
FULL = FashionMNISTConfig(n_train=60_000, n_eval=10_000, n_epoch_eval=1000, widths=(18, 36), members=100,
                          ensemble_sizes=(1, 2, 5, 10, 20, 50, 100), epochs=10, batch_size=64,
                          learning_rate=1e-3, cont_width=36,
                          cont_members=20, n_cont_eval=1000, cont_sets=EVAL_SETS, eval_batch=512)


# ------------------------------------------------------------------------------- helpers

def member_architecture(width: int, parametrization: str = "standard") -> Architecture:
    """The member CNN: ``cnn([c, 2c, 4c], 10)``; c = 36 has 119k parameters on 28×28×1 images."""
    if width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    return cnn([width, 2 * width, 4 * width], 10, parametrization=parametrization)


def ensemble_keys(cfg: FashionMNISTConfig) -> list[tuple[str, int, str, int]]:
    """``(key, width, augmentation, members)`` of every trained ensemble, e.g. ``("c16_C4", 16, "C4", 8)``."""
    jobs = [(f"c{w}_{aug}", w, aug, cfg.members) for w in cfg.widths for aug in ("C4", "none")]
    jobs += [(f"c{cfg.cont_width}_{g}", cfg.cont_width, g, cfg.cont_members) for g in cfg.cont_groups]
    return jobs


def covering_kappa(k: int) -> float:
    """κ of C_k in SO(2): every rotation lies within ``2 sin(π/2k)`` (operator norm) of an element of C_k.

    ``‖R(α) − R(β)‖ = 2|sin((α−β)/2)|`` and the largest gap to the nearest multiple of 2π/k is π/k.
    ``k = 1`` (no augmentation) gives κ = 2, the diameter of SO(2).
    """
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    return 2 * math.sin(math.pi / (2 * k))


def _check_logits_and_sizes(logits_on_orbit, sizes: Sequence[int]) -> tuple[np.ndarray, list[int]]:
    logits = np.asarray(logits_on_orbit)
    if logits.ndim != 4:
        raise ValueError(f"logits_on_orbit must be (M, |G|, n, C), got shape {logits.shape}")
    sizes = [int(k) for k in sizes]
    if not sizes or min(sizes) < 1 or max(sizes) > logits.shape[0]:
        raise ValueError(f"ensemble sizes must lie in 1..{logits.shape[0]}, got {sizes}")
    return logits, sizes


def osp_by_ensemble_size(logits_on_orbit: np.ndarray, sizes: Sequence[int], labels: np.ndarray | None = None) -> dict:
    """OSP (and accuracy) of members and of ensembles of each size in ``sizes``.

    ``logits_on_orbit: (M, |G|, n, C)`` member logits on the orbit of ``n`` inputs (element 0 the
    identity). Ensembles of size k are the disjoint blocks ``[jk, (j+1)k)``; their prediction is
    the mean of the member logits. Returns

    * ``member_osp``, ``member_consistent``: ``(M,)`` — mean OSP count, share of consistent orbits;
    * ``ensemble_osp``, ``ensemble_osp_std``, ``ensemble_consistent``: ``(K,)`` — mean / std over blocks;
    * ``member_hist``: ``(M, |G|)`` and ``ensemble_hist``: ``(|G|,)`` — share of inputs with OSP
      count 1 … |G| (the ensemble: all M members);
    * ``member_chance``: ``(M,)`` and ``ensemble_chance``: ``(K,)`` — the OSP that independent
      guesses with the same class frequencies would reach, ``1 + (|G|−1) Σ_c p_c²`` with ``p_c``
      the share of orbit predictions in class c (the chance-level lemma of the equivariance chapter);
      a model that puts every input into one class has chance level |G|;
    * with ``labels: (n,)``: ``member_acc``, ``member_acc_orbit`` ``(M,)`` and ``ensemble_acc``,
      ``ensemble_acc_orbit`` ``(K,)`` — accuracy on the upright inputs and over the whole orbit.
    """
    logits, sizes = _check_logits_and_sizes(logits_on_orbit, sizes)
    M, order = logits.shape[:2]
    member = orbit_same_prediction(logits)
    out = {"member_osp": member.mean, "member_consistent": member.consistent, "member_chance": chance_osp(logits),
           "member_hist": np.stack([(member.counts == c).mean(-1) for c in range(1, order + 1)], -1)}

    def statistic(ens: np.ndarray) -> dict[str, np.ndarray]:                  # (blocks, |G|, n, C)
        osp = orbit_same_prediction(ens)
        values = {"osp": osp.mean, "consistent": osp.consistent, "chance": chance_osp(ens)}
        if labels is not None:
            values["acc"] = accuracy(ens[:, 0], labels)
            values["acc_orbit"] = accuracy(ens.reshape(len(ens), -1, ens.shape[-1]), np.tile(labels, order))
        return values                                                         # each (blocks,)

    stats = subensemble_statistics(logits, sizes, statistic, num_bootstrap=0)
    out.update({f"ensemble_{k}": v.estimate for k, v in stats.items()})       # mean over blocks
    out["ensemble_osp_std"] = stats["osp"].std                                # std over blocks
    full = orbit_same_prediction(logits.mean(0))
    out["ensemble_hist"] = np.asarray([(full.counts == c).mean() for c in range(1, order + 1)])
    if labels is not None:
        out["member_acc"] = accuracy(logits[:, 0], labels)
        out["member_acc_orbit"] = accuracy(logits.reshape(M, -1, logits.shape[-1]), np.tile(labels, order))
    return out


def spread_by_ensemble_size(logits_on_orbit: np.ndarray, sizes: Sequence[int]) -> dict:
    """Orbit spread of the logits of members and of ensembles of each size (disjoint blocks).

    ``logits_on_orbit: (M, |G|, n, C)``. Returns ``member_spread: (M,)`` — the root mean square over
    inputs of :func:`eqlib.metrics.orbit_spread` (zero exactly for an invariant function) — and
    ``ensemble_spread``, ``ensemble_spread_std: (K,)``, the root mean square over the blocks of
    each size of the same quantity, and its standard deviation over blocks. Unlike the OSP it does
    not depend on where the decision boundaries lie. If the members deviate independently from an
    invariant mean, the squared spread of an M-average is the members' mean squared spread divided
    by M, so ``ensemble_spread / rms(member_spread) ≈ 1/√M``; a non-invariant mean makes it level off.
    """
    logits, sizes = _check_logits_and_sizes(logits_on_orbit, sizes)

    def rms_spread(ens: np.ndarray) -> np.ndarray:                            # (blocks, |G|, n, C) -> (blocks,)
        return np.sqrt((orbit_spread(ens) ** 2).mean(-1))

    stats = subensemble_statistics(logits, sizes, rms_spread, reduce="rms", num_bootstrap=0)
    return {"member_spread": rms_spread(logits), "ensemble_spread": stats.estimate, "ensemble_spread_std": stats.std}


def chance_osp(logits_on_orbit: np.ndarray) -> np.ndarray:
    """Chance-level OSP ``1 + (|G|−1) Σ_c p_c²`` from the predicted-class shares: ``(..., |G|, n, C) -> (...)``.

    ``p_c`` is the share of all orbit predictions (every g and input) in class c: what a classifier
    that guesses independently on every orbit element with these frequencies would reach.
    """
    logits = np.asarray(logits_on_orbit)
    if logits.ndim < 3:
        raise ValueError(f"chance_osp expects logits (..., |G|, n, C), got shape {logits.shape}")
    order, classes = logits.shape[-3], logits.shape[-1]
    pred = logits.argmax(-1).reshape(logits.shape[:-3] + (-1,))
    shares = np.stack([(pred == c).mean(-1) for c in range(classes)], -1)
    return 1 + (order - 1) * (shares ** 2).sum(-1)


def agreement_by_angle(logits_on_orbit: np.ndarray) -> np.ndarray:
    """Share of inputs predicted as at angle 0: ``(..., A, n, C) -> (..., A)`` (1 at index 0).

    Averaged over the A angles this is the OSP fraction ``OSP / A`` over the sampled rotations.
    """
    pred = np.asarray(logits_on_orbit).argmax(-1)                  # (..., A, n)
    return (pred == pred[..., :1, :]).mean(-1)


# ------------------------------------------------------------------------------------ data

def select_data(cfg: FashionMNISTConfig) -> dict[str, np.ndarray]:
    """Indices of the training subset and of the evaluation images (seeded permutations).

    Returns ``train_idx: (n_train,)`` into the FashionMNIST training set, ``test_idx`` and
    ``mnist_idx: (n_eval,)`` into the two test sets, and the class counts of the training subset.
    Images are reloaded (checksummed) from these indices, so the step stays small.
    """
    rng = np.random.default_rng(cfg.seed)
    if not 1 <= cfg.n_train <= 60_000 or not 1 <= cfg.n_eval <= 10_000:
        raise ValueError(f"need 1 ≤ n_train ≤ 60000 and 1 ≤ n_eval ≤ 10000, got {cfg.n_train}, {cfg.n_eval}")
    train_idx = np.sort(rng.permutation(60_000)[: cfg.n_train])
    test_idx = rng.permutation(10_000)[: cfg.n_eval]
    mnist_idx = rng.permutation(10_000)[: cfg.n_eval]
    _, y = load_fashion_mnist("train")
    return {"train_idx": train_idx, "test_idx": test_idx, "mnist_idx": mnist_idx,
            "train_class_counts": np.bincount(y[train_idx], minlength=10)}


def load_sets(cfg: FashionMNISTConfig, idx: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Images ``(n, 28, 28, 1)`` in [0, 1]: ``x_train``, ``y_train`` and ``x_<set>`` for EVAL_SETS, ``y_test``."""
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    xm, ym = load_mnist("test")
    return {"x_train": x[idx["train_idx"]], "y_train": y[idx["train_idx"]],
            "x_test": xt[idx["test_idx"]], "y_test": yt[idx["test_idx"]],
            "x_mnist": xm[idx["mnist_idx"]], "y_mnist": ym[idx["mnist_idx"]],
            "x_noise": block_noise(cfg.n_eval, cfg.noise_block, seed=cfg.seed + 1)}


def block_noise(n: int, block: int, seed: int = 0) -> np.ndarray:
    """``(n, 28, 28, 1)`` noise: i.i.d. uniform [0, 1] values on a (28/block)² grid, each a block×block square.

    ``block = 1`` is pixel noise. Coarser noise has structure at the scale the CNN sees; pixel noise
    is averaged away by the convolutions and the global pooling, and every member then maps all
    noise images (and all their rotations) to one class — an OSP of 4 that says nothing.
    Multiples of 90° map the block grid onto itself, so the C4 orbit is exact.
    """
    if block < 1 or 28 % block:
        raise ValueError(f"block must divide 28, got {block}")
    coarse = noise_images(n, (28 // block, 28 // block, 1), kind="uniform", seed=seed)
    return np.repeat(np.repeat(coarse, block, axis=1), block, axis=2)


# ------------------------------------------------------------------------------ measuring

def _orbit_logits(net, params, x: np.ndarray, group: Transformations, batch: int) -> np.ndarray:
    """Member logits on the orbit: ``x: (n, ...)`` → ``(M, |G|, n, 10)``, ``batch`` images per call."""
    return orbit_outputs(lambda z: ensemble_apply(net, params, z, batch_size=batch), x, group,
                         inputs_per_call=max(1, batch // group.order))


def _epoch_callback(net, sets: dict[str, np.ndarray], y_test: np.ndarray, batch: int) -> Callable:
    """``on_epoch_end``: C4-OSP of members and of the whole ensemble, accuracy, on fixed subsets."""
    c4 = CyclicRotations(4)

    def measure(epoch: int, params) -> dict:
        out = {}
        for name, x in sets.items():
            logits = _orbit_logits(net, params, x, c4, batch)                 # (M, 4, n, 10)
            member, ens = orbit_same_prediction(logits), orbit_same_prediction(logits.mean(0))
            out[f"member_osp/{name}"] = member.mean                           # (M,)
            out[f"ensemble_osp/{name}"] = ens.mean                            # ()
            out[f"ensemble_consistent/{name}"] = ens.consistent
            out[f"member_spread/{name}"] = np.sqrt((orbit_spread(logits) ** 2).mean(-1))        # (M,) rms over inputs
            out[f"ensemble_spread/{name}"] = np.sqrt((orbit_spread(logits.mean(0)) ** 2).mean())
            if name == "test":
                out["member_acc/test"] = accuracy(logits[:, 0], y_test)       # (M,)
                out["ensemble_acc/test"] = accuracy(logits.mean(0)[0], y_test)
        return out

    return measure


def train_and_measure(run: Run, cfg: FashionMNISTConfig, data: dict, key: str, width: int, aug: str,
                      members: int) -> dict[str, np.ndarray]:
    """Train one ensemble (resumable per epoch) and measure it; arrays as documented in the module."""
    arch = member_architecture(width, cfg.parametrization)
    net = arch.flax()
    train = TrainConfig(loss="cross_entropy", optimizer="adam", learning_rate=cfg.learning_rate,
                        epochs=cfg.epochs, batch_size=cfg.batch_size)
    group = None if aug == "none" else get_group(aug)
    state = init_ensemble(net, data["x_train"][:1], members, seed=cfg.seed, config=train)
    epoch_sets = {name: data[f"x_{name}"][: cfg.n_epoch_eval] for name in EVAL_SETS}
    callback = _epoch_callback(net, epoch_sets, data["y_test"][: cfg.n_epoch_eval], cfg.eval_batch)
    state, history = train_ensemble(net, state, data["x_train"], data["y_train"], train, seed=cfg.seed, group=group,
                                    on_epoch_end=callback, checkpoint=run.checkpoint_path(f"train_{key}"),
                                    checkpoint_every=cfg.checkpoint_every, progress=run.show_progress)
    out = {"loss": history["loss"], "epochs": history["epoch"]}                          # (epochs, M), (epochs+1,)
    out.update({f"epoch/{k}": v for k, v in history.items() if k not in ("loss", "epoch")})   # (epochs+1, ...)
    sizes = ensemble_sizes(cfg.ensemble_sizes, members)
    out["sizes"] = sizes
    c4 = CyclicRotations(4)
    for name in EVAL_SETS:
        logits = _orbit_logits(net, state.params, data[f"x_{name}"], c4, cfg.eval_batch)
        stats = osp_by_ensemble_size(logits, sizes, data["y_test"] if name == "test" else None)
        stats.update(spread_by_ensemble_size(logits, sizes))
        out.update({f"{k}/{name}": v for k, v in stats.items()})
    if width == cfg.cont_width:
        so2 = SampledRotations.uniform(cfg.n_angles)
        params = _first_members(state.params, cfg.cont_members)
        for name in cfg.cont_sets:
            x = data[f"x_{name}"][: cfg.n_cont_eval]
            logits = _orbit_logits(net, params, x, so2, cfg.eval_batch)                               # (M', A, n, 10)
            out[f"so2/member_agreement/{name}"] = agreement_by_angle(logits)                         # (M', A)
            out[f"so2/ensemble_agreement/{name}"] = agreement_by_angle(logits.mean(0))               # (A,)
            if name == "test":
                labels = data["y_test"][: cfg.n_cont_eval]
                out["so2/member_acc/test"] = (logits.argmax(-1) == labels).mean(-1)                  # (M', A)
                out["so2/ensemble_acc/test"] = (logits.mean(0).argmax(-1) == labels).mean(-1)        # (A,)
    return out


def _first_members(params, k: int):
    import jax

    return jax.tree_util.tree_map(lambda leaf: leaf[:k], params)


# ------------------------------------------------------------------------------------- run

@experiment("fashion_mnist", quick=QUICK, full=FULL)
def run(run: Run, cfg: FashionMNISTConfig) -> dict:
    """FashionMNIST, C4 rotations: OSP of CNN members vs ensembles, on/off the data manifold; C4/C8/C16 vs SO(2)."""
    idx = run.step("data", lambda: select_data(cfg))
    data = load_sets(cfg, idx)
    arrays: dict[str, np.ndarray] = {"angles": SampledRotations.uniform(cfg.n_angles).angles,
                                     "train_class_counts": idx["train_class_counts"]}
    jobs = ensemble_keys(cfg)
    for i, (key, width, aug, members) in enumerate(jobs):
        run.log(f"ensemble {i + 1}/{len(jobs)}: {members} members, width c={width}, augmentation {aug}")
        result = run.step(f"ensemble/{key}", lambda: train_and_measure(run, cfg, data, key, width, aug, members))
        arrays.update({f"{key}/{k}": v for k, v in result.items()})
    return {"arrays": arrays, "summary": _summary(cfg, arrays, jobs)}


def _summary(cfg: FashionMNISTConfig, arrays: dict, jobs) -> dict:
    """Final numbers per ensemble and set, parameter counts, the SO(2) comparison against κ."""
    summary: dict = {
        "ensemble_prediction": "mean of member logits",
        "training": f"cross-entropy, Adam (lr {cfg.learning_rate}), batch {cfg.batch_size} images × |G| rotations",
        "interpolation": "bilinear about the image centre, zeros outside (angles not multiples of 90°)",
        "params": {f"c{w}": member_architecture(w, cfg.parametrization).num_params((28, 28, 1)) for w in cfg.widths},
    }
    for key, width, aug, members in jobs:
        entry: dict = {"width": width, "augmentation": aug, "members": members}
        for name in EVAL_SETS:
            e = {"member_osp": float(arrays[f"{key}/member_osp/{name}"].mean()),
                 "ensemble_osp": float(arrays[f"{key}/ensemble_osp/{name}"][-1]),
                 "member_consistent": float(arrays[f"{key}/member_consistent/{name}"].mean()),
                 "ensemble_consistent": float(arrays[f"{key}/ensemble_consistent/{name}"][-1]),
                 "member_spread": float(np.sqrt((arrays[f"{key}/member_spread/{name}"] ** 2).mean())),
                 "ensemble_spread": float(arrays[f"{key}/ensemble_spread/{name}"][-1]),
                 "member_chance": float(arrays[f"{key}/member_chance/{name}"].mean()),
                 "ensemble_chance": float(arrays[f"{key}/ensemble_chance/{name}"][-1])}
            e["member_osp_fraction"], e["ensemble_osp_fraction"] = e["member_osp"] / 4, e["ensemble_osp"] / 4
            entry[name] = e
        entry["member_acc"] = float(arrays[f"{key}/member_acc/test"].mean())
        entry["ensemble_acc"] = float(arrays[f"{key}/ensemble_acc/test"][-1])
        entry["member_acc_rotated"] = float(arrays[f"{key}/member_acc_orbit/test"].mean())
        entry["ensemble_acc_rotated"] = float(arrays[f"{key}/ensemble_acc_orbit/test"][-1])
        if width == cfg.cont_width:
            k = 1 if aug == "none" else int(aug[1:])
            so2 = {"kappa": covering_kappa(k)}
            for name in cfg.cont_sets:
                so2[name] = {"member_osp_fraction": float(arrays[f"{key}/so2/member_agreement/{name}"].mean()),
                             "ensemble_osp_fraction": float(arrays[f"{key}/so2/ensemble_agreement/{name}"].mean())}
            entry["so2"] = so2
        summary[key] = entry
    return summary
