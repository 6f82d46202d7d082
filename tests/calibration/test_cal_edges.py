"""Edge cases get clear, typed messages and keep what was measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flaky_device import FlakySimDevice

import drivers
import opu
from host.calibration import (
    CalibrationAborted,
    NoLightError,
    PlanError,
    SaturatedDeviceError,
    calibrate,
    make_plan,
)
from host.cli import main

QUICK = dict(progress=False, plots=False, echo=None)


def _plan():
    return make_plan(quick=True, max_wait_s=10.0, roi_side_px=16)


def test_no_light(tmp_path):
    dev = FlakySimDevice(opu.realistic(seed=1).replace(laser={"photons_per_mirror_us": 0.0})).open()
    with pytest.raises(CalibrationAborted, match="no light") as info:
        calibrate(dev, tmp_path, _plan(), **QUICK)
    assert isinstance(info.value.__cause__, NoLightError)
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["complete"] is False and "NoLightError" in saved["error"]
    assert not (tmp_path / "twin.json").exists()


@pytest.mark.parametrize("changes, match", [
    (dict(laser={"photons_per_mirror_us": 500.0}), "too strong"),
    (dict(camera={"black_level_dn": 255.0}), "dark frames"),
])
def test_saturated_device(tmp_path, changes, match):
    dev = FlakySimDevice(opu.realistic(seed=1).replace(**changes)).open()
    with pytest.raises(CalibrationAborted, match=match) as info:
        calibrate(dev, tmp_path, _plan(), **QUICK)
    assert isinstance(info.value.__cause__, SaturatedDeviceError)


def test_device_drops_out_mid_calibration(tmp_path):
    plan = _plan()
    dev = FlakySimDevice(opu.realistic(seed=1), fail_after_frames=250).open()
    with pytest.raises(CalibrationAborted, match="device dropped out") as info:
        calibrate(dev, tmp_path, plan, **QUICK)
    assert isinstance(info.value.__cause__, drivers.DeviceDisconnected)
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["complete"] is False
    assert "DeviceDisconnected" in saved["error"]
    # the stages finished before the drop are kept, with their figures
    assert saved["stages_completed"][:3] == ["probe", "noise_check", "dark"]
    assert saved["noise_check"]["measurable"] is True
    assert saved["dark"]["black_level_dn"]["value"] == pytest.approx(8.0, abs=0.3)
    assert info.value.report.frames_used == dev.status().frames_total  # every frame taken is accounted


def test_too_few_frames_for_precision_fails_before_measuring(tmp_path, capsys):
    with pytest.raises(PlanError, match="too few frames"):
        make_plan(quick=True, gain_precision_rel=0.001, max_frames=20_000)
    # a precision reachable within the limit grows the plan instead
    plan = make_plan(quick=True, gain_precision_rel=0.005)
    assert plan.predicted_gain_precision() <= 0.005 * 1.0001
    path = tmp_path / "dev.json"
    path.write_text(opu.realistic(seed=1).model_dump_json())
    rc = main(["calibrate", "--device", f"sim:{path}", "--out", str(tmp_path / "o"), "--quick",
               "--max-frames", "500", "--no-progress"])
    assert rc == 2
    assert "too few frames" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing measured, nothing written


def test_bad_uri_is_a_clear_error(tmp_path, capsys):
    rc = main(["calibrate", "--device", "nonsense", "--out", str(tmp_path), "--quick"])
    assert rc == 2
    assert "accepted forms" in capsys.readouterr().err


def test_linear_snr_estimate_and_its_standard_error_match_a_monte_carlo():
    """``_snr`` on synthetic projections y = a + e (signal a of variance S per vector and output,
    noise e of variance N per repeat): the estimate is unbiased for S / N and its stated standard
    error is the spread of the estimate over 1000 independent data sets (to 9 %: 3 standard errors
    of a standard deviation from 1000 samples, plus the formula's ~1 % high-SNR approximation)."""
    from host.calibration.linear_snr import _snr

    r, v, m, s_var, n_var = 3, 64, 16, 20.0, 1.0
    rng = np.random.default_rng(7)
    est, ses = [], []
    for _ in range(1000):
        a = rng.normal(0.0, np.sqrt(s_var), (1, v, m))
        y = a + rng.normal(0.0, np.sqrt(n_var), (r, v, m))
        snr, se = _snr(y)
        est.append(snr)
        ses.append(se)
    est = np.array(est)
    assert est.mean() == pytest.approx(s_var / n_var, rel=0.01)
    assert est.std(ddof=1) / np.mean(ses) == pytest.approx(1.0, abs=0.09)
