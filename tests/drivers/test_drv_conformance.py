"""The driver conformance suite: every test runs on the in-process device, on the emulator over VISA
(pyvisa-py, loopback TCP) and, with ``--device-uri URI``, on any device (a lab's hardware check).

Expected values come from the physics model (``opu.Simulator`` built from the device's own
``SIM:CONF?``), from the values sent, or from the protocol's documented error codes.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pydantic
import pytest
from drv_helpers import N_FEATURES, is_lightonml, lightonml_limitation, random_patterns, require_sim

import drivers
import opu
from drivers import DeviceError, DeviceSettings, UnsupportedSetting

SCPI_DATA_OUT_OF_RANGE = -222
#: 12-bit ADC at 24 dB gain: 1 DN = 2.5 e-, full well (10500 e-) just above the 4095 DN range, so
#: quantization is small next to the signal and the ~300 DN speckle never saturates
LOW_NOISE = {"bit_depth": 12, "analog_gain_db": 24.0}


def test_identity_has_four_fields(device):
    idn = device.identity
    assert all(isinstance(f, str) and f for f in (idn.manufacturer, idn.model, idn.serial, idn.firmware))
    assert idn.is_simulated == idn.model.upper().endswith("-SIM")


def test_settings_round_trip(device):
    roi = {"row": 100, "col": 200, "height_px": 8, "width_px": 32}
    sent = dict(exposure_us=250.0, frame_time_us=600.0, analog_gain_db=3.0, bit_depth=10, camera_roi=roi)
    dtype, top = np.uint16, 1023
    if is_lightonml(device):
        # lightonml limitation: 8-bit frames only, and its simulator has no gain: both are refused
        # with a typed error naming the setting and the backend; the rest must round-trip
        for name in ("bit_depth", "analog_gain_db"):
            with pytest.raises(UnsupportedSetting) as info:
                device.configure(**{name: sent.pop(name)})
            assert (info.value.setting, info.value.backend) == (name, "lightonml")
        dtype, top = np.uint8, 255
    got = device.configure(**sent)
    for k, v in sent.items():
        value = getattr(got, k)
        assert (value.model_dump() if hasattr(value, "model_dump") else value) == v
    # the device itself (not the cache) reports the same values
    assert device._read_settings() == got
    assert device.n_outputs == 8 * 32
    frames = device.acquire(random_patterns(3))
    assert frames.shape == (3, 256) and frames.dtype == dtype and frames.max() <= top


def test_exposure_above_frame_time_is_ordered(device):
    # exposure 900 > current frame time 200: the driver must raise the frame time first
    got = device.configure(exposure_us=900.0, frame_time_us=1000.0)
    assert (got.exposure_us, got.frame_time_us) == (900.0, 1000.0)
    got = device.configure(exposure_us=50.0, frame_time_us=60.0)
    assert (got.exposure_us, got.frame_time_us) == (50.0, 60.0)


def test_input_roi_and_macro_round_trip(device):
    lightonml_limitation(device, "lightonml places features on the DMD itself (its simulator has no DMD: "
                         "one feature = one matrix row), so input ROI and macro-pixel cannot be set; "
                         "their typed refusal: test_drv_lightonml.py")
    got = device.configure(input_roi={"row": 16, "col": 32, "height_mirrors": 256, "width_mirrors": 512},
                           macro_pixel_mirrors=16, n_features=100)
    assert got.input_roi.model_dump() == {"row": 16, "col": 32, "height_mirrors": 256, "width_mirrors": 512}
    assert (got.macro_pixel_mirrors, got.n_features) == (16, 100)
    assert device.acquire(random_patterns(2, 100)).shape == (2, device.n_outputs)


def test_invalid_settings_never_reach_the_device(device):
    before = device.settings
    with pytest.raises(pydantic.ValidationError, match="exposure_us"):
        device.configure(exposure_us=-5)
    with pytest.raises(pydantic.ValidationError, match="frame_time_us"):
        device.configure(exposure_us=300.0, frame_time_us=100.0)
    assert device._read_settings() == before


def test_device_refusal_is_a_device_error(device):
    # inside DeviceSettings' limits (1088 rows) but outside the 1080-row sensor: the device refuses
    with pytest.raises(DeviceError) as info:
        device.configure(camera_roi={"row": 1070, "col": 0, "height_px": 16, "width_px": 16})
    assert info.value.code == SCPI_DATA_OUT_OF_RANGE
    assert info.value.command.startswith("CAM:ROI")
    # nothing changed, and the device keeps working
    assert device._read_settings().camera_roi.height_px == 16
    assert device.acquire(random_patterns(1)).shape == (1, 256)


def test_acquire_shapes_and_validation(device):
    x = random_patterns(5)
    y = device.acquire(x)
    assert y.shape == (5, 256) and y.dtype == np.uint8
    assert device.acquire(x[0]).shape == (256,)
    with pytest.raises(opu.PatternError):
        device.acquire(np.full((2, N_FEATURES), 0.5))
    with pytest.raises(opu.ShapeError):
        device.acquire(np.zeros((2, N_FEATURES + 1)))
    assert device.frames_acquired == 6
    assert math.isclose(device.device_time_s, 6 * device.settings.frame_time_us * 1e-6)


def test_frames_follow_the_physics_model(device):
    """Bit-identical to opu.Simulator(the device's config) acquiring the whole batch in one call,
    even though the device needs 3 sequences (pattern memory 256): batching is invisible."""
    require_sim(device)
    lightonml_limitation(device, "its simulator is no opu.OPUConfig (no SIM:CONF? twin); its frames are "
                         "checked against its own matrix in test_drv_lightonml.py")
    device.set_seed(5)
    x = random_patterns(device.pattern_memory * 2 + 40, seed=1)
    frames = device.acquire(x)
    model = opu.Simulator(device.sim_config(), N_FEATURES)
    np.testing.assert_array_equal(frames, model.acquire(x))
    assert device.status().frames_total == x.shape[0]


def _with_ones(b: int, k: int, seed: int) -> np.ndarray:
    """b random patterns with exactly k lit features each."""
    rng = np.random.default_rng(seed)
    x = np.zeros((b, N_FEATURES), dtype=np.uint8)
    for row in x:
        row[rng.choice(N_FEATURES, k, replace=False)] = 1
    return x


def test_brighter_patterns_give_brighter_frames(device):
    # E|B x|^2 = lit features x mirrors per feature: twice the lit features, twice the signal
    dark = device.acquire(np.zeros((20, N_FEATURES))).astype(float).mean()
    s1 = device.acquire(_with_ones(40, 16, 1)).astype(float).mean() - dark
    s2 = device.acquire(_with_ones(40, 32, 2)).astype(float).mean() - dark
    assert s1 > 0
    # 40 frames x 256 exponential speckle pixels, partly correlated: a few % error on each mean
    assert s2 / s1 == pytest.approx(2.0, rel=0.1)


def _ternary(b: int, n: int, seed: int, density: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.choice([-1, 1], size=(b, n)) * (rng.random((b, n)) < density)).astype(np.int8)


def test_linear_transform_is_linear(device):
    """f(u - v) = f(u) - f(v) for ternary u, v with disjoint supports, up to quantization."""
    require_sim(device)
    device.set_noise(False)
    lightonml_limitation(device, "8-bit frames and no gain only: the quantization bound of this check is "
                         "as large as the signal (vacuous); linearity against its matrix: "
                         "test_drv_lightonml.py")
    device.configure(**LOW_NOISE)
    n = 32
    u = _ternary(16, n, 1)
    v = _ternary(16, n, 2)
    v[u != 0] = 0
    f_u, f_v, f_uv = (device.linear_transform(z) for z in (u, v, u - v))
    cal = device.projector(n).calibration
    # each output mixes 4 frames rounded to integers (|err| <= 0.5 DN each): |err| <= 1 DN of cross,
    # scaled like the signal; three transforms -> 3 x that bound
    bound = 3 * 1.0 * cal.scale / np.sqrt(cal.reference_dn)
    assert np.all(np.abs(f_uv - (f_u - f_v)) <= bound[None, :] + 1e-9)
    assert np.abs(f_u).mean() > 10 * bound.mean()  # the check is not vacuous


def test_linear_transform_matches_the_noiseless_model(device):
    """Noise off: the device's A x equals Re(E conj(R) / |R|) * sqrt(2 lit / mean |R|^2), computed
    from the fields of a twin built from the device's config (E = B x, R = B r, r the anchor)."""
    require_sim(device)
    lightonml_limitation(device, "its simulator is no opu.OPUConfig (no SIM:CONF? twin to compute fields "
                         "from); the same check against its matrix: test_drv_lightonml.py")
    device.set_noise(False)
    device.configure(**LOW_NOISE)
    n = 32
    x = _ternary(24, n, 3)
    y = device.linear_transform(x)
    twin = opu.Simulator(device.sim_config(), 2 * n)
    pos = np.zeros((24, 2 * n), dtype=bool)
    neg = np.zeros((24, 2 * n), dtype=bool)
    pos[:, :n], neg[:, :n] = x > 0, x < 0
    r = np.zeros((1, 2 * n), dtype=bool)
    r[:, n:] = True
    e = twin.field(pos) - twin.field(neg)  # B x, linear in x
    ref = twin.field(r)[0]
    lit_intensity = np.abs(ref) ** 2
    expected = np.real(e * np.conj(ref) / np.abs(ref)) * np.sqrt(2 * n / lit_intensity.mean())
    # noise off leaves quantization only: each output mixes 4 frames rounded to +-0.5 DN against a
    # cross term of tens of DN (12-bit, 24 dB) -> ~1-2 % rms; 4 % leaves margin, while a wrong
    # sign, scale or pixel order gives >= 100 %
    rel = np.linalg.norm(y - expected) / np.linalg.norm(expected)
    assert rel < 0.04, rel


def test_linear_transform_shapes_and_errors(device):
    y = device.linear_transform(np.ones(8))
    assert y.shape == (256,) and y.dtype == np.float64
    with pytest.raises(opu.OPUError):
        device.linear_transform(np.array([[np.nan] * 8]))
    with pytest.raises(opu.ShapeError):
        device.linear_transform(np.ones((2, 2, 8)))
    assert device.linear_transform(np.ones((3, 8)), dtype=np.float32).dtype == np.float32
    frames = device.frames_acquired
    with pytest.raises(opu.OPUError, match="dtype must be float32 or float64, got"):
        device.linear_transform(np.ones((3, 8)), dtype=np.float16)
    assert device.frames_acquired == frames  # refused before anything was acquired


def test_wait_advances_device_time(device):
    require_sim(device)
    t0 = device.status().device_time_s
    device.wait(2.5)
    assert device.status().device_time_s == pytest.approx(t0 + 2.5)
    with pytest.raises(drivers.DriverError):
        device.wait(-1)


def test_status_counts_frames(device):
    s0 = device.status()
    device.acquire(random_patterns(7))
    s1 = device.status()
    assert s1.frames_total - s0.frames_total == 7
    assert s1.device_time_s - s0.device_time_s >= 7 * device.settings.frame_time_us * 1e-6 - 1e-9
    assert isinstance(s1.laser_on, bool)
    if is_lightonml(device):  # lightonml limitation: it reports no temperature -> NaN (unknown)
        assert math.isnan(s1.temperature_c)
    else:
        assert -50 < s1.temperature_c < 100


def test_saturation_fault_warns(device):
    require_sim(device)
    lightonml_limitation(device, "its simulator has no fault injection (SIM:FAULt)")
    device.inject_fault("SAT")
    with pytest.warns(drivers.SaturationWarning):
        device.linear_transform(np.ones((2, 16)))


def test_injected_device_error_code(device):
    require_sim(device)
    lightonml_limitation(device, "its simulator has no fault injection (SIM:FAULt) nor error queue")
    device.inject_fault("ERR", -350)
    with pytest.raises(DeviceError) as info:
        device.configure(exposure_us=120.0)
    assert info.value.code == -350
    # the error was consumed; the next command works
    assert device.configure(exposure_us=130.0).exposure_us == 130.0


def test_closed_device_refuses_work(device):
    device.close()
    with pytest.raises(drivers.DriverError, match="not open"):
        device.acquire(random_patterns(1))
    device.open()
    assert device.acquire(random_patterns(1)).shape == (1, 256)


# ---------------------------------------------------------------------- the two paths side by side
def test_same_seed_gives_bit_identical_frames_on_both_paths(pair):
    a, b = pair
    x = random_patterns(300, seed=9)
    for dev in pair:
        dev.set_seed(11)
    fa, fb = a.acquire(x), b.acquire(x)
    np.testing.assert_array_equal(fa, fb)
    assert a.status() == b.status()
    # and a different seed gives different frames
    b.set_seed(12)
    assert not np.array_equal(b.acquire(x[:10]), fa[:10])


def test_settings_identical_on_both_paths(pair):
    changes = dict(exposure_us=321.0, frame_time_us=654.0, analog_gain_db=6.0, bit_depth=12,
                   camera_roi={"row": 3, "col": 5, "height_px": 4, "width_px": 64})
    sa, sb = (dev.configure(**changes) for dev in pair)
    assert sa == sb
    assert isinstance(sa, DeviceSettings) and sa.frame_dtype == np.uint16


def test_errors_identical_on_both_paths(pair):
    errs = []
    for dev in pair:
        with pytest.raises(DeviceError) as info:
            dev.configure(camera_roi={"row": 0, "col": 1900, "height_px": 16, "width_px": 64})
        errs.append((info.value.code, info.value.device_message, info.value.command))
    assert errs[0] == errs[1]
    assert errs[0][0] == SCPI_DATA_OUT_OF_RANGE


def test_linear_transform_identical_on_both_paths(pair):
    x = _ternary(8, 24, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no saturation on this config
        ya, yb = (dev.linear_transform(x) for dev in pair)
    np.testing.assert_array_equal(ya, yb)
