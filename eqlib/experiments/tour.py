"""The tour: a C4-invariant toy regression, MLP ensembles with and without full augmentation.

Measures the orbit spread of members, of the finite ensemble and of the infinite-width ensemble
mean μ_t (float64) on test images and on off-manifold noise. ``quick`` is what the tour chapter
shows (about a minute on a 2-core CPU); ``full`` scales width and ensemble size for a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..augment import augment_full_orbit
from ..data.toy import blob_regression
from ..ensemble import TrainConfig, ensemble_apply, init_ensemble, train_ensemble
from ..groups import get_group
from ..metrics import orbit_outputs, orbit_spread
from ..models import mlp
from ..ntk import ensemble_mean_cov
from ..runner import Run, experiment


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


def tour_data(cfg: TourConfig) -> dict[str, np.ndarray]:
    """Training set, test set (targets standardised with training statistics) and noise images."""
    x, y = blob_regression(cfg.n_train, cfg.size, seed=cfg.seed)
    x_test, y_test = blob_regression(cfg.n_eval, cfg.size, seed=cfg.seed + 1)
    mean, std = y.mean(), y.std()
    noise = np.random.default_rng(cfg.seed + 2).normal(size=x_test.shape).astype(np.float32)
    return {"x": x, "y": (y - mean) / std, "x_test": x_test, "y_test": (y_test - mean) / std, "x_noise": noise}


@experiment("tour", quick=TourConfig(), full=TourConfig(width=4096, members=1024))
def run(run: Run, cfg: TourConfig) -> dict:
    group = get_group(cfg.group)
    data = run.step("data", lambda: tour_data(cfg))
    arch = mlp([cfg.width], out=1)
    net = arch.flax()
    train = TrainConfig(loss="mse", optimizer="sgd", learning_rate=cfg.learning_rate, epochs=cfg.steps)
    evaluation = {"test": data["x_test"], "noise": data["x_noise"]}
    arrays, summary = {}, {}
    for mode in ("augmented", "plain"):
        x, y = (augment_full_orbit(data["x"], data["y"], group)[:2]) if mode == "augmented" else (data["x"], data["y"])

        def measure():
            state = init_ensemble(net, x, cfg.members, seed=cfg.seed, config=train)
            state, history = train_ensemble(net, state, x, y, train, seed=cfg.seed,
                                             checkpoint=run.checkpoint_path(f"train_{mode}"), checkpoint_every=50)
            out = {"loss": history["loss"]}
            for name, inputs in evaluation.items():
                outputs = np.asarray(orbit_outputs(lambda z: ensemble_apply(net, state.params, z), inputs, group))
                out[f"member_spread_{name}"] = orbit_spread(outputs)            # (M, n)
                out[f"ensemble_spread_{name}"] = orbit_spread(outputs.mean(0))  # (n,)
                orbit_inputs = np.asarray(group.orbit(inputs)).reshape((-1,) + inputs.shape[1:])
                pred = ensemble_mean_cov(arch.kernel_fn, x, y, orbit_inputs, cfg.steps, learning_rate=cfg.learning_rate)
                out[f"ntk_spread_{name}"] = orbit_spread(pred.mean.reshape(group.order, len(inputs), -1))
                out[f"ntk_variance_{name}"] = np.diag(pred.covariance[0])[: len(inputs)]
            return out

        result = run.step(f"measure_{mode}", measure)
        arrays.update({f"{mode}/{k}": v for k, v in result.items()})
        for name in evaluation:
            summary[f"{mode}/{name}"] = {
                "member_spread": float(result[f"member_spread_{name}"].mean()),
                "ensemble_spread": float(result[f"ensemble_spread_{name}"].mean()),
                "ntk_mean_spread_max": float(result[f"ntk_spread_{name}"].max()),
                # √(Σ_t(x,x)/M): the scale of one output's fluctuation in a finite ensemble
                # (after Lemma B.4). NOT the expected orbit spread, which removes the part
                # shared by the whole orbit (the tour chapter computes that prediction).
                "naive_fluctuation": float(np.sqrt(result[f"ntk_variance_{name}"].mean() / cfg.members)),
            }
    return {"arrays": arrays, "summary": summary}
