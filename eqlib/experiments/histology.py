"""Histology (NCT-CRC-HE-100K, Kather et al. 2019): emergent rotation and reflection invariance.

Tissue on a slide has no preferred orientation, so a tissue classifier should be invariant under
the rotations C4 and the rotations-and-reflections D4 of a square image patch. Ensembles of
ordinary (non-equivariant) CNNs are trained on 9-class tissue images with cross-entropy and Adam —
outside the MSE theory of Gerken & Kessel (2024), which the book says where it matters — with
identical members in every training mode (same initialisations, same minibatch order):

* ``plain``: no augmentation (the control);
* ``C4`` / ``D4``: full augmentation, every minibatch expanded to its whole orbit.

Every ensemble is evaluated on the held-out images and off the data manifold:

* ``test``    held-out tissue (whole patches never trained on: see ``folds`` below);
* ``noise``   uniform noise images in [0, 1], no tissue and no class at all;
* ``jitter``  the held-out images after a strong random per-channel colour change
  (:func:`colour_jitter`, a caricature of stain variation between laboratories);
* ``fashion`` FashionMNIST test images, zero-padded 28 → 32 px, tiled to 3 channels (and resized
  to the image size).

For every input the outputs on its whole D4 orbit are computed once; the C4 numbers use the
rotations, elements 0–3 of D4. Reported, for members and for ensembles of growing size M
(ensemble prediction = mean of the member *logits*; ensembles of size M are disjoint groups of the
member pool, with bootstrap intervals over the groups), per group and evaluation set:

* OSP (the orbit same prediction of Gerken & Kessel 2024) as a fraction of |G|, the share of
  inputs whose whole orbit gets one class, the symmetric orbit KL
  (:func:`eqlib.metrics.orbit_symmetric_kl`), the relative orbit spread
  (:func:`eqlib.metrics.relative_orbit_spread`) and the orbit spread of the logits (its ratio to
  the mean member's falls like 1/√M when the members fluctuate independently around an invariant
  mean, and levels off when they share a violation);
* mean member against full ensemble for each, with 95 % jackknife intervals over members
  (:func:`eqlib.metrics.member_vs_ensemble`), stored as ``(3, 3)`` arrays ``mve_<stat>_<group>``;
* accuracy on the held-out (and colour-jittered) images with a 95 % bootstrap interval over
  held-out *patches* (:func:`patch_bootstrap`); the full ensemble's margin (top-1 minus top-2
  logit), its orbit KL per input, and the members' agreement with its class;
* the member logits on the orbit (float16) of ``stored_inputs`` inputs per set, and every
  member's loss at each step of the first epoch (``first_epoch_step_loss``, for replay tests).

Data: ``data="mini"`` (the ``quick`` and ``reference`` presets) are crops of the 27 real patches
shipped with the project (:func:`crop_table`). With ``folds=3`` (both presets) they are split by
patch into a 3-fold cross-validation: fold k holds out the k-th patch of every class, so every
patch is held out exactly once and no crop of a held-out patch is trained on; member m of the
cross-validated ensemble is member m of each fold on the patches its fold held out. ``quick``:
patches area-averaged to 112 px, 16-px crops, 6 members, plain and D4; ``reference``: 224 px,
32-px crops, 12 members, plain, C4 and D4. It is a *tiny stand-in* that exercises the pipeline
on a CPU, and far too small to say how the method performs on the real data set.
``data="full"`` (the ``full`` preset, for a GPU) loads the whole NCT-CRC-HE-100K for training
and CRC-VAL-HE-7K for testing, area-averaged to ``image_size`` px, from ``root`` or
``$EQLIB_HISTOLOGY_ROOT`` (download with :func:`eqlib.data.histology.download_histology`).

Inputs are standardised per colour channel with the training images' mean and standard
deviation (rotations and reflections commute with that). Every stage is a cached ``run.step``;
training checkpoints itself every epoch, so an interrupted run resumes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from ..data.histology import CLASSES, load_histology, mini_task
from ..data.noise import noise_images
from ..ensemble import TrainConfig, ensemble_apply
from ..groups import Dihedral4, FiniteGroup, get_group
from .. import metrics
from ..metrics import accuracy, orbit_outputs, orbit_same_prediction, orbit_spread
from ..models import Architecture, Flatten, GlobalAvgPool, cnn
from ..runner import Run, experiment

__all__ = ["EVAL_SETS", "OFF_MANIFOLD", "EVAL_GROUPS", "ROOT_ENV_VAR", "STATISTICS", "HistologyConfig", "QUICK",
           "REFERENCE", "FULL", "colour_jitter", "fashion_rgb", "histology_data", "evaluation_sets", "crop_table",
           "fold_data", "train_config", "fold_seed", "training_modes", "architecture", "ensemble_sizes",
           "subensemble_symmetry", "patch_bootstrap"]

#: Evaluation sets in the order the runner stores them; ``test`` is held-out tissue.
EVAL_SETS = ("test", "noise", "jitter", "fashion")
#: The sets off the data manifold.
OFF_MANIFOLD = ("noise", "jitter", "fashion")
#: Groups under which every ensemble is evaluated (C4 = the first four elements of D4).
EVAL_GROUPS = ("C4", "D4")
#: Environment variable naming the folder that holds NCT-CRC-HE-100K/ and CRC-VAL-HE-7K/.
ROOT_ENV_VAR = "EQLIB_HISTOLOGY_ROOT"


@dataclass(frozen=True)
class HistologyConfig:
    seed: int = 0
    data: str = "mini"                       # "mini": crops of the 27 bundled patches (data/histology); "full": the real data set
    root: str | None = None                  # data folder; None: bundled sample (mini) or $EQLIB_HISTOLOGY_ROOT (full)
    image_size: int = 32                     # crop size (mini) or the size patches are resized to (full)
    patch_size: int | None = None            # mini: area-average the 224-px patches to this size before cropping
    folds: int = 1                           # mini: 1 = train on the 18 NCT patches, test on the 9 CRC-VAL ones;
                                             # 3 = patch-level cross-validation over all 27 (fold k holds out the
                                             # k-th patch of every class; a held-out patch's crops never train)
    max_per_class: int | None = None         # full: keep the first files per class (None: all)
    n_train: int | None = None               # random subset of the training images (None: all; folds = 1 only)
    n_test: int | None = None                # random subset of the held-out images (None: all; folds = 1 only)
    n_off: int = 256                         # noise and FashionMNIST images (split between the folds)
    channels: tuple[int, ...] = (8, 16, 32)  # 3×3 conv layers (2×2 average pool after all but the last)
    head: str = "flatten"                    # "flatten": dense layer on the flattened feature map; "gap": global average pool
    members: int = 8
    ensemble_sizes: tuple[int, ...] = (1, 2, 4, 8)
    augmentations: tuple[str, ...] = ("C4", "D4")   # trained with full augmentation, besides the control
    epochs: int = 5
    batch_size: int = 32                     # images per step before augmentation (|G|·batch_size after)
    learning_rate: float = 0.03              # Adam, NTK parametrisation
    member_chunk: int | None = None          # train members in groups of this size (memory), None: all at once
    strategy: str = "loop"                   # eqlib.ensemble strategy: "loop" measured fastest here on CPU
    jitter_scale: float = 0.3                # colour jitter: channel gain in [1 − scale, 1 + scale]
    jitter_shift: float = 0.15               # colour jitter: channel offset in [−shift, shift]
    eval_batch: int = 512                    # inputs per evaluation call (their D4 orbits: 8× as many images)
    apply_batch: int = 4096                  # images per forward pass of the members
    stored_inputs: int = 96                  # inputs per evaluation set whose member orbit logits are stored (float16)
    num_bootstrap: int = 1000                # resamples of the held-out patches for the accuracy interval


#: The book's live run: 3-fold patch-level cross-validation on the 27 bundled patches (every
#: patch held out once), patches area-averaged to 112 px and cut into 49 crops of 16×16 each;
#: 6 members without and with full D4 augmentation (C4 is measured as the rotation subgroup).
QUICK = HistologyConfig(patch_size=112, image_size=16, folds=3, members=6, ensemble_sizes=(1, 2, 3, 6),
                        augmentations=("D4",), epochs=4, learning_rate=0.01, n_off=240)
#: The largest honest CPU version (≈ 20–30 min on 2 cores): full resolution, 32-px crops (882
#: training crops per fold), 12 members, C4 and D4 augmentation and the control, 3 folds.
REFERENCE = HistologyConfig(image_size=32, folds=3, members=12, ensemble_sizes=(1, 2, 3, 4, 6, 12),
                            augmentations=("C4", "D4"), epochs=5, learning_rate=0.01, n_off=768)
FULL = HistologyConfig(data="full", image_size=64, n_off=2048, channels=(32, 64, 128, 128), members=64,
                       ensemble_sizes=(1, 2, 4, 8, 16, 32, 64), epochs=8, batch_size=64, learning_rate=0.01,
                       member_chunk=16, strategy="auto", eval_batch=1024, apply_batch=256, stored_inputs=256)


# ------------------------------------------------------------------------------------- data


def colour_jitter(images: np.ndarray, scale: float = 0.3, shift: float = 0.15, seed: int = 0) -> np.ndarray:
    """Random per-image, per-channel colour change ``clip(a·x + b, 0, 1)``: ``(n, h, w, c) -> (n, h, w, c)``.

    For image ``i`` and channel ``c`` the gain ``a ~ U[1 − scale, 1 + scale]`` and the offset
    ``b ~ U[−shift, shift]`` are drawn from NumPy's generator seeded with ``seed``: a crude
    model of the variation of H&E staining and scanners between laboratories. Values stay in
    [0, 1]; the geometry is untouched (so it commutes with rotations and reflections).
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"colour_jitter expects images (n, h, w, c), got shape {images.shape}")
    if not 0 <= scale < 1:
        raise ValueError(f"scale must be in [0, 1) so that gains stay positive, got {scale}")
    if shift < 0:
        raise ValueError(f"shift must be non-negative, got {shift}")
    n, c = images.shape[0], images.shape[-1]
    rng = np.random.default_rng(seed)
    gain = rng.uniform(1 - scale, 1 + scale, size=(n, 1, 1, c)).astype(np.float32)
    offset = rng.uniform(-shift, shift, size=(n, 1, 1, c)).astype(np.float32)
    return np.clip(images.astype(np.float32) * gain + offset, 0.0, 1.0)


