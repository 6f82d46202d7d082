"""Resume after a device failure in the middle of an epoch is exact, and the clock restoration
distinguishes simulated devices (counters restored) from hardware (left alone)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flaky_device import FlakySimDevice

import opu
from drivers.base import DeviceIdentity
from host.train import TrainConfig, TrainingInterrupted, read_metrics, train
from host.train.checkpoint import load as load_ckpt

CFG = TrainConfig(mode="optical-dfa", epochs=3, hidden=(32, 32), batch_size=64, max_train_samples=256,
                  alignment_batch=64)
SEED = 0


class HardwareLikeDevice(FlakySimDevice):
    """The in-process device reporting a hardware model name (no ``-SIM``): real hardware to the host,
    which must not try to restore its clock. Records every sync_clock attempt."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.sync_calls: list[tuple] = []

    def _query_identity(self) -> DeviceIdentity:
        return DeviceIdentity("OpenOPU", "OPU-1000", "HW-0001", "1.0")

    def sync_clock(self, frames_total: int, device_time_s: float) -> None:
        self.sync_calls.append((frames_total, device_time_s))
        super().sync_clock(frames_total, device_time_s)


def _checkpoint_leaves(path):
    with np.load(path / "checkpoint.npz") as z:
        meta = json.loads(str(z["meta_json"]))
        return {k: z[k].copy() for k in z.files if k.startswith("leaf_")}, meta


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    res = train(CFG, out, device=FlakySimDevice(opu.realistic(seed=SEED)).open(), progress=False)
    return res, out


def test_resume_after_a_failure_mid_epoch_is_exact(uninterrupted, tmp_path):
    full, full_dir = uninterrupted
    # sequences: setup (auto-exposure) + per epoch 1 calibration + 4 steps + 1 alignment
    probe = FlakySimDevice(opu.realistic(seed=SEED)).open()
    train(CFG.model_copy(update={"epochs": 1}), tmp_path / "probe", device=probe, progress=False)
    per_epoch = 6
    setup = probe.sequences - per_epoch
    # fail at the third step of epoch 2: two steps of epoch 2 already updated the (unsaved) weights
    bad = FlakySimDevice(opu.realistic(seed=SEED), fail_after_sequences=setup + per_epoch + 3).open()
    with pytest.raises(TrainingInterrupted, match=r"epoch 2") as info:
        train(CFG, tmp_path / "run", device=bad, progress=False)
    assert info.value.epochs_done == 1
    assert bad.frames_acquired > full.metrics[0]["frames_total"]  # frames of epoch 2 were taken
    (_, _), meta = load_ckpt(tmp_path / "run" / "checkpoint.npz", _template(tmp_path / "run"))
    assert meta["epoch"] == 1
    assert meta["device"]["frames_total"] == full.metrics[0]["frames_total"]
    good = FlakySimDevice(opu.realistic(seed=SEED)).open()
    res = train(CFG, tmp_path / "run", device=good, resume=True, progress=False)
    # bit-identical to the run that never failed: losses, accuracies, frame counters, weights
    for key in ("train_loss", "test_accuracy", "frames_total", "frames"):
        assert [r[key] for r in res.metrics] == [r[key] for r in full.metrics], key
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3]
    leaves_a, meta_a = _checkpoint_leaves(full_dir)
    leaves_b, meta_b = _checkpoint_leaves(tmp_path / "run")
    assert leaves_a.keys() == leaves_b.keys()
    for k in leaves_a:
        np.testing.assert_array_equal(leaves_a[k], leaves_b[k])
    assert meta_a["device"]["frames_total"] == meta_b["device"]["frames_total"]


def _template(run_dir):
    """(params, opt_state) of the stored configuration, to read the checkpoint with."""
    import jax

    from host.train.models import mlp
    from host.train.trainer import make_optimizer

    cfg = TrainConfig.model_validate_json((run_dir / "config.json").read_text())
    net = mlp(cfg.hidden, 10, cfg.act)
    k_init, _ = jax.random.split(jax.random.PRNGKey(cfg.seed))
    params = net.init(k_init, 64)
    return params, make_optimizer(cfg).init(params)


def test_hardware_resume_does_not_touch_the_clock(uninterrupted, tmp_path):
    full, _ = uninterrupted
    first = HardwareLikeDevice(opu.realistic(seed=SEED)).open()
    assert not first.identity.is_simulated
    train(CFG.model_copy(update={"epochs": 1}), tmp_path, device=first, progress=False)
    fresh = HardwareLikeDevice(opu.realistic(seed=SEED)).open()
    res = train(CFG, tmp_path, device=fresh, resume=True, progress=False)
    assert fresh.sync_calls == []  # hardware has no clock to set: never attempted
    assert [r["epoch"] for r in res.metrics] == [1, 2, 3]
    # the device's own counter was left where it was: only this session's frames
    assert fresh.status().frames_total == fresh.frames_acquired < full.metrics[-1]["frames_total"]
    # training continued from the checkpoint (not from scratch): the loss keeps falling from epoch 1's
    # and follows the uninterrupted run's, up to the different frame noise of the feedback
    losses = [r["train_loss"] for r in res.metrics]
    assert losses[2] < losses[1] < losses[0]
    assert losses[0] == full.metrics[0]["train_loss"]  # epoch 1: same device seed, same frames
    assert losses[2] == pytest.approx(full.metrics[2]["train_loss"], rel=0.05)


def test_simulated_resume_restores_the_clock_once(tmp_path):
    calls = []

    class Recording(FlakySimDevice):
        def sync_clock(self, frames_total, device_time_s):
            calls.append((frames_total, device_time_s))
            super().sync_clock(frames_total, device_time_s)

    cfg = CFG.model_copy(update={"epochs": 1})
    first = FlakySimDevice(opu.realistic(seed=SEED)).open()
    train(cfg, tmp_path, device=first, progress=False)
    st = first.status()
    fresh = Recording(opu.realistic(seed=SEED)).open()
    train(cfg.model_copy(update={"epochs": 2}), tmp_path, device=fresh, resume=True, progress=False)
    assert calls == [(st.frames_total, pytest.approx(st.device_time_s))]
