"""``--model cnn-opu`` through the trainer: device frames in every step, resume, ROPUST init, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from host.robust.finetune import load_backbone, load_run_params
from host.train.checkpoint import CheckpointError
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
    # a layer the source run does not have, and a shape it does not match, are named
    with pytest.raises(CheckpointError) as err:
        load_backbone(root / "bp", {**fresh, "conv9": {"w": np.zeros(3)}})
    assert str(err.value) == f"{root / 'bp'} has no layer 'conv9' (it has {sorted(src)})"
    w = src["dense"]["w"]
    wider = (w.shape[0] + 1, w.shape[1])
    with pytest.raises(CheckpointError) as err:
        load_backbone(root / "bp", {**fresh, "dense": {**fresh["dense"], "w": np.zeros(wider)}})
    assert str(err.value) == (f"{root / 'bp'}: dense.w is {w.shape}, the cnn-opu needs {wider} "
                              "(use the same --channels and --dense-width)")


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


def _bp_accuracy(run_dir, x, y):
    """Accuracy of a ``--model cnn`` run on (x, y), computed here from its checkpoint."""
    import jax.numpy as jnp

    from host.train.tasks import build_task

    params, cfg = load_run_params(run_dir)
    logits = np.asarray(build_task(cfg).model.apply(params, jnp.asarray(x)))
    return float(np.mean(np.argmax(logits, -1) == y))


def test_evaluate_runs_every_attack_and_writes_its_report(runs, tmp_path):
    from host.robust.evaluate import EvalConfig, evaluate
    from host.train.tasks import build_task

    root, tcfg, _ = runs
    n = 20
    logs: list[str] = []
    cfg = EvalConfig(eps=(0.1,), n_samples=n, pgd_steps=3, square_queries=20, hsj_samples=3, hsj_iter=1,
                     hsj_max_eval=20, pr_anchors=(3,))
    rep = evaluate(root / "opu", cfg, out=tmp_path, log=logs.append)
    assert json.loads((tmp_path / "robustness.json").read_text()) == json.loads(json.dumps(rep))
    assert (tmp_path / "robustness.png").stat().st_size > 10_000
    data = build_task(tcfg).data  # the run's own test split, in pixels
    x, y = data.x_test[:n], data.y_test[:n]
    bp_acc = _bp_accuracy(root / "bp", x, y)
    assert rep["natural"]["bp"] == bp_acc
    assert logs[0] == f"natural accuracy on {n} test images: bp {bp_acc:.3f}, opu {rep['natural']['opu']:.3f}"
    # every attack of the issue, on both models where it applies, as accuracies of n (hsj: 3) images
    assert set(rep["bp"]) == {"fgsm", "pgd", "square"}  # the decision-based attack judges the defence only
    assert set(rep["opu"]) == {"fgsm_random", "fgsm_bpda", "pgd_random", "pgd_bpda", "transfer", "pr_S3",
                               "square", "hsj"}
    for who in ("bp", "opu"):
        for name, by_eps in rep[who].items():
            assert list(by_eps) == ["0.1"]
            k = 3 if name == "hsj" else n
            assert 0 <= by_eps["0.1"] <= 1 and abs(by_eps["0.1"] * k - round(by_eps["0.1"] * k)) < 1e-9
    assert rep["bp"]["pgd"]["0.1"] <= bp_acc
    # the phase-retrieval attacker's matrix: S = 3 anchors on 16 features, 8 + 2 x 6 + 32 x 4 frames
    assert rep["pr_quality"]["S3"]["anchors"] == 3 and rep["pr_quality"]["S3"]["frames"] == 148
    assert logs[1].startswith("TM retrieval S=3: 148 frames, prediction correlation ")
    # the gradient-masking checks, each with its two-standard-error tolerance
    san = rep["sanity"]
    assert set(san) == {"undefended_to_zero", "defended_to_zero_at_large_eps", "black_box_not_better_bp",
                        "black_box_not_better_opu", "more_steps_bp", "more_steps_opu_random",
                        "more_steps_opu_bpda", "more_steps_opu_pr_S3"}
    bb = san["black_box_not_better_bp"]
    assert bb["tolerance"] == max(0.02, 2 * np.sqrt(max(bb["best_white_box"] * (1 - bb["best_white_box"]),
                                                        0.01) / n))
    assert bb["passed"] == (bb["best_black_box"] >= bb["best_white_box"] - bb["tolerance"])
    ms = san["more_steps_bp"]
    assert ms["passed"] == (ms["acc_6"] <= ms["acc_3"] + ms["tolerance"])
    assert rep["sanity_checks_passed"] == all(v["passed"] for v in san.values())
    verdicts = ", ".join(f"{k} {'ok' if v['passed'] else 'FAILED'}" for k, v in san.items())
    assert logs[-1] == "sanity: " + verdicts
    assert (rep["n_samples"], rep["hsj_samples"], rep["eps"], rep["pgd_steps"]) == (n, 3, [0.1], 3)
    assert rep["attacks"] == ["fgsm", "pgd", "transfer", "square", "hsj", "pr"]
    assert rep["device"] == "sim" and rep["device_frames"] > 0 and rep["wall_s"] > 0
    assert rep["baseline"] == str(root / "bp") and rep["dataset"] == "digits"


def test_evaluate_takes_at_most_the_test_split_and_names_bad_runs(runs, tmp_path):
    from host.robust.evaluate import EvalConfig, RobustnessError, evaluate
    from host.train.tasks import build_task

    root, tcfg, _ = runs
    rep = evaluate(root / "opu", EvalConfig(eps=(0.05,), attacks=("fgsm",), n_samples=100_000), out=tmp_path,
                   log=lambda s: None)
    data = build_task(tcfg).data
    assert rep["n_samples"] == len(data.y_test) == 359  # 20 % of the 1797 digits
    assert rep["natural"]["bp"] == _bp_accuracy(root / "bp", data.x_test, data.y_test)
    with pytest.raises(RobustnessError) as err:
        evaluate(root / "bp", EvalConfig(), out=tmp_path)
    assert str(err.value) == f"{root / 'bp'} is a --model cnn run; opu robustness evaluates cnn-opu runs"


@pytest.mark.parametrize("change, message", [
    ({"input_scale": "standardized"},
     "{run} was trained on standardized inputs; L-inf attacks need pixels in [0, 1]: train with "
     "--input-scale pixels"),
    ({"init_from": None}, "no baseline: pass --baseline RUN (a --model cnn run), or evaluate a run trained "
                          "with --init-from"),
])
def test_evaluate_refuses_runs_it_cannot_attack(runs, tmp_path, change, message):
    import shutil

    from host.robust.evaluate import EvalConfig, RobustnessError, evaluate

    root, _, _ = runs
    run = tmp_path / "edited"
    shutil.copytree(root / "opu", run)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(RobustnessError) as err:
        evaluate(run, EvalConfig(), out=tmp_path / "out", log=lambda s: None)
    assert str(err.value) == message.format(run=run)
    assert not (tmp_path / "out").exists()  # refused before any frame or file


def test_evaluate_checks_an_adversarially_trained_baseline_at_large_eps(runs, tmp_path):
    import shutil

    from host.robust.evaluate import EvalConfig, evaluate

    root, _, _ = runs
    base = tmp_path / "pgd_at"  # the same weights, declared as trained with PGD at eps 0.1
    shutil.copytree(root / "bp", base)
    cfg = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**cfg, "adv_train_eps": 0.1}))
    ecfg = EvalConfig(eps=(0.01,), attacks=("pgd",), n_samples=20, pgd_steps=3)
    rep = evaluate(root / "opu", ecfg, baseline=base, out=tmp_path / "out", log=lambda s: None)
    assert rep["bp"]["pgd"]["0.01"] > 0.05  # holds at eps 0.01, as a robust baseline may
    check = rep["sanity"]["undefended_to_zero"]
    assert (check["eps"], check["note"]) == (0.5, "adversarially trained baseline: checked at large_eps")


def test_task_example_has_one_measurement_row_per_image():
    from host.train.tasks import build_task

    cfg = TrainConfig(mode="dfa", model="cnn-opu", optical_outputs=48, **{**TINY, "batch_size": 24})
    task = build_task(cfg)
    x, y = task.example().inputs
    assert x.shape[0] == 24 and y.shape == (24, 48) and y.dtype == np.float32 and not np.asarray(y).any()


def test_attach_applies_stored_settings_without_acquiring(runs):
    import drivers
    from host.train.tasks import build_task

    root, cfg, _ = runs
    _, _, meta = load_run_params(root / "opu", with_meta=True)
    stored = meta["device"]["settings"]
    # settings auto-exposure would not choose: they must be applied as they are, with no frame taken
    odd = {**stored, "exposure_us": stored["exposure_us"] / 3}
    task = build_task(cfg)
    dev = drivers.connect("sim")
    try:
        got = task.attach(dev, odd)
        assert dev.frames_acquired == 0
        assert got["exposure_us"] == odd["exposure_us"] and got["n_features"] == 16
    finally:
        dev.close()


def test_evaluate_reuses_the_runs_stored_exposure(runs, tmp_path, monkeypatch):
    from host.robust import optical
    from host.robust.evaluate import EvalConfig, evaluate

    root, _, _ = runs

    def no_auto_exposure(*a, **k):
        raise AssertionError("auto-exposure ran: the run's stored settings were not applied")

    monkeypatch.setattr(optical, "auto_expose", no_auto_exposure)
    rep = evaluate(root / "opu", EvalConfig(eps=(0.05,), attacks=("fgsm",), n_samples=8), out=tmp_path,
                   log=lambda s: None)
    assert rep["n_samples"] == 8


class _CountingSteps:
    """``Steps.evaluate`` stand-in: loss 2 a sample, correct where the label is 0, and the images seen."""

    def __init__(self):
        self.seen = []

    def evaluate(self, params, b):
        x, y_meas = b.inputs
        self.seen.append((np.asarray(x), np.asarray(y_meas)))
        y = np.asarray(b.y)
        return 2.0 * len(y), float((y == 0).sum()), float(len(y))


def test_task_evaluate_sums_over_chunks_with_measured_inputs(runs):
    import drivers
    from host.train.tasks import build_task

    root, cfg, _ = runs
    params, _, meta = load_run_params(root / "opu", with_meta=True)
    task = build_task(cfg)
    dev = drivers.connect("sim")
    try:
        task.attach(dev, meta["device"]["settings"])
        steps = _CountingSteps()
        got = task.evaluate(steps, params, chunk=100)
    finally:
        dev.close()
    y = task.data.y_test
    assert got == {"test_loss": 2.0, "test_accuracy": pytest.approx(float(np.mean(y == 0)))}
    # 359 test images in chunks of 100, each with its measured optical output (64 pixels)
    assert [len(x) for x, _ in steps.seen] == [100, 100, 100, 59]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in steps.seen]), task.data.x_test)
    assert all(m.shape == (len(x), 64) and np.abs(m).max() > 0 for x, m in steps.seen)