def fashion_rgb(images: np.ndarray, size: int = 32) -> np.ndarray:
    """FashionMNIST ``(n, 28, 28, 1)`` → ``(n, size, size, 3)``: zero-pad to 32 px, tile to 3 channels,
    then scale by pixel repetition (``size`` a multiple of 32) or linear resizing (otherwise)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1:] != (28, 28, 1):
        raise ValueError(f"expected FashionMNIST images (n, 28, 28, 1), got shape {images.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    out = np.repeat(np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)   # (n, 32, 32, 3)
    if size == 32:
        return out
    if size % 32 == 0:
        f = size // 32
        return np.repeat(np.repeat(out, f, axis=1), f, axis=2)
    import jax

    resized = jax.image.resize(out, (len(out), size, size, 3), method="linear", antialias=True)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _subset(n: int, k: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of size ``k`` of ``range(n)`` (all when ``k`` is None)."""
    if k is None or k >= n:
        return np.arange(n)
    if k < 1:
        raise ValueError(f"subset size must be positive, got {k}")
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _data_root(cfg: HistologyConfig) -> Path | None:
    root = cfg.root or (os.environ.get(ROOT_ENV_VAR) if cfg.data == "full" else None)
    if cfg.data == "full" and not root:
        raise FileNotFoundError(
            f"the full histology preset needs the data set: set ${ROOT_ENV_VAR} (or root=...) to a folder "
            "holding NCT-CRC-HE-100K/ and CRC-VAL-HE-7K/; download them (12.5 GB) with "
            "eqlib.data.histology.download_histology(root)")
    return Path(root).expanduser() if root else None


