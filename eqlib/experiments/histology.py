"""Histology (NCT-CRC-HE-100K, Kather et al. 2019): emergent rotation and reflection invariance.

Tissue on a slide has no preferred orientation, so a tissue classifier should be invariant under
the rotations C4 and the rotations-and-reflections D4 of a square image patch. Ensembles of
ordinary (non-equivariant) CNNs are trained on 9-class tissue images with cross-entropy and Adam —
outside the MSE theory of Gerken & Kessel (2024), which the book says where it matters — three
times with identical members (same initialisations, same minibatch order):

* ``plain``: no augmentation (the control);
* ``C4`` / ``D4``: full augmentation, every minibatch expanded to its whole orbit.

Every ensemble is evaluated on the held-out images and off the data manifold:

* ``test``    held-out tissue (whole patches of other patients: CRC-VAL-HE-7K);
* ``noise``   uniform noise images in [0, 1], no tissue and no class at all;
* ``jitter``  the held-out images after a strong random per-channel colour change
  (:func:`colour_jitter`, a caricature of stain variation between laboratories);
* ``fashion`` FashionMNIST test images, zero-padded 28 → 32 px, tiled to 3 channels (and scaled
  up to the image size by pixel repetition).

For every input the outputs on its whole D4 orbit are computed once; the C4 numbers use the
rotations, elements 0–3 of D4. Reported, for members and for ensembles of growing size M
(ensemble prediction = mean of the member *logits*; ensembles of size M are disjoint groups of the
member pool, their scores averaged over the groups):

* OSP (the orbit same prediction of Gerken & Kessel 2024) as a fraction of |G|, and the share of inputs whose whole orbit
  gets one class;
* the orbit spread of the logits (its ratio to the mean member's falls like 1/√M when the members
  fluctuate independently around an invariant mean, and levels off when they share a violation);
* accuracy on the held-out (and colour-jittered) images; the full ensemble's margin (top-1 minus
  top-2 logit) and the members' agreement with its class.

Data: ``data="mini"`` (the ``quick`` preset) is :func:`eqlib.data.histology.mini_task` on the
27 real patches shipped with the project — 882 training crops of 32×32 px from 18
NCT-CRC-HE-100K patches, 441 test crops from 9 CRC-VAL-HE-7K patches. It is a *tiny stand-in*
that exercises the pipeline on a CPU in minutes, and far too small to say how the method
performs on the real data set. ``data="full"`` (the ``full`` preset, for a GPU) loads the whole
NCT-CRC-HE-100K for training and CRC-VAL-HE-7K for testing, area-averaged to ``image_size`` px,
from ``root`` or ``$EQLIB_HISTOLOGY_ROOT`` (download with
:func:`eqlib.data.histology.download_histology`).

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
from ..ensemble import TrainConfig, ensemble_apply, train_in_chunks
from ..groups import Dihedral4, FiniteGroup, get_group
from .. import metrics
from ..metrics import accuracy, orbit_outputs, orbit_same_prediction, orbit_spread
from ..models import Architecture, Flatten, GlobalAvgPool, cnn
from ..runner import Run, experiment

__all__ = ["EVAL_SETS", "OFF_MANIFOLD", "EVAL_GROUPS", "ROOT_ENV_VAR", "HistologyConfig", "QUICK", "FULL",
           "colour_jitter", "fashion_rgb", "histology_data", "evaluation_sets", "training_modes", "architecture",
           "ensemble_sizes", "subensemble_symmetry"]

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
    max_per_class: int | None = None         # full: keep the first files per class (None: all)
    n_train: int | None = None               # random subset of the training images (None: all)
    n_test: int | None = None                # random subset of the held-out images (None: all)
    n_off: int = 256                         # noise and FashionMNIST images
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


QUICK = HistologyConfig()
FULL = HistologyConfig(data="full", image_size=64, n_off=2048, channels=(32, 64, 128, 128), members=64,
                       ensemble_sizes=(1, 2, 4, 8, 16, 32, 64), epochs=8, batch_size=64, learning_rate=0.01,
                       member_chunk=16, strategy="auto", eval_batch=1024, apply_batch=256)


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
        task = mini_task(root, crop=cfg.image_size)
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


def _measure(logits: np.ndarray, sizes: np.ndarray, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    """All numbers of one evaluation set from member logits on the D4 orbit ``(M, 8, n, C)``."""
    out: dict[str, np.ndarray] = {}
    ensemble = logits.mean(0)                                                       # (8, n, C)
    pred = logits[:, 0].argmax(-1)                                                  # (M, n) at the identity
    ens_pred = ensemble[0].argmax(-1)                                               # (n,)
    top2 = np.sort(ensemble[0], -1)[:, -2:]
    out["margin"] = top2[:, 1] - top2[:, 0]                                         # (n,) logit gap, top two classes
    out["agreement"] = (pred == ens_pred).mean(0)                                   # (n,) share of members
    out["member_pred"] = logits.argmax(-1).astype(np.int8)                          # (M, 8, n)
    out["ensemble_pred"] = ensemble.argmax(-1).astype(np.int8)                      # (8, n)
    for name, order in (("C4", 4), ("D4", 8)):
        member = orbit_same_prediction(logits[:, :order])
        out[f"member_osp_{name}"] = member.fraction                                 # (M,)
        out[f"member_consistent_{name}"] = member.consistent                        # (M,)
        out[f"member_spread_{name}"] = orbit_spread(logits[:, :order]).mean(-1)     # (M,)
        out[f"ensemble_counts_{name}"] = orbit_same_prediction(ensemble[:order]).counts   # (n,)
        for key, value in subensemble_symmetry(logits[:, :order], sizes).items():
            out[f"{key}_{name}"] = value                                            # (K,)
    if labels is not None:
        out["member_accuracy"] = accuracy(logits[:, 0], labels)                     # (M,)
        out["accuracy"] = metrics.subensemble_statistics(
            logits[:, 0], sizes, lambda ens: accuracy(ens, labels), num_bootstrap=0).estimate   # (K,)
    return out


# ---------------------------------------------------------------------------------------- run


def _train_and_measure(run: Run, cfg: HistologyConfig, mode: str, load: Callable[[], dict]) -> dict[str, np.ndarray]:
    d = load()
    net = architecture(cfg).flax()
    train = TrainConfig(loss="cross_entropy", optimizer="adam", learning_rate=cfg.learning_rate, epochs=cfg.epochs,
                        batch_size=cfg.batch_size, strategy=cfg.strategy)
    group = None if mode == "plain" else get_group(mode)
    params, losses = [], []
    for state, history in train_in_chunks(net, d["x"], d["y_train"], train, cfg.members, cfg.member_chunk, cfg.seed,
                                          run.checkpoint_path, f"train_{mode}", group=group,
                                          progress=run.show_progress):
        params.append(state.params)
        losses.append(history["loss"])                                              # (epochs, members of the call)
    params = jax.tree_util.tree_map(lambda *leaves: np.concatenate([np.asarray(l) for l in leaves]), *params)
    out: dict[str, np.ndarray] = {"loss": np.concatenate(losses, axis=1)}           # (epochs, M)
    d4 = Dihedral4()
    sizes = ensemble_sizes(cfg)
    for name in EVAL_SETS:
        logits = _orbit_logits(net, params, d[f"eval_{name}"], d4, cfg.eval_batch, cfg.apply_batch,
                               cfg.strategy)                                        # (M, 8, n, C)
        labels = d["y_test"] if name in ("test", "jitter") else None
        out.update({f"{name}/{k}": v for k, v in _measure(logits, sizes, labels).items()})
    return out


@experiment("histology", quick=QUICK, full=FULL)
def run(run: Run, cfg: HistologyConfig) -> dict:
    """Histology tissue classes: CNN ensembles with/without full C4 or D4 augmentation; OSP and accuracy."""
    modes = training_modes(cfg)
    sizes = ensemble_sizes(cfg)
    cache: dict[str, dict] = {}

    def load() -> dict:
        """Images standardised with the training statistics (loaded once, only when a step needs them)."""
        if not cache:
            raw = histology_data(cfg)
            mean = raw["x_train"].mean((0, 1, 2))
            std = raw["x_train"].std((0, 1, 2))
            evals = evaluation_sets(cfg, raw["x_test"])
            x = (raw.pop("x_train") - mean) / std                  # (the full set is 4.9 GB at 64 px: one copy)
            cache["d"] = {"x": x, **raw, "mean": mean, "std": std,
                          **{f"eval_{k}": ((v - mean) / std).astype(np.float32) for k, v in evals.items()}}
        return cache["d"]

    def describe() -> dict:
        d = load()
        return {"mean": d["mean"], "std": d["std"], "y_train": d["y_train"], "y_test": d["y_test"],
                "files_train": np.unique(d["files_train"]), "files_test": np.unique(d["files_test"]),
                "n_eval": np.asarray([len(d[f"eval_{k}"]) for k in EVAL_SETS])}

    info = run.step("data", describe)
    arrays: dict[str, np.ndarray] = {"sizes": sizes, **{f"data/{k}": v for k, v in info.items()}}
    for mode in modes:
        result = run.step(f"measure/{mode}", lambda: _train_and_measure(run, cfg, mode, load))
        arrays.update({f"{mode}/{k}": v for k, v in result.items()})
    return {"arrays": arrays, "summary": _summary(cfg, arrays, modes)}


def _summary(cfg: HistologyConfig, arrays: dict, modes: tuple[str, ...]) -> dict:
    """Full-ensemble numbers against the mean member, per training mode, group and evaluation set."""
    n_eval = arrays["data/n_eval"]
    summary: dict = {
        "data": {
            "kind": cfg.data,
            "stand_in": cfg.data == "mini",
            "note": ("tiny stand-in: crops of the 27 patches in data/histology (18 training patches from NCT-CRC-HE-100K, "
                     "9 held-out patches from CRC-VAL-HE-7K); not representative of the full data set"
                     if cfg.data == "mini" else "NCT-CRC-HE-100K (training) and CRC-VAL-HE-7K (held out)"),
            "n_train": int(len(arrays["data/y_train"])),
            "n_eval": {k: int(v) for k, v in zip(EVAL_SETS, n_eval)},
            "train_patches": int(len(arrays["data/files_train"])),
            "test_patches": int(len(arrays["data/files_test"])),
            "image_size": cfg.image_size,
            "classes": list(CLASSES),
        },
        "loss": "cross_entropy", "optimizer": "adam", "ensemble_prediction": "mean of member logits",
        "chance_accuracy": 1 / len(CLASSES),
        "ensemble_sizes": arrays["sizes"].tolist(),
    }
    for mode in modes:
        entry: dict = {"final_loss": float(arrays[f"{mode}/loss"][-1].mean())}
        for name in ("test", "jitter"):
            entry[f"accuracy_{name}"] = {"member_mean": float(arrays[f"{mode}/{name}/member_accuracy"].mean()),
                                         "member_std": float(arrays[f"{mode}/{name}/member_accuracy"].std()),
                                         "ensemble": float(arrays[f"{mode}/{name}/accuracy"][-1])}
        for g in EVAL_GROUPS:
            for name in EVAL_SETS:
                p = f"{mode}/{name}"
                entry[f"{g}/{name}"] = {
                    "member_osp": float(arrays[f"{p}/member_osp_{g}"].mean()),
                    "ensemble_osp": float(arrays[f"{p}/osp_{g}"][-1]),
                    "member_consistent": float(arrays[f"{p}/member_consistent_{g}"].mean()),
                    "ensemble_consistent": float(arrays[f"{p}/consistent_{g}"][-1]),
                    "member_spread": float(arrays[f"{p}/member_spread_{g}"].mean()),
                    "ensemble_spread": float(arrays[f"{p}/spread_{g}"][-1]),
                    # 1/√M for independent fluctuations around an invariant mean; ~1 for a systematic violation
                    "relative_spread": float(arrays[f"{p}/spread_{g}"][-1] / arrays[f"{p}/spread_{g}"][0]),
                }
        for name in EVAL_SETS:
            entry[f"agreement/{name}"] = float(arrays[f"{mode}/{name}/agreement"].mean())
            entry[f"margin/{name}"] = float(arrays[f"{mode}/{name}/margin"].mean())
        summary[mode] = entry
    return summary
