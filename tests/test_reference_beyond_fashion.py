"""The stored beyond_fashion reference run still matches the code: its config is REFERENCE, network 0
of its GCNNs and of its canonicalised CNNs, rebuilt from the stored config and retrained alone,
takes the same first steps, and the counted costs (parameters, XLA's FLOPs) and the canonicaliser's
ties are what the code computes now.

``results/reference/beyond_fashion/reference/`` is produced by
``python -m eqlib run beyond_fashion --preset reference --store``. A replay with another learning
rate, and a GCNN of another width, do not reproduce the stored values, so the checks can fail.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from eqlib.canonicalize import ties
from eqlib.ensemble import replay_steps
from eqlib.experiments import beyond_fashion as bfx
from eqlib.experiments import fashion_mnist as fx
from eqlib.gcnn import gcnn
from eqlib.presets import config_dict, config_from_dict
from eqlib.runner import stored_results

from test_experiment_fashion_mnist import needs_data

STEPS = 6


@functools.lru_cache(maxsize=1)
def _stored():
    arrays, meta = stored_results("beyond_fashion", "reference")   # missing: names the command
    return arrays, meta, config_from_dict(bfx.BeyondFashionConfig, meta["config"])


@functools.lru_cache(maxsize=1)
def _data(cfg: bfx.BeyondFashionConfig) -> dict:
    fcfg = bfx.fashion_config(cfg)
    return fx.load_sets(fcfg, fx.select_data(fcfg))


def _replay(cfg: bfx.BeyondFashionConfig, model: str, steps: int = STEPS,
            learning_rate_factor: float = 1.0) -> np.ndarray:
    """The first ``steps`` step losses of network 0 of ``model``, retrained alone: ``(steps,)``."""
    fcfg = bfx.fashion_config(cfg)
    train = fx.train_config(fcfg)
    train = dataclasses.replace(train, learning_rate=train.learning_rate * learning_rate_factor)
    data = _data(cfg)
    return replay_steps(bfx.models(cfg)[model], data["x_train"], data["y_train"], train,
                        seed=fcfg.seed, member=0, steps=steps)


@needs_data
def test_stored_reference_run_is_the_reference_preset():
    arrays, meta, cfg = _stored()
    assert cfg == bfx.REFERENCE and config_dict(cfg) == config_dict(bfx.REFERENCE)
    assert meta["preset"] == "reference" and not meta.get("modified")
    assert meta["stored"]["command"] == "python -m eqlib run beyond_fashion --preset reference --store"


@needs_data
@pytest.mark.parametrize("model", bfx.MODELS)
def test_network_zero_replays_its_first_steps(model):
    arrays, _, cfg = _stored()
    stored = np.asarray(arrays[f"{model}/first_epoch_step_loss"])[0, :STEPS]
    assert stored.shape == (STEPS,) and np.all(np.isfinite(stored))
    np.testing.assert_allclose(_replay(cfg, model), stored, rtol=1e-4)
    # the check can fail: another learning rate does not reproduce the stored losses
    other = _replay(cfg, model, steps=3, learning_rate_factor=3.0)
    assert not np.allclose(other, stored[:3], rtol=1e-4)


@needs_data
def test_counted_costs_and_ties_are_recomputed():
    arrays, _, cfg = _stored()
    fcfg, data = bfx.fashion_config(cfg), _data(cfg)
    for kind, module in bfx.models(cfg).items():
        now = bfx.step_costs(module, data["x_train"], data["y_train"], fcfg.batch_size,
                             fcfg.learning_rate, augment=kind == "augmented", seed=fcfg.seed)
        for quantity in ("params", "train_step_flops", "forward_flops_per_image"):
            np.testing.assert_allclose(now[quantity], float(arrays[f"cost/{kind}/{quantity}"]),
                                       rtol=1e-6, err_msg=f"{kind}/{quantity}")
    for name in fx.EVAL_SETS:
        np.testing.assert_array_equal(ties(data[f"x_{name}"], cfg.direction),
                                      arrays[f"canonical/ties/{name}"])
    # the check can fail: a GCNN one width wider counts other parameters and FLOPs
    wider = bfx.step_costs(gcnn(cfg.gcnn_width + 1, head=fcfg.head), data["x_train"],
                           data["y_train"], fcfg.batch_size, fcfg.learning_rate, augment=False)
    assert wider["params"] != float(arrays["cost/gcnn/params"])
    assert not np.isclose(wider["train_step_flops"], float(arrays["cost/gcnn/train_step_flops"]))