def histology_data(cfg: HistologyConfig) -> dict[str, np.ndarray]:
    """Training and held-out images in [0, 1] and their labels, with the files they came from.

    Returns ``x_train: (n, s, s, 3)``, ``y_train: (n,)``, ``x_test``, ``y_test``, ``files_train``,
    ``files_test`` (source patch of every image) — crops of the bundled patches (``data="mini"``)
    or the real data set resized to ``s`` px (``data="full"``).
    """
    if cfg.data not in ("mini", "full"):
        raise ValueError(f"data must be 'mini' or 'full', got {cfg.data!r}")
    root = _data_root(cfg)
    if cfg.data == "mini":
        task = mini_task(root, crop=cfg.image_size, size=cfg.patch_size)
        x, y, xt, yt = task.x_train, task.y_train, task.x_test, task.y_test
        files = np.asarray(task.files_train)[task.patch_train]
        files_test = np.asarray(task.files_test)[task.patch_test]
    else:
        x, y, f = load_histology(root, "NCT-CRC-HE-100K", size=cfg.image_size, max_per_class=cfg.max_per_class)
        xt, yt, ft = load_histology(root, "CRC-VAL-HE-7K", size=cfg.image_size, max_per_class=cfg.max_per_class)
        files, files_test = np.asarray(f), np.asarray(ft)
    i = _subset(len(x), cfg.n_train, cfg.seed)
    j = _subset(len(xt), cfg.n_test, cfg.seed + 1)
    return {"x_train": x[i], "y_train": y[i], "files_train": files[i],
            "x_test": xt[j], "y_test": yt[j], "files_test": files_test[j]}


def evaluation_sets(cfg: HistologyConfig, x_test: np.ndarray) -> dict[str, np.ndarray]:
    """The four evaluation sets in [0, 1], ``(n, s, s, 3)`` each (seeds derive from ``cfg.seed``)."""
    from ..data.fashion_mnist import load_fashion_mnist

    s = cfg.image_size
    fashion, _ = load_fashion_mnist("test")
    return {
        "test": x_test,
        "noise": noise_images(cfg.n_off, (s, s, 3), kind="uniform", seed=cfg.seed + 2),
        "jitter": colour_jitter(x_test, cfg.jitter_scale, cfg.jitter_shift, seed=cfg.seed + 3),
        "fashion": fashion_rgb(fashion[_subset(len(fashion), cfg.n_off, cfg.seed + 4)], s),
    }


