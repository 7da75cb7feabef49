"""eqlib.sharding and the ensemble over several devices.

The multi-device tests run in a subprocess with 8 simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``), since jax fixes its device count at import.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

from eqlib.ensemble import TrainConfig, train_ensemble, init_ensemble
from eqlib.models import mlp
from eqlib.sharding import (
    MEMBERS,
    member_layout,
    member_mesh,
    member_sharding,
    padded_count,
    padding_member_ids,
    replicated,
    to_mesh,
)

ROOT = Path(__file__).resolve().parents[1]
NET = mlp([8], 1).flax()
CONFIG = dict(learning_rate=0.05, momentum=0.9, epochs=2, batch_size=3)  # SGD with momentum, 2 steps per epoch
# vmap over 10 members on 8 devices vs one member at a time: the same float32 operations batched
# differently, so members agree to float tolerance, not bit for bit (observed: ≤ 6e-8 on this CPU).
ATOL = 1e-6


def data(n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 1)).astype(np.float32)


# ------------------------------------------------------------------------------ one device

def test_padding():
    assert [padded_count(m, 8) for m in (1, 7, 8, 9, 10, 16, 17)] == [8, 8, 8, 16, 16, 16, 24]
    assert padded_count(5, 1) == 5
    assert padding_member_ids([0, 1, 2], 3) == ()
    assert padding_member_ids([4, 2, 9], 6) == (10, 11, 12)
    for bad in ((0, 8), (3, 0)):
        with pytest.raises(ValueError):
            padded_count(*bad)
    with pytest.raises(ValueError, match="slots"):
        padding_member_ids([0, 1, 2], 2)


def test_mesh_and_layout_on_one_device():
    mesh = member_mesh()
    assert mesh.axis_names == (MEMBERS,) and mesh.size == jax.device_count()
    assert member_sharding(mesh).spec == PartitionSpec(MEMBERS) and replicated(mesh).spec == PartitionSpec()
    with pytest.raises(ValueError, match="members"):
        member_sharding(Mesh(np.array(jax.devices()), ("data",)))
    with pytest.raises(ValueError, match="device"):
        member_mesh([])
    leaf = jax.device_put(np.zeros((3, 2), np.float32), member_sharding(mesh))
    [layout] = member_layout({"w": leaf})
    assert layout["spec"] == (MEMBERS,) and layout["members"] == {jax.devices()[0].id: (0, 3)}


def test_to_mesh_is_device_put_in_one_process():
    """``to_mesh`` places host values on a mesh; with several processes it builds global arrays
    (proven in tests/test_multihost.py)."""
    mesh = member_mesh()
    tree = {"w": np.arange(6, dtype=np.float32).reshape(3, 2), "b": jax.numpy.ones(3)}
    placed = to_mesh(tree, member_sharding(mesh))
    for key in tree:
        assert placed[key].sharding == member_sharding(mesh)
        np.testing.assert_array_equal(placed[key], tree[key])
    assert to_mesh(tree["w"], replicated(mesh)).sharding == replicated(mesh)


def test_an_explicit_one_device_mesh_gives_the_same_members():
    x, y = data()
    config = TrainConfig(strategy="vmap", **CONFIG)
    state = init_ensemble(NET, x, 3, seed=1, config=config)
    plain, hp = train_ensemble(NET, state, x, y, config, seed=1, progress=False)
    meshed, hm = train_ensemble(NET, state, x, y, config, seed=1, progress=False, mesh=member_mesh())
    for a, b in zip(jax.tree_util.tree_leaves(plain.params), jax.tree_util.tree_leaves(meshed.params)):
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL)
    np.testing.assert_allclose(hp["loss"], hm["loss"], rtol=1e-6)


# ------------------------------------------------------------------------------ 8 simulated devices

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from eqlib.ensemble import (Batch, TrainConfig, TrainState, batch_indices, ensemble_core, init_ensemble,
                                make_optimizer, resolve_strategy, shard_members, train_ensemble)
    from eqlib.models import mlp
    from eqlib.sharding import member_layout, member_mesh

    out, config_json = sys.argv[1], sys.argv[2]
    assert jax.device_count() == 8, jax.devices()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
    net = mlp([8], 1).flax()
    config = TrainConfig(**json.loads(config_json))           # strategy "auto"
    report = {"strategy": resolve_strategy(config.strategy)}

    # M = 10 on 8 devices: padded to 16, trained, the 6 padding members dropped
    state = init_ensemble(net, x, 10, seed=1, config=config)
    trained, history = train_ensemble(net, state, x, y, config, seed=1, progress=False)
    scanned, history_scan = train_ensemble(net, state, x, y, TrainConfig(scan=True, **json.loads(config_json)),
                                           seed=1, progress=False)
    np.savez(out + ".npz", loss=history["loss"], loss_scan=history_scan["loss"],
             **{f"leaf{i}": np.asarray(l) for i, l in enumerate(jax.tree_util.tree_leaves(trained.params))},
             **{f"scan{i}": np.asarray(l) for i, l in enumerate(jax.tree_util.tree_leaves(scanned.params))})
    report["returned_10"] = member_layout(trained.params)

    # the layout the driver trains: 16 slots, 2 per device, kept by the compiled step
    core = ensemble_core(net, make_optimizer(config))
    padded, ids = shard_members(core, TrainState(state.params, state.opt_state), state.member_ids, 1, x[:1],
                                member_mesh())
    idx = jnp.asarray(np.stack([batch_indices(1, m, 0, 8, 3)[0] for m in ids]))
    stepped, loss = jax.jit(core.step)(padded, Batch(jnp.asarray(x), jnp.asarray(y), idx))
    report.update(ids=list(ids), padded=member_layout(padded), stepped=member_layout(stepped),
                  loss=member_layout(loss))

    # M = 8: initialised directly split over the devices, and returned split
    state8 = init_ensemble(net, x, 8, seed=1, config=config)
    trained8, _ = train_ensemble(net, state8, x, y, config, seed=1, progress=False)
    report.update(init_8=member_layout(state8.params), returned_8=member_layout(trained8.params))

    # a member loop cannot use the devices: it says so
    import warnings
    loop = TrainConfig(strategy="loop", epochs=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_ensemble(net, init_ensemble(net, x, 2, config=loop), x, y, loop, progress=False)
    report["loop_warnings"] = [str(w.message) for w in caught]
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    """Run SCRIPT on 8 simulated CPU devices → (its JSON report, its npz of trained members)."""
    out = tmp_path_factory.mktemp("sharding") / "run"
    script = out.parent / "script.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(script), str(out), json.dumps(CONFIG)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(str(out) + ".npz")


def test_ten_members_on_eight_devices_equal_the_members_trained_alone(eight_devices):
    _, arrays = eight_devices
    x, y = data()
    config = TrainConfig(strategy="loop", **CONFIG)
    for m in range(10):
        alone = init_ensemble(NET, x, member_ids=[m], seed=1, config=config)
        alone, history = train_ensemble(NET, alone, x, y, config, seed=1, progress=False)
        for i, leaf in enumerate(jax.tree_util.tree_leaves(alone.params)):
            assert arrays[f"leaf{i}"].shape[0] == 10
            np.testing.assert_allclose(arrays[f"leaf{i}"][m], leaf[0], rtol=0, atol=ATOL, err_msg=f"member {m}")
            np.testing.assert_allclose(arrays[f"scan{i}"][m], leaf[0], rtol=0, atol=ATOL, err_msg=f"member {m}")
        np.testing.assert_allclose(arrays["loss"][:, m], history["loss"][:, 0], rtol=1e-6)
        np.testing.assert_allclose(arrays["loss_scan"][:, m], history["loss"][:, 0], rtol=1e-6)
    leaf0 = arrays["leaf0"]
    assert np.abs(leaf0[0] - leaf0[1]).max() > 1e-3  # the members differ


def _split_over_eight(layouts: list[dict], slots: int) -> None:
    """Every leaf: spec ('members',), 8 devices, each holding its own block of slots/8 members."""
    for layout in layouts:
        assert layout["shape"][0] == slots and layout["spec"] == [MEMBERS]
        ranges = sorted(tuple(r) for r in layout["members"].values())
        assert len(layout["members"]) == 8
        assert ranges == [(k * slots // 8, (k + 1) * slots // 8) for k in range(8)]


def test_the_member_axis_is_split_over_the_eight_devices(eight_devices):
    report, _ = eight_devices
    assert report["strategy"] == "vmap"  # "auto" with several devices
    assert report["ids"] == list(range(16))  # members 0…9 and the padding members 10…15
    _split_over_eight(report["padded"], 16)
    _split_over_eight(report["stepped"], 16)  # the compiled step keeps the layout
    _split_over_eight(report["loss"], 16)
    _split_over_eight(report["init_8"], 8)  # initialised directly into the layout
    _split_over_eight(report["returned_8"], 8)
    for layout in report["returned_10"]:  # 10 is no multiple of 8: the result, padding dropped, is replicated
        assert layout["shape"][0] == 10 and len(layout["members"]) == 8
        assert all(tuple(r) == (0, 10) for r in layout["members"].values())
    assert any("one device" in w and "vmap" in w for w in report["loop_warnings"])
    kernel = report["padded"][1]  # the first layer's kernel (16, 3, 8) float32: 2 members per device
    assert kernel["bytes_per_device"] == 2 * 3 * 8 * 4
