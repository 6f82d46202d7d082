"""The sweep spec: expansion into trials, stable ids, errors naming the bad key, per-trial device
configurations and the JAX settings of the workers (no Ray needed)."""

from __future__ import annotations

import pytest

import opu
from host.sweep import SpecError, SweepSpec, device_config, load_spec, trial_id, worker_env
from host.sweep.trial import train_config


def _spec(**kw) -> SweepSpec:
    base = {"train": {"mode": "dfa", "epochs": 1}, "grid": {"device.camera.read_noise_e": [0.0, 5.0],
                                                          "train.seed": [0, 1, 2]}}
    return SweepSpec.model_validate({**base, **kw})


def test_grid_is_the_cartesian_product_with_stable_ids():
    spec = _spec()
    trials = spec.trials()
    assert len(trials) == 6
    assert {(t["device.camera.read_noise_e"], t["train.seed"]) for t in trials} == {
        (r, s) for r in (0.0, 5.0) for s in (0, 1, 2)}
    ids = [trial_id(i, t) for i, t in enumerate(trials)]
    assert len(set(ids)) == 6
    assert ids == [trial_id(i, t) for i, t in enumerate(_spec().trials())]
    assert spec.x_key == "device.camera.read_noise_e"


def test_random_samples_are_reproducible_and_inside_their_bounds():
    dist = {"device.camera.exposure_us": {"loguniform": [50, 400]}}
    spec = _spec(random={"samples": 3, "seed": 4, "params": dist})
    trials = spec.trials()
    assert len(trials) == 3 * 6
    assert all(50 <= t["device.camera.exposure_us"] <= 400 for t in trials)
    assert trials == spec.trials()


@pytest.mark.parametrize(("changes", "match"), [
    ({"grid": {"camera.read_noise_e": [1.0]}}, "train.<field> or device"),
    ({"grid": {"device.read_noise_e": [1.0]}}, "device.<section>.<field>"),
    ({"grid": {"train.seed": []}}, "no values"),
    ({"x": "train.lr"}, "not a swept key"),
    ({"grid": {}}, "nothing to sweep"),
    ({"train": {"device": "sim"}}, "set per trial"),
])
def test_invalid_specs_name_the_problem(changes, match):
    with pytest.raises(ValueError, match=match):
        _spec(**changes)


def test_load_spec_errors(tmp_path):
    with pytest.raises(SpecError, match="not a file"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [1, 2\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    bad.write_text("grid: {train.seed: [0]}\nunknown_key: 1\n")
    with pytest.raises(SpecError, match="unknown_key"):
        load_spec(bad)


def test_out_of_range_trial_values_are_rejected_before_running(tmp_path):
    from host.sweep import run_sweep

    with pytest.raises(SpecError, match="read_noise_e"):
        run_sweep(_spec(grid={"device.camera.read_noise_e": [1.0, -5.0]}), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_trial_device_and_training_configuration():
    spec = _spec(device={"preset": "realistic", "changes": {"medium": {"drift_time_constant_s": None}}})
    params = {"device.camera.read_noise_e": 7.5, "device.seed": 3, "train.seed": 2,
              "train.feedback.threshold": 0.2}
    cfg = device_config(spec, params)
    assert cfg.camera.read_noise_e == 7.5 and cfg.seed == 3 and cfg.medium.drift_time_constant_s is None
    assert cfg.camera.exposure_us == opu.realistic().camera.exposure_us  # untouched fields kept
    tcfg = train_config(spec, params, "sim:x.json")
    assert tcfg.seed == 2 and tcfg.device == "sim:x.json" and tcfg.feedback.threshold == 0.2


def test_worker_environment_limits_threads_and_gpu_memory():
    env = worker_env(_spec())
    assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"] and env["OMP_NUM_THREADS"] == "1"
    assert env["JAX_PLATFORMS"] == "cpu" and env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    gpu = worker_env(_spec(gpus_per_trial=0.25, jax_threads=None))
    assert float(gpu["XLA_PYTHON_CLIENT_MEM_FRACTION"]) == pytest.approx(0.2375, abs=1e-3)
    assert "XLA_FLAGS" not in gpu and "JAX_PLATFORMS" not in gpu


def test_the_shipped_example_spec_is_valid():
    from pathlib import Path

    import host.sweep

    spec = load_spec(Path(host.sweep.__file__).with_name("example_read_noise.yaml"))
    assert len(spec.trials()) == 12 and spec.x_key == "device.camera.read_noise_e"


def test_cli_rejects_a_bad_spec_with_exit_status_2(tmp_path, capsys):
    from host.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: {train.seed: [0]}\ntrain: {epochs: 0}\n")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "epochs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # rejected before anything ran
    assert main(["sweep", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert "not a file" in capsys.readouterr().err
