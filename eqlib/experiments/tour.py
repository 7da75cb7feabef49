"""The tour: a C4-invariant toy regression, MLP ensembles with and without full augmentation.

Everything the tour chapter shows, for both trainings (``augmented``: full augmentation;
``plain``: the 48 images alone) and both evaluation sets (``test`` images and off-manifold
``noise`` images): the members' outputs on the orbits, the orbit spread of every member and of
the ensemble mean with jackknife intervals over members, the infinite-width ensemble's mean μ_t
(float64, at t = 0 and t = steps) on the orbits and its covariance Σ_t (per orbit), and the
orbit spread that the members' fluctuation alone predicts — from their own covariance Var_w and
from Σ_t (after Lemma B.4; :func:`eqlib.breaking.predicted_subensemble_violation`).

``quick`` is what the tour chapter runs live (about half a minute on a 2-core CPU); ``full``
scales width and ensemble size for a GPU (``python -m eqlib run tour --preset full``).

Arrays (``<mode>/<key>`` with mode ``augmented`` | ``plain``; ``<d>`` is ``test`` | ``noise``):

* ``loss: (steps, M)``, ``first_epoch_step_loss: (M, 1)`` — training losses (full batch);
* ``member_outputs_<d>: (M, |G|, n, 1)`` — every member on the orbits;
* ``member_spread_<d>: (M, n)``, ``ensemble_spread_<d>: (n,)`` — orbit spreads;
* ``spread_interval_<d>: (3, 3)`` — rows member mean, ensemble, ensemble − member; columns
  estimate, low, high (:data:`INTERVAL_LEVEL` delete-one jackknife over members, :func:`eqlib.metrics.member_vs_ensemble`);
* ``ntk_mean_<d>: (2, |G|, n, 1)`` and ``ntk_spread_<d>: (2, n)`` at ``ntk_times = (0, steps)``;
* ``sigma_blocks_<d>``, ``var_w_blocks_<d>: (n, |G|, |G|)`` — Σ_t (t = steps) and the members'
  covariance Var_w between the orbit points of each input;
* ``fluctuation_<d>: (6,)`` — see :data:`FLUCTUATION_COLUMNS`;
* ``comparison/ensemble_spread_ratio_<d>: (3, 3)`` — augmented over plain ensemble spread,
  rows and columns as for ``spread_interval`` (members paired by index: same initialisation).
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from ..augment import augment_full_orbit
from ..breaking import predicted_subensemble_violation
from ..data.toy import blob_regression
from ..ensemble import TrainConfig, ensemble_apply
from ..groups import get_group
from ..metrics import member_vs_ensemble, orbit_outputs, orbit_spread
from ..models import mlp
from ..ntk import ensemble_mean_cov
from ..runner import Run, experiment

MODES = ("augmented", "plain")
DATA_SETS = ("test", "noise")
#: Columns of ``fluctuation_<d>``: the input-averaged orbit spread predicted for an ensemble mean
#: drawn from N(invariant, V/M) (its mean and standard deviation over draws), the naive scale
#: √(mean V(x, x)/M), for V = Var_w and V = Σ_t; see the module docstring.
FLUCTUATION_COLUMNS = ("from_var_w", "from_var_w_std", "naive_var_w",
                       "from_sigma", "from_sigma_std", "naive_sigma")
INTERVAL_ROWS = ("member", "ensemble", "difference")
#: Confidence level of the jackknife intervals over members.
INTERVAL_LEVEL = 0.95


@dataclass(frozen=True)
class TourConfig:
    seed: int = 0
    group: str = "C4"
    n_train: int = 48
    n_eval: int = 200
    size: int = 8
    width: int = 512
    members: int = 32
    learning_rate: float = 4.0
    steps: int = 300  # full-batch gradient descent steps
    prediction_samples: int = 512  # Monte-Carlo draws of the fluctuation-only prediction


def tour_data(cfg: TourConfig) -> dict[str, np.ndarray]:
    """Training set, test set (targets standardised with training statistics) and noise images."""
    x, y = blob_regression(cfg.n_train, cfg.size, seed=cfg.seed)
    x_test, y_test = blob_regression(cfg.n_eval, cfg.size, seed=cfg.seed + 1)
    mean, std = y.mean(), y.std()
    noise = np.random.default_rng(cfg.seed + 2).normal(size=x_test.shape).astype(np.float32)
    return {"x": x, "y": (y - mean) / std, "x_test": x_test, "y_test": (y_test - mean) / std,
            "x_noise": noise}


def orbit_blocks(cov: np.ndarray, group_order: int) -> np.ndarray:
    """Covariance between the orbit points of each input: ``(|G|·n, |G|·n) -> (n, |G|, |G|)``."""
    n = cov.shape[-1] // group_order
    return np.einsum("gihi->igh", np.asarray(cov).reshape(group_order, n, group_order, n))


def fluctuation_only(covariance: np.ndarray, group_order: int, members: int,
                     samples: int = 512, seed: int = 0) -> np.ndarray:
    """Orbit spread of an M-member mean that only fluctuates around an invariant function.

    ``covariance: (|G|·n, |G|·n)`` of one member's outputs on the orbits (group-element-major).
    Draws ``samples`` ensemble means from N(0, V/M) — any invariant mean gives the same spread —
    and returns ``(mean, std)`` over draws of the input-averaged orbit spread and the naive scale
    ``√(mean_x V(x, x)/M)``: ``(3,)``.
    """
    zero = np.zeros((group_order, covariance.shape[0] // group_order, 1))
    draws = predicted_subensemble_violation(zero, covariance, [members], samples, seed)[0]
    naive = np.sqrt(np.diag(covariance).mean() / members)
    return np.array([draws.mean(), draws.std(), naive])


def _interval_array(intervals: dict) -> np.ndarray:
    """``member_vs_ensemble``'s dict as ``(3, 3)``: rows member/ensemble/difference, (est, low, high)."""
    return np.array([[float(intervals[row].estimate), float(intervals[row].low),
                      float(intervals[row].high)] for row in INTERVAL_ROWS])