def crop_table(cfg: HistologyConfig) -> dict[str, np.ndarray]:
    """Every image of the run in one table, with the fold in which it is held out.

    Returns ``x: (N, s, s, 3)`` in [0, 1], ``y: (N,)``, ``patch: (N,)`` (index into ``files``),
    ``files: (P,)`` (the source patches) and ``held_out: (N,)``: the fold in which the image is a
    test image, −1 for images that are always trained on. With ``folds = 1`` the training images
    (NCT-CRC-HE-100K) have −1 and the held-out ones (CRC-VAL-HE-7K) fold 0. With ``folds = F > 1``
    (``data="mini"`` only) the crops of all 27 patches are pooled and the k-th patch of every class
    (in file order: NCT, NCT, CRC-VAL) goes to fold k mod F: patch-level cross-validation, every
    patch held out exactly once, and no crop of a held-out patch in training.
    """
    if cfg.folds < 1:
        raise ValueError(f"folds must be positive, got {cfg.folds}")
    if cfg.folds == 1:
        d = histology_data(cfg)
        files, patch = np.unique(np.concatenate([d["files_train"], d["files_test"]]), return_inverse=True)
        held_out = np.concatenate([np.full(len(d["y_train"]), -1), np.zeros(len(d["y_test"]), int)])
        return {"x": np.concatenate([d["x_train"], d["x_test"]]), "y": np.concatenate([d["y_train"], d["y_test"]]),
                "patch": patch.astype(np.int32), "files": files, "held_out": held_out.astype(np.int32)}
    if cfg.data != "mini":
        raise ValueError(f"cross-validation (folds={cfg.folds}) is for data='mini', got data={cfg.data!r}")
    if cfg.n_train is not None or cfg.n_test is not None:
        raise ValueError("n_train / n_test subsets are for folds = 1; cross-validation uses every crop")
    task = mini_task(_data_root(cfg), crop=cfg.image_size, size=cfg.patch_size)
    files = np.asarray(task.files_train + task.files_test)
    x = np.concatenate([task.x_train, task.x_test])
    y = np.concatenate([task.y_train, task.y_test])
    patch = np.concatenate([task.patch_train, task.patch_test + len(task.files_train)]).astype(np.int32)
    patch_class = np.zeros(len(files), int)
    patch_class[patch] = y
    rank = np.zeros(len(files), int)                       # k-th patch of its class, in file order
    for c in np.unique(patch_class):
        members = np.flatnonzero(patch_class == c)
        rank[members] = np.arange(len(members))
    if cfg.folds > np.bincount(patch_class).min():
        raise ValueError(f"folds={cfg.folds} exceeds the {np.bincount(patch_class).min()} patches of the rarest class")
    return {"x": x, "y": y, "patch": patch, "files": files, "held_out": (rank % cfg.folds)[patch].astype(np.int32)}


def fold_data(cfg: HistologyConfig, table: dict[str, np.ndarray], fold: int) -> dict[str, np.ndarray]:
    """Fold ``fold`` of :func:`crop_table`: standardised training images ``x: (n, s, s, 3)`` and
    labels ``y``, the channel ``mean``/``std`` of its training images, and the indices ``train``
    and ``test`` into the table (the images held out in this fold)."""
    train = np.flatnonzero(table["held_out"] != fold)
    test = np.flatnonzero(table["held_out"] == fold)
    if len(test) == 0:
        raise ValueError(f"fold {fold} holds out no image (folds={cfg.folds})")
    x = table["x"][train]
    mean, std = x.mean((0, 1, 2)), x.std((0, 1, 2))
    return {"x": ((x - mean) / std).astype(np.float32), "y": table["y"][train], "mean": mean, "std": std,
            "train": train, "test": test}


def train_config(cfg: HistologyConfig) -> TrainConfig:
    """The members' training recipe: cross-entropy, Adam at ``learning_rate``, minibatches of ``batch_size``."""
    return TrainConfig(loss="cross_entropy", optimizer="adam", learning_rate=cfg.learning_rate, epochs=cfg.epochs,
                       batch_size=cfg.batch_size, strategy=cfg.strategy)


def fold_seed(cfg: HistologyConfig, fold: int) -> int:
    """The seed of fold ``fold``'s members (initialisations and minibatch order)."""
    return cfg.seed + 101 * fold


# ------------------------------------------------------------------------------------ metrics


