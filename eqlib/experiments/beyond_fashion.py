"""Beyond the paper on FashionMNIST: the augmented ensemble against built-in invariance, at equal compute.

The augmented ensemble is the C4 arm of the FashionMNIST experiment (:mod:`.fashion_mnist`):
``M`` ordinary CNNs ``cnn([c, 2c, 4c])`` trained with full C4 augmentation, whose logits on the C4
orbits of the ``test``, ``mnist`` and ``noise`` images that experiment stores. This experiment
trains, on **the same training images** (:func:`.fashion_mnist.select_data` of the mirrored
preset), with the same epochs, batch size, loss (cross-entropy) and optimiser (Adam, same
learning rate), ``seeds`` networks of each of two invariant alternatives:

* ``gcnn`` — a C4 group-convolutional network (:func:`eqlib.gcnn.gcnn`) of ``gcnn_width`` fields
  per layer (×4 rotation channels) with the members' kind of read-out (``head``: a dense layer on
  the orbit-averaged, flattened last fields), trained without augmentation (it is invariant
  already);
* ``canonical`` — a plain member ``cnn([c, 2c, 4c])`` behind a canonicaliser
  (:class:`eqlib.canonicalize.Canonicalized`) that rotates every image to the orientation
  chosen by a fixed invariant rule, trained without augmentation (every rotated copy of an
  image has the same canonical image, so augmentation would only repeat it).

The third alternative, test-time symmetrisation of single members (averaging the logits over the
orbit), needs no training: it is computed from the stored orbit logits (:func:`symmetrized`).

**Equal compute.** Costs are measured, not assumed: the floating-point operations of one
training step and of one forward pass (XLA's cost analysis of the lowered program of the very
step :func:`eqlib.ensemble.ensemble_core` trains with), and the wall time of ``timing_steps``
compiled steps on the machine of the run (after a warm-up), for the augmented member (batches of
``batch_size`` images × 4 rotations), the GCNN and the canonicalised member (``batch_size``
images: a quarter of the augmented member's work). The GCNN's width is chosen so that its
forward pass on a batch costs about what an augmented member's costs on the four rotated copies
(:func:`matched_gcnn_width`; a test checks every preset's width): then ``S`` GCNNs cost what
``S`` augmented members cost, and the GCNN ensemble of ``S`` is compared with the augmented
ensemble of its first ``S`` members.

The uncertainty section of the chapter uses only the FashionMNIST run's orbit logits of the
augmented and unaugmented ensembles: :func:`orbit_scores`, :func:`orbit_shares`,
:func:`variance_share_by_size`, :func:`ood_aurocs` (with :mod:`eqlib.uncertainty`).

Arrays: ``<model>/logits/<set>: (S, 4, n_eval, 10)`` (float16, every statistic is computed from
these rounded values, as in the FashionMNIST experiment), ``<model>/loss: (epochs, S)``,
``<model>/first_epoch_step_loss: (S, steps)`` (every step of epoch 1, for the replay test),
``<model>/train_wall_s: ()``, ``canonical/ties/<set>: (n_eval,)`` (exact ties of the
canonicaliser), ``cost/<kind>/<quantity>`` for kinds ``augmented``, ``gcnn``, ``canonical``
(``params``, ``train_step_flops``, ``forward_flops_per_image``, ``step_seconds``,
``steps``).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..canonicalize import Canonicalized, ties
from ..ensemble import batch_indices, ensemble_apply, ensemble_core, make_optimizer
from ..gcnn import gcnn, num_params
from ..groups import CyclicRotations
from ..metrics import orbit_outputs
from ..runner import Run, experiment
from . import fashion_mnist as fm

__all__ = ["BeyondFashionConfig", "QUICK", "REFERENCE", "FULL", "MODELS", "COST_KINDS", "fashion_config",
           "augmented_key", "models", "step_costs", "matched_gcnn_width", "symmetrized", "comparison_rows",
           "markdown_table", "TABLE_COLUMNS", "ARMS", "UNCERTAINTY_SCORES", "OOD_VIEWS", "orbit_scores",
           "orbit_shares", "ood_views", "ood_aurocs", "variance_share_by_size", "difference_interval"]

#: The two trained alternatives.
MODELS = ("gcnn", "canonical")
#: Whose costs are measured.
COST_KINDS = ("augmented", "gcnn", "canonical")
_FASHION_PRESETS = {"quick": fm.QUICK, "reference": fm.REFERENCE, "full": fm.FULL}


@dataclass(frozen=True)
class BeyondFashionConfig:
    """Settings (see the module docstring)."""

    fashion_preset: str = "quick"          # the FashionMNIST preset mirrored (data, epochs, optimiser, c)
    seeds: int = 4                         # networks of each alternative (members 0 … seeds−1)
    gcnn_width: int = 4                    # fields per GCNN layer: (w, 2w, 4w), ×4 rotation channels
    direction: tuple[float, float] = (1.0, 0.0)   # canonicaliser: move the centre of ink along this
    timing_steps: int = 10                 # training steps timed per kind (after a warm-up step; 0: none)
    eval_batch: int = 1024                 # images per forward pass in evaluation
    n_train: int = 0                       # 0: the mirrored preset's; else override (tests, exercises)
    n_eval: int = 0                        # 0: the mirrored preset's
    epochs: int = 0                        # 0: the mirrored preset's

    def __post_init__(self):
        if self.fashion_preset not in _FASHION_PRESETS:
            raise ValueError(f"fashion_preset must be one of {tuple(_FASHION_PRESETS)}, "
                             f"got {self.fashion_preset!r}")
        if self.seeds < 2:
            raise ValueError(f"seeds must be at least 2 (intervals over seeds), got {self.seeds}")
        if self.gcnn_width < 1 or self.timing_steps < 0 or self.eval_batch < 1:
            raise ValueError(f"need gcnn_width ≥ 1, timing_steps ≥ 0, eval_batch ≥ 1, got {self}")
        if min(self.n_train, self.n_eval, self.epochs) < 0:
            raise ValueError(f"n_train, n_eval and epochs must be ≥ 0 (0: the preset's), got {self}")
        if self.seeds > _FASHION_PRESETS[self.fashion_preset].members:
            raise ValueError(f"seeds ({self.seeds}) must not exceed the mirrored preset's members "
                             f"({_FASHION_PRESETS[self.fashion_preset].members})")


#: Runs live in the chapter: mirrors the FashionMNIST quick preset (c = 8: a GCNN of width 4 costs
#: about one augmented member per step, :func:`matched_gcnn_width`).
QUICK = BeyondFashionConfig()
#: Mirrors the stored FashionMNIST reference run (60,000 images, c = 16 → GCNN width 8).
REFERENCE = BeyondFashionConfig(fashion_preset="reference", seeds=8, gcnn_width=8)
#: Mirrors the FashionMNIST full preset (GPU).
FULL = BeyondFashionConfig(fashion_preset="full", seeds=20, gcnn_width=8, eval_batch=512)


def fashion_config(cfg: BeyondFashionConfig) -> fm.FashionMNISTConfig:
    """The FashionMNIST preset this run mirrors (with the overrides ``n_train``, ``n_eval``, ``epochs``)."""
    base = _FASHION_PRESETS[cfg.fashion_preset]
    changes = {k: getattr(cfg, k) for k in ("n_train", "n_eval", "epochs") if getattr(cfg, k)}
    if "n_eval" in changes:
        changes.update(n_epoch_eval=min(base.n_epoch_eval, cfg.n_eval),
                       n_cont_eval=min(base.n_cont_eval, cfg.n_eval),
                       n_acc_eval=max(base.n_acc_eval, cfg.n_eval))
    return dataclasses.replace(base, **changes)


def augmented_key(fcfg: fm.FashionMNISTConfig, augmentation: str = "C4") -> str:
    """Key of the FashionMNIST ensemble compared with: ``c<widths[0]>_<augmentation>``, e.g. ``c8_C4``."""
    return f"c{fcfg.widths[0]}_{augmentation}"


def models(cfg: BeyondFashionConfig) -> dict[str, object]:
    """The flax modules: ``augmented`` (the FashionMNIST member), ``gcnn``, ``canonical``."""
    fcfg = fashion_config(cfg)
    member = fm.member_architecture(fcfg.widths[0], fcfg.parametrization, fcfg.head).flax()
    return {"augmented": member, "gcnn": gcnn(cfg.gcnn_width, head=fcfg.head),
            "canonical": Canonicalized(member, tuple(float(v) for v in cfg.direction))}


# ------------------------------------------------------------------------------------ costs

def _flops(program) -> float:
    """XLA's FLOP count of a lowered or compiled jax program."""
    analysis = program.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis["flops"])


