"""Conv net and GCN through the trainer: DFA learns on tiny data, optical DFA runs, resume is exact."""

import numpy as np
import pytest
from flaky_device import FlakySimDevice

import opu
from host.train import TrainConfig, read_metrics, train

CNN_SMALL = {
    "model": "cnn",
    "channels": (8, 16),
    "dense_width": 32,
    "batch_size": 32,
    "lr": 3e-3,
    "alignment_batch": 64,
}

GCN = {"model": "gcn", "dataset": "csbm", "lr": 0.01, "weight_decay": 5e-4, "graph_steps_per_epoch": 10}


@pytest.fixture(scope="module")
def gcn_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("gcn")
    return {
        m: train(TrainConfig(mode=m, epochs=3, **GCN), out / m, progress=False) for m in ("dfa", "shallow")
    }


def test_gcn_dfa_learns_and_aligns(gcn_runs):
    dfa, sh = gcn_runs["dfa"].final, gcn_runs["shallow"].final
    # 4 balanced classes: chance 25 %; the graph + features carry the labels
    # shallow: random hidden features of the propagated inputs already carry much (quick bench: 84 vs 94 %)
    assert dfa["test_accuracy"] > 0.75 and dfa["test_accuracy"] > sh["test_accuracy"] + 0.05
    (al,) = dfa["alignment"]
    assert al["point"] == "gcn1" and al["cos_update"] > 0.1


def test_cnn_dfa_learns_on_digits(tmp_path):
    res = train(TrainConfig(mode="dfa", epochs=2, **CNN_SMALL), tmp_path, progress=False)
    m = res.metrics
    # 90 steps: DFA on convolutions is slow (relu: 34 %, shallow 31 %; chance 10 %)
    assert m[-1]["test_accuracy"] > 0.25
    assert m[-1]["train_loss"] < m[0]["train_loss"]
    assert [a["point"] for a in m[-1]["alignment"]] == ["conv1", "conv2", "dense"]


@pytest.mark.parametrize("extra", [CNN_SMALL, GCN], ids=["cnn", "gcn"])
def test_resume_is_exact(extra, tmp_path):
    cfg = TrainConfig(mode="dfa", epochs=2, **extra)
    if extra["model"] == "cnn":
        cfg = cfg.model_copy(update={"max_train_samples": 128})
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg.model_copy(update={"epochs": 1}), tmp_path / "part", progress=False)
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    assert [r["train_loss"] for r in resumed.metrics] == [r["train_loss"] for r in full.metrics]
    with (
        np.load(tmp_path / "full" / "checkpoint.npz") as za,
        np.load(tmp_path / "part" / "checkpoint.npz") as zb,
    ):
        for k in za.files:
            if k.startswith("leaf_"):
                np.testing.assert_array_equal(za[k], zb[k])


def test_optical_gcn_uses_one_camera_roi_of_the_feedback_size(tmp_path):
    cfg = TrainConfig(mode="optical-dfa", epochs=1, **{**GCN, "graph_steps_per_epoch": 3})
    with FlakySimDevice(opu.realistic(seed=1)) as dev:
        res = train(cfg, tmp_path, device=dev, progress=False)
        assert dev.n_outputs == 16  # one pixel per hidden unit of a node: the ROI follows the points
    rec = read_metrics(tmp_path)[0]
    assert rec["frames"] > 0 and rec["alignment"][0]["point"] == "gcn1"
    assert res.final["test_accuracy"] > 0.25


def test_pfa_trains_the_cnn(tmp_path):
    cfg = TrainConfig(mode="pfa", epochs=1, **{**CNN_SMALL, "optimizer": "sgd", "lr": 0.05})
    res = train(cfg, tmp_path, progress=False)
    al = res.final["alignment"]
    assert [a["point"] for a in al] == ["conv1", "conv2", "dense", "out"]
    assert al[0]["path_alignment"] is None and all(a["path_alignment"] is not None for a in al[1:])
    assert all(-1 <= a["path_alignment"] <= 1 for a in al[1:])
    assert res.final["test_accuracy"] > 0.5  # chance 10 %


def test_cli_trains_every_model_kind_and_rejects_bad_pairs(tmp_path, capsys):
    from host.cli import main

    args = ["train", "--model", "gcn", "--mode", "dfa", "--epochs", "1", "--graph-steps-per-epoch", "2",
            "--lr", "0.01", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "g")]) == 0
    rec = read_metrics(tmp_path / "g")[0]
    assert rec["model"] == "gcn" and rec["alignment"][0]["point"] == "gcn1"
    assert (tmp_path / "g" / "curves.png").is_file() and (tmp_path / "g" / "checkpoint.npz").is_file()
    assert main([*args, "--dataset", "digits", "--out", str(tmp_path / "bad")]) == 2
    assert "graph dataset" in capsys.readouterr().err
    assert main([*args, "--dataset", "cora", "--data-dir", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert "cora.content and cora.cites" in capsys.readouterr().err


def test_device_failure_in_a_gcn_run_keeps_checkpoint_and_metrics(tmp_path):
    from host.train import TrainingInterrupted

    cfg = TrainConfig(mode="optical-dfa", epochs=2, **{**GCN, "graph_steps_per_epoch": 2})
    probe = FlakySimDevice(opu.realistic(seed=0)).open()
    train(cfg.model_copy(update={"epochs": 1}), tmp_path / "probe", device=probe, progress=False)
    per_epoch = 4  # calibration + 2 steps + alignment
    setup = probe.sequences - per_epoch
    bad = FlakySimDevice(opu.realistic(seed=0), fail_after_sequences=setup + per_epoch + 1).open()
    with pytest.raises(TrainingInterrupted, match=r"epoch 2.*--resume"):
        train(cfg, tmp_path / "run", device=bad, progress=False)
    assert len(read_metrics(tmp_path / "run")) == 1
    res = train(cfg, tmp_path / "run", device=FlakySimDevice(opu.realistic(seed=0)).open(), resume=True,
                progress=False)
    assert [r["epoch"] for r in res.metrics] == [1, 2]


def test_pfa_resume_restores_r_exactly(tmp_path):
    cfg = TrainConfig(mode="pfa", model="mlp", hidden=(32,), batch_size=64, max_train_samples=256, epochs=2,
                      optimizer="sgd", lr=0.05, alignment_batch=64)
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg.model_copy(update={"epochs": 1}), tmp_path / "part", progress=False)
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    assert [r["train_loss"] for r in resumed.metrics] == [r["train_loss"] for r in full.metrics]
    assert resumed.final["alignment"] == full.final["alignment"]  # path alignment uses the restored R
