"""The same calibration through the VISA path (pyvisa-py over a real TCP socket) and in-process."""

from __future__ import annotations

import pytest
from cal_grid import grid_config

import drivers
from firmware_models import Controller, serve
from host.calibration import calibrate, make_plan


def test_visa_and_in_process_agree(tmp_path):
    cfg = grid_config("8bit_adc_k005")
    plan = make_plan(quick=True, max_wait_s=30.0, roi_side_px=16)
    with serve(Controller(cfg), host="127.0.0.1", port=0) as srv, drivers.connect(srv.resource) as dev:
        visa = calibrate(dev, tmp_path / "visa", plan, progress=False, plots=False, echo=None)
    path = tmp_path / "dev.json"
    path.write_text(cfg.model_dump_json())
    with drivers.connect(f"sim:{path}") as dev:
        local = calibrate(dev, tmp_path / "local", plan, progress=False, plots=False, echo=None)
    assert visa.complete and local.complete
    assert visa.frames_used == local.frames_used
    # same seed, same command sequence -> the same frames -> the same numbers
    for a, b in [(visa.photon_transfer.system_gain_dn_per_e, local.photon_transfer.system_gain_dn_per_e),
                 (visa.dark.read_noise_e, local.dark.read_noise_e),
                 (visa.photon_transfer.saturation_capacity_e, local.photon_transfer.saturation_capacity_e),
                 (visa.stability.decorrelation_time_s, local.stability.decorrelation_time_s)]:
        assert a.value == pytest.approx(b.value, rel=1e-9)
    assert visa.identity["model"] == local.identity["model"]
