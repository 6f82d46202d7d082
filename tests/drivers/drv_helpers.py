"""Helpers of the driver tests: the small test device, device factories, pattern generators."""

from __future__ import annotations

import numpy as np
import pytest

import drivers
import opu
from drivers.sim import SimDevice
from firmware_models import Controller

#: small device: 16 x 16 camera pixels, 8 x 8-mirror macro-pixels (enough light for 64 features)
N_FEATURES = 64
PATTERN_MEMORY = 256
SETTINGS = {
    "n_features": N_FEATURES,
    "exposure_us": 100.0,
    "frame_time_us": 200.0,
    "macro_pixel_mirrors": 8,
}


def small_config(seed: int = 7) -> opu.OPUConfig:
    """opu.realistic with a 16 x 16 camera ROI and a static medium (no drift inside a test)."""
    return opu.realistic(seed=seed, n_outputs=256).replace(medium={"drift_time_constant_s": None})


def new_controller(seed: int = 7) -> Controller:
    return Controller(small_config(seed), pattern_memory=PATTERN_MEMORY)


def open_sim() -> drivers.Device:
    dev = SimDevice(new_controller(), resource="sim").open()
    dev.configure(**SETTINGS)
    return dev


def open_visa(resource: str, timeout_s: float = 30.0, fast_io: bool = True) -> drivers.Device:
    """The VISA device on ``resource``; ``fast_io=False`` forces pyvisa's message-based API
    (:class:`drivers.wire.VisaWire`, the path of NI-VISA, serial and INSTR resources). The default
    timeout is generous: the emulator's first acquisition compiles the camera kernel, which takes
    seconds on a loaded machine; tests of timeouts pass their own short ``timeout_s``."""
    dev = drivers.connect(resource, timeout_s=timeout_s, fast_io=fast_io)
    assert dev.uses_fast_io == fast_io
    dev.configure(**SETTINGS)
    return dev


def require_sim(dev: drivers.Device) -> None:
    if not dev.identity.is_simulated:
        pytest.skip("needs the SIM: subsystem (simulated device)")


#: the conformance suite's lightonml device: lightonml's own simulator behind drivers.connect
LIGHTONML_URI = "lightonml:simulated"


def open_lightonml(uri: str = LIGHTONML_URI) -> drivers.Device:
    """A lightonml device configured like the other devices, except the macro-pixel: lightonml
    cannot set one (its simulator maps one feature to one matrix row), so it keeps 1."""
    dev = drivers.connect(uri, n_components=256)
    dev.configure(**{k: v for k, v in SETTINGS.items() if k != "macro_pixel_mirrors"},
                  camera_roi=opu.centred_roi(256).model_dump())
    return dev


def is_lightonml(dev: drivers.Device) -> bool:
    from drivers.lightonml_device import LightonmlDevice

    return isinstance(dev, LightonmlDevice)


def lightonml_limitation(dev: drivers.Device, why: str) -> None:
    """Skip a conformance test on the lightonml backend, naming the lightonml limitation."""
    if is_lightonml(dev):
        pytest.skip(f"lightonml limitation: {why}")


def random_patterns(b: int, n: int = N_FEATURES, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, size=(b, n), dtype=np.uint8)
