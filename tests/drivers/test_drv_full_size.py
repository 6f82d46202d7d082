"""A full-size device (912 x 1140 DMD -> 1080 x 1920 camera, structured medium) behind the Device
interface: in-process and over VISA to the emulator, bit-identical, with the expected mean level."""

from __future__ import annotations

import numpy as np
import pytest

import drivers
import opu
from drivers.sim import SimDevice
from firmware_models import Controller
from firmware_models.server import serve

N_FULL = 1_039_680
M_FULL = 2_073_600
EXPOSURE_US = 1.0  # half the mirrors lit: 520 k x 5e-3 x 1 us x QE 0.6 = 1.6 ke-, 39 DN (0.2 % clipped)


def _config() -> opu.OPUConfig:
    return opu.realistic(seed=9, full_size=True).replace(medium={"drift_time_constant_s": None})


def _configure(dev: drivers.Device) -> None:
    dev.configure(n_features=N_FULL, exposure_us=EXPOSURE_US, frame_time_us=500.0)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Frames saturated")  # 0.2 % of the pixels: the exponential tail
def test_full_size_device_in_process_and_over_visa_give_the_same_frames():
    x = (np.random.default_rng(0).random((2, N_FULL)) < 0.5).astype(np.uint8)
    local = SimDevice(Controller(_config()), resource="sim").open()
    _configure(local)
    assert local.n_outputs == M_FULL  # the camera ROI is the whole sensor
    frames = local.acquire(x)
    assert frames.shape == (2, M_FULL) and frames.dtype == np.uint8

    cfg = _config()
    cam = cfg.camera
    k = x.sum(axis=1).astype(np.float64)
    electrons = cam.quantum_efficiency * cfg.laser.photons_per_mirror_us * EXPOSURE_US * k
    electrons += cam.dark_current_e_per_s * EXPOSURE_US * 1e-6
    expected_dn = cam.black_level_dn + cam.gain_dn_per_e * electrons
    # speckle contrast 1 over 2 M pixels: the frame mean has relative std 1/sqrt(M); plus 1 % PRNU
    # and the 0.5 % laser factor of that frame (4 sigma: 2 %)
    np.testing.assert_allclose(frames.mean(axis=1), expected_dn, rtol=0.03)
    local.close()

    with serve(Controller(_config()), host="127.0.0.1", port=0) as srv:
        remote = drivers.connect(srv.resource, timeout_s=60.0)
        _configure(remote)
        np.testing.assert_array_equal(remote.acquire(x), frames)
        remote.close()
