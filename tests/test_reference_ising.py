"""The stored reference run of the Ising experiment still matches the code and the preset.

``results/reference/ising/reference/`` holds the run the chapter shows beside the live quick run.
These tests load it and recompute slices of it from its stored config: the configuration equals
``REFERENCE``; the data (training set, cleaned evaluation sets and their removal counts) are
regenerated bit for bit; and member 0 of the narrowest augmented MLP ensemble, initialised and
trained alone from the stored seed, reproduces the stored losses of its first steps (rtol 1e-4).
Altered losses and another preset are caught, so the checks can fail.
"""
import dataclasses
import json

import numpy as np
import pytest

from eqlib.data.ising import symmetry_group
from eqlib.ensemble import init_ensemble, replay_steps, train_ensemble
from eqlib.experiments.ising import (REFERENCE, IsingConfig, architecture, ising_data, training_config,
                                     training_sets)
from eqlib.presets import config_dict, config_from_dict
from eqlib.runner import stored_results

REPLAY_EPOCHS = 5


def _config(stored: dict) -> IsingConfig:
    """The IsingConfig of a results file's config dict."""
    return config_from_dict(IsingConfig, stored)


def check_stored_run(arrays: dict, meta: dict, expected: IsingConfig) -> None:
    """Config equal to ``expected``; data regenerated exactly; member 0's first losses replayed."""
    assert meta["experiment"] == "ising"
    assert meta["config"] == json.loads(json.dumps(config_dict(expected))), "stored config is not the preset"
    cfg = _config(meta["config"])
    assert cfg == expected

    # the data: training set, cleaned evaluation sets and the cleaning counts, bit for bit
    data = ising_data(cfg)
    for key, value in data.items():
        np.testing.assert_array_equal(arrays[f"data/{key}"], value, err_msg=key)

    # member 0 of the narrowest augmented MLP, trained alone from the stored seed
    key = f"mlp_w{min(cfg.widths)}_aug"
    group = symmetry_group(cfg.group, cfg.size)
    x, y = training_sets(data, group)["aug"]
    net, train, seed = architecture(cfg, key).flax(), training_config(cfg, key), int(arrays[f"{key}/seed"])
    first = arrays[f"{key}/first_epoch_step_loss"]
    assert first.shape == (cfg.members, 1)                         # full batch: one step per epoch
    np.testing.assert_allclose(replay_steps(net, x, y, train, seed, member=0, steps=1), first[0], rtol=1e-4)
    epochs = min(REPLAY_EPOCHS, cfg.steps)
    short = dataclasses.replace(train, epochs=epochs)
    alone = init_ensemble(net, x, seed=seed, config=short, member_ids=(0,))
    _, history = train_ensemble(net, alone, x, y, short, seed=seed, progress=False)
    np.testing.assert_allclose(history["loss"][:, 0], arrays[f"{key}/loss"][:epochs, 0], rtol=1e-4)


def test_stored_reference_run_matches_the_code():
    arrays, meta = stored_results("ising", "reference")   # missing: FileNotFoundError naming the command
    assert meta["preset"] == "reference"
    check_stored_run(arrays, meta, REFERENCE)
    # the check has teeth: another preset, or altered losses, are caught
    with pytest.raises(AssertionError, match="not the preset"):
        check_stored_run(arrays, meta, dataclasses.replace(REFERENCE, members=5))
    key = f"mlp_w{min(REFERENCE.widths)}_aug/first_epoch_step_loss"
    bad = {**arrays, key: arrays[key] * 1.01}
    with pytest.raises(AssertionError):
        check_stored_run(bad, meta, REFERENCE)
