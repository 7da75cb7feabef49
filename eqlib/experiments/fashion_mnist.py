"""FashionMNIST under rotations (Gerken & Kessel 2024, FashionMNIST experiment and appendix): members vs ensembles.

Members are ordinary, non-equivariant CNNs ``cnn([c, 2c, 4c], 10, head=head)`` (3×3 convolutions,
SAME padding, ReLU, 2×2 average pooling after the first two, then a dense read-out of the
flattened 7×7×4c feature map (``head="flatten"``, the default) or of its global average
(``head="gap"``); standard parametrisation, He-scaled initialisation). They are trained with
**cross-entropy and Adam** on minibatches of ``batch_size`` training images; with augmentation
over a group G every minibatch is expanded inside the step to all |G| rotations of its images
(full augmentation). The control ("none") trains the same members (same initial parameters, same
minibatches) without the rotated copies.

**Ensemble prediction = mean of the member logits.** Ensembles of size M are disjoint consecutive
blocks of the member pool (members ``[jM, (j+1)M)``); the runner reports the mean and standard
deviation over the blocks (:func:`eqlib.metrics.subensemble_statistics`).

Measurements, for every trained ensemble, on three sets: the FashionMNIST test set (``test``), the
MNIST test set (``mnist``, off the data manifold) and noise images (``noise``, far off it: i.i.d.
uniform values in [0, 1] on 4×4-pixel blocks, see :func:`block_noise`); rotations by multiples of
90° are exact (``rot90``):

* the member logits on the C4 orbit of every evaluation image, stored as float16
  (``<key>/logits/<set>: (M, 4, n_eval, 10)``); **every statistic below is computed from these
  rounded logits**, so a chapter can recompute any of them from the stored arrays;
* members against the whole ensemble with 95 % jackknife intervals over members
  (:func:`orbit_statistics`, :func:`eqlib.metrics.member_vs_ensemble`): the OSP, the symmetric
  orbit KL (:func:`eqlib.metrics.orbit_symmetric_kl`), the relative orbit spread of the logits
  (:func:`eqlib.metrics.relative_orbit_spread`) and, on ``test``, the accuracy upright and over
  the orbit (``<key>/interval/<stat>/<set>: (3, 3)``), plus the upright accuracy on
  ``n_acc_eval`` test images (``<key>/interval/acc_full/test``);
* as functions of the ensemble size: OSP, consistency and chance level
  (:func:`osp_by_ensemble_size`), orbit spread (:func:`spread_by_ensemble_size`), KL and relative
  spread (:func:`continuous_by_ensemble_size`);
* the same OSP, spreads, KL and accuracy after every epoch (and at initialisation) on a fixed
  subset of ``n_epoch_eval`` images per set — the theory says equivariance holds at all times;
* the loss of every member at every step of the first epoch (``<key>/first_epoch_step_loss:
  (M, steps)``): :func:`eqlib.ensemble.replay_steps` recomputes it, which proves a stored run
  matches the code;
* for the ensembles of width ``cont_width`` trained without augmentation and with C4, C8 and C16
  augmentation (the first ``cont_members`` members): logits under ``n_angles`` equally spaced
  rotations of SO(2) (``<key>/so2/logits/<set>``), agreement with the unrotated prediction
  against the angle, and SO(2) OSP, KL and relative spread with intervals, against κ, the
  covering radius of the augmentation group (:func:`covering_kappa`). Rotations by other angles
  than multiples of 90° use **bilinear interpolation about the image centre with zeros outside**
  (:func:`eqlib.groups.rotate_image`) — in training (C8, C16) and in evaluation alike.

Presets (timings in ``benchmarks/fashion_mnist_settings.py``): ``quick`` runs live in the book on a
2-core CPU in about three and a half minutes; ``reference`` is the stored CPU run (the whole
training set, 16 members; ``python -m eqlib run fashion_mnist --preset reference --store``);
``full`` is the paper's scale for a GPU (100 members, 10 epochs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..data.fashion_mnist import load_fashion_mnist
from ..data.mnist import load_mnist
from ..data.noise import noise_images
from ..ensemble import TrainConfig, ensemble_apply
from ..groups import CyclicRotations, SampledRotations, Transformations, get_group
from ..metrics import (accuracy, ensemble_sizes, member_vs_ensemble, orbit_outputs, orbit_same_prediction,
                       orbit_spread, orbit_symmetric_kl, relative_orbit_spread, subensemble_statistics)
from ..models import Architecture, cnn
from ..runner import Run, experiment

__all__ = [
    "EVAL_SETS",
    "AUGMENTATIONS",
    "FashionMNISTConfig",
    "QUICK",
    "REFERENCE",
    "FULL",
    "PAPER",
    "STATISTICS",
    "train_config",
    "orbit_statistics",
    "intervals_table",
    "continuous_by_ensemble_size",
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
    n_train: int = 8192                          # training images (a seeded random subset; 60000 = all)
    n_eval: int = 500                            # images per evaluation set (test, mnist, noise)
    n_acc_eval: int = 10_000                     # upright test images for the accuracy (first of a permutation)
    n_epoch_eval: int = 128                      # images per set for the OSP-over-epochs curve
    widths: tuple[int, ...] = (8,)               # c: members are cnn([c, 2c, 4c], 10)
    head: str = "flatten"                        # read-out of the member CNN: "flatten" or "gap"
    members: int = 8                             # members per (width, augmentation)
    ensemble_sizes: tuple[int, ...] = (1, 2, 4, 8)
    epochs: int = 2
    batch_size: int = 32                         # training images per step (×|G| with augmentation)
    learning_rate: float = 3e-3                  # Adam
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
        if self.cont_groups and self.cont_width not in self.widths:
            raise ValueError(f"cont_width {self.cont_width} must be one of widths {self.widths}")
        if self.head not in ("flatten", "gap"):
            raise ValueError(f"head must be 'flatten' or 'gap', got {self.head!r}")
        if self.members < 2:
            raise ValueError(f"members must be at least 2 (members against ensemble), got {self.members}")
        if not 2 <= self.cont_members <= self.members:
            raise ValueError(f"cont_members must be in 2..members={self.members}, got {self.cont_members}")
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
        if not self.n_eval <= self.n_acc_eval <= 10_000:
            raise ValueError(f"need n_eval ≤ n_acc_eval ≤ 10000, got {self.n_eval} and {self.n_acc_eval}")


#: Runs live in the chapter on a 2-core CPU (see benchmarks/fashion_mnist_settings.py).
QUICK = FashionMNISTConfig()
#: The stored CPU reference run (≈ 35–40 min on 2 idle cores): the whole training set, 16 members.
#: Members c = 16 (55k parameters), 2 epochs of batches of 32 (3,750 steps); the SO(2) arms are
#: left out (C8 and C16 members cost 2× and 4× a C4 member: they would triple the run).
REFERENCE = FashionMNISTConfig(n_train=60_000, widths=(16,), members=16, ensemble_sizes=(1, 2, 4, 8, 16),
                               epochs=2, cont_width=16, cont_groups=())
#: The paper's scale, for a GPU.
FULL = FashionMNISTConfig(n_train=60_000, n_eval=10_000, n_epoch_eval=1000, widths=(16, 24), members=100,
                          ensemble_sizes=(1, 2, 5, 10, 20, 50, 100), epochs=10, batch_size=64,
                          learning_rate=1e-3, cont_width=24,
                          cont_members=20, n_cont_eval=1000, cont_sets=EVAL_SETS, eval_batch=512)

#: The members-against-ensemble statistics, each mapping logits on an orbit ``(M, |G|, n, C)`` to
#: one value per member ``(M,)``: mean OSP count, mean symmetric orbit KL (nats), mean relative
#: orbit spread of the centred logits.
STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "osp": lambda logits: orbit_same_prediction(logits).mean,
    "kl": lambda logits: orbit_symmetric_kl(logits).mean(-1),
    "rel_spread": lambda logits: relative_orbit_spread(logits).mean(-1),
}
#: Rows and columns of a stored interval array ``(3, 3)``.
INTERVAL_ROWS = ("member", "ensemble", "difference")
INTERVAL_COLS = ("estimate", "low", "high")


# ------------------------------------------------------------------------------- helpers

def member_architecture(width: int, parametrization: str = "standard", head: str = "flatten") -> Architecture:
    """The member CNN: ``cnn([c, 2c, 4c], 10, head=head)`` on 28×28×1 images.

    ``head="flatten"`` (the default): the 7×7×4c feature map is flattened into the dense read-out
    (c = 16: 55k parameters, c = 24: 99k); ``head="gap"``: global average pooling first (c = 36: 119k).
    """
    if width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    return cnn([width, 2 * width, 4 * width], 10, parametrization=parametrization, head=head)


def train_config(cfg: FashionMNISTConfig) -> TrainConfig:
    """How every member is trained: cross-entropy, Adam at ``learning_rate``, ``batch_size`` images per step."""
    return TrainConfig(loss="cross_entropy", optimizer="adam", learning_rate=cfg.learning_rate,
                       epochs=cfg.epochs, batch_size=cfg.batch_size)


def orbit_statistics(logits_on_orbit: np.ndarray, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Members against the ensemble (mean logits) with 95 % jackknife intervals over the members.

    ``logits_on_orbit: (M, |G|, n, C)``, element 0 of the orbit the identity. For each statistic of
    :data:`STATISTICS` (``"osp"``, ``"kl"``, ``"rel_spread"``) and, with ``labels: (n,)``, for the
    accuracy on the upright inputs (``"acc"``) and over the whole orbit (``"acc_orbit"``), returns a
    ``(3, 3)`` array: rows ``member`` (mean over members), ``ensemble`` (the statistic of the
    M-member mean), ``difference`` (ensemble − member); columns ``estimate, low, high``
    (:func:`eqlib.metrics.member_vs_ensemble`: delete-one jackknife over the members).
    """
    logits = np.asarray(logits_on_orbit, dtype=np.float32)
    if logits.ndim != 4:
        raise ValueError(f"logits_on_orbit must be (M, |G|, n, C), got shape {logits.shape}")
    stats = dict(STATISTICS)
    if labels is not None:
        labels = np.asarray(labels)
        order = logits.shape[1]
        stats["acc"] = lambda l: accuracy(l[:, 0], labels)
        stats["acc_orbit"] = lambda l: accuracy(l.reshape(len(l), -1, l.shape[-1]), np.tile(labels, order))
    out = {}
    for name, statistic in stats.items():
        result = member_vs_ensemble(logits, statistic)
        out[name] = np.asarray([[float(result[r].estimate), float(result[r].low), float(result[r].high)]
                                for r in INTERVAL_ROWS])
    return out


