"""Optical feedback: light budget, projection fidelity against an independent exact A, faults."""

import warnings

import numpy as np
import pytest
from flaky_device import FlakySimDevice

import opu
from host.train import FeedbackConfig, OpticalFeedback, TrainConfig, TrainingInterrupted, read_metrics, train
from host.train.feedback import ternary_error

C, M = 10, 256


def _errors(n, seed, scale=2.0):
    """Output errors softmax(s z) - onehot(y) as in training (reference section 2.1)."""
    rng = np.random.default_rng(seed)
    z = scale * rng.normal(size=(n, C))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p - np.eye(C)[rng.integers(0, C, n)]


def _cos(a, b):
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def test_ternarized_projection_correlates_with_exact_projection():
    cfg = FeedbackConfig(rescale="none", threshold_mode="fixed")
    with FlakySimDevice(opu.realistic(seed=5)) as dev:
        fb = OpticalFeedback(dev, M, C, cfg)
        settings = fb.setup()
        with warnings.catch_warnings():
            warnings.simplefilter("error", opu.SaturationWarning)  # the light budget leaves headroom
            fb.begin_epoch()
            e = _errors(200, seed=1)
            proj = fb.project(e, np.random.default_rng(0)).astype(np.float64)
    assert fb.saturation_warnings == 0
    # The exact A, measured independently: a noiseless float detector with the same seed, macro-pixels
    # and camera ROI, projecting the unit vectors (A^T is C x m).
    ideal = opu.ideal(seed=5).replace(
        dmd={"macro_pixel_mirrors": settings["macro_pixel_mirrors"]},
        camera={"roi": settings["camera_roi"]},
    )
    sim = opu.Simulator(ideal, 2 * C)
    scheme = opu.AnchorScheme(C)
    a_t = opu.linear_transform(sim.acquire, np.eye(C), scheme, scheme.calibrate(sim.acquire))
    et, _ = ternary_error(e, cfg)
    keep = np.abs(et).sum(1) > 0
    exact_t, exact = et[keep] @ a_t, e[keep] @ a_t
    c_noise = _cos(proj[keep], exact_t)
    # 8-bit frames with shot noise: the projection of e_t is measured, not exact, but close
    assert c_noise.mean() > 0.85
    # by Johnson-Lindenstrauss the projection keeps cos(e, e_t); tolerance ~ 3 / sqrt(m) + noise spread
    expected = _cos(et[keep], e[keep]).mean() * c_noise.mean()
    assert _cos(proj[keep], exact).mean() == pytest.approx(expected, abs=0.06)
    # unit scale: A is N(0, 1), so E|A e_t|^2 / m = |e_t|^2
    ratio = (proj[keep] ** 2).mean(1) / (et[keep] ** 2).sum(1)
    assert ratio.mean() == pytest.approx(1.0, abs=0.15)


def test_auto_exposure_reaches_its_target():
    with FlakySimDevice(opu.realistic(seed=2)) as dev:
        fb = OpticalFeedback(dev, M, C, FeedbackConfig(exposure_target_frac=0.5))
        fb.setup()
        rep = fb.exposure
        assert rep.converged and rep.all_on_p999_dn == pytest.approx(0.5 * 255, rel=0.15)
        # physics check: mean photo-electrons of all-on frames = lit mirrors x photons/mirror/us x t x QE
        c = opu.realistic().camera
        lit = 2 * C * rep.macro_pixel_mirrors**2
        mean_e = lit * 5e-3 * rep.exposure_us * c.quantum_efficiency
        expected_dn = c.black_level_dn + c.gain_dn_per_e * mean_e
        assert rep.all_on_mean_dn == pytest.approx(expected_dn, rel=0.15)


def test_device_failure_keeps_checkpoint_and_metrics(tmp_path):
    cfg = TrainConfig(mode="optical-dfa", epochs=3, hidden=(32, 32), batch_size=64, max_train_samples=256,
                      alignment_batch=64)
    # per epoch: 1 calibration sequence + 4 steps + 1 alignment; auto-exposure takes a few sequences
    dev = FlakySimDevice(opu.realistic(seed=0), fail_after_sequences=None).open()
    ok = train(cfg.model_copy(update={"epochs": 1}), tmp_path / "probe", device=dev, progress=False)
    per_epoch = 6
    setup = dev.sequences - per_epoch
    assert ok.metrics[0]["frames"] > 0
    bad = FlakySimDevice(opu.realistic(seed=0), fail_after_sequences=setup + per_epoch + 2).open()
    with pytest.raises(TrainingInterrupted, match=r"DeviceDisconnected.*epoch 1.*--resume") as info:
        train(cfg, tmp_path / "run", device=bad, progress=False)
    assert info.value.epochs_done == 1
    assert len(read_metrics(tmp_path / "run")) == 1
    good = FlakySimDevice(opu.realistic(seed=0)).open()
    res = train(cfg, tmp_path / "run", device=good, resume=True, progress=False)
    assert [r["epoch"] for r in res.metrics] == [1, 2, 3]


def test_stochastic_ternarization_is_unbiased():
    """E[s e_t] = e: the mean over many draws converges to the error at the 1/sqrt(N) rate."""
    e = _errors(50, seed=3)
    cfg = FeedbackConfig()  # stochastic by default
    draws = 4000
    rng = np.random.default_rng(7)
    acc = np.zeros_like(e)
    for _ in range(draws):
        et, s = ternary_error(e, cfg, rng)
        assert set(np.unique(et)) <= {-1.0, 0.0, 1.0}
        acc += et * s[:, None]
    mean = acc / draws
    s = np.abs(e).max(axis=1, keepdims=True)
    # per entry, s e_t has variance s |e| - e^2 <= s^2 / 4
    assert np.all(np.abs(mean - e) < 5 * (s / 2) / np.sqrt(draws))
    with pytest.raises(ValueError, match="Generator"):
        ternary_error(e, cfg)


@pytest.mark.parametrize("share", [False, True])
def test_frames_per_step_with_and_without_shared_patterns(share):
    e = _errors(128, seed=4)
    with FlakySimDevice(opu.realistic(seed=3)) as dev:
        fb = OpticalFeedback(dev, M, C, FeedbackConfig(share_repeats=share, exposure_target_frac=None))
        fb.setup()
        fb.begin_epoch()
        before = dev.frames_acquired
        fb.project(e, np.random.default_rng(11))
        used = dev.frames_acquired - before
    et, _ = ternary_error(e, FeedbackConfig(), np.random.default_rng(11))  # the same draws
    if not share:
        assert used == 4 * len(e)
    else:  # 2 frames (x + r, x) per distinct binary part, the empty part included
        parts = {tuple(np.flatnonzero(r > 0)) for r in et} | {tuple(np.flatnonzero(r < 0)) for r in et}
        assert used == 2 * len(parts)
        assert used < len(e)  # one-hot-like errors repeat: far fewer than 4 per sample
