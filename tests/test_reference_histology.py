"""The stored histology reference run still matches the code: its config is REFERENCE, and member 0
of fold 0 of its D4-augmented ensemble, rebuilt from the stored config and retrained alone, takes
the same first steps as stored.

``results/reference/histology/reference/`` is produced by
``python -m eqlib run histology --preset reference --store``. The same replay with another
learning rate made here does not reproduce them, so the check can fail.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from eqlib.ensemble import replay_steps
from eqlib.experiments import histology as H
from eqlib.groups import get_group
from eqlib.presets import config_dict, config_from_dict
from eqlib.runner import stored_results

STEPS = 5


def config_from_meta(meta: dict) -> H.HistologyConfig:
    """The :class:`HistologyConfig` a results file was made with."""
    return config_from_dict(H.HistologyConfig, meta["config"])


def replay_member_zero(arrays: dict, cfg: H.HistologyConfig, mode: str = "D4", fold: int = 0,
                       steps: int = STEPS) -> tuple[np.ndarray, np.ndarray]:
    """(replayed, stored) first ``steps`` step losses of member 0 of ``fold`` of the ``mode`` ensemble."""
    data = H.fold_data(cfg, H.crop_table(cfg), fold)
    module = H.architecture(cfg).flax()
    group = None if mode == "plain" else get_group(mode)
    replayed = replay_steps(module, data["x"], data["y"], H.train_config(cfg), seed=H.fold_seed(cfg, fold),
                            member=0, steps=steps, group=group)
    return replayed, np.asarray(arrays[f"{mode}/first_epoch_step_loss"])[fold, 0, :steps]


def _stored_reference():
    return stored_results("histology", "reference")   # missing: FileNotFoundError naming the command


def test_stored_reference_run_is_the_reference_preset_and_replays():
    arrays, meta = _stored_reference()
    cfg = config_from_meta(meta)
    assert cfg == H.REFERENCE, "the stored run was made with another config than REFERENCE"
    assert config_dict(cfg) == config_dict(H.REFERENCE)
    assert meta["preset"] == "reference" and not meta.get("modified")
    replayed, stored = replay_member_zero(arrays, cfg)
    assert stored.shape == (STEPS,) and np.all(np.isfinite(stored))
    np.testing.assert_allclose(replayed, stored, rtol=1e-4)
    # another fold trains on other patches with another seed: it replays too
    replayed_2, stored_2 = replay_member_zero(arrays, cfg, fold=2, steps=2)
    np.testing.assert_allclose(replayed_2, stored_2, rtol=1e-4)
    # the check can fail: another learning rate does not reproduce the stored losses
    other, _ = replay_member_zero(arrays, dataclasses.replace(cfg, learning_rate=cfg.learning_rate * 3),
                                  steps=2)
    assert not np.allclose(other, stored[:2], rtol=1e-4)
    # the stored statistics are those of the stored member predictions
    np.testing.assert_allclose(arrays["D4/test/osp_D4"][0], arrays["D4/test/member_osp_D4"].mean())
    with pytest.raises(ValueError, match="fields differ"):
        config_from_meta({"config": {**meta["config"], "unknown_field": 1}})
