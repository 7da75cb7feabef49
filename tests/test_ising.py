"""The Ising data generator (eqlib.data.ising) and the Ising experiment runner (eqlib.experiments.ising)."""
import json

import numpy as np
import pytest

from eqlib.metrics import orbit_spread
from eqlib.data.ising import (CRITICAL_TEMPERATURE, all_configurations, exact_averages, gaussian_inputs, ising_energy,
                              magnetisation, metropolis, random_configurations, sample_temperatures, symmetry_group)
from eqlib.ensemble import init_ensemble, replay_steps, train_ensemble
from eqlib.experiments.ising import (EVAL_SETS, REFERENCE, REMOVAL_COUNTS, IsingConfig, architecture,
                                     clean_evaluation_set, expected_squared_orbit_spread, is_group_fixed,
                                     ising_data, measurement_times, orbit_blocks, orbit_keys,
                                     predicted_orbit_spread, slope_in_members, training_config, training_sets)
from eqlib.runner import get_experiment, latest_results, run_experiment


# ----------------------------------------------------------------------------------- energy

def test_energy_of_simple_states():
    L = 4
    up = np.ones((1, L, L, 1), np.float32)
    checker = ((-1.0) ** np.add.outer(np.arange(L), np.arange(L)))[None, :, :, None]
    stripes = np.repeat(np.array([1.0, -1.0] * (L // 2))[None, :, None], L, axis=2)[..., None]
    assert ising_energy(up)[0] == -2 * L * L                        # every one of the 2L² bonds satisfied
    assert ising_energy(-up)[0] == -2 * L * L
    assert ising_energy(checker)[0] == 2 * L * L                    # every bond frustrated
    assert ising_energy(stripes)[0] == 0                            # horizontal bonds +1, vertical −1
    assert ising_energy(up, coupling=0.5)[0] == -L * L
    assert ising_energy(up[..., 0]).shape == (1,)                   # (n, L, L) works as well
    np.testing.assert_allclose(magnetisation(np.concatenate([up, checker])), [1.0, 0.0])


def test_energy_matches_explicit_bond_sum(rng):
    s = np.sign(rng.normal(size=(3, 5, 5)))
    explicit = np.zeros(3)
    for i in range(5):
        for j in range(5):
            explicit -= s[:, i, j] * (s[:, (i + 1) % 5, j] + s[:, i, (j + 1) % 5])
    np.testing.assert_allclose(ising_energy(s), explicit)


@pytest.mark.parametrize("name, order", [("C4", 4), ("D4", 8), ("D4xTxZ2", 8 * 16 * 2)])
def test_energy_invariant_under_every_group_element(name, order):
    L = 4
    group = symmetry_group(name, L)
    assert group.order == order
    spins = np.concatenate([random_configurations(6, L, seed=1), metropolis(6, L, 2.5, sweeps=20, seed=2)])
    orbit = np.asarray(group.orbit(spins))                                   # (|G|, n, L, L, 1)
    energies = ising_energy(orbit.reshape((-1, L, L, 1))).reshape(order, -1)
    np.testing.assert_array_equal(energies, np.broadcast_to(energies[0], energies.shape))
    # the group really moves the configurations (the check is not vacuous)
    assert len({o.tobytes() for o in orbit[:, 0]}) == order


def test_energy_not_invariant_under_a_non_symmetry(rng):
    s = random_configurations(50, 4, seed=3)
    shuffled = s.reshape(50, -1)[:, rng.permutation(16)].reshape(s.shape)   # a random relabelling of sites
    assert np.any(ising_energy(shuffled) != ising_energy(s))


def test_symmetry_group_validation():
    with pytest.raises(ValueError, match="unknown Ising symmetry group"):
        symmetry_group("C8", 4)
    with pytest.raises(ValueError, match="lattice size"):
        symmetry_group("C4", 1)


# ---------------------------------------------------------------------------------- sampler

def test_all_configurations_and_exact_limits():
    states = all_configurations(3)
    assert states.shape == (512, 3, 3, 1) and states.dtype == np.float32
    assert len({s.tobytes() for s in states}) == 512
    with pytest.raises(ValueError, match="L ≤ 4"):
        all_configurations(5)
    cold, hot = exact_averages(4, 0.2), exact_averages(4, 1e4)
    assert cold["energy_per_spin"] == pytest.approx(-2.0, abs=1e-6)
    assert cold["abs_magnetisation"] == pytest.approx(1.0, abs=1e-6)
    assert abs(hot["energy_per_spin"]) < 1e-3
    # at infinite temperature ⟨|m|⟩ is the mean |m| of all states
    assert hot["abs_magnetisation"] == pytest.approx(np.abs(magnetisation(all_configurations(4))).mean(), abs=1e-3)


@pytest.mark.parametrize("size", [3, 4])
@pytest.mark.parametrize("temperature", [1.5, CRITICAL_TEMPERATURE, 3.5])
def test_metropolis_agrees_with_exact_enumeration(size, temperature):
    n = 2000
    spins = metropolis(n, size, temperature, sweeps=150, seed=7)
    energy = ising_energy(spins) / size ** 2
    absm = np.abs(magnetisation(spins))
    exact = exact_averages(size, temperature)
    for sample, key in ((energy, "energy_per_spin"), (absm, "abs_magnetisation")):
        stderr = exact[f"{key}_std"] / np.sqrt(n)             # samples are independent chains
        assert abs(sample.mean() - exact[key]) < 4 * stderr, (key, sample.mean(), exact[key], stderr)
    # the test has power: the same samples are far from the exact values at a 25 % higher temperature
    wrong = exact_averages(size, 1.25 * temperature)
    assert abs(energy.mean() - wrong["energy_per_spin"]) > 4 * exact["energy_per_spin_std"] / np.sqrt(n)


def test_metropolis_is_ergodic_on_the_smallest_lattice():
    """A checkerboard update would be trapped in the L=2 stripe states; random-scan Metropolis is not."""
    spins = metropolis(4000, 2, 1.5, sweeps=100, seed=0)
    energy = ising_energy(spins) / 4
    exact = exact_averages(2, 1.5)
    assert abs(energy.mean() - exact["energy_per_spin"]) < 4 * exact["energy_per_spin_std"] / np.sqrt(4000)


def test_sampler_output_and_seeds():
    a = metropolis(10, 4, 2.0, sweeps=5, seed=3)
    assert a.shape == (10, 4, 4, 1) and a.dtype == np.float32 and set(np.unique(a)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(a, metropolis(10, 4, 2.0, sweeps=5, seed=3))
    assert not np.array_equal(a, metropolis(10, 4, 2.0, sweeps=5, seed=4))
    np.testing.assert_array_equal(random_configurations(5, 4, seed=1), random_configurations(5, 4, seed=1))
    np.testing.assert_array_equal(gaussian_inputs(5, 4, seed=1), gaussian_inputs(5, 4, seed=1))
    x, t = sample_temperatures(7, 4, (2.0, 3.0), sweeps=3, seed=0)
    assert x.shape == (7, 4, 4, 1) and t.tolist() == [2.0] * 4 + [3.0] * 3
    np.testing.assert_array_equal(x, sample_temperatures(7, 4, (2.0, 3.0), sweeps=3, seed=0)[0])


def test_sampler_validation():
    with pytest.raises(ValueError, match="temperature"):
        metropolis(2, 4, 0.0)
    with pytest.raises(ValueError, match="lattice size"):
        metropolis(2, 1, 1.0)
    with pytest.raises(ValueError, match="square"):
        ising_energy(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        sample_temperatures(2, 4, ())


def test_experiment_data_is_reproducible_and_standardised():
    cfg = IsingConfig(size=4, n_train=12, n_eval=5, sweeps=10)
    a, b = ising_data(cfg), ising_data(cfg)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert abs(a["y"].mean()) < 1e-5 and a["y"].std() == pytest.approx(1.0, rel=1e-5)
    energy = ising_energy(a["x_test"])
    np.testing.assert_allclose(a["y_test"][:, 0], (energy - a["energy_mean"]) / a["energy_std"], rtol=1e-5, atol=1e-5)
    assert not np.array_equal(a["x"], ising_data(IsingConfig(size=4, n_train=12, n_eval=5, sweeps=10, seed=1))["x"])
    # without cleaning, each set is the first draw as it comes
    raw = ising_data(IsingConfig(size=4, n_train=12, n_eval=5, sweeps=10, clean_eval=False))
    np.testing.assert_array_equal(raw["x_other_T"], metropolis(5, 4, 2.0, 10, [2]))
    np.testing.assert_array_equal(raw["removed_test"], [5, 0, 0, 0, 5])


# ------------------------------------------------------------------- evaluation-set cleaning

def _in_training_orbit(x_eval, x_train, group):
    """Brute force, independent of orbit_keys: which evaluation inputs equal g·x for a training x."""
    orbit = np.asarray(group.orbit(x_train)).reshape(-1, x_train[0].size)          # (|G|·n_train, L²)
    return np.array([np.any(np.all(orbit == e.reshape(-1), axis=1)) for e in x_eval])


@pytest.mark.parametrize("group_name, train_temperatures, reason", [
    ("C4", (1.8, 3.5), "leaked"),        # cold training samples: aligned states in the training set
    ("D4", (5.0,), "trivial"),           # hot training set: the aligned states reach the cold set
    ("C4", (5.0,), "duplicate"),
])
def test_evaluation_sets_hold_no_training_orbit_and_no_fixed_input(group_name, train_temperatures, reason):
    # a small lattice and a cold evaluation temperature: without cleaning many inputs would be removed
    cfg = IsingConfig(size=4, group=group_name, n_train=30, n_eval=12, sweeps=20, other_temperature=2.0,
                      train_temperatures=train_temperatures)
    data = ising_data(cfg)
    group = symmetry_group(group_name, cfg.size)
    removed = {name: dict(zip(REMOVAL_COUNTS, data[f"removed_{name}"].tolist())) for name in EVAL_SETS}
    for name in EVAL_SETS:
        x = data[f"x_{name}"]
        assert x.shape == (12, 4, 4, 1)
        assert not _in_training_orbit(x, data["x"], group).any(), name
        assert not is_group_fixed(x, group).any(), name
        assert len(set(orbit_keys(x, group))) == len(x), name                # one input per orbit
        r = removed[name]
        assert r["kept"] == 12 and r["drawn"] == r["leaked"] + r["trivial"] + r["duplicate"] + r["kept"]
    # the cleaning had work to do (the test is not vacuous)
    assert removed["other_T"][reason] > 0, removed
    np.testing.assert_array_equal(data["x_other_T"], ising_data(cfg)["x_other_T"])   # reproducible


def test_clean_evaluation_set_counts_each_reason():
    group = symmetry_group("C4", 4)
    train = random_configurations(3, 4, seed=0)
    up = np.ones((1, 4, 4, 1), np.float32)
    fresh = random_configurations(4, 4, seed=1)
    rotated = np.asarray(group.act(1, train[:2]))                           # in training orbits
    batches = [np.concatenate([rotated, up, fresh[:1], np.asarray(group.act(2, fresh[:1]))]), fresh[1:]]
    x, counts = clean_evaluation_set(lambda r: batches[r], 3, set(orbit_keys(train, group)), group)
    assert counts == {"drawn": 7, "leaked": 2, "trivial": 1, "duplicate": 1, "kept": 3}
    np.testing.assert_array_equal(x, fresh[:3])
    keys = orbit_keys(np.concatenate([fresh[:1], np.asarray(group.act(3, fresh[:1])), fresh[1:2]]), group)
    assert keys[0] == keys[1] != keys[2]
    with pytest.raises(ValueError, match="clean evaluation inputs"):
        clean_evaluation_set(lambda r: up, 1, set(), group, max_rounds=3)


# ------------------------------------------------------------------------------ predictions

def test_measurement_times():
    t = measurement_times(200, 7)
    assert t[0] == 0 and t[-1] == 200 and np.all(np.diff(t) > 0)
    with pytest.raises(ValueError):
        measurement_times(0, 5)


def test_predicted_orbit_spread_matches_closed_form(rng):
    order, n = 4, 3
    a = rng.normal(size=(order * n, order * n))
    cov = a @ a.T / (order * n)
    blocks = orbit_blocks(cov, order)
    assert blocks.shape == (n, order, order)
    assert blocks[1, 2, 3] == cov[2 * n + 1, 3 * n + 1]
    sizes = [1, 4, 16]
    mean, std = predicted_orbit_spread(np.zeros(order * n), cov, order, sizes, samples=4000, seed=0)
    # the spread of an invariant mean plus N(0, Σ/M) noise scales exactly like 1/√M
    np.testing.assert_allclose(mean * np.sqrt(sizes), mean[0], rtol=1e-10)
    np.testing.assert_allclose(std * np.sqrt(sizes), std[0], rtol=1e-10)
    # its mean square is tr(PC)/(|G| M) per input (checked through E[spread²] ≥ E[spread]², Jensen)
    rms = np.sqrt(expected_squared_orbit_spread(blocks).mean())
    assert mean[0] <= rms * 1.02
    # and a direct Monte Carlo of the squared spread agrees with the closed form
    z = rng.multivariate_normal(np.zeros(order * n), cov, size=20000).reshape(-1, order, n)
    sq = ((z - z.mean(1, keepdims=True)) ** 2).mean(1)
    np.testing.assert_allclose(sq.mean(0), expected_squared_orbit_spread(blocks), rtol=0.05)
    with pytest.raises(ValueError):
        predicted_orbit_spread(np.zeros(5), np.eye(5), 4, [1])


def test_slope_in_members_recovers_the_law_and_its_interval():
    rng = np.random.default_rng(0)
    sizes = np.array([1, 2, 4, 8, 16, 32, 64])

    def spread(e):
        return {"spread": orbit_spread(e).mean(-1)}

    # members: an invariant mean plus independent noise on the orbit → slope −1/2 inside the interval
    members = 1.0 + rng.normal(size=(64, 4, 32, 1))
    fit = slope_in_members(members, sizes, spread, num_bootstrap=100)
    estimate, low, high = fit["spread"]
    assert low < estimate < high and low < -0.5 < high and high - low < 0.1
    assert fit["sizes"].tolist() == [1, 2, 4, 8, 16]                     # ≥ 4 sub-ensembles each
    # a non-invariant mean (a floor) flattens the slope, and the interval excludes −1/2
    floor = members + 0.3 * np.arange(4)[None, :, None, None]
    assert slope_in_members(floor, sizes, spread, num_bootstrap=100)["spread"][1] > -0.5
    with pytest.raises(ValueError, match="two sizes"):
        slope_in_members(members[:7], sizes[:3], spread)


def test_predicted_spread_of_a_non_invariant_mean_has_a_floor():
    order, n = 4, 2
    mean = np.repeat(np.arange(order, dtype=float), n)            # varies along the orbit
    spread, _ = predicted_orbit_spread(mean, 0.01 * np.eye(order * n), order, [1, 10_000], samples=200)
    assert spread[-1] == pytest.approx(np.arange(order).std(), rel=1e-2)


# ---------------------------------------------------------------------------------- runner

TINY = dict(size=4, group="D4", n_train=6, n_eval=5, sweeps=10, widths=(16,), plain_width=32, members=8,
            ensemble_sizes=(1, 2, 4, 8), cnn_channels=(4,), cnn_members=2, cnn_ntk=True, steps=6, n_times=3,
            ntk_samples=32, ntk_batch=24, checkpoint_every=2, learning_rate=0.5, cnn_learning_rate=0.5,
            member_chunk=2)


def test_ising_runner_end_to_end_and_resume(tmp_path, capsys):
    path = run_experiment("ising", preset="quick", root=tmp_path, **TINY)
    meta = json.loads(path.read_text())
    for key in ("experiment", "preset", "config", "config_hash", "seed", "summary", "arrays", "provenance",
                "wall_time_s", "steps", "timestamp"):
        assert key in meta, key
    assert meta["experiment"] == "ising" and meta["preset"] == "quick" and meta["seed"] == 0
    assert meta["config"]["members"] == 8 and meta["config"]["group"] == "D4"
    for key in ("versions", "device", "git", "timestamp", "host"):
        assert key in meta["provenance"], key
    assert "backend" in meta["provenance"]["device"] and "jax" in meta["provenance"]["versions"]

    arrays, loaded = latest_results("ising", "quick", root=tmp_path, allow_modified=True)
    T, K = 3, 4
    assert arrays["times"].tolist() == [0, 1, 6]
    for key in ("mlp_w16_aug", "mlp_w32_plain"):
        assert arrays[f"{key}/member_spread/test"].shape == (T, 8)
        assert arrays[f"{key}/ensemble_spread/gaussian"].shape == (T, K)
        assert arrays[f"{key}/ensemble_orbit_output/random"].shape == (T, 8, 5)
        assert arrays[f"{key}/member_rmse/test"].shape == (T, 8)
        assert arrays[f"{key}/loss"].shape == (6, 8)
        assert f"{key}/ensemble_rmse/gaussian" not in arrays          # no energy RMSE off the spin manifold
    assert arrays["cnn_aug/sizes"].tolist() == [1, 2]
    key = "mlp_w16_aug"
    for stat in ("spread", "rel_spread"):
        low, est, high = (arrays[f"{key}/ensemble_{stat}{p}/test"] for p in ("_low", "", "_high"))
        assert est.shape == (T, K) and np.all(low <= est + 1e-12) and np.all(est <= high + 1e-12)
        assert arrays[f"{key}/mve_{stat}/other_T"].shape == (3, 3)           # member, ensemble, difference
        assert arrays[f"{key}/slope_{stat}/gaussian"].shape == (3,)     # sizes 1, 2: ≥ 4 sub-ensembles
        assert arrays[f"ntk_mlp_aug/predicted_{stat}/test"].shape == (T, K)
    assert arrays[f"{key}/slope_sizes"].tolist() == [1, 2]
    assert np.all(arrays[f"{key}/member_rel_spread/random"] <= 1 + 1e-9)
    mve = arrays[f"{key}/mve_spread/test"]
    np.testing.assert_allclose(mve[0, 0], arrays[f"{key}/member_spread/test"][-1].mean())
    np.testing.assert_allclose(mve[1, 0], arrays[f"{key}/ensemble_spread/test"][-1, -1])
    assert arrays[f"{key}/mve_rmse/test"].shape == (3, 3) and f"{key}/mve_rmse/gaussian" not in arrays
    for name in EVAL_SETS:
        assert arrays[f"data/removed_{name}"].tolist()[-1] == 5
    # the stored losses are those the code computes: replay member 0 alone from the stored config
    cfg = IsingConfig(**{**meta["config"], "train_temperatures": tuple(meta["config"]["train_temperatures"])})
    group = symmetry_group(cfg.group, cfg.size)
    x, y = training_sets(arrays_to_data(arrays), group)["aug"]
    net, train, seed = architecture(cfg, key).flax(), training_config(cfg, key), int(arrays[f"{key}/seed"])
    assert arrays[f"{key}/first_epoch_step_loss"].shape == (8, 1)           # full batch: one step per epoch
    np.testing.assert_allclose(replay_steps(net, x, y, train, seed, member=0, steps=1),
                               arrays[f"{key}/first_epoch_step_loss"][0], rtol=1e-4)
    alone = init_ensemble(net, x, seed=seed, config=train, member_ids=(0,))
    _, history = train_ensemble(net, alone, x, y, train, seed=seed, progress=False)
    np.testing.assert_allclose(history["loss"][:, 0], arrays[f"{key}/loss"][:, 0], rtol=1e-4)
    for key in ("ntk_mlp_aug", "ntk_mlp_plain", "ntk_cnn_aug", "ntk_cnn_plain"):
        assert arrays[f"{key}/predicted_spread/test"].shape[0] == T
        assert arrays[f"{key}/mean/other_T"].shape == (T, 8, 5)
        assert np.all(arrays[f"{key}/mean/test"][0] == 0)             # μ_0 = 0
    # the theorem at tiny size, for both architectures: with full augmentation μ_t is invariant ...
    for arch in ("mlp", "cnn"):
        for name in ("test", "random", "gaussian"):
            assert arrays[f"ntk_{arch}_aug/mean_spread/{name}"].max() < 1e-6
        # ... and without it, it is not
        assert arrays[f"ntk_{arch}_plain/mean_spread/gaussian"].max() > 1e-3
    summary = loaded["summary"]
    assert summary["group"] == "D4" and summary["group_order"] == 8
    assert summary["evaluation_sets"]["test"]["kept"] == 5
    assert len(summary["mlp_w16_aug"]["test"]["member_vs_ensemble_spread"]["difference"]) == 3
    assert set(summary["mlp_w16_aug"]["test"]) >= {"member_spread", "ensemble_spread", "predicted_ensemble_spread",
                                                   "predicted_distance", "ntk_mean_spread_max", "ensemble_rmse_J",
                                                   "distance_from_ntk_mean"}

    # resume: a second call recomputes nothing and returns the same numbers
    capsys.readouterr()
    run_experiment("ising", preset="quick", root=tmp_path, **TINY)
    out = capsys.readouterr().out
    assert "computing" not in out
    assert out.count("resumed") == 1 + 4 + 4                        # data, 4 trainings, 4 NTK predictions
    again, meta2 = latest_results("ising", "quick", root=tmp_path, allow_modified=True)
    assert meta2["steps"]["computed"] == []
    for key in arrays:
        np.testing.assert_array_equal(again[key], arrays[key])

    # an interrupted training step resumes from its checkpoint (no epoch is trained again)
    run_dir = path.parent
    (run_dir / "steps" / "train" / "mlp_w16_aug.npz").unlink()
    run_experiment("ising", preset="quick", root=tmp_path, **TINY)
    third, _ = latest_results("ising", "quick", root=tmp_path, allow_modified=True)
    np.testing.assert_array_equal(third["mlp_w16_aug/member_spread/test"], arrays["mlp_w16_aug/member_spread/test"])


def arrays_to_data(arrays):
    """The ``data/…`` arrays of a results file as the dict ``ising_data`` returns."""
    return {k[len("data/"):]: v for k, v in arrays.items() if k.startswith("data/")}


def test_reference_preset_is_registered_between_quick_and_full():
    presets = get_experiment("ising").presets
    assert presets["reference"] == REFERENCE
    quick, full = presets["quick"], presets["full"]
    assert set(REFERENCE.widths) <= set(full.widths) and max(REFERENCE.widths) > max(quick.widths)
    assert set(REFERENCE.ensemble_sizes) <= set(full.ensemble_sizes) and REFERENCE.members > quick.members
    assert REFERENCE.members in REFERENCE.ensemble_sizes and REFERENCE.plain_width in REFERENCE.widths


def test_orbit_metrics_on_synthetic_outputs():
    group = symmetry_group("C4", 4)
    data = {f"y_{name}": np.zeros((3, 1), np.float32) for name in ("test", "other_T", "random")}
    T, M, n = 2, 4, 3
    counts = [group.order * n] * 4
    # member m outputs (−1)^m·(g index) on every orbit: members vary over the orbit, pairs cancel exactly
    g_index = np.repeat(np.arange(group.order), n).astype(float)
    member = np.stack([(-1) ** m * g_index for m in range(M)])                            # (M, |G|·n)
    outputs = np.broadcast_to(np.tile(member, (1, 4))[None, ..., None], (T, M, 4 * group.order * n, 1))
    from eqlib.experiments.ising import orbit_metrics
    metrics = orbit_metrics(outputs, counts, data, group, np.array([1, 2, 4]), energy_std=2.0)
    spread_one = np.arange(group.order).std()
    np.testing.assert_allclose(metrics["member_spread/gaussian"], spread_one)
    np.testing.assert_allclose(metrics["ensemble_spread/test"], [[spread_one, 0, 0]] * T, atol=1e-12)
    np.testing.assert_allclose(metrics["ensemble_orbit_output/random"], 0)
    assert metrics["member_rmse/test"].shape == (T, M) and metrics["ensemble_rmse/test"].shape == (T, 3)
    # RMSE in units of J: the targets are 0, the identity element's output is 0 for every member
    np.testing.assert_allclose(metrics["member_rmse/test"], 0)
    assert "member_rmse/gaussian" not in metrics