def training_modes(cfg: HistologyConfig) -> tuple[str, ...]:
    """``("plain", *augmentations)``; augmentation groups must be C4 or D4."""
    bad = [g for g in cfg.augmentations if g not in EVAL_GROUPS]
    if bad or len(set(cfg.augmentations)) != len(cfg.augmentations):
        raise ValueError(f"augmentations must be distinct entries of {EVAL_GROUPS}, got {cfg.augmentations}")
    return ("plain", *cfg.augmentations)


def architecture(cfg: HistologyConfig) -> Architecture:
    """The member CNN: ``eqlib.models.cnn(channels, 9)``, its global average pool replaced by a flatten
    for ``head="flatten"`` (a dense read-out of the whole feature map, which knows where things are)."""
    arch = cnn(list(cfg.channels), out=len(CLASSES))
    if cfg.head == "gap":
        return arch
    if cfg.head != "flatten":
        raise ValueError(f"head must be 'flatten' or 'gap', got {cfg.head!r}")
    return Architecture(tuple(Flatten() if isinstance(layer, GlobalAvgPool) else layer for layer in arch.layers),
                        arch.W_std, arch.b_std, arch.parametrization)


def ensemble_sizes(cfg: HistologyConfig) -> np.ndarray:
    """The sub-ensemble sizes ≤ ``members``, always including 1 and ``members``."""
    return metrics.ensemble_sizes(cfg.ensemble_sizes, cfg.members)


def subensemble_symmetry(logits_on_orbit: np.ndarray, sizes: np.ndarray) -> dict[str, np.ndarray]:
    """OSP and logit orbit spread of ensembles of every size in ``sizes``, from member logits ``(M, |G|, n, C)``.

    For size k the M members are split into ⌊M/k⌋ disjoint groups; each group's prediction is the
    mean of its members' logits. Returns, each ``(len(sizes),)`` and averaged over the groups:
    ``osp`` (OSP as a fraction of |G|), ``osp_std`` (its std over groups), ``consistent`` (share of
    inputs whose whole orbit gets one class) and ``spread`` (the orbit spread of the mean logits,
    averaged over inputs); size 1 is the mean over single members. Computed by
    :func:`eqlib.metrics.subensemble_statistics` (which also gives bootstrap intervals).
    """
    logits = np.asarray(logits_on_orbit)
    if logits.ndim != 4:
        raise ValueError(f"expected member logits (M, |G|, n, C), got shape {logits.shape}")
    sizes = np.asarray(sizes)
    if np.any(sizes < 1) or np.any(sizes > len(logits)):
        raise ValueError(f"ensemble sizes {sizes.tolist()} outside 1..{len(logits)}")

    def statistic(ens: np.ndarray) -> dict[str, np.ndarray]:                     # (groups, |G|, n, C)
        osp = orbit_same_prediction(ens)
        return {"osp": osp.fraction, "consistent": osp.consistent, "spread": orbit_spread(ens).mean(-1)}

    stats = metrics.subensemble_statistics(logits, sizes, statistic, num_bootstrap=0)
    return {"osp": stats["osp"].estimate, "osp_std": stats["osp"].std,
            "consistent": stats["consistent"].estimate, "spread": stats["spread"].estimate}


def _orbit_logits(net, params, x: np.ndarray, group: FiniteGroup, inputs_per_call: int, batch: int,
                  strategy: str) -> np.ndarray:
    """Member logits on the orbits of ``x: (n, ...)`` → ``(M, |G|, n, C)``, the orbits of
    ``inputs_per_call`` inputs per call, applied ``batch`` images at a time."""
    return orbit_outputs(lambda z: ensemble_apply(net, params, z, batch_size=batch, strategy=strategy), x, group,
                         inputs_per_call=inputs_per_call)


#: Invariance statistics of member (or ensemble) logits on an orbit ``(M, |G|, n, C)`` → ``(M,)``.
STATISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "osp": lambda o: orbit_same_prediction(o).fraction,
    "consistent": lambda o: orbit_same_prediction(o).consistent,
    "kl": lambda o: metrics.orbit_symmetric_kl(o).mean(-1),
    "rspread": lambda o: metrics.relative_orbit_spread(o).mean(-1),
    "spread": lambda o: orbit_spread(o).mean(-1),
}


def _interval_rows(result: dict) -> np.ndarray:
    """``member_vs_ensemble`` output → ``(3, 3)``: rows member, ensemble, difference; columns estimate, low, high."""
    return np.asarray([[float(result[k].estimate), float(result[k].low), float(result[k].high)]
                       for k in ("member", "ensemble", "difference")])


