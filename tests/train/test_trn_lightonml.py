"""Optical DFA with LightOn's lightonml in the loop (lightonml:simulated), end to end and resumed."""

import drivers
from host.train import TrainConfig, train


def test_optical_dfa_trains_and_resumes_on_lightonml(tmp_path):
    cfg = TrainConfig(mode="optical-dfa", epochs=2, hidden=(32, 32), batch_size=64, max_train_samples=256,
                      alignment_batch=64, device="lightonml:simulated")
    res = train(cfg.model_copy(update={"epochs": 1}), tmp_path / "run", progress=False)
    # auto-exposure on the ideal 8-bit camera: no macro-pixel needed, the target reached without clipping
    assert res.exposure is not None and res.exposure["macro_pixel_mirrors"] == 1 and res.exposure["converged"]
    first = res.metrics[0]
    assert first["frames"] > 0 and first["saturation_warnings"] == 0
    # resume: the trainer moves the (simulated) device's counters to the checkpoint's (sync_clock)
    again = train(cfg, tmp_path / "run", resume=True, progress=False)
    assert [r["epoch"] for r in again.metrics] == [1, 2]
    assert again.metrics[1]["frames_total"] == first["frames_total"] + again.metrics[1]["frames"]
    # accuracy after 8 steps says little: the accuracy comparison is bench/lightonml_train.py
    with drivers.connect("lightonml:simulated") as dev:
        assert dev.identity.is_simulated
