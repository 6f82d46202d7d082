"""The twin: a valid opu config carrying the fitted figures, whose re-measured photon transfer
curve reproduces the original device's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cal_grid import assert_consistent, run_calibration

import drivers
import opu


def test_twin_reproduces_photon_transfer(calibrated, tmp_path):
    cfg, rep, out = calibrated("10bit_fullwell")
    text = (out / "twin.json").read_text()
    twin = opu.OPUConfig.model_validate_json(text)
    assert json.loads(text) == json.loads(twin.model_dump_json())  # exactly an OPUConfig dump
    c, t = cfg.camera, twin.camera
    # independent ground truth: the original's parameters (QE x flux is the observable product)
    assert t.system_gain_dn_per_e == pytest.approx(c.system_gain_dn_per_e, rel=0.03)
    assert t.read_noise_e == pytest.approx(c.read_noise_e, rel=0.1)
    assert t.full_well_e == pytest.approx(c.full_well_e, rel=0.05)
    assert t.quantum_efficiency * twin.laser.photons_per_mirror_us == pytest.approx(
        c.quantum_efficiency * cfg.laser.photons_per_mirror_us, rel=0.06)
    assert (t.bit_depth, t.exposure_us, t.roi) == (c.bit_depth, c.exposure_us, c.roi)
    # the fixed-pattern, laser and drift figures, against the original's configuration
    ptc = rep.photon_transfer
    assert twin.laser.power_fluctuation_rel == pytest.approx(cfg.laser.power_fluctuation_rel, rel=0.25)
    assert twin.laser.power_fluctuation_rel == ptc.laser_fluctuation_rel.value
    tau = rep.stability.decorrelation_time_s
    assert tau.bound is None
    assert twin.medium.drift_time_constant_s == tau.value
    assert twin.medium.drift_time_constant_s == pytest.approx(cfg.medium.drift_time_constant_s, rel=0.15)
    assert twin.medium.drift_step_s == pytest.approx(min(10.0, tau.value / 100))
    prnu = rep.prnu.prnu_rel
    assert_consistent(prnu, c.prnu_rel, what="PRNU")
    # an upper bound enters the twin at half its value, a measured PRNU as measured
    assert t.prnu_rel == pytest.approx(prnu.value * (0.5 if prnu.bound == "upper" else 1.0))
    assert t.prnu_rel < 5 * c.prnu_rel
    assert t.dsnu_e == rep.dark.dsnu_e.value
    assert t.dsnu_e == pytest.approx(c.dsnu_e, rel=0.25)
    # re-measure the twin through drivers.connect("sim:...twin.json") and compare the curves
    twin_rep = run_calibration(twin, tmp_path, 400.0)
    a, b = rep.photon_transfer, twin_rep.photon_transfer
    x = np.array(a.bin_signal_dn)
    sel = (x > 5) & (x < a.fit_max_signal_dn)
    v_twin = np.interp(x[sel], b.bin_signal_dn, b.bin_var_dn2)
    se_twin = np.interp(x[sel], b.bin_signal_dn, b.bin_var_se_dn2)
    v_orig, se_orig = np.array(a.bin_var_dn2)[sel], np.array(a.bin_var_se_dn2)[sel]
    # bin by bin within 4 combined standard errors (+2 % for interpolating between bin centres)
    assert np.all(np.abs(v_twin - v_orig) <= 4 * np.hypot(se_twin, se_orig) + 0.02 * v_orig)
    # and on average over the fit range within 3 %
    assert np.mean(v_twin) == pytest.approx(np.mean(v_orig), rel=0.03)
    assert b.saturation_capacity_e.value == pytest.approx(a.saturation_capacity_e.value, rel=0.05)
    assert b.saturation_limited_by == a.saturation_limited_by
    with drivers.connect(f"sim:{out / 'twin.json'}") as dev:
        assert dev.settings.bit_depth == c.bit_depth
