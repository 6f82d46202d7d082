"""The lightonml backend (drivers/lightonml_device.py) beyond the conformance suite.

Expected frames come from a second implementation of lightonml's documented simulator: its matrix is
``RandomState(seed).normal(0, 1/sqrt(N), (N, m))`` real part then imaginary part (float32), its output
``|x R|^2``; the backend's documented ideal 8-bit camera then gives
``DN = clip(round(|x R|^2 N/2 exposure_us dn_per_feature_us), 0, 255)``.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
from drv_helpers import random_patterns

import drivers
import opu
from drivers import DeviceError, DriverError, UnsupportedSetting
from drivers.lightonml_device import DEFAULT_DN_PER_FEATURE_US, LightonmlDevice

N_MAX, M = 128, 64


@pytest.fixture
def dev():
    d = drivers.connect(f"lightonml:simulated?max_n_features={N_MAX}&n_components={M}&seed=4")
    d.configure(n_features=32, exposure_us=100.0, frame_time_us=200.0)
    yield d
    d.close()


def _matrix(seed: int, n_max: int, m: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    std = 1.0 / np.sqrt(n_max)
    re = rng.normal(0.0, std, (n_max, m)).astype(np.float32)
    im = rng.normal(0.0, std, (n_max, m)).astype(np.float32)
    return re.astype(np.complex128) + 1j * im


def _expected_dn(x: np.ndarray, seed: int, exposure_us: float, g: float = DEFAULT_DN_PER_FEATURE_US,
                 n_max: int = N_MAX, m: int = M) -> np.ndarray:
    r = _matrix(seed, n_max, m)[: x.shape[1]]
    intensity = np.abs(x.astype(np.float64) @ r) ** 2
    return np.clip(np.rint(intensity * n_max / 2 * exposure_us * g), 0, 255)


def test_frames_are_the_ideal_camera_of_lightonmls_matrix(dev):
    x = random_patterns(50, 32, seed=2)
    frames = dev.acquire(x)
    assert frames.dtype == np.uint8 and frames.shape == (50, M)
    diff = np.abs(frames.astype(int) - _expected_dn(x, 4, 100.0))
    # lightonml computes in float32: a value within ~1e-6 of a .5 boundary may round the other way
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert 0 < frames.mean() < 255  # not all dark, not all saturated


def test_signal_scales_with_lit_features_and_exposure(dev):
    """Mean DN = lit features x exposure_us x dn_per_feature_us (E|xR|^2 = 2k/N)."""
    rng = np.random.default_rng(1)
    x = np.zeros((200, 32), dtype=np.uint8)
    for row in x:
        row[rng.choice(32, 8, replace=False)] = 1
    for exposure in (50.0, 100.0):
        dev.configure(exposure_us=exposure)
        mean = dev.acquire(x).astype(float).mean()
        expected = 8 * exposure * DEFAULT_DN_PER_FEATURE_US
        # 200 x 64 exponential values with the rows of one fixed matrix: the 64 column norms
        # |R_col|^2 (chi^2 with 2k dof) dominate the spread, rel. std ~ 1/sqrt(64 k) = 4.4 %; 4 sigma
        assert mean == pytest.approx(expected, rel=0.18)


def test_seed_is_ours_not_lightonmls_shared_zero(dev):
    x = random_patterns(5, 32, seed=3)
    a = dev.acquire(x)
    dev.set_seed(9)
    assert dev.status().frames_total == 0  # set_seed resets the counters, like the simulator
    b = dev.acquire(x)
    assert not np.array_equal(a, b)
    assert np.abs(b.astype(int) - _expected_dn(x, 9, 100.0)).max() <= 1
    dev.set_seed(4)
    np.testing.assert_array_equal(dev.acquire(x), a)


def test_camera_roi_sets_the_number_of_outputs(dev):
    got = dev.configure(camera_roi={"row": 10, "col": 20, "height_px": 4, "width_px": 8})
    assert got.camera_roi.model_dump() == {"row": 10, "col": 20, "height_px": 4, "width_px": 8}
    x = random_patterns(3, 32, seed=5)
    frames = dev.acquire(x)
    assert frames.shape == (3, 32)
    # lightonml regenerates the whole matrix for a new size (columns do not persist): our seed
    assert np.abs(frames.astype(int) - _expected_dn(x, 4, 100.0, m=32)).max() <= 1


@pytest.mark.parametrize(("changes", "setting", "code"), [
    ({"bit_depth": 12}, "bit_depth", -221),
    ({"analog_gain_db": 6.0}, "analog_gain_db", -221),
    ({"macro_pixel_mirrors": 4}, "macro_pixel_mirrors", -221),
    ({"input_roi": {"row": 0, "col": 0, "height_mirrors": 256, "width_mirrors": 256}}, "input_roi", -221),
    ({"n_features": N_MAX + 1}, "n_features", -222),
    ({"camera_roi": {"row": 0, "col": 1910, "height_px": 4, "width_px": 16}}, "camera_roi", -222),
])
def test_what_lightonml_cannot_do_is_refused_by_name(dev, changes, setting, code):
    before = dev.settings
    with pytest.raises(UnsupportedSetting) as info:
        dev.configure(**changes)
    err = info.value
    assert isinstance(err, DeviceError) and err.code == code
    assert (err.setting, err.backend) == (setting, "lightonml")
    assert setting in str(err) and "lightonml" in str(err) and err.allowed
    assert dev._read_settings() == before  # nothing was changed
    assert dev.acquire(random_patterns(1, 32)).shape == (1, M)


def test_inputs_are_validated_before_lightonml(dev):
    # lightonml's simulator skips its binary check: 0.5 would become 0, and 3 would give 9 |xR|^2
    with pytest.raises(opu.PatternError):
        dev.acquire(np.full((2, 32), 0.5))
    x = random_patterns(2, 32)
    x[0, 0] = 3
    with pytest.raises(opu.PatternError):
        dev.acquire(x)
    with pytest.raises(opu.ShapeError):
        dev.acquire(np.zeros((2, 31)))
    assert dev.frames_acquired == 0


def test_simulator_controls(dev):
    dev.set_noise(False)  # already noiseless
    with pytest.raises(UnsupportedSetting, match="noiseless"):
        dev.set_noise(True)
    with pytest.raises(UnsupportedSetting, match="fault"):
        dev.inject_fault("SAT")
    with pytest.raises(DriverError, match="SIM:CONF"):
        dev.sim_config()
    dev.sync_clock(100, 2.0)
    assert (dev.status().frames_total, dev.status().device_time_s) == (100, 2.0)
    with pytest.raises(UnsupportedSetting):
        dev.sync_clock(50, 2.0)
    idn = dev.identity
    assert idn.is_simulated and idn.firmware.startswith("lightonml 1.4") and idn.serial == "seed=4"


def test_linear_transform_matches_lightonmls_matrix(dev):
    """A x from the anchor scheme equals Re(E conj(R)/|R|) sqrt(2n/mean|R|^2) with E = x M, R = r M
    computed from lightonml's matrix M (the conformance suite's noiseless-model check)."""
    n = 16
    dev.configure(exposure_us=150.0)
    x = np.random.default_rng(3).choice([-1, 0, 1], size=(24, n)).astype(np.int8)
    mat = _matrix(4, N_MAX, M)[: 2 * n]
    e = x.astype(np.float64) @ mat[:n]
    ref = mat[n:].sum(axis=0)
    expected = np.real(e * np.conj(ref) / np.abs(ref)) * np.sqrt(2 * n / np.mean(np.abs(ref) ** 2))
    # 8-bit rounding only (no noise): each output mixes 4 frames rounded to +-0.5 DN (rms 0.29 DN)
    # against cross terms of ~10-20 DN (reference 24 DN mean at 150 us, no pixel at 255) -> ~7 % rms
    # (it shrinks ~1/exposure); a wrong sign, scale or column order gives >= 100 %
    with warnings.catch_warnings():
        warnings.simplefilter("error", opu.SaturationWarning)
        y = dev.linear_transform(x)
    rel = np.linalg.norm(y - expected) / np.linalg.norm(expected)
    assert rel < 0.12, rel


def test_uri_options_and_errors():
    with drivers.connect("lightonml:simulated?n_components=16&max_n_features=8&dn_per_feature_us=0.5",
                         seed=2) as d:
        assert isinstance(d, LightonmlDevice) and d.n_outputs == 16 and d.n_features == 8
        assert d.dn_per_feature_us == 0.5 and d.identity.serial == "seed=2"
        with pytest.raises(UnsupportedSetting):
            d.configure(n_features=9)
    for bad in ("lightonml:simulated?n_components=x", "lightonml:simulated?speed=1",
                "lightonml:emulated", "lightonml:simulated?config_override=1",
                "lightonml?seed=3", "lightonml:simulated?n_components=0"):
        with pytest.raises(ValueError):
            drivers.connect(bad)


def test_real_hardware_without_lightonopu_says_so():
    # lightonopu is LightOn's closed driver (not on PyPI): never installed here
    assert "lightonopu" not in sys.modules
    with pytest.raises(DriverError, match="lightonopu"):
        drivers.connect("lightonml")


def test_missing_lightonml_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightonml", None)  # import lightonml -> ImportError
    with pytest.raises(DriverError, match=r"pip install --no-deps lightonml==1\.4\.3"):
        drivers.connect("lightonml:simulated")


# ---------------------------------------------------------------------- the hardware mapping
class _FakeOpuDevice:
    """The attributes of lightonml's hardware ``OpuDevice`` (1.3 wheel, internal/device.py) that the
    backend uses: cartesian output ROI ((x, y), (w, h)), a settable gain_dB, uint8 frames."""

    def __init__(self) -> None:
        self.active = False
        self.exposure_us, self.frametime_us = 400, 500
        self.output_roi = ((0, 512), (2040, 64))
        self._gain = 0.0

    gain_dB = property(lambda self: self._gain, lambda self, v: setattr(self, "_gain", float(v)))  # noqa: N815 (lightonml name)
    output_shape_max = (2040, 1088)
    input_shape = (912, 1140)

    def versions(self) -> str:
        return "fpga 2.1\ncamera 1.0"


class _FakeOPU:
    """``lightonml.OPU`` on hardware, reduced to what the backend calls; frames encode the ROI size."""

    def __init__(self) -> None:
        self.device = _FakeOpuDevice()
        self.config = {"type": "type2", "core_type": "saturn", "core_version": "1.0", "name": "opu-lab-3"}
        self._s = type("S", (), {"n_samples_by_pass": 3000})()
        self.fits: list[dict] = []

    def open(self) -> None:
        self.device.active = True

    def close(self) -> None:
        self.device.active = False

    def fit1d(self, n_features: int, raw_output_size: bool, exposure_us: float, frametime_us: float) -> None:
        assert raw_output_size  # frames are the whole ROI, as the camera delivers them
        self.fits.append({"n_features": n_features, "exposure_us": exposure_us})
        self.device.exposure_us, self.device.frametime_us = exposure_us, frametime_us

    def transform(self, x: np.ndarray) -> np.ndarray:
        (_, _), (w, h) = self.device.output_roi
        return np.tile((x.sum(axis=1) % 256).astype(np.uint8)[:, None], (1, w * h))


def test_hardware_mapping_with_a_fake_lightonml_opu(monkeypatch):
    fake = _FakeOPU()
    monkeypatch.setattr(LightonmlDevice, "_new_opu", lambda self: (fake.open(), fake)[1])
    with drivers.connect("lightonml?n_components=4096") as d:
        s = d.settings  # starts from the device: lightonml's ROI for n_components, its timing
        assert s.camera_roi.model_dump() == {"row": 512, "col": 0, "height_px": 64, "width_px": 2040}
        assert (s.exposure_us, s.frame_time_us) == (400.0, 500.0)
        idn = d.identity
        assert not idn.is_simulated and idn.model == "type2 saturn 1.0" and idn.serial == "opu-lab-3"
        assert "lightonml 1.4.3" in idn.firmware and "fpga 2.1; camera 1.0" in idn.firmware
        got = d.configure(camera_roi={"row": 100, "col": 8, "height_px": 4, "width_px": 16},
                          analog_gain_db=6.0, exposure_us=250.0, n_features=40)
        assert fake.device.output_roi == ((8, 100), (16, 4))  # cartesian (x, y), (w, h)
        assert fake.device.gain_dB == 6.0 and got.analog_gain_db == 6.0 and got.exposure_us == 250.0
        assert fake.fits[-1] == {"n_features": 40, "exposure_us": 250.0}
        x = random_patterns(3, 40, seed=1)
        frames = d.acquire(x)
        np.testing.assert_array_equal(frames, np.tile(x.sum(axis=1)[:, None], (1, 64)))
        with pytest.raises(UnsupportedSetting, match="macro_pixel_mirrors"):
            d.configure(macro_pixel_mirrors=2)
        fake.transform = lambda x: np.zeros((len(x), 64), dtype=np.float32)  # not the camera's uint8
        with pytest.raises(DriverError, match="uint8"):
            d.acquire(x)
    assert not fake.device.active


def test_simulated_matrix_memory_is_bounded(dev):
    # the whole camera at N = 128 would be a 2 GiB complex64 matrix in lightonml's simulator
    with pytest.raises(UnsupportedSetting, match="complex64 matrix"):
        dev.configure(camera_roi={"row": 0, "col": 0, "height_px": 1080, "width_px": 1920})
    with pytest.raises(ValueError, match="MiB"):
        drivers.connect("lightonml:simulated?max_n_features=100000&n_components=4096")


def test_lightonml_failures_become_driver_errors(dev, monkeypatch):
    def broken(x):
        raise AssertionError("device not active")  # lightonml's way of refusing (assert)

    monkeypatch.setattr(dev._opu, "transform", broken)
    with pytest.raises(DriverError, match="lightonml transform failed: AssertionError"):
        dev.acquire(random_patterns(2, 32))
    assert dev.frames_acquired == 0