def step_costs(module, x: np.ndarray, y: np.ndarray, batch_size: int, learning_rate: float,
               augment: bool, timing_steps: int = 0, seed: int = 0) -> dict[str, float]:
    """Measured cost of training and applying ``module`` on images ``x: (n, 28, 28, 1)``.

    Returns ``params``, ``train_step_flops`` (one Adam step on ``batch_size`` images, ×4
    rotations when ``augment``: XLA's count for the lowered step), ``forward_flops_per_image``
    and ``step_seconds``: the mean wall time of ``timing_steps`` steps after one warm-up step
    (NaN when ``timing_steps = 0``).
    """
    from ..ensemble import TrainConfig

    tx = make_optimizer(TrainConfig(loss="cross_entropy", optimizer="adam", learning_rate=learning_rate))
    core = ensemble_core(module, tx, "cross_entropy", CyclicRotations(4) if augment else None)
    key, example = jax.random.PRNGKey(seed), jnp.asarray(x[:1])
    shapes = jax.eval_shape(module.init, key, example)            # counting needs shapes only
    opt_shapes = jax.eval_shape(tx.init, shapes)
    x_dev, y_dev = jnp.asarray(x), jnp.asarray(y)
    idx = batch_indices(seed, 0, 0, len(x), batch_size)
    lowered = jax.jit(core.member_step).lower(shapes, opt_shapes, x_dev, y_dev, jnp.asarray(idx[0]))
    forward = jax.jit(module.apply).lower(shapes, x_dev[:batch_size])
    out = {"params": float(num_params(module, x.shape[1:])), "train_step_flops": _flops(lowered),
           "forward_flops_per_image": _flops(forward) / batch_size, "step_seconds": float("nan")}
    if timing_steps > 0:
        if len(idx) < timing_steps + 1:
            raise ValueError(f"need {timing_steps + 1} batches to time, have {len(idx)}")
        compiled = lowered.compile()
        params = jax.jit(module.init)(key, example)
        p, s, v = compiled(params, jax.jit(tx.init)(params), x_dev, y_dev, jnp.asarray(idx[0]))
        jax.block_until_ready(v)
        t0 = time.perf_counter()
        for i in range(1, timing_steps + 1):
            p, s, v = compiled(p, s, x_dev, y_dev, jnp.asarray(idx[i]))
        jax.block_until_ready(v)
        out["step_seconds"] = (time.perf_counter() - t0) / timing_steps
    return out


