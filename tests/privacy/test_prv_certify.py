"""The certified noise floor sigma_min: formula, quantisation, and repeated frames on the simulator."""

import math

import numpy as np
import pytest
from flaky_device import FlakySimDevice

import opu
from host.privacy.certify import (
    CameraNoise,
    allowed_ratio,
    camera_noise,
    measure_noise,
    quantised_variance_floor,
    sigma_min_per_output,
)
from host.train import FeedbackConfig, OpticalFeedback

C, M = 10, 256


def test_quantised_floor_against_monte_carlo():
    rng = np.random.default_rng(0)
    for s in (0.1, 0.3, 0.6, 1.5):
        g = quantised_variance_floor(np.array([s * s]))[0]
        for mu in np.linspace(0, 1, 9):
            var = np.round(mu + s * rng.standard_normal(200_000)).var()
            assert var >= g - 4 * var * math.sqrt(2 / 200_000) - 1e-3  # floor below every offset
    big = quantised_variance_floor(np.array([9.0, 25.0]))
    assert np.all(big >= np.array([9.0, 25.0]))
    assert quantised_variance_floor(np.array([1e-3]))[0] == 0.0  # noise far below 1 DN can vanish


def test_unquantised_floor_is_the_parallelogram_bound():
    ref = np.array([10.0, 40.0, 5.0])
    cal = opu.LinearCalibration(np.full(3, 20.0), ref, 1.3, 16, np.array([False, False, True]))
    cam = CameraNoise(0.2, 5.0, "test", quantised=False)
    got = sigma_min_per_output(cal, cam, reference_safety=0.5)
    rn2 = (5.0 * 0.2) ** 2
    shot = np.array([0.2 * 0.5 * 10 / 4, 0.2 * 0.5 * 40 / 4, 0.0])  # weak output: no shot term
    want = np.sqrt(rn2 + shot) * 1.3 / np.sqrt(ref)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def _noisy_device():
    # a high-gain camera (K = 0.4 DN/e-, 20 e- read noise): the floor is well above the rounding
    # (black level 64 DN, well above the 8 DN read noise: the ADC does not clip the dark level at 0)
    cfg = opu.realistic(seed=3).replace(camera={"gain_dn_per_e": 0.4, "read_noise_e": 20.0,
                                                "black_level_dn": 64.0})
    return FlakySimDevice(cfg)


@pytest.mark.parametrize("make", [lambda: FlakySimDevice(opu.realistic(seed=2)), _noisy_device])
def test_repeated_frames_never_fall_below_sigma_min(make):
    with make() as dev:
        fb = OpticalFeedback(dev, M, C, FeedbackConfig())
        fb.setup()
        fb.begin_epoch()
        cam = camera_noise(dev)
        smin = sigma_min_per_output(fb._projector().calibration, cam)
        check = measure_noise(dev, C, smin, cam, repeats=32)
        assert check.violations == 0
        assert np.median(smin) > 0
        # the check has power: a floor 3x the measured median noise is flagged
        fake = np.full(M, 3.0 * np.median(check.inputs["all_off"]))
        assert measure_noise(dev, C, fake, cam, repeats=32).violations > 0


def test_allowed_ratio_is_a_chi2_quantile():
    r = allowed_ratio(32, 100, 1e-3)
    assert 0.4 < r < 0.8
    assert allowed_ratio(1000, 100, 1e-3) > r  # more repeats, tighter