def intervals_table(intervals: dict[str, np.ndarray], fmt: str = "{:.3f}") -> dict[str, dict[str, str]]:
    """``{statistic: {row: "estimate [low, high]"}}`` from :func:`orbit_statistics` arrays, for tables."""
    return {name: {row: f"{fmt.format(a[i, 0])} [{fmt.format(a[i, 1])}, {fmt.format(a[i, 2])}]"
                   for i, row in enumerate(INTERVAL_ROWS)} for name, a in intervals.items()}


def continuous_by_ensemble_size(logits_on_orbit: np.ndarray, sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """Symmetric orbit KL and relative orbit spread of members and of ensembles of each size.

    ``logits_on_orbit: (M, |G|, n, C)``; ensembles of size k are the disjoint blocks of k
    consecutive members (mean logits). Returns ``member_<s>: (M,)`` and ``ensemble_<s>``,
    ``ensemble_<s>_std: (K,)`` (mean and std over the blocks) for ``s`` in ``kl``, ``rel_spread``.
    """
    logits, sizes = _check_logits_and_sizes(logits_on_orbit, sizes)
    logits = logits.astype(np.float32)
    names = ("kl", "rel_spread")

    def statistic(ens: np.ndarray) -> dict[str, np.ndarray]:
        return {k: STATISTICS[k](ens) for k in names}

    stats = subensemble_statistics(logits, sizes, statistic, num_bootstrap=0)
    out = {}
    for k in names:
        out[f"member_{k}"] = STATISTICS[k](logits)
        out[f"ensemble_{k}"] = stats[k].estimate
        out[f"ensemble_{k}_std"] = stats[k].std
    return out


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
    ``mnist_idx: (n_eval,)`` into the two test sets, ``acc_idx: (n_acc_eval,)`` into the test set
    (its first ``n_eval`` are ``test_idx``) and the class counts of the training subset.
    Images are reloaded (checksummed) from these indices, so the step stays small.
    """
    rng = np.random.default_rng(cfg.seed)
    if not 1 <= cfg.n_train <= 60_000 or not 1 <= cfg.n_eval <= 10_000:
        raise ValueError(f"need 1 ≤ n_train ≤ 60000 and 1 ≤ n_eval ≤ 10000, got {cfg.n_train}, {cfg.n_eval}")
    train_idx = np.sort(rng.permutation(60_000)[: cfg.n_train])
    test_perm = rng.permutation(10_000)
    test_idx = test_perm[: cfg.n_eval]
    mnist_idx = rng.permutation(10_000)[: cfg.n_eval]
    _, y = load_fashion_mnist("train")
    return {"train_idx": train_idx, "test_idx": test_idx, "mnist_idx": mnist_idx,
            "acc_idx": test_perm[: cfg.n_acc_eval],
            "train_class_counts": np.bincount(y[train_idx], minlength=10)}


def load_sets(cfg: FashionMNISTConfig, idx: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Images ``(n, 28, 28, 1)`` in [0, 1]: ``x_train``, ``y_train``, ``x_<set>`` for EVAL_SETS, ``y_test``, ``x_acc``, ``y_acc``."""
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    xm, ym = load_mnist("test")
    return {"x_train": x[idx["train_idx"]], "y_train": y[idx["train_idx"]],
            "x_test": xt[idx["test_idx"]], "y_test": yt[idx["test_idx"]],
            "x_mnist": xm[idx["mnist_idx"]], "y_mnist": ym[idx["mnist_idx"]],
            "x_acc": xt[idx["acc_idx"]], "y_acc": yt[idx["acc_idx"]],
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
    """``on_epoch_end``: C4-OSP, orbit KL, relative spread of members and ensemble, accuracy, on fixed subsets."""
    c4 = CyclicRotations(4)

    def measure(epoch: int, params) -> dict:
        out = {}
        for name, x in sets.items():
            logits = _orbit_logits(net, params, x, c4, batch)                 # (M, 4, n, 10)
            mean = logits.mean(0)
            member, ens = orbit_same_prediction(logits), orbit_same_prediction(mean)
            out[f"member_osp/{name}"] = member.mean                           # (M,)
            out[f"ensemble_osp/{name}"] = ens.mean                            # ()
            out[f"ensemble_consistent/{name}"] = ens.consistent
            out[f"member_spread/{name}"] = np.sqrt((orbit_spread(logits) ** 2).mean(-1))        # (M,) rms over inputs
            out[f"ensemble_spread/{name}"] = np.sqrt((orbit_spread(mean) ** 2).mean())
            out[f"member_kl/{name}"] = STATISTICS["kl"](logits)               # (M,)
            out[f"ensemble_kl/{name}"] = STATISTICS["kl"](mean[None])[0]      # ()
            out[f"member_rel_spread/{name}"] = STATISTICS["rel_spread"](logits)
            out[f"ensemble_rel_spread/{name}"] = STATISTICS["rel_spread"](mean[None])[0]
            if name == "test":
                out["member_acc/test"] = accuracy(logits[:, 0], y_test)       # (M,)
                out["ensemble_acc/test"] = accuracy(mean[0], y_test)
        return out

    return measure


def train_and_measure(run: Run, cfg: FashionMNISTConfig, data: dict, key: str, width: int, aug: str,
                      members: int) -> dict[str, np.ndarray]:
    """Train one ensemble (resumable per epoch) and measure it; arrays as documented in the module.

    Every statistic is computed from the member logits rounded to float16 — the arrays that are
    stored (``logits/<set>``, ``so2/logits/<set>``) — so a chapter that recomputes a statistic from
    the stored logits gets the stored number exactly.
    """
    net = member_architecture(width, cfg.parametrization, cfg.head).flax()
    train = train_config(cfg)
    group = None if aug == "none" else get_group(aug)
    epoch_sets = {name: data[f"x_{name}"][: cfg.n_epoch_eval] for name in EVAL_SETS}
    callback = _epoch_callback(net, epoch_sets, data["y_test"][: cfg.n_epoch_eval], cfg.eval_batch)
    state, history = run.train(f"train_{key}", net, data["x_train"], data["y_train"], train, members, cfg.seed,
                               group=group, on_epoch_end=callback, checkpoint_every=cfg.checkpoint_every)
    out = {"loss": history["loss"], "epochs": history["epoch"],                         # (epochs, M), (epochs+1,)
           "first_epoch_step_loss": history["first_epoch_step_loss"].astype(np.float32)}  # (M, steps)
    out.update({f"epoch/{k}": v for k, v in history.items()
                if k not in ("loss", "epoch", "first_epoch_step_loss")})                # (epochs+1, ...)
    sizes = ensemble_sizes(cfg.ensemble_sizes, members)
    out["sizes"] = sizes
    c4 = CyclicRotations(4)
    for name in EVAL_SETS:
        logits16 = _orbit_logits(net, state.params, data[f"x_{name}"], c4, cfg.eval_batch).astype(np.float16)
        logits = logits16.astype(np.float32)                                              # (M, 4, n, 10)
        labels = data["y_test"] if name == "test" else None
        stats = osp_by_ensemble_size(logits, sizes, labels)
        stats.update(spread_by_ensemble_size(logits, sizes))
        stats.update(continuous_by_ensemble_size(logits, sizes))
        intervals = orbit_statistics(logits, labels)
        stats.update({f"interval/{k}": v for k, v in intervals.items()})                   # (3, 3) each
        stats["logits"] = logits16
        out.update({f"{k}/{name}": v for k, v in stats.items()})
    upright = np.asarray(ensemble_apply(net, state.params, data["x_acc"], batch_size=cfg.eval_batch))
    acc = member_vs_ensemble(upright, lambda l: accuracy(l, data["y_acc"]))
    out["interval/acc_full/test"] = np.asarray([[float(acc[r].estimate), float(acc[r].low), float(acc[r].high)]
                                                for r in INTERVAL_ROWS])                  # (3, 3)
    out["member_acc_full/test"] = accuracy(upright, data["y_acc"])                        # (M,)
    if width == cfg.cont_width and cfg.cont_groups:
        so2 = SampledRotations.uniform(cfg.n_angles)
        params = _first_members(state.params, cfg.cont_members)
        for name in cfg.cont_sets:
            x = data[f"x_{name}"][: cfg.n_cont_eval]
            logits16 = _orbit_logits(net, params, x, so2, cfg.eval_batch).astype(np.float16)  # (M', A, n, 10)
            logits = logits16.astype(np.float32)
            out[f"so2/logits/{name}"] = logits16
            out[f"so2/member_agreement/{name}"] = agreement_by_angle(logits)                   # (M', A)
            out[f"so2/ensemble_agreement/{name}"] = agreement_by_angle(logits.mean(0))         # (A,)
            labels = data["y_test"][: cfg.n_cont_eval] if name == "test" else None
            intervals = orbit_statistics(logits, labels)
            out.update({f"so2/interval/{k}/{name}": v for k, v in intervals.items()})
            if name == "test":
                out["so2/member_acc/test"] = (logits.argmax(-1) == labels).mean(-1)            # (M', A)
                out["so2/ensemble_acc/test"] = (logits.mean(0).argmax(-1) == labels).mean(-1)  # (A,)
    return out


def _first_members(params, k: int):
    import jax

    return jax.tree_util.tree_map(lambda leaf: leaf[:k], params)


# ------------------------------------------------------------------------------------- run

@experiment("fashion_mnist", quick=QUICK, reference=REFERENCE, full=FULL)
def run(run: Run, cfg: FashionMNISTConfig) -> dict:
    """FashionMNIST, C4 rotations: OSP of CNN members vs ensembles, on/off the data manifold; C4/C8/C16 vs SO(2)."""
    idx = run.step("data", lambda: select_data(cfg))
    data = load_sets(cfg, idx)
    arrays: dict[str, np.ndarray] = {"angles": SampledRotations.uniform(cfg.n_angles).angles,
                                     "train_class_counts": idx["train_class_counts"],
                                     "y_test": data["y_test"], "test_idx": idx["test_idx"],
                                     "mnist_idx": idx["mnist_idx"]}
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
        "params": {f"c{w}": member_architecture(w, cfg.parametrization, cfg.head).num_params((28, 28, 1))
                   for w in cfg.widths},
        "intervals": "95 % delete-one jackknife over members (member_vs_ensemble): [estimate, low, high]",
    }
    from ..results import Results

    res = Results("fashion_mnist", arrays)

    def rows(arm, metric: str, name: str) -> dict[str, list[float]]:
        return {row: list(iv[:3]) for row, iv in arm.mve(metric, name).items()}

    for key, width, aug, members in jobs:
        arm = res.arm(key)
        entry: dict = {"width": width, "augmentation": aug, "members": members}
        for name in EVAL_SETS:
            e = {"member_osp": float(arm.member_osp(name).mean()),
                 "ensemble_osp": float(arm.ensemble_osp(name)[-1]),
                 "member_consistent": float(arm.member_consistent(name).mean()),
                 "ensemble_consistent": float(arm.ensemble_consistent(name)[-1]),
                 "member_spread": float(np.sqrt((arm.member_spread(name) ** 2).mean())),
                 "ensemble_spread": float(arm.ensemble_spread(name)[-1]),
                 "member_chance": float(arm.member_chance(name).mean()),
                 "ensemble_chance": float(arm.ensemble_chance(name)[-1])}
            e["member_osp_fraction"], e["ensemble_osp_fraction"] = e["member_osp"] / 4, e["ensemble_osp"] / 4
            for stat in STATISTICS:
                e[f"{stat}_interval"] = rows(arm, f"interval/{stat}", name)
            entry[name] = e
        entry["member_acc"] = float(arm.member_acc("test").mean())
        entry["ensemble_acc"] = float(arm.ensemble_acc("test")[-1])
        entry["member_acc_rotated"] = float(arm.member_acc_orbit("test").mean())
        entry["ensemble_acc_rotated"] = float(arm.ensemble_acc_orbit("test")[-1])
        entry["acc_full_interval"] = rows(arm, "interval/acc_full", "test")
        entry["n_acc_eval"] = cfg.n_acc_eval
        if width == cfg.cont_width and cfg.cont_groups:
            k = 1 if aug == "none" else int(aug[1:])
            so2 = {"kappa": covering_kappa(k)}
            for name in cfg.cont_sets:
                so2[name] = {"member_osp_fraction": float(arm.get("so2/member_agreement", name).mean()),
                             "ensemble_osp_fraction": float(arm.get("so2/ensemble_agreement", name).mean())}
            entry["so2"] = so2
        summary[key] = entry
    return summary
