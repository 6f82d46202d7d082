"""PRNU and DSNU reach the frames: per-pixel gain and offset estimated from many frames.

The estimates use only the frames, the configured scalars (K, QE, photon flux, black level, noise
figures) and the noiseless speckle intensity of the medium (:meth:`opu.Simulator.intensity`, which
does not go through the camera). They are compared pixel by pixel with the configured maps
(``camera.prnu``, ``camera.dsnu_e``), within 5 standard errors derived from the noise model.
A camera that ignored its PRNU or DSNU map fails by tens of standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest

import opu

K = 0.1
QE = 0.5
READ_E = 6.0
BLACK = 100.0
PRNU = 0.05
DSNU_E = 30.0
N_FEATURES = 64
N_LIT = 20
N_FRAMES = 200


def _sim() -> opu.Simulator:
    cam = {
        "exposure_us": 400.0,
        "frame_time_us": 500.0,
        "quantum_efficiency": QE,
        "shot_noise": True,
        "read_noise_e": READ_E,
        "dark_current_e_per_s": 0.0,
        "full_well_e": 1e6,
        "gain_dn_per_e": K,
        "black_level_dn": BLACK,
        "prnu_rel": PRNU,
        "dsnu_e": DSNU_E,
        "bit_depth": 12,
    }
    # mean intensity = N_LIT mirrors (1 mirror per feature): 20 x 0.4 x 400 x 0.5 = 1600 e- per pixel
    cfg = opu.ideal(seed=23, n_outputs=1024).replace(camera=cam, laser={"photons_per_mirror_us": 0.4})
    return opu.Simulator(cfg, n_features=N_FEATURES)


def _patterns(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((N_FRAMES, N_FEATURES), bool)
    for f in range(N_FRAMES):  # a different set of lit features per frame: independent speckle
        x[f, rng.choice(N_FEATURES, N_LIT, replace=False)] = True
    return x


def test_dsnu_map_is_the_per_pixel_dark_offset():
    sim = _sim()
    dark = sim.acquire(np.zeros((N_FRAMES, N_FEATURES), bool)).astype(np.float64)
    offset_e = (dark.mean(axis=0) - BLACK) / K
    # temporal noise of the dark mean: read noise and rounding (1/12 DN^2), in electrons
    se = np.sqrt(READ_E**2 + 1 / (12 * K**2)) / np.sqrt(N_FRAMES)
    assert np.abs(offset_e - sim.camera.dsnu_e).max() < 5 * se
    # the map's spread is what the configuration says (5 standard errors of a sample std)
    m = offset_e.size
    assert abs(offset_e.std() / DSNU_E - 1) < 5 / np.sqrt(2 * m) + se / DSNU_E
    # a camera without DSNU would miss by the whole map: far outside the tolerance
    assert np.abs(offset_e).max() > 20 * 5 * se


def test_prnu_map_is_the_per_pixel_gain():
    sim = _sim()
    dark = sim.acquire(np.zeros((N_FRAMES, N_FEATURES), bool)).astype(np.float64).mean(axis=0)
    x = _patterns(seed=1)
    intensity = sim.intensity(x).astype(np.float64)  # noiseless |Bx|^2, no camera involved
    frames = sim.acquire(x).astype(np.float64)
    assert frames.max() < 4095  # no clipping: the linear model holds for every value
    photo_e = QE * sim.photons_per_unit_intensity * intensity  # mean photo-electrons at unit gain
    gain = (frames - dark[None, :]).sum(axis=0) / (K * photo_e.sum(axis=0))
    # per pixel: shot noise (mu e-), read noise and rounding of every frame, plus the dark mean's noise
    mu = photo_e * sim.camera.prnu[None, :]
    var_e = (mu + READ_E**2 + 1 / (12 * K**2)).sum(axis=0) + N_FRAMES**2 * (
        READ_E**2 + 1 / (12 * K**2)) / N_FRAMES
    se = np.sqrt(var_e) / photo_e.sum(axis=0)
    assert np.median(se) < PRNU / 20  # the estimate resolves the map
    assert np.all(np.abs(gain - sim.camera.prnu) < 5 * se)
    # the map itself has the configured spread, and a flat-gain camera would be far off
    assert abs(np.std(gain - 1) / PRNU - 1) < 5 / np.sqrt(2 * gain.size) + np.median(se) / PRNU
    assert np.abs(gain - 1).max() > 20 * np.median(se)


def test_laser_factor_is_common_and_scales_the_gain_map():
    """With laser fluctuation the ratio frame / intensity is PRNU_i x laser_f: rank one."""
    s_l = 0.05
    sim = _sim()
    cfg = sim.config.replace(laser={"power_fluctuation_rel": s_l},
                             camera={"shot_noise": False, "read_noise_e": 0.0, "dsnu_e": 0.0,
                                     "bit_depth": None})
    sim = opu.Simulator(cfg, n_features=N_FEATURES)
    x = _patterns(seed=2)
    intensity = sim.intensity(x).astype(np.float64)
    frames = sim.acquire(x).astype(np.float64)
    ratio = (frames - BLACK) / (K * QE * sim.photons_per_unit_intensity * intensity)
    laser = np.median(ratio / sim.camera.prnu[None, :], axis=1)
    # float32 frames: compare where the signal is well above the black level's rounding
    bright = intensity > 0.2 * intensity.mean()
    np.testing.assert_allclose(ratio[bright], (laser[:, None] * sim.camera.prnu[None, :])[bright], rtol=1e-4)
    assert abs(laser.std(ddof=1) / s_l - 1) < 5 / np.sqrt(2 * (N_FRAMES - 1))


def _flat_sim(**camera) -> opu.Simulator:
    """No PRNU/DSNU, 12-bit: temporal noise sources one at a time."""
    cam = {"exposure_us": 400.0, "frame_time_us": 500.0, "quantum_efficiency": QE,
           "dark_current_e_per_s": 0.0, "full_well_e": 1e6, "gain_dn_per_e": K, "black_level_dn": BLACK,
           "bit_depth": 12}
    cam.update(camera)
    cfg = opu.ideal(seed=24, n_outputs=1024).replace(camera=cam, laser={"photons_per_mirror_us": 0.4})
    return opu.Simulator(cfg, n_features=N_FEATURES)


@pytest.mark.parametrize("shot, read_e", [(False, READ_E), (True, 0.0)])
def test_each_noise_source_alone_has_its_variance(shot, read_e):
    """Read noise without shot noise, and shot noise without read noise (bright pixels, Gaussian
    path): the temporal variance of each pixel is K^2 (read^2 + mu) + 1/12, mu its mean electrons."""
    sim = _flat_sim(shot_noise=shot, read_noise_e=read_e)
    x = np.zeros((N_FRAMES, N_FEATURES), bool)
    x[:, :N_LIT] = True  # one pattern repeated: the same speckle, only temporal noise varies
    frames = sim.acquire(x).astype(np.float64)
    mu_e = QE * sim.photons_per_unit_intensity * sim.intensity(x[:1])[0].astype(np.float64)
    ok = (mu_e > 200) & (frames.max(axis=0) < 4095)  # bright: far above the exact-Poisson range
    predicted = K**2 * (read_e**2 + (mu_e if shot else np.zeros_like(mu_e))) + 1 / 12
    ratio = frames.var(axis=0, ddof=1)[ok] / predicted[ok]
    se = np.sqrt(2 / (N_FRAMES - 1)) / np.sqrt(ok.sum())
    assert ok.sum() > 300
    assert abs(ratio.mean() - 1) < 5 * se + 0.02


def test_maps_are_float64_and_halo_pixels_never_alias_sensor_pixels():
    from opu.camera import SENSOR_STRIDE, roi_pixel_ids

    sim = _sim()
    assert sim.camera.prnu.dtype == np.float64 and sim.camera.dsnu_e.dtype == np.float64
    # an ROI in the sensor's corner, grown by a halo: the halo pixels off the sensor get ids of their
    # own, disjoint from every on-sensor pixel id (else the grain filter would reuse real pixels' B)
    cam = opu.CameraConfig(roi=opu.Roi(row=0, col=0, height_px=4, width_px=4), sensor_height_px=8,
                           sensor_width_px=8)
    ids = roi_pixel_ids(cam, halo_px=2).reshape(8, 8)
    on = ids[2:, 2:]  # rows 0..5, cols 0..5 of the sensor
    rows, cols = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    np.testing.assert_array_equal(on, rows * SENSOR_STRIDE + cols)
    halo = np.concatenate([ids[:2].ravel(), ids[2:, :2].ravel()])
    assert len(set(ids.ravel().tolist())) == ids.size
    assert halo.min() > 8 * SENSOR_STRIDE  # above every id of this sensor
    far = opu.CameraConfig(roi=opu.Roi(row=4, col=4, height_px=4, width_px=4), sensor_height_px=8,
                           sensor_width_px=8)
    ids = roi_pixel_ids(far, halo_px=2).reshape(8, 8)
    assert len(set(ids.ravel().tolist())) == ids.size and ids[:, 6:].min() > 8 * SENSOR_STRIDE
    # rows 8 and 9 are off the 8-row sensor too; off-sensor ids are (row + 40000) 4096 + (col + 1024)
    rows, cols = np.meshgrid(np.arange(2, 10), np.arange(2, 10), indexing="ij")
    off = (rows >= 8) | (cols >= 8)
    np.testing.assert_array_equal(ids, np.where(off, (rows + 40_000) * 4096 + (cols + 1024),
                                                rows * SENSOR_STRIDE + cols))
