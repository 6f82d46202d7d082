"""``--model cnn-opu`` through the trainer: device frames in every step, resume, ROPUST init, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from host.robust.finetune import load_backbone, load_run_params
from host.train.trainer import TrainConfig, TrainingError, train

TINY = dict(dataset="digits", input_scale="pixels", channels=(4,), dense_width=16, batch_size=64,
            max_train_samples=192, alignment_batch=32, seed=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust_runs")
    train(TrainConfig(mode="bp", model="cnn", epochs=1, **TINY), root / "bp", progress=False)
    cfg = TrainConfig(mode="dfa", model="cnn-opu", epochs=1, optical_outputs=64, init_from=str(root / "bp"),
                      **TINY)
    res = train(cfg, root / "opu", progress=False)
    return root, cfg, res


def test_every_step_acquires_frames_and_the_backbone_gets_dfa(runs):
    root, _, res = runs
    rec = res.final
    # 3 steps of 64 images, each padded to the 256-pattern chunk, plus the alignment batch and the
    # 360 test images (2 chunks of 256) - all through the device
    assert rec["frames"] >= 3 * 64 + 360
    assert [a["point"] for a in rec["alignment"]] == ["conv1", "dense"]
    assert 0.0 <= rec["test_accuracy"] <= 1.0
    meta_dev = json.loads((root / "opu" / "config.json").read_text())
    assert meta_dev["model"] == "cnn-opu"


def test_resume_continues_with_the_stored_optical_settings(runs):
    root, cfg, _ = runs
    res = train(cfg.model_copy(update={"epochs": 2}), root / "opu", resume=True, progress=False)
    assert [r["epoch"] for r in res.metrics] == [1, 2]
    _, _, meta = load_run_params(root / "opu", with_meta=True)
    assert meta["device"]["settings"]["n_features"] == 16
    assert meta["device"]["settings"]["camera_roi"]["height_px"] * meta["device"]["settings"]["camera_roi"][
        "width_px"] == 64


def test_init_from_copies_the_backbone_and_keeps_a_fresh_readout(runs):
    root, _, _ = runs
    src, _ = load_run_params(root / "bp")
    fresh = {"conv1": {k: np.zeros_like(v) for k, v in src["conv1"].items()},
             "dense": {k: np.zeros_like(v) for k, v in src["dense"].items()},
             "out": {"w": np.ones((64, 10)), "b": np.zeros(10)}}
    got = load_backbone(root / "bp", fresh)
    np.testing.assert_array_equal(np.asarray(got["conv1"]["w"]), np.asarray(src["conv1"]["w"]))
    np.testing.assert_array_equal(np.asarray(got["out"]["w"]), 1.0)


def test_cnn_opu_refuses_optical_dfa(tmp_path):
    with pytest.raises(TrainingError, match="--mode bp or dfa"):
        train(TrainConfig(mode="optical-dfa", model="cnn-opu", epochs=1, **TINY), tmp_path, progress=False)


@pytest.mark.parametrize("placement, names", [("blocks", ("conv1", "dense")), ("dense", ("dense",))])
def test_cnn_opu_points_follow_cnn_feedback(placement, names):
    import jax

    from host.train.points import discover_points
    from host.train.tasks import build_task

    task = build_task(TrainConfig(mode="dfa", model="cnn-opu", cnn_feedback=placement, **TINY))
    x = task.example().inputs
    layout = discover_points(task.model.apply, task.model.init(jax.random.PRNGKey(0)), x)
    assert layout.names == names and layout.sizes[-1] == 16
