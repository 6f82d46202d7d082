"""Camera noise against the EMVA 1288 linear model (docs/physics.md, "Camera").

sigma_y^2 = K^2 sigma_d^2 + 1/12 + K (mu_y - mu_y.dark), with sigma_d^2 = sigma_read^2 + dark
electrons, checked per pixel from temporal statistics over repeated frames of one pattern, at
several exposures. Ground truth comes from the configured parameters, never from the code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import opu

K = 0.2
READ_E = 6.0
DARK_E_PER_S = 20_000.0  # large so that the dark signal is measurable at these exposures
BLACK = 10.0
N_FRAMES = 200


def _device(exposure_us: float, **camera) -> opu.Simulator:
    cam = {
        "exposure_us": exposure_us,
        "frame_time_us": max(500.0, exposure_us),
        "quantum_efficiency": 0.5,
        "shot_noise": True,
        "read_noise_e": READ_E,
        "dark_current_e_per_s": DARK_E_PER_S,
        "full_well_e": 18_000.0,
        "gain_dn_per_e": K,
        "black_level_dn": BLACK,
        "bit_depth": 12,
    }
    cam.update(camera)
    cfg = opu.ideal(seed=11, n_outputs=1024).replace(camera=cam, laser={"photons_per_mirror_us": 0.05})
    return opu.Simulator(cfg, n_features=64)


def _temporal_stats(sim: opu.Simulator, pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames = sim.acquire(np.repeat(pattern[None], N_FRAMES, axis=0)).astype(np.float64)
    return frames.mean(axis=0), frames.var(axis=0, ddof=1)


@pytest.mark.parametrize("exposure_us", [100.0, 400.0, 1000.0])
def test_photon_transfer_follows_emva_1288(exposure_us):
    sim = _device(exposure_us)
    dark_mean, dark_var = _temporal_stats(sim, np.zeros(64, bool))
    lit = np.zeros(64, bool)
    lit[:20] = True
    mean, var = _temporal_stats(sim, lit)
    dark_e = DARK_E_PER_S * exposure_us * 1e-6
    sigma_d2 = READ_E**2 + dark_e
    predicted = K**2 * sigma_d2 + 1 / 12 + K * (mean - dark_mean)
    ok = mean < 0.9 * 4095  # away from saturation
    # the sample variance of N Gaussian-ish frames has relative std sqrt(2/(N-1)); average over pixels
    rel = var[ok] / predicted[ok]
    se = np.sqrt(2 / (N_FRAMES - 1)) / np.sqrt(ok.sum())
    assert abs(rel.mean() - 1) < 5 * se + 0.01
    # dark noise alone
    dark_pred = K**2 * sigma_d2 + 1 / 12
    assert (
        abs(dark_var.mean() / dark_pred - 1) < 5 * np.sqrt(2 / (N_FRAMES - 1)) / np.sqrt(dark_var.size) + 0.02
    )


def test_dark_signal_grows_with_dark_current_times_exposure():
    means = []
    exposures = [100.0, 500.0, 1500.0]
    for t in exposures:
        sim = _device(t)
        dark = sim.acquire(np.zeros((50, 64), bool)).astype(np.float64)
        means.append(dark.mean())
    expected = [BLACK + K * DARK_E_PER_S * t * 1e-6 for t in exposures]
    np.testing.assert_allclose(means, expected, atol=0.05)


def test_clipping_at_full_well():
    full_well = 8000.0  # K * full_well + black = 1610 DN, below the 12-bit maximum
    sim = _device(1000.0, full_well_e=full_well)
    frames = sim.acquire(np.ones((5, 64), bool)).astype(np.float64)
    top = frames.max()
    # saturated pixels read full well plus read noise only (a few DN around K*FW + black)
    assert abs(top - (K * full_well + BLACK)) < 6 * K * READ_E
    assert (frames > K * full_well + BLACK + 6 * K * READ_E).sum() == 0


@pytest.mark.parametrize("bits", [8, 10, 12])
def test_clipping_at_adc_maximum_and_dtype(bits):
    sim = _device(1000.0, bit_depth=bits, gain_dn_per_e=16.0, full_well_e=1e6)  # mean 25600 DN
    frames = sim.acquire(np.ones((3, 64), bool))
    assert frames.dtype == (np.uint8 if bits == 8 else np.uint16)
    assert frames.max() == 2**bits - 1
    assert (frames == 2**bits - 1).mean() > 0.5


def test_quantization_noise_from_rounding_alone():
    """No read, shot or dark noise and a constant signal: frames are the rounded signal exactly."""
    sim = _device(400.0, shot_noise=False, read_noise_e=0.0, dark_current_e_per_s=0.0)
    x = np.zeros((4, 64), bool)
    x[:, :5] = True
    expected = np.rint(sim.intensity(x).astype(np.float64) * 0.05 * 400 * 0.5 * K + BLACK)
    frames = sim.acquire(x).astype(np.float64)
    assert np.abs(frames - expected).max() <= 1  # float32 pipeline may differ at exact .5 ties
    assert (frames == expected).mean() > 0.999


def test_prnu_and_dsnu_are_fixed_per_sensor_pixel():
    cam = {"prnu_rel": 0.05, "dsnu_e": 20.0}
    a = _device(400.0, **cam)
    # a different ROI containing the same pixels sees the same fixed patterns
    cfg_b = a.config.replace(
        camera={
            "roi": {
                "row": a.config.camera.roi.row,
                "col": a.config.camera.roi.col,
                "height_px": 8,
                "width_px": 8,
            }
        }
    )
    b = opu.Simulator(cfg_b, n_features=64)
    w = a.config.camera.roi.width_px
    np.testing.assert_array_equal(a.camera.prnu.reshape(-1, w)[:8, :8].ravel(), b.camera.prnu)
    # and the spread matches the configured relative std
    assert abs(a.camera.prnu.std() - 0.05) < 5 * 0.05 / np.sqrt(2 * a.camera.prnu.size)
    assert abs(a.camera.dsnu_e.std() - 20.0) < 5 * 20.0 / np.sqrt(2 * a.camera.dsnu_e.size)


def test_laser_fluctuation_is_common_to_all_pixels_of_a_frame():
    s_l = 0.05
    cfg = opu.ideal(seed=2, n_outputs=1024).replace(laser={"power_fluctuation_rel": s_l})
    sim = opu.Simulator(cfg, n_features=64)
    x = np.zeros((400, 64), bool)
    x[:, :30] = True
    frames = sim.acquire(x).astype(np.float64)
    ratio = frames / sim.intensity(x[:1]).astype(np.float64) / (0.005 * 400)  # ideal gain: 1 DN per photon
    per_frame = ratio.mean(axis=1)
    # within a frame the factor is common: the ratio is constant across pixels
    assert np.abs(ratio - per_frame[:, None]).max() < 1e-3
    assert abs(per_frame.std(ddof=1) / s_l - 1) < 5 / np.sqrt(2 * 399)
    assert abs(per_frame.mean() - 1) < 5 * s_l / np.sqrt(400)


@pytest.mark.parametrize("target_e", [0.5, 3.0, 12.0])
def test_photon_counting_regime_is_exactly_poisson(target_e):
    """K = 1 DN/e-, no read noise: frame - black counts electrons; compare with the Poisson law."""
    cam = {"read_noise_e": 0.0, "dark_current_e_per_s": 0.0, "gain_dn_per_e": 1.0, "black_level_dn": 100.0,
           "quantum_efficiency": 1.0, "shot_noise": True, "bit_depth": 12, "exposure_us": 100.0}
    cfg = opu.ideal(seed=12, n_outputs=1024).replace(camera=cam)
    sim = opu.Simulator(cfg, n_features=64)
    x = np.zeros((400, 64), bool)
    x[:, :10] = True
    mean_photons = sim.intensity(x[:1])[0].astype(np.float64) * sim.photons_per_unit_intensity
    # scale the light so that one chosen pixel group sits near target_e electrons
    scale = target_e / np.median(mean_photons)
    sim.reconfigure(cfg.replace(laser={"photons_per_mirror_us": cfg.laser.photons_per_mirror_us * scale}))
    lam = sim.intensity(x[:1])[0].astype(np.float64) * sim.photons_per_unit_intensity
    counts = sim.acquire(x).astype(np.int64) - 100
    # pool pixels with lambda in a narrow band around the target: Poisson(lambda) mixture ~ Poisson(mean)
    band = np.abs(lam - target_e) < 0.05 * target_e + 0.02
    assert band.sum() >= 20
    k = counts[:, band].ravel()
    lam_band = lam[band]
    kmax = int(target_e + 8 * np.sqrt(target_e) + 8)
    observed = np.bincount(np.minimum(k, kmax), minlength=kmax + 1)
    expected = np.zeros(kmax + 1)
    for lam_i in lam_band:
        pmf = stats.poisson.pmf(np.arange(kmax + 1), lam_i)
        pmf[-1] += stats.poisson.sf(kmax, lam_i)
        expected += pmf * counts.shape[0]
    keep = expected > 5
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    dof = keep.sum() - 1
    assert stats.chi2.sf(chi2, dof) > 1e-3, (chi2, dof)
    assert (k >= 0).all()


def _float_camera(m: int, **camera) -> opu.camera.Camera:
    """A camera whose frames are electrons as float32 (gain 1, no offsets, no fixed pattern)."""
    cam = {"shot_noise": False, "read_noise_e": 0.0, "dark_current_e_per_s": 0.0, "gain_dn_per_e": 1.0,
           "black_level_dn": 0.0, "bit_depth": None, "prnu_rel": 0.0, "dsnu_e": 0.0,
           "quantum_efficiency": 1.0}
    cam.update(camera)
    cfg = opu.ideal(seed=21, n_outputs=m).replace(camera=cam)
    return opu.camera.Camera(cfg.camera, cfg.seed)


def test_a_batch_of_several_chunks_equals_its_frames_one_by_one():
    """65536 pixels: the camera works in chunks of 16 frames, so 40 frames take three calls (and dim
    pixels the exact path); each frame is still the one acquired alone with its frame number."""
    m = 1 << 16
    cam = _float_camera(m, shot_noise=True, read_noise_e=1.0)
    inten = np.random.default_rng(0).exponential(1.0, (40, m)).astype(np.float32)
    idx = np.arange(500, 540)
    batch = cam.expose(inten, 30.0, idx)
    assert batch.shape == (40, m) and batch.dtype == np.float32
    for i in (0, 15, 16, 31, 39):
        np.testing.assert_array_equal(batch[i], cam.expose(inten[i : i + 1], 30.0, idx[i : i + 1])[0])
    # the laser factor defaults to none
    np.testing.assert_array_equal(batch[:3], cam.expose(inten[:3], 30.0, idx[:3], 0.0))


def test_frame_numbers_are_32_bit_counters():
    """Frame 2^24 + 1 has noise of its own (no float rounding of the counter), and frame 2^32 + 5 is
    frame 5 (the documented modulo-2^32 repeat)."""
    cam = _float_camera(256, shot_noise=True, read_noise_e=2.0)
    inten = np.full((1, 256), 0.5, np.float32)

    def frame(i):
        return cam.expose(inten, 100.0, np.array([i]))[0]

    assert not np.array_equal(frame(2**24), frame(2**24 + 1))
    np.testing.assert_array_equal(frame(2**32 + 5), frame(5))


def test_read_noise_alone_below_one_electron():
    """No shot noise, read noise 0.5 e-: the frames spread by exactly that (float output, no rounding)."""
    cam = _float_camera(4096, read_noise_e=0.5)
    frames = cam.expose(np.full((50, 4096), 1.0, np.float32), 10.0, np.arange(50)).astype(np.float64)
    n = frames.size
    assert frames.var(ddof=1) == pytest.approx(0.25, rel=5 * np.sqrt(2 / n))
    assert frames.mean() == pytest.approx(10.0, abs=5 * 0.5 / np.sqrt(n))


def test_exact_poisson_below_a_one_electron_threshold():
    """poisson_exact_below_e = 1: pixels at 0.4 e- are drawn exactly (whole electrons, P(0) = e^-0.4),
    not from the Gaussian approximation."""
    cam = _float_camera(4096, shot_noise=True, poisson_exact_below_e=1.0)
    frames = cam.expose(np.full((20, 4096), 1.0, np.float32), 0.4, np.arange(20))
    assert np.array_equal(frames, np.round(frames)) and frames.min() >= 0
    n = frames.size
    p0 = np.exp(-0.4)
    assert abs((frames == 0).mean() - p0) < 5 * np.sqrt(p0 * (1 - p0) / n)


def test_adc_clips_below_zero_and_keeps_zero():
    """8-bit, black level 0: negative signals (read noise around 0 e-) read 0 DN, never wrap to 255;
    a noiseless dark pixel reads exactly 0 DN."""
    cfg = opu.ideal(seed=22, n_outputs=1024).replace(camera={
        "bit_depth": 8, "gain_dn_per_e": 1.0, "black_level_dn": 0.0, "read_noise_e": 3.0, "shot_noise": False,
        "dark_current_e_per_s": 0.0, "prnu_rel": 0.0, "dsnu_e": 0.0})
    cam = opu.camera.Camera(cfg.camera, cfg.seed)
    frames = cam.expose(np.zeros((20, 1024), np.float32), 1.0, np.arange(20))
    assert frames.dtype == np.uint8 and frames.max() < 30  # no wrap-around to the top of the range
    # P(read 0 DN) = P(3 z < 0.5): the rounding boundary of 0 DN, negatives included
    p0 = 0.5 + 0.5 * math.erf(0.5 / (3.0 * math.sqrt(2)))
    assert abs((frames == 0).mean() - p0) < 5 * math.sqrt(p0 * (1 - p0) / frames.size)
    quiet = opu.camera.Camera(cfg.camera.model_copy(update={"read_noise_e": 0.0}), cfg.seed)
    assert not quiet.expose(np.zeros((2, 1024), np.float32), 1.0, np.arange(2)).any()


def test_exact_poisson_applies_strictly_below_its_threshold():
    """Mean exactly at the threshold (20 e-): the Gaussian path (non-integer electrons); just below it:
    the exact draw (whole electrons)."""
    cam = _float_camera(1024, shot_noise=True, poisson_exact_below_e=20.0)
    at = cam.expose(np.full((4, 1024), 1.0, np.float32), 20.0, np.arange(4))
    below = cam.expose(np.full((4, 1024), 1.0, np.float32), 19.5, np.arange(4))
    assert not np.array_equal(at, np.round(at))
    assert np.array_equal(below, np.round(below))