def spread_intervals(member_outputs: np.ndarray) -> np.ndarray:
    """Mean orbit spread of members vs ensemble, jackknife over members: ``(M, |G|, n, d) -> (3, 3)``."""
    return _interval_array(member_vs_ensemble(member_outputs, lambda o: orbit_spread(o).mean(-1),
                                              level=INTERVAL_LEVEL))


def spread_ratio_intervals(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Ratio of mean orbit spreads of two ensembles paired by member: ``(M, |G|, n, 1)`` each → ``(3, 3)``."""
    if numerator.shape != denominator.shape or numerator.shape[-1] != 1:
        raise ValueError(f"need two (M, |G|, n, 1) arrays of one shape, got {numerator.shape} "
                         f"and {denominator.shape}")

    def ratio(o: np.ndarray) -> np.ndarray:
        return orbit_spread(o[..., :1]).mean(-1) / orbit_spread(o[..., 1:]).mean(-1)

    return _interval_array(member_vs_ensemble(np.concatenate([numerator, denominator], -1), ratio,
                                              level=INTERVAL_LEVEL))


def _measure(cfg: TourConfig, data: dict, mode: str, run: Run) -> dict[str, np.ndarray]:
    group = get_group(cfg.group)
    arch = mlp([cfg.width], out=1)
    net = arch.flax()
    train = TrainConfig(loss="mse", optimizer="sgd", learning_rate=cfg.learning_rate,
                        epochs=cfg.steps)
    x, y = ((augment_full_orbit(data["x"], data["y"], group)[:2]) if mode == "augmented"
            else (data["x"], data["y"]))
    state, history = run.train(f"train_{mode}", net, x, y, train, cfg.members, seed=cfg.seed,
                               checkpoint_every=50)
    out = {"loss": history["loss"], "first_epoch_step_loss": history["first_epoch_step_loss"],
           "ntk_times": np.array([0, cfg.steps])}
    for name in DATA_SETS:
        inputs = data[f"x_{name}"]
        n = len(inputs)
        outputs = np.asarray(orbit_outputs(lambda z: ensemble_apply(net, state.params, z),
                                           inputs, group))                      # (M, |G|, n, 1)
        out[f"member_outputs_{name}"] = outputs.astype(np.float32)
        out[f"member_spread_{name}"] = orbit_spread(outputs)                    # (M, n)
        out[f"ensemble_spread_{name}"] = orbit_spread(outputs.mean(0))          # (n,)
        out[f"spread_interval_{name}"] = spread_intervals(outputs)
        orbit_inputs = np.asarray(group.orbit(inputs)).reshape((-1,) + inputs.shape[1:])
        pred = ensemble_mean_cov(arch.kernel_fn, x, y, orbit_inputs, [0, cfg.steps],
                                 learning_rate=cfg.learning_rate)
        mu = np.asarray(pred.mean).reshape(2, group.order, n, -1)              # (t, |G|, n, 1)
        out[f"ntk_mean_{name}"] = mu
        out[f"ntk_spread_{name}"] = orbit_spread(mu)                            # (t, n)
        sigma = np.asarray(pred.covariance[1])                                  # Σ_t, t = steps
        var_w = np.cov(outputs.reshape(cfg.members, -1).astype(np.float64), rowvar=False)
        out[f"sigma_blocks_{name}"] = orbit_blocks(sigma, group.order)
        out[f"var_w_blocks_{name}"] = orbit_blocks(var_w, group.order)
        out[f"fluctuation_{name}"] = np.concatenate([
            fluctuation_only(v, group.order, cfg.members, cfg.prediction_samples, cfg.seed)
            for v in (var_w, sigma)])
    return out


@experiment("tour", quick=TourConfig(), full=TourConfig(width=4096, members=1024))
def run(run: Run, cfg: TourConfig) -> dict:
    """C4-invariant toy regression: members vs ensemble vs the infinite-width mean μ_t."""
    data = run.step("data", lambda: tour_data(cfg))
    arrays, summary = {}, {}
    results = {mode: run.step(f"measure_{mode}", lambda: _measure(cfg, data, mode, run)) for mode in MODES}
    for mode, result in results.items():
        arrays.update({f"{mode}/{k}": v for k, v in result.items()})
        for name in DATA_SETS:
            interval = result[f"spread_interval_{name}"]
            fluct = dict(zip(FLUCTUATION_COLUMNS, result[f"fluctuation_{name}"].tolist()))
            blocks = result[f"var_w_blocks_{name}"], result[f"sigma_blocks_{name}"]
            variance = [np.trace(b, axis1=-2, axis2=-1).mean() for b in blocks]
            summary[f"{mode}/{name}"] = {
                "member_spread": float(interval[0, 0]),
                "ensemble_spread": float(interval[1, 0]),
                "ensemble_spread_interval": interval[1, 1:].tolist(),
                "ntk_mean_spread_max": float(result[f"ntk_spread_{name}"].max()),
                "final_loss": float(result["loss"][-1].mean()),
                **fluct,
                # √(Σ_t(x,x)/M) is the scale of one output's fluctuation in a finite ensemble,
                # NOT the expected orbit spread, which removes the part shared by the orbit.
                "naive_fluctuation": fluct["naive_sigma"],
                "var_w_over_sigma": float(variance[0] / variance[1]),
            }
    for name in DATA_SETS:
        ratio = spread_ratio_intervals(arrays[f"augmented/member_outputs_{name}"],
                                       arrays[f"plain/member_outputs_{name}"])
        arrays[f"comparison/ensemble_spread_ratio_{name}"] = ratio
        summary[f"comparison/{name}"] = {"ensemble_spread_ratio": ratio[1].tolist()}
    return {"arrays": arrays, "summary": summary}