def matched_gcnn_width(member_width: int, batch_size: int = 32,
                       candidates: Sequence[int] = tuple(range(1, 13)), parametrization: str = "standard",
                       head: str = "flatten") -> int:
    """The GCNN width whose forward pass on ``batch_size`` images costs closest (in FLOPs, on a log
    scale) to the augmented member's on ``4·batch_size`` images: equal compute per training step
    (backward and Adam scale like the forward pass)."""
    member = fm.member_architecture(member_width, parametrization, head).flax()
    x = jnp.zeros((4 * batch_size, 28, 28, 1))

    def forward_flops(module, n: int) -> float:
        params = jax.eval_shape(module.init, jax.random.PRNGKey(0), x[:1])
        return _flops(jax.jit(module.apply).lower(params, x[:n]))

    target = forward_flops(member, 4 * batch_size)
    costs = {w: forward_flops(gcnn(w, head=head), batch_size) for w in candidates}
    return min(costs, key=lambda w: abs(np.log(costs[w] / target)))


# ------------------------------------------------------------------------------ measuring

def _orbit_logits(net, params, x: np.ndarray, batch: int) -> np.ndarray:
    """``(S, 4, n, 10)`` logits of every network on the C4 orbit of ``x: (n, 28, 28, 1)``."""
    return orbit_outputs(lambda z: ensemble_apply(net, params, z, batch_size=batch), x, CyclicRotations(4),
                         inputs_per_call=max(1, batch // 4))


def train_and_measure(run: Run, cfg: BeyondFashionConfig, data: dict, model: str) -> dict[str, np.ndarray]:
    """Train ``cfg.seeds`` networks of ``model`` (``"gcnn"`` or ``"canonical"``) and measure them."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    fcfg = fashion_config(cfg)
    net = models(cfg)[model]
    train = fm.train_config(fcfg)
    t0 = time.perf_counter()
    state, history = run.train(f"train_{model}", net, data["x_train"], data["y_train"], train, cfg.seeds,
                               fcfg.seed)
    out = {"loss": history["loss"], "train_wall_s": np.asarray(time.perf_counter() - t0),
           # every step of epoch 1: what the stored run's replay test recomputes
           "first_epoch_step_loss": history["first_epoch_step_loss"]}
    for name in fm.EVAL_SETS:
        x = data[f"x_{name}"]
        out[f"logits/{name}"] = _orbit_logits(net, state.params, x, cfg.eval_batch).astype(np.float16)
        if model == "canonical":
            out[f"ties/{name}"] = ties(x, cfg.direction)
    return out


def measure_costs(cfg: BeyondFashionConfig, data: dict) -> dict[str, np.ndarray]:
    """``<kind>/<quantity>`` for the kinds of :data:`COST_KINDS` (see :func:`step_costs`), plus ``steps``."""
    fcfg = fashion_config(cfg)
    steps = fcfg.epochs * (len(data["x_train"]) // fcfg.batch_size)
    out = {}
    for kind, module in models(cfg).items():
        costs = step_costs(module, data["x_train"], data["y_train"], fcfg.batch_size, fcfg.learning_rate,
                           augment=kind == "augmented", timing_steps=cfg.timing_steps, seed=fcfg.seed)
        costs["steps"] = steps
        out.update({f"{kind}/{k}": np.asarray(v) for k, v in costs.items()})
    return out


# --------------------------------------------------------------------------- the comparison

def symmetrized(logits_on_orbit: np.ndarray) -> np.ndarray:
    """Test-time symmetrisation from orbit logits: ``f^G(g·x) = mean_h f(h·x)`` on every element.

    ``(..., |G|, n, C) → (..., |G|, n, C)``: the orbit mean, repeated along the orbit (the orbit
    of ``g·x`` is the orbit of ``x``, so one mean serves all its elements).
    """
    logits = np.asarray(logits_on_orbit, dtype=np.float32)
    if logits.ndim < 3:
        raise ValueError(f"symmetrized expects logits (..., |G|, n, C), got shape {logits.shape}")
    return np.broadcast_to(logits.mean(-3, keepdims=True), logits.shape).copy()


#: Columns of :func:`comparison_rows` (besides ``model``), in table order.
TABLE_COLUMNS = ("networks", "acc", "acc_orbit", "osp_test", "osp_mnist", "osp_noise", "kl_test", "kl_mnist",
                 "kl_noise", "params", "train_gflop", "train_s", "infer_mflop")


def _stats(logits_by_set: dict[str, np.ndarray], y_test: np.ndarray) -> dict[str, np.ndarray]:
    """``{stat_set: (3, 3)}`` from :func:`.fashion_mnist.orbit_statistics` (member/ensemble/difference)."""
    out = {}
    for name, logits in logits_by_set.items():
        iv = fm.orbit_statistics(logits.astype(np.float32), y_test if name == "test" else None)
        for stat, arr in iv.items():
            if stat == "osp":
                arr = arr / logits.shape[1]                       # OSP fraction
            out[stat if stat.startswith("acc") else f"{stat}_{name}"] = arr
    return out


def comparison_rows(fashion_arrays: dict, arrays: dict, cfg: BeyondFashionConfig) -> list[dict]:
    """The comparison table as rows ``{"model": str, column: value}`` (no pandas).

    ``fashion_arrays``: the FashionMNIST run of ``cfg.fashion_preset``; ``arrays``: this run.
    Statistic columns hold ``(estimate, low, high)`` (95 % jackknife over the networks of the row,
    :func:`eqlib.metrics.member_vs_ensemble`; a member row is the mean over its networks), cost
    columns a number: ``params`` (of all networks in the row), ``train_gflop`` (all training steps
    of all networks), ``train_s`` (training wall time on this machine: measured seconds per step
    × steps × networks), ``infer_mflop`` (forward FLOPs per image, all networks; symmetrisation
    ×4). ``acc`` / ``acc_orbit``: accuracy on the upright / all rotated ``test`` images.
    """
    fcfg = fashion_config(cfg)
    key, S = augmented_key(fcfg), cfg.seeds
    y = np.asarray(fashion_arrays["y_test"])
    aug = {s: np.asarray(fashion_arrays[f"{key}/logits/{s}"]) for s in fm.EVAL_SETS}
    M = next(iter(aug.values())).shape[0]
    quantities = ("params", "train_step_flops", "forward_flops_per_image", "step_seconds", "steps")
    cost = {k: {q: float(arrays[f"cost/{k}/{q}"]) for q in quantities} for k in COST_KINDS}

    def costs(kind: str, networks: int, evaluations: int = 1) -> dict:
        c = cost[kind]
        return {"params": networks * c["params"],
                "train_gflop": networks * c["train_step_flops"] * c["steps"] / 1e9,
                "train_s": networks * c["step_seconds"] * c["steps"],
                "infer_mflop": networks * evaluations * c["forward_flops_per_image"] / 1e6}

    def rows_of(label: str, logits: dict, kind: str, evaluations: int = 1, member: bool = True,
                ensemble: bool = True) -> list[dict]:
        stats, n = _stats(logits, y), next(iter(logits.values())).shape[0]
        out = []
        for which, networks, i in (("member", 1, 0), ("ensemble", n, 1)):
            if (which == "member" and member) or (which == "ensemble" and ensemble):
                name = f"{label} member" if which == "member" else f"{label} ensemble of {n}"
                row = {"model": name, "networks": networks}
                row.update({col: tuple(float(v) for v in stats[col][i])
                            for col in TABLE_COLUMNS if col in stats})
                row.update(costs(kind, networks, evaluations))
                out.append(row)
        return out

    first = {s: v[:S] for s, v in aug.items()}
    rows = rows_of("augmented", first, "augmented")
    if M > S:
        rows += rows_of("augmented", aug, "augmented", member=False)
    rows += rows_of("symmetrised augmented", {s: symmetrized(v) for s, v in aug.items()}, "augmented",
                    evaluations=4, ensemble=False)
    for model, label in (("gcnn", "GCNN"), ("canonical", "canonicalised")):
        rows += rows_of(label, {s: np.asarray(arrays[f"{model}/logits/{s}"]) for s in fm.EVAL_SETS}, model)
    return rows


def markdown_table(rows: Sequence[dict], columns: Sequence[str] = ("model",) + TABLE_COLUMNS,
                   headers: dict[str, str] | None = None, digits: int = 3) -> str:
    """Rows of :func:`comparison_rows` as a Markdown table; intervals as ``est [low, high]``."""
    headers = headers or {}

    def cell(v) -> str:
        if isinstance(v, tuple):
            return f"{v[0]:.{digits}f} [{v[1]:.{digits}f}, {v[2]:.{digits}f}]"
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}g}"
        return str(v)

    lines = ["| " + " | ".join(headers.get(c, c) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c, "—")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- run

@experiment("beyond_fashion", quick=QUICK, reference=REFERENCE, full=FULL)
def run(run: Run, cfg: BeyondFashionConfig) -> dict:
    """FashionMNIST, C4: GCNNs and canonicalised CNNs trained like the augmented members; their costs."""
    fcfg = fashion_config(cfg)
    idx = run.step("data", lambda: fm.select_data(fcfg))
    data = fm.load_sets(fcfg, idx)
    arrays: dict[str, np.ndarray] = {"y_test": data["y_test"], "test_idx": idx["test_idx"]}
    run.log("measuring training and inference costs")
    costs = run.step("costs", lambda: measure_costs(cfg, data))
    arrays.update({f"cost/{k}": v for k, v in costs.items()})
    for model in MODELS:
        run.log(f"training {cfg.seeds} {model} networks")
        result = run.step(f"model/{model}", lambda: train_and_measure(run, cfg, data, model))
        arrays.update({f"{model}/{k}": v for k, v in result.items()})
    return {"arrays": arrays, "summary": _summary(cfg, arrays)}


def _summary(cfg: BeyondFashionConfig, arrays: dict) -> dict:
    """Costs, ties and the members' test accuracy and OSP fraction per model."""
    fcfg = fashion_config(cfg)
    summary: dict = {"mirrors": f"fashion_mnist preset {cfg.fashion_preset!r}, "
                                f"ensemble {augmented_key(fcfg)}",
                     "training": "cross-entropy, Adam, as the mirrored preset; gcnn and canonical without "
                                 "augmentation",
                     "costs": {k: {q: float(arrays[f"cost/{k}/{q}"]) for q in
                                   ("params", "train_step_flops", "forward_flops_per_image", "step_seconds",
                                    "steps")} for k in COST_KINDS}}
    y = np.asarray(arrays["y_test"])
    for model in MODELS:
        logits = arrays[f"{model}/logits/test"].astype(np.float32)
        entry = {"train_wall_s": float(arrays[f"{model}/train_wall_s"]),
                 "member_acc": float((logits[:, 0].argmax(-1) == y).mean()),
                 "ensemble_acc": float((logits.mean(0)[0].argmax(-1) == y).mean())}
        for name in fm.EVAL_SETS:
            pred = arrays[f"{model}/logits/{name}"].astype(np.float32).argmax(-1)
            entry[f"member_osp_fraction/{name}"] = float((pred == pred[:, :1]).mean())
            if model == "canonical":
                entry[f"ties/{name}"] = int(np.asarray(arrays[f"{model}/ties/{name}"]).sum())
        summary[model] = entry
    return summary


# ------------------------------------------------------------------- equivariant uncertainty

#: Arms of the FashionMNIST experiment compared in the uncertainty section.
ARMS = ("C4", "none")
#: Per-input scores on orbits: the ensemble's predictive variance, a member's own confidence, the
#: ensemble's confidence (max-softmax of the mean logits).
UNCERTAINTY_SCORES = ("ensemble_variance", "member_confidence", "ensemble_confidence")
#: Views of the inputs for out-of-distribution detection.
OOD_VIEWS = ("upright", "rotated")


def orbit_scores(logits_on_orbit: np.ndarray) -> dict[str, np.ndarray]:
    """The scores of :data:`UNCERTAINTY_SCORES` on orbits, from member logits ``(M, |G|, n, C)``.

    ``ensemble_variance``, ``ensemble_confidence``: ``(|G|, n)``; ``member_confidence``: ``(M, |G|, n)``.
    """
    from ..uncertainty import max_softmax, predictive_variance

    logits = np.asarray(logits_on_orbit, dtype=np.float32)
    if logits.ndim != 4:
        raise ValueError(f"logits_on_orbit must be (M, |G|, n, C), got shape {logits.shape}")
    return {"ensemble_variance": predictive_variance(logits), "member_confidence": max_softmax(logits),
            "ensemble_confidence": max_softmax(logits.mean(0))}


def orbit_shares(fashion_arrays: dict, fcfg: fm.FashionMNISTConfig, sets: Sequence[str] = fm.EVAL_SETS,
                 num_bootstrap: int = 1000, seed: int = 0) -> dict[tuple[str, str, str], object]:
    """``{(arm, score, set): Interval}``: the within-orbit share of each score's variance
    (:func:`eqlib.uncertainty.within_orbit_share`; members: averaged over members), with a
    bootstrap over the inputs, for the augmented (``C4``) and unaugmented (``none``) ensembles."""
    from ..uncertainty import within_orbit_share_interval

    out = {}
    for arm in ARMS:
        for name in sets:
            scores = orbit_scores(fashion_arrays[f"{augmented_key(fcfg, arm)}/logits/{name}"])
            for score, values in scores.items():
                out[(arm, score, name)] = within_orbit_share_interval(values, num_bootstrap, seed)
    return out


def ood_views(logits_on_orbit: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """``{"upright": (M, n, C), "rotated": (M, n, C)}``: each input upright, and turned by a
    seeded random non-trivial element of C4 (1, 2 or 3 quarter turns, drawn per input)."""
    logits = np.asarray(logits_on_orbit, dtype=np.float32)
    n = logits.shape[2]
    g = np.random.default_rng(seed).integers(1, logits.shape[1], n)
    return {"upright": logits[:, 0], "rotated": logits[:, g, np.arange(n)]}


def ood_aurocs(fashion_arrays: dict, fcfg: fm.FashionMNISTConfig, in_set: str = "test",
               out_set: str = "mnist", num_bootstrap: int = 1000,
               seed: int = 0) -> dict[tuple[str, str], object]:
    """``{(arm, view): Interval}``: AUROC of the ensemble's predictive variance for ``in_set`` (in)
    against ``out_set`` (out), upright and rotated (:func:`ood_views`), bootstrap over inputs."""
    from ..uncertainty import bootstrap_auroc, predictive_variance

    out = {}
    for arm in ARMS:
        key = augmented_key(fcfg, arm)
        views_in = ood_views(fashion_arrays[f"{key}/logits/{in_set}"], seed)
        views_out = ood_views(fashion_arrays[f"{key}/logits/{out_set}"], seed + 1)
        for view in OOD_VIEWS:
            out[(arm, view)] = bootstrap_auroc(predictive_variance(views_in[view]),
                                               predictive_variance(views_out[view]), num_bootstrap, seed)
    return out


def variance_share_by_size(logits_on_orbit: np.ndarray, sizes: Sequence[int]) -> dict[str, np.ndarray]:
    """Within-orbit share of the ensemble's predictive variance for ensembles of each size.

    ``logits_on_orbit: (M, |G|, n, C)``; ensembles of size ``k ≥ 2`` are the disjoint blocks of
    ``k`` consecutive members. Returns ``sizes: (K,)``, ``share: (K,)`` (mean over blocks) and
    ``share_std: (K,)`` (standard deviation over blocks, 0 for one block). An estimate of a variance
    from ``k`` members fluctuates along the orbit even when the limit is invariant: the share of
    an augmented ensemble should fall as ``k`` grows, an unaugmented one's need not.
    """
    from ..uncertainty import predictive_variance, within_orbit_share

    logits = np.asarray(logits_on_orbit, dtype=np.float32)
    if logits.ndim != 4:
        raise ValueError(f"logits_on_orbit must be (M, |G|, n, C), got shape {logits.shape}")
    sizes = [int(k) for k in sizes]
    if not sizes or min(sizes) < 2 or max(sizes) > logits.shape[0]:
        raise ValueError(f"sizes must lie in 2..{logits.shape[0]}, got {sizes}")
    share, std = [], []
    for k in sizes:
        blocks = [within_orbit_share(predictive_variance(logits[j * k:(j + 1) * k]))
                  for j in range(logits.shape[0] // k)]
        share.append(np.mean(blocks))
        std.append(np.std(blocks))
    return {"sizes": np.asarray(sizes), "share": np.asarray(share), "share_std": np.asarray(std)}


def difference_interval(a: Sequence[float], b: Sequence[float],
                        level: float = 0.95) -> tuple[float, float, float]:
    """``a − b`` for two independent ``(estimate, low, high)`` symmetric normal intervals at ``level``:
    standard errors added in quadrature. Returns ``(estimate, low, high)``."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    se = [(float(x[2]) - float(x[1])) / (2 * z) for x in (a, b)]
    if min(se) < 0:
        raise ValueError(f"intervals must have low ≤ high, got {a} and {b}")
    d, half = float(a[0]) - float(b[0]), z * float(np.hypot(*se))
    return d, d - half, d + half