def patch_bootstrap(correct: np.ndarray, patch: np.ndarray, num_bootstrap: int = 1000, level: float = 0.95,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy with a percentile-bootstrap interval over held-out *patches*.

    ``correct: (..., n)`` booleans for n crops, ``patch: (n,)`` their source patch. The accuracy of
    each patch is the share of its crops predicted correctly; the estimate is the mean over the P
    patches, and the interval resamples the patches with replacement (the crops of one patch are
    not independent, the patches are). Returns ``(P,)``-shaped per-patch accuracies ``(..., P)``
    and ``(..., 3)``: estimate, low, high.
    """
    correct, patch = np.asarray(correct, dtype=np.float64), np.asarray(patch)
    ids, inverse = np.unique(patch, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(ids))
    per_patch = np.stack([correct[..., inverse == j].sum(-1) for j in range(len(ids))], -1) / counts
    idx = np.random.default_rng(seed).integers(0, len(ids), size=(num_bootstrap, len(ids)))
    boot = per_patch[..., idx].mean(-1)                                             # (..., B)
    low, high = np.percentile(boot, [50 * (1 - level), 50 * (1 + level)], axis=-1)
    return per_patch, np.stack([per_patch.mean(-1), low, high], -1)


def _measure(cfg: HistologyConfig, logits: np.ndarray, sizes: np.ndarray, labels: np.ndarray | None,
             patch: np.ndarray | None) -> dict[str, np.ndarray]:
    """All numbers of one evaluation set from member logits on the D4 orbit ``(M, 8, n, C)``."""
    out: dict[str, np.ndarray] = {}
    ensemble = logits.mean(0)                                                       # (8, n, C)
    pred = logits[:, 0].argmax(-1)                                                  # (M, n) at the identity
    ens_pred = ensemble[0].argmax(-1)                                               # (n,)
    top2 = np.sort(ensemble[0], -1)[:, -2:]
    out["margin"] = (top2[:, 1] - top2[:, 0]).astype(np.float32)                    # (n,) logit gap, top two
    out["agreement"] = (pred == ens_pred).mean(0).astype(np.float32)                # (n,) share of members
    out["member_pred"] = pred.astype(np.int8)                                       # (M, n)
    out["ensemble_pred"] = ensemble.argmax(-1).astype(np.int8)                      # (8, n)
    keep = np.unique(np.linspace(0, logits.shape[2] - 1, min(cfg.stored_inputs, logits.shape[2])).astype(int))
    out["logits"] = logits[:, :, keep].astype(np.float16)                           # (M, 8, k, C)
    out["logits_index"] = keep                                                      # (k,)
    for name, order in (("C4", 4), ("D4", 8)):
        orbit = logits[:, :order]
        out[f"ensemble_counts_{name}"] = orbit_same_prediction(ensemble[:order]).counts.astype(np.int8)   # (n,)
        out[f"ensemble_kl_{name}"] = metrics.orbit_symmetric_kl(ensemble[:order]).astype(np.float32)   # (n,)
        curves = metrics.subensemble_statistics(orbit, sizes, lambda e: {k: f(e) for k, f in STATISTICS.items()},
                                                num_bootstrap=cfg.num_bootstrap, bootstrap_seed=cfg.seed)
        for key, f in STATISTICS.items():
            out[f"member_{key}_{name}"] = np.asarray(f(orbit))                      # (M,)
            out[f"{key}_{name}"] = curves[key].estimate                             # (K,) over ensemble sizes
            out[f"{key}_{name}_low"] = curves[key].low
            out[f"{key}_{name}_high"] = curves[key].high
            if len(logits) > 1:
                out[f"mve_{key}_{name}"] = _interval_rows(metrics.member_vs_ensemble(orbit, f))   # (3, 3)
    if labels is not None:
        acc = lambda o: accuracy(o[:, 0], labels)                                   # noqa: E731
        out["member_accuracy"] = acc(logits)                                        # (M,)
        curve = metrics.subensemble_statistics(logits, sizes, acc, num_bootstrap=cfg.num_bootstrap,
                                               bootstrap_seed=cfg.seed)
        out["accuracy"], out["accuracy_low"], out["accuracy_high"] = curve.estimate, curve.low, curve.high
        if len(logits) > 1:
            out["mve_accuracy"] = _interval_rows(metrics.member_vs_ensemble(logits, acc))
        per_patch, interval = patch_bootstrap(ens_pred == labels, patch, cfg.num_bootstrap, seed=cfg.seed)
        out["patch_accuracy"], out["accuracy_patches"] = per_patch, interval        # (P,), (3,)
        m_patch, _ = patch_bootstrap(pred == labels, patch, 1, seed=cfg.seed)
        out["member_patch_accuracy"] = m_patch                                      # (M, P)
        _, out["member_accuracy_patches"] = patch_bootstrap((pred == labels).mean(0), patch,
                                                            cfg.num_bootstrap, seed=cfg.seed)
    return out


# ---------------------------------------------------------------------------------------- run


def _train_and_measure(run: Run, cfg: HistologyConfig, mode: str, load: Callable[[], dict]) -> dict[str, np.ndarray]:
    d = load()
    table = d["table"]
    net = architecture(cfg).flax()
    train = train_config(cfg)
    group = None if mode == "plain" else get_group(mode)
    d4 = Dihedral4()
    logits: dict[str, list] = {name: [] for name in EVAL_SETS}
    losses, first_steps = [], []
    for fold in range(cfg.folds):
        fd = fold_data(cfg, table, fold)
        params, loss, first = [], [], []
        name = f"train_{mode}" if cfg.folds == 1 else f"train_{mode}_fold{fold}"
        for state, history in run.train_in_chunks(name, net, fd["x"], fd["y"], train, cfg.members,
                                                  cfg.member_chunk, fold_seed(cfg, fold), group=group):
            params.append(state.params)
            loss.append(history["loss"])                                            # (epochs, members of the call)
            first.append(history["first_epoch_step_loss"])                          # (members of the call, steps)
        params = jax.tree_util.tree_map(lambda *leaves: np.concatenate([np.asarray(l) for l in leaves]), *params)
        losses.append(np.concatenate(loss, axis=1))
        first_steps.append(np.concatenate(first, axis=0))
        raw = {"test": table["x"][fd["test"]], "jitter": d["jitter"][fd["test"]],
               "noise": d["noise"][fold], "fashion": d["fashion"][fold]}
        for set_name in EVAL_SETS:
            x = ((raw[set_name] - fd["mean"]) / fd["std"]).astype(np.float32)
            logits[set_name].append(_orbit_logits(net, params, x, d4, cfg.eval_batch, cfg.apply_batch, cfg.strategy))
        del fd
    out: dict[str, np.ndarray] = {"loss": np.stack(losses),                          # (folds, epochs, M)
                                  "first_epoch_step_loss": np.stack(first_steps)}    # (folds, M, steps)
    sizes = ensemble_sizes(cfg)
    test = d["test_index"]
    for name in EVAL_SETS:
        member_logits = np.concatenate(logits[name], axis=2)                         # (M, 8, n, C)
        labels = table["y"][test] if name in ("test", "jitter") else None
        patch = table["patch"][test] if labels is not None else None
        out.update({f"{name}/{k}": v for k, v in _measure(cfg, member_logits, sizes, labels, patch).items()})
    return out


@experiment("histology", quick=QUICK, reference=REFERENCE, full=FULL)
def run(run: Run, cfg: HistologyConfig) -> dict:
    """Histology tissue classes: CNN ensembles with/without full C4 or D4 augmentation; OSP, KL, spread, accuracy."""
    modes = training_modes(cfg)
    sizes = ensemble_sizes(cfg)
    cache: dict[str, dict] = {}

    def load() -> dict:
        """The crop table, jittered held-out images and the off-manifold sets split between the folds
        (loaded once, only when a step needs them)."""
        if not cache:
            table = crop_table(cfg)
            test_index = np.concatenate([np.flatnonzero(table["held_out"] == k) for k in range(cfg.folds)])
            jittered = colour_jitter(table["x"][test_index], cfg.jitter_scale, cfg.jitter_shift, seed=cfg.seed + 3)
            position = np.full(len(table["x"]), -1)
            position[test_index] = np.arange(len(test_index))
            off = evaluation_sets(cfg, table["x"][:1])
            cache["d"] = {"table": table, "test_index": test_index,
                          "jitter": _Indexed(jittered, position),
                          "noise": np.array_split(off["noise"], cfg.folds),
                          "fashion": np.array_split(off["fashion"], cfg.folds)}
        return cache["d"]

    def describe() -> dict:
        d = load()
        table = d["table"]
        stats = [(fd["mean"], fd["std"]) for fd in (fold_data(cfg, table, k) for k in range(cfg.folds))]
        test = d["test_index"]
        return {"mean": np.stack([m for m, _ in stats]), "std": np.stack([s for _, s in stats]),
                "y": table["y"], "patch": table["patch"], "held_out": table["held_out"], "files": table["files"],
                "test_index": test, "y_test": table["y"][test], "patch_test": table["patch"][test],
                "n_train": np.asarray([np.sum(table["held_out"] != k) for k in range(cfg.folds)]),
                "n_eval": np.asarray([len(test), sum(map(len, d["noise"])), len(test), sum(map(len, d["fashion"]))])}

    info = run.step("data", describe)
    arrays: dict[str, np.ndarray] = {"sizes": sizes, **{f"data/{k}": v for k, v in info.items()}}
    for mode in modes:
        result = run.step(f"measure/{mode}", lambda: _train_and_measure(run, cfg, mode, load))
        arrays.update({f"{mode}/{k}": v for k, v in result.items()})
    return {"arrays": arrays, "summary": _summary(cfg, arrays, modes)}


class _Indexed:
    """Rows of ``values`` addressed by table index through ``position`` (−1: not stored)."""

    def __init__(self, values: np.ndarray, position: np.ndarray):
        self.values, self.position = values, position

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        pos = self.position[index]
        if np.any(pos < 0):
            raise IndexError("image is never held out, it has no jittered copy")
        return self.values[pos]


def _interval_dict(intervals: dict) -> dict:
    """``{row: Interval}`` (``Arm.mve``) → ``{row: {"estimate", "low", "high"}}`` for the summary."""
    return {k: {"estimate": iv.estimate, "low": iv.low, "high": iv.high} for k, iv in intervals.items()}


def _summary(cfg: HistologyConfig, arrays: dict, modes: tuple[str, ...]) -> dict:
    """Full-ensemble numbers against the mean member (95 % jackknife intervals over members), per
    training mode, group and evaluation set; accuracy with a bootstrap interval over held-out patches."""
    from ..results import Results

    res = Results("histology", arrays)
    n_eval = res.data("n_eval")
    summary: dict = {
        "data": {
            "kind": cfg.data,
            "stand_in": cfg.data == "mini",
            "note": ("tiny stand-in: crops of the 27 patches in data/histology (NCT-CRC-HE-100K and CRC-VAL-HE-7K), "
                     + (f"{cfg.folds}-fold patch-level cross-validation, every patch held out once"
                        if cfg.folds > 1 else "18 training patches, 9 held-out patches")
                     + "; not representative of the full data set"
                     if cfg.data == "mini" else "NCT-CRC-HE-100K (training) and CRC-VAL-HE-7K (held out)"),
            "folds": cfg.folds,
            "n_train": [int(n) for n in res.data("n_train")],
            "n_eval": {k: int(v) for k, v in zip(EVAL_SETS, n_eval)},
            "patches": int(len(res.data("files"))),
            "test_patches": int(len(np.unique(res.data("patch_test")))),
            "image_size": cfg.image_size,
            "patch_size": cfg.patch_size,
            "classes": list(CLASSES),
        },
        "loss": "cross_entropy", "optimizer": "adam", "ensemble_prediction": "mean of member logits",
        "intervals": "95 %: jackknife over members (member vs ensemble); bootstrap over held-out patches (accuracy)",
        "chance_accuracy": 1 / len(CLASSES),
        "ensemble_sizes": res.array("sizes").tolist(),
    }

    def triple(iv) -> dict:
        return {"estimate": float(iv.estimate), "low": float(iv.low), "high": float(iv.high)}

    for mode in modes:
        arm = res.arm(mode)
        entry: dict = {"final_loss": float(arm.loss()[:, -1].mean())}
        for name in ("test", "jitter"):
            member = arm.member_accuracy(name)
            entry[f"accuracy_{name}"] = {
                "member_mean": float(member.mean()),
                "member_std": float(member.std()),
                "ensemble": float(arm.accuracy(name)[-1]),
                "ensemble_patches": triple(arm.interval("accuracy_patches", name)),
                "member_patches": triple(arm.interval("member_accuracy_patches", name)),
            }
            if arm.has("mve_accuracy", name):
                entry[f"accuracy_{name}"]["members"] = _interval_dict(arm.mve("mve_accuracy", name))
        for g in EVAL_GROUPS:
            for name in EVAL_SETS:
                spread = arm.get(f"spread_{g}", name)
                item = {
                    "member_osp": float(arm.get(f"member_osp_{g}", name).mean()),
                    "ensemble_osp": float(arm.get(f"osp_{g}", name)[-1]),
                    "member_consistent": float(arm.get(f"member_consistent_{g}", name).mean()),
                    "ensemble_consistent": float(arm.get(f"consistent_{g}", name)[-1]),
                    "member_spread": float(arm.get(f"member_spread_{g}", name).mean()),
                    "ensemble_spread": float(spread[-1]),
                    # 1/√M for independent fluctuations around an invariant mean; ~1 for a systematic violation
                    "relative_spread": float(spread[-1] / spread[0]),
                }
                for key in ("osp", "kl", "rspread"):
                    if arm.has(f"mve_{key}_{g}", name):
                        item[key] = _interval_dict(arm.mve(f"mve_{key}_{g}", name))
                entry[f"{g}/{name}"] = item
        for name in EVAL_SETS:
            entry[f"agreement/{name}"] = float(arm.agreement(name).mean())
            entry[f"margin/{name}"] = float(arm.margin(name).mean())
        summary[mode] = entry
    return summary
