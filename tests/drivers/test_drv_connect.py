"""drivers.connect URIs and the lightonml-style OPU facade."""

from __future__ import annotations

import numpy as np
import pytest
from drv_helpers import SETTINGS, small_config

import drivers
import opu
from drivers import OPU, NotFittedError
from drivers.sim import SimDevice


def test_sim_uris(tmp_path):
    with drivers.connect("sim") as dev:
        assert dev.is_open and dev.identity.is_simulated
        assert dev.sim_config().seed == 0
    assert not dev.is_open
    with drivers.connect("sim?seed=3") as dev:
        assert dev.sim_config().seed == 3
    path = tmp_path / "twin.json"
    path.write_text(small_config(seed=9).model_dump_json())
    with drivers.connect(f"sim:{path}") as dev:
        cfg = dev.sim_config()
        assert cfg.seed == 9 and dev.n_outputs == 256
    with drivers.connect(f"sim:{path}?seed=4") as dev:
        assert dev.sim_config().seed == 4


@pytest.mark.parametrize("uri, match", [
    ("", "accepted forms"),
    ("simulator", "accepted forms"),
    ("http://example.org", "accepted forms"),
    ("COM3", "accepted forms"),
    ("sim:/no/such/file.json", r"simulator config '/no/such/file.json' .* is not a file"),
    ("sim?seed=x", r"seed in 'sim\?seed=x' must be an integer, got 'x'"),
    ("sim?speed=1", r"unknown parameter\(s\) \['speed'\] .* only 'seed' is accepted"),
])
def test_bad_uris_say_what_was_wrong_and_what_is_allowed(uri, match):
    with pytest.raises(ValueError, match=match) as info:
        drivers.connect(uri)
    if match == "accepted forms":  # the list of forms itself, one per line
        forms = [form for b in drivers.backends() for form, _ in b.forms]
        assert len(forms) >= 6 and all(form in str(info.value) for form in forms)


def test_simulator_only_commands_are_refused_on_hardware():
    class FakeHardware(SimDevice):
        def _query_identity(self):
            return drivers.DeviceIdentity("Lab", "OPU-1140", "HW1", "1.0")

    dev = FakeHardware(config=small_config()).open()
    assert not dev.identity.is_simulated
    with pytest.raises(drivers.DriverError, match="only on a simulated device"):
        dev.set_seed(1)
    with pytest.raises(drivers.DriverError, match="only on a simulated device"):
        dev.inject_fault("SAT")


def _device() -> SimDevice:
    dev = SimDevice(config=small_config()).open()
    dev.configure(**SETTINGS)
    return dev


def test_opu_transform_matches_the_device_frames():
    dev = _device()
    ref = SimDevice(config=small_config()).open()
    ref.configure(**SETTINGS)
    x = np.random.default_rng(0).integers(0, 2, size=(3, 5, 64), dtype=np.uint8)
    with OPU(n_components=256, max_n_features=64, device=dev) as o:
        o.fit1d(x)
        y = o.transform(x)
    assert dev.is_open  # a device given open stays open
    assert y.shape == (3, 5, 256) and y.dtype == np.uint8
    np.testing.assert_array_equal(y.reshape(15, 256), ref.acquire(x.reshape(15, 64)))


def test_opu_n_components_sets_a_centred_camera_roi():
    with OPU(n_components=300, max_n_features=64, device=_device()) as o:
        roi = o.device.settings.camera_roi
        assert roi.height_px * roi.width_px == 300
        assert roi.model_dump() == opu.centred_roi(300).model_dump()
        o.n_components = 64
        assert o.device.n_outputs == 64


def test_opu_fit_errors_and_non_binary_input():
    o = OPU(n_components=256, max_n_features=64, device=_device())
    with pytest.raises(NotFittedError):
        o.transform(np.zeros((1, 64)))
    with pytest.raises(ValueError, match="max_n_features"):
        o.fit1d(n_features=65)
    o.fit1d(n_features=64)
    with pytest.raises(opu.PatternError):
        o.transform(np.full((2, 64), 0.3))  # lightonml's simulator would cast silently
    with pytest.raises(opu.ShapeError):
        o.transform(np.zeros((2, 63)))
    o.close()


def test_opu_fit2d_and_linear_transform_scale():
    dev = _device()
    dev.set_noise(False)  # expected (quantized) frames: two projections of x are the same numbers
    with OPU(n_components=256, max_n_features=64, device=dev, rescale="variance") as o:
        o.fit2d(n_features=(4, 4))
        x = np.random.default_rng(1).choice([-1, 0, 1], size=(10, 4, 4))
        y = o.linear_transform(x)
        assert y.shape == (10, 256)
        raw = o.device.linear_transform(x.reshape(10, 16))
        np.testing.assert_allclose(y, raw / np.sqrt(16), rtol=1e-9, atol=1e-12)
        # unit-variance A: outputs / ||x|| are ~ N(0, 1) (rescale divides by sqrt(16) = 4)
        norms = np.linalg.norm(x.reshape(10, 16), axis=1)
        z = (y * 4 / norms[:, None]).ravel()
        assert abs(z.var() - 1.0) < 0.25  # 2560 samples -> sd of var ~ 0.03, plus noise
    # the URI form opens and closes its own device
    o = OPU(n_components=64, max_n_features=16, device="sim")
    dev = o.device
    o.close()
    assert not dev.is_open
