"""sync_clock: a fresh simulated device set to saved counters continues an interrupted run exactly."""

from __future__ import annotations

import numpy as np
import pytest

import drivers
import opu
from firmware_models import Controller
from firmware_models.server import serve

# drift with small steps so that the run crosses several drift steps
CFG = opu.realistic(seed=3, n_outputs=256).replace(
    medium={"drift_time_constant_s": 5.0, "drift_step_s": 0.002}
)
SETTINGS = {"n_features": 32, "macro_pixel_mirrors": 8, "exposure_us": 100.0, "frame_time_us": 200.0}


def _run(dev: drivers.Device, x: np.ndarray) -> np.ndarray:
    dev.configure(**SETTINGS)
    return dev.acquire(x)


@pytest.mark.parametrize("path", ["sim", "visa"])
def test_sync_clock_resumes_frames_exactly(tmp_path, path):
    cfg_file = tmp_path / "dev.json"
    cfg_file.write_text(CFG.model_dump_json())
    uri = f"sim:{cfg_file}"
    x = np.random.default_rng(0).random((300, 32)) < 0.5
    with drivers.connect(uri) as ref:
        full = _run(ref, x)
    with drivers.connect(uri) as first:
        np.testing.assert_array_equal(_run(first, x[:200]), full[:200])
        st = first.status()
    assert st.frames_total >= 200 and st.device_time_s > 10 * CFG.medium.drift_step_s
    with (
        serve(Controller(CFG), host="127.0.0.1", port=0) as srv,
        drivers.connect(srv.resource if path == "visa" else uri) as dev,
    ):
        dev.configure(**SETTINGS)
        dev.sync_clock(st.frames_total, st.device_time_s)
        assert dev.status().frames_total == st.frames_total
        np.testing.assert_array_equal(dev.acquire(x[200:]), full[200:])
        with pytest.raises(drivers.DeviceError):
            dev.sync_clock(10, 0.0)  # never back in time


def test_without_sync_clock_a_fresh_device_does_not_continue_the_run(tmp_path):
    cfg_file = tmp_path / "dev.json"
    cfg_file.write_text(CFG.model_dump_json())
    x = np.random.default_rng(0).random((300, 32)) < 0.5
    with drivers.connect(f"sim:{cfg_file}") as ref:
        full = _run(ref, x)
    with drivers.connect(f"sim:{cfg_file}") as fresh:
        assert (_run(fresh, x[200:]) != full[200:]).mean() > 0.1
