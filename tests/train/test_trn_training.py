"""End-to-end training on digits: DFA learns, alignment becomes positive, resume is exact."""

import json

import jax
import numpy as np
import optax
import pytest
from flaky_device import FlakySimDevice

import opu
from host.train import TrainConfig, TrainingError, read_metrics, train
from host.train.checkpoint import load as load_ckpt
from host.train.models import mlp

SMALL = {"hidden": (64, 64), "batch_size": 64, "alignment_batch": 128}


@pytest.fixture(scope="module")
def dfa_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dfa")
    return train(TrainConfig(mode="dfa", epochs=8, **SMALL), out, progress=False)


def test_dfa_learns_and_aligns(dfa_run):
    m = dfa_run.metrics
    # chance is 10 %; the shallow lower bound on digits sits near 85-90 % with this budget
    assert m[-1]["test_accuracy"] > 0.85
    assert m[-1]["train_loss"] < 0.5 * m[0]["train_loss"]
    for layer in m[-1]["alignment"]:
        assert layer["cos_update"] > 0.05 and layer["cos_sample_mean"] > 0.05
        assert layer["angle_update_deg"] == pytest.approx(np.degrees(np.arccos(layer["cos_update"])))


def test_dfa_beats_shallow(dfa_run, tmp_path):
    sh = train(TrainConfig(mode="shallow", epochs=8, **SMALL), tmp_path, progress=False)
    assert dfa_run.metrics[-1]["test_accuracy"] > sh.metrics[-1]["test_accuracy"] + 0.01


@pytest.mark.parametrize("mode", ["bp", "dfa"])
def test_resume_is_bit_identical(mode, tmp_path):
    cfg = TrainConfig(mode=mode, epochs=3, **SMALL)
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg.model_copy(update={"epochs": 1}), tmp_path / "part", progress=False)
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    assert [r["train_loss"] for r in resumed.metrics] == [r["train_loss"] for r in full.metrics]
    assert len(read_metrics(tmp_path / "part")) == 3
    _assert_same_checkpoint(tmp_path / "full", tmp_path / "part")


def _assert_same_checkpoint(a, b):
    with np.load(a / "checkpoint.npz") as za, np.load(b / "checkpoint.npz") as zb:
        keys = [k for k in za.files if k.startswith("leaf_")]
        assert keys == [k for k in zb.files if k.startswith("leaf_")]
        for k in keys:
            np.testing.assert_array_equal(za[k], zb[k])
        assert json.loads(str(za["meta_json"]))["epoch"] == json.loads(str(zb["meta_json"]))["epoch"]


def test_optical_resume_is_exact_with_the_device_clock(tmp_path):
    cfg = TrainConfig(mode="optical-dfa", epochs=2, max_train_samples=512, **SMALL)
    with FlakySimDevice(opu.realistic(seed=3)) as dev:
        full = train(cfg, tmp_path / "full", device=dev, progress=False)
    with FlakySimDevice(opu.realistic(seed=3)) as dev:
        train(cfg.model_copy(update={"epochs": 1}), tmp_path / "part", device=dev, progress=False)
    with FlakySimDevice(opu.realistic(seed=3)) as dev:  # a fresh device: its clock starts at 0
        resumed = train(cfg, tmp_path / "part", resume=True, device=dev, progress=False)
    assert [r["train_loss"] for r in resumed.metrics] == [r["train_loss"] for r in full.metrics]
    assert resumed.metrics[-1]["frames_total"] == full.metrics[-1]["frames_total"]
    _assert_same_checkpoint(tmp_path / "full", tmp_path / "part")


def test_existing_run_is_not_overwritten_and_resume_checks_config(tmp_path):
    cfg = TrainConfig(mode="bp", epochs=1, **SMALL)
    train(cfg, tmp_path, progress=False)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    with pytest.raises(TrainingError, match="--resume"):
        train(cfg, tmp_path, progress=False)
    with pytest.raises(TrainingError, match=r"lr: stored 0\.001, given 0\.5"):
        train(cfg.model_copy(update={"lr": 0.5, "epochs": 2}), tmp_path, resume=True, progress=False)
    # the refused runs left the checkpoint untouched, and it still loads as epoch 1
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    net = mlp(SMALL["hidden"], 10, cfg.act)
    params = net.init(jax.random.split(jax.random.PRNGKey(cfg.seed))[0], 64)  # as the trainer inits
    (loaded, _), meta = load_ckpt(tmp_path / "checkpoint.npz", (params, optax.adam(cfg.lr).init(params)))
    assert meta["epoch"] == 1 and meta["config"]["lr"] == cfg.lr
    assert np.asarray(loaded[0]["w"]).shape == (64, SMALL["hidden"][0])
    assert not np.array_equal(np.asarray(loaded[0]["w"]), np.asarray(params[0]["w"]))  # trained weights
    assert len(read_metrics(tmp_path)) == 1


def test_optical_resume_on_the_driver_simulator(tmp_path):
    import drivers

    cfg = TrainConfig(mode="optical-dfa", epochs=2, max_train_samples=256, **SMALL)
    with drivers.connect("sim") as dev:
        full = train(cfg, tmp_path / "full", device=dev, progress=False)
    with drivers.connect("sim") as dev:
        train(cfg.model_copy(update={"epochs": 1}), tmp_path / "part", device=dev, progress=False)
    with drivers.connect("sim") as dev:
        resumed = train(cfg, tmp_path / "part", resume=True, device=dev, progress=False)
    assert [r["train_loss"] for r in resumed.metrics] == [r["train_loss"] for r in full.metrics]
