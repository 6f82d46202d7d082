"""The ``Device`` interface over LightOn's own stack, ``lightonml.OPU`` (issue 14).

``drivers.connect("lightonml")`` drives a real LightOn OPU through ``lightonml.OPU()`` (which needs
LightOn's closed ``lightonopu`` driver and the host's OPU configuration); ``"lightonml:simulated"``
uses lightonml's own ``SimulatedOpuDevice``. Host applications (trainer, calibration tool) then run
unchanged on either. See docs/drivers.md, "lightonml backend".

How the ``Device`` primitives map onto lightonml (1.4.3):

* patterns: the base class validates them (0/1 only, ``n_features`` columns) and packs them; this
  backend unpacks them to uint8 0/1 (b, n) and runs ``OPU.transform`` after
  ``fit1d(n_features=n, raw_output_size=True, exposure_us=..., frametime_us=...)``, with
  ``rescale="none"`` (rescaling only touches ``linear_transform``, which is not used);
* settings: ``exposure_us``/``frame_time_us`` are the fit's transform-setting overrides, read back
  from the lightonml device; ``camera_roi`` is the camera output ROI (hardware) or, in simulation,
  ``n_components`` = its pixel count; ``analog_gain_db`` is the device's ``gain_dB`` where it is
  settable; what lightonml cannot do raises :class:`~drivers.errors.UnsupportedSetting`;
* lightonml's simulator flaws do not leak: inputs are validated here (it has no binary check), the
  1-D feature layout avoids its transposed DMD shape, the seed is ours (it always uses seed 0), and
  its noiseless float32 intensities become the uint8 frames of an *ideal, noiseless 8-bit camera*::

      DN = clip(round(|x R|^2 * N / 2 * exposure_us * dn_per_feature_us), 0, 255)

  with R the simulator's (N x m) matrix (N = ``max_n_features`` rows, real and imaginary parts
  N(0, 1/N)), so one lit feature gives a mean of ``exposure_us * dn_per_feature_us`` DN, proportional
  to the exposure like a camera's signal. No noise, dark level or gain is modelled: the frames are
  exactly the quantized ideal intensities.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from opu.config import DMD_MAX_HEIGHT_MIRRORS, DMD_MAX_WIDTH_MIRRORS

from .base import CameraRoi, Device, DeviceIdentity, DeviceSettings, DeviceStatus, InputRoi, settings_changes
from .errors import DriverError, UnsupportedSetting
from .registry import backend
from .scpi import scpi_set_command

BACKEND = "lightonml"
INSTALL_HINT = (
    "the lightonml backend needs LightOn's lightonml package: pip install -e '.[lightonml]' && "
    "pip install --no-deps lightonml==1.4.3 (`make test` does both; --no-deps because its "
    "numexpr==2.7 pin does not build on Python >= 3.10)"
)
#: lightonml's SimulatedOpuDevice has no camera: see the module docstring for the DN conversion
DEFAULT_DN_PER_FEATURE_US = 0.01
DEFAULT_MAX_N_FEATURES = 1024
#: lightonml's simulator draws its whole N x m complex64 matrix at once (8 N m bytes, plus float64
#: temporaries of twice that while drawing): larger matrices are refused instead of exhausting memory
MAX_SIM_MATRIX_BYTES = 512 * 2**20
#: SCPI codes reused for refusals, so host code handles every backend alike (docs/protocol.md)
SETTINGS_CONFLICT = -221
DATA_OUT_OF_RANGE = -222
_OPTIONS = {"n_components", "max_n_features", "config_file", "config_override", "seed",
            "dn_per_feature_us", "input_roi_strategy"}


def import_lightonml() -> Any:
    """``lightonml`` itself, imported on first use; a missing package says how to install it."""
    try:
        import lightonml
    except ImportError as exc:
        raise DriverError(f"{INSTALL_HINT} ({exc})", resource=BACKEND) from None
    return lightonml


class LightonmlDevice(Device):
    """An OPU reached through ``lightonml.OPU`` (real hardware, or lightonml's simulator).

    Parameters
    ----------
    resource:
        The URI it came from (appears in every error).
    simulated:
        True: lightonml's ``SimulatedOpuDevice``; False: ``lightonml.OPU()`` on the host's OPU.
    n_components:
        Initial output count (camera pixels); default: the default camera ROI's 4096 pixels.
    max_n_features:
        Simulation only: rows N of the simulated matrix, the most features a pattern may have
        (memory 8 N m bytes). Default 1024.
    config_file, config_override:
        Hardware only: lightonml's OPU configuration file and a dict merged over it.
    seed:
        Simulation only: seed of the simulated matrix (lightonml's own default is always 0).
    dn_per_feature_us:
        Simulation only: mean DN one lit feature gives per microsecond of exposure (default 0.01).
    input_roi_strategy:
        How lightonml lays features out on the DMD: ``"full"`` (default), ``"small"``, ``"auto"``.
    """

    def __init__(self, resource: str, *, simulated: bool, n_components: int | None = None,
                 max_n_features: int | None = None, config_file: str = "",
                 config_override: dict | None = None, seed: int = 0,
                 dn_per_feature_us: float = DEFAULT_DN_PER_FEATURE_US,
                 input_roi_strategy: str = "full") -> None:
        super().__init__(resource)
        self.simulated = bool(simulated)
        if not self.simulated and (max_n_features is not None or dn_per_feature_us
                                   != DEFAULT_DN_PER_FEATURE_US or seed != 0):
            raise ValueError(f"max_n_features, seed and dn_per_feature_us apply to lightonml:simulated "
                             f"only, not to real hardware ({resource!r})")
        if self.simulated and (config_file or config_override):
            raise ValueError(f"config_file/config_override configure real hardware, not "
                             f"lightonml:simulated ({resource!r})")
        self._n_components = _positive_int("n_components", 4096 if n_components is None else n_components,
                                           resource)
        self._start_roi = _roi_for(self._n_components, resource)
        self._max_n_features = _positive_int(
            "max_n_features", DEFAULT_MAX_N_FEATURES if max_n_features is None else max_n_features, resource)
        if self._max_n_features > DMD_MAX_HEIGHT_MIRRORS * DMD_MAX_WIDTH_MIRRORS:
            raise ValueError(f"max_n_features={self._max_n_features} exceeds the DMD's "
                             f"{DMD_MAX_HEIGHT_MIRRORS * DMD_MAX_WIDTH_MIRRORS} mirrors ({resource!r})")
        nbytes = 8 * self._max_n_features * self._n_components
        if self.simulated and nbytes > MAX_SIM_MATRIX_BYTES:
            raise ValueError(f"max_n_features x n_components = {self._max_n_features} x {self._n_components} "
                             f"needs a {nbytes / 2**20:.0f} MiB simulated matrix (limit "
                             f"{MAX_SIM_MATRIX_BYTES // 2**20} MiB) ({resource!r})")
        self._config_file = str(config_file)
        self._config_override = config_override
        self._seed = _seed(seed, resource)
        if not (math.isfinite(dn_per_feature_us) and dn_per_feature_us > 0):
            raise ValueError(f"dn_per_feature_us must be a finite number > 0, got {dn_per_feature_us!r}")
        self.dn_per_feature_us = float(dn_per_feature_us)
        if input_roi_strategy not in ("full", "small", "auto"):
            raise ValueError(f"input_roi_strategy must be 'full', 'small' or 'auto', got "
                             f"{input_roi_strategy!r} ({resource!r})")
        self.input_roi_strategy = input_roi_strategy
        self._opu: Any = None
        self._state: DeviceSettings | None = None  # what was last applied to lightonml
        # host-side counters: lightonml exposes neither a frame counter nor a clock
        self._frames_total = 0
        self._device_time_s = 0.0
        #: lightonml's ``ContextArray.context`` of the last transform (exposure, ROIs, fmt_factor, ...)
        self.last_context: dict[str, Any] = {}

    # ------------------------------------------------------------------ lifecycle
    def _open(self) -> None:
        if self._opu is None:
            self._opu = self._new_opu()
            dev = self._opu.device
            roi = self._start_roi
            if not self.simulated:  # the output ROI lightonml chose for n_components
                (x, y), (w, h) = dev.output_roi
                roi = CameraRoi(row=int(y), col=int(x), height_px=int(h), width_px=int(w))
            # start from the device's own timing (lightonml's config on hardware; 400/500 us simulated)
            exposure = float(dev.exposure_us)
            start = DeviceSettings(exposure_us=exposure, frame_time_us=max(float(dev.frametime_us), exposure),
                                   camera_roi=roi)
            if start.n_features > self._max_features():
                start = start.model_copy(update={"n_features": self._max_features()})
            self._apply(start)
        else:
            self._opu.open()

    def _new_opu(self) -> Any:
        lightonml = import_lightonml()
        from lightonml.internal.types import InputRoiStrategy

        kwargs = dict(n_components=self._n_components, open_at_init=False, disable_pbar=True,
                      rescale="none", input_roi_strategy=InputRoiStrategy[self.input_roi_strategy])
        if self.simulated:
            from lightonml.internal.simulated_device import SimulatedOpuDevice

            device = SimulatedOpuDevice()
            # our seed, built before OPU() so that lightonml does not build its seed-0 matrix first
            device.build_random_matrix(self._max_n_features, self._n_components, self._seed)
            opu_obj = lightonml.OPU(opu_device=device, max_n_features=self._max_n_features, **kwargs)
        else:
            try:
                opu_obj = lightonml.OPU(config_file=self._config_file,
                                        config_override=self._config_override, **kwargs)
            except ImportError as exc:  # lightonopu, LightOn's closed driver, is not on PyPI
                raise DriverError(f"lightonml cannot reach hardware: {exc}; real OPUs need LightOn's "
                                  "lightonopu driver (use lightonml:simulated without one)",
                                  resource=self.resource) from None
            except (RuntimeError, OSError, KeyError, ValueError) as exc:
                raise DriverError(f"lightonml could not open the OPU: {exc}",
                                  resource=self.resource) from None
        try:
            opu_obj.open()
        except Exception as exc:
            raise DriverError(f"lightonml could not open the OPU: {type(exc).__name__}: {exc}",
                              resource=self.resource) from None
        return opu_obj

    def _close(self) -> None:
        if self._opu is not None:
            self._opu.close()

    # ------------------------------------------------------------------ identity, settings
    def _query_identity(self) -> DeviceIdentity:
        lightonml = import_lightonml()
        ml = f"lightonml {lightonml.__version__}"
        if self.simulated:
            return DeviceIdentity("LightOn", "lightonml-SimulatedOpuDevice-SIM", f"seed={self._seed}", ml)
        cfg = self._opu.config
        versions = [ml]
        try:
            import lightonopu

            versions.append(f"lightonopu {lightonopu.__version__}")
        except ImportError:
            pass
        with contextlib.suppress(AttributeError):  # not every lightonml device has versions()
            versions.append(str(self._opu.device.versions()).replace("\n", "; "))
        model = " ".join(str(cfg.get(k, "")) for k in ("type", "core_type", "core_version")).strip()
        return DeviceIdentity("LightOn", model or "OPU", str(cfg.get("name", "unknown")), ", ".join(versions))

    def _max_features(self) -> int:
        return self._max_n_features if self.simulated else int(np.prod(self._opu.device.input_shape))

    def _read_settings(self) -> DeviceSettings:
        assert self._state is not None
        dev = self._opu.device
        changes: dict[str, Any] = {"exposure_us": float(dev.exposure_us),
                                   "frame_time_us": float(dev.frametime_us),
                                   "analog_gain_db": float(dev.gain_dB)}
        if not self.simulated:
            (x, y), (w, h) = dev.output_roi
            changes["camera_roi"] = CameraRoi(row=int(y), col=int(x), height_px=int(h), width_px=int(w))
        return self._state.model_copy(update=changes)

    def _write_settings(self, settings: DeviceSettings) -> None:
        for name, value in settings_changes(self.settings, settings):
            self._check(name, value)
        self._apply(settings)

    def _refuse(self, name: str, value: Any, allowed: str, code: int = SETTINGS_CONFLICT) -> None:
        raise UnsupportedSetting(name, value, backend=BACKEND, allowed=allowed, code=code,
                                 command=scpi_set_command(name, value), resource=self.resource)

    def _check(self, name: str, value: Any) -> None:
        """Refuse (typed, naming setting and backend) what lightonml cannot do, before any change."""
        kind = "lightonml's simulator" if self.simulated else "lightonml"
        if name == "bit_depth" and value != 8:
            self._refuse(name, value, f"8 only ({kind} delivers 8-bit frames)")
        elif name == "analog_gain_db" and value != 0.0 and (self.simulated or not _settable(
                type(self._opu.device), "gain_dB")):
            self._refuse(name, value, f"0.0 only ({kind} has no settable gain)")
        elif name == "macro_pixel_mirrors" and value != 1:
            self._refuse(name, value, "1 only: lightonml chooses how many mirrors show a feature itself "
                         "(its formatter), it cannot be set" if not self.simulated else
                         "1 only: lightonml's simulator has no DMD, one feature is one matrix row")
        elif name == "input_roi" and value != InputRoi():
            self._refuse(name, value, "the full DMD only: lightonml places features itself (use the "
                         "input_roi_strategy option: full, small or auto)")
        elif name == "n_features" and value > self._max_features():
            what = "max_n_features option" if self.simulated else "DMD size"
            self._refuse(name, value, f"1..{self._max_features()} (the {what})", DATA_OUT_OF_RANGE)
        elif name == "camera_roi":
            width, height = self._opu.device.output_shape_max
            if value.row + value.height_px > height or value.col + value.width_px > width:
                self._refuse(name, value, f"a ROI inside the {height}x{width}-pixel camera of {kind}",
                             DATA_OUT_OF_RANGE)
            if self.simulated and 8 * self._max_n_features * value.n_pixels > MAX_SIM_MATRIX_BYTES:
                most = MAX_SIM_MATRIX_BYTES // (8 * self._max_n_features)
                self._refuse(name, value, f"at most {most} pixels with max_n_features={self._max_n_features} "
                             f"(lightonml's simulator holds the whole N x m complex64 matrix; limit "
                             f"{MAX_SIM_MATRIX_BYTES // 2**20} MiB)", DATA_OUT_OF_RANGE)

    def _apply(self, s: DeviceSettings) -> None:
        """Put lightonml in state ``s``: output size / ROI, gain, then a new fit (exposure, frame time)."""
        try:
            self._apply_lightonml(s)
        except Exception as exc:  # lightonml reports errors as bare exceptions (even asserts)
            raise DriverError(f"lightonml could not apply the settings: {type(exc).__name__}: {exc}",
                              resource=self.resource) from exc
        self._state = s

    def _apply_lightonml(self, s: DeviceSettings) -> None:
        o = self._opu
        m = s.camera_roi.n_pixels
        if self.simulated:
            if o.n_components != m:
                o.device.build_random_matrix(self._max_n_features, m, self._seed)
                o.n_components = m  # the matrix already has this shape: lightonml keeps it
        else:
            r = s.camera_roi
            o.device.output_roi = ((r.col, r.row), (r.width_px, r.height_px))
            if s.analog_gain_db != float(o.device.gain_dB):
                o.device.gain_dB = s.analog_gain_db
        o.fit1d(n_features=s.n_features, raw_output_size=True, exposure_us=s.exposure_us,
                frametime_us=s.frame_time_us)

    def _pattern_memory(self) -> int:
        return int(self._opu._s.n_samples_by_pass)  # lightonml's batch chunk (3000 by default)

    # ------------------------------------------------------------------ acquisition
    def _run_sequence(self, packed: np.ndarray) -> np.ndarray:
        s = self.settings
        x = np.unpackbits(packed, axis=1, count=s.n_features)  # uint8 0/1, validated by acquire()
        with warnings.catch_warnings():
            # the simulated matrix has max_n_features rows; fewer features use its first rows
            warnings.filterwarnings("ignore", message="The number of rows of random matrix")
            try:
                y = self._opu.transform(x)
            except Exception as exc:  # lightonml reports errors as bare exceptions (even asserts)
                raise DriverError(f"lightonml transform failed: {type(exc).__name__}: {exc}",
                                  resource=self.resource) from exc
        ctx = getattr(y, "context", None)
        self.last_context = ctx.as_dict() if ctx is not None else {}
        y = np.asarray(y)
        if y.ndim == 1:
            y = y[None, :]
        self._frames_total += x.shape[0]
        self._device_time_s += x.shape[0] * s.frame_time_us * 1e-6
        if not self.simulated:
            if y.dtype != np.uint8:
                raise DriverError(f"lightonml returned {y.dtype} frames, expected the camera's uint8",
                                  resource=self.resource)
            return y
        dn = y.astype(np.float64) * (self._max_n_features / 2.0) * (s.exposure_us * self.dn_per_feature_us)
        return np.clip(np.rint(dn), 0, 255).astype(np.uint8)

    def _query_status(self) -> DeviceStatus:
        # lightonml reports neither laser state nor temperature nor a frame counter: laser_on says
        # whether lightonml holds the device open (it drives the laser with open/close), the
        # temperature is NaN (unknown), the counters are this backend's own.
        return DeviceStatus(laser_on=bool(self._opu.device.active), temperature_c=float("nan"),
                            frames_total=self._frames_total, device_time_s=self._device_time_s)

    def _wait(self, seconds: float) -> None:
        if not self.simulated:
            time.sleep(seconds)
        self._device_time_s += seconds  # the simulated medium is static: only the clock moves

    # ------------------------------------------------------------------ SIM: equivalents
    def _sim(self, name: str, value: str) -> None:
        if name == "SEED":
            self._seed = int(value)
            s = self.settings
            self._opu.device.build_random_matrix(self._max_n_features, s.camera_roi.n_pixels, self._seed)
            self._frames_total, self._device_time_s = 0, 0.0
        elif name == "NOIS":
            if value == "ON":
                raise UnsupportedSetting("noise", True, backend=BACKEND, allowed="off only: lightonml's "
                                         "simulator is noiseless", code=SETTINGS_CONFLICT,
                                         command="SIM:NOIS ON", resource=self.resource)
        elif name == "CLOC":
            frames, _, seconds = value.partition(",")
            if int(frames) < self._frames_total or float(seconds) < self._device_time_s:
                raise UnsupportedSetting("clock", value, backend=BACKEND, allowed="forward only",
                                         code=DATA_OUT_OF_RANGE, command=f"SIM:CLOC {value}",
                                         resource=self.resource)
            self._frames_total, self._device_time_s = int(frames), float(seconds)
        else:
            raise UnsupportedSetting(f"SIM:{name}", value, backend=BACKEND,
                                     allowed="SIM:SEED, SIM:NOIS OFF and SIM:CLOC only (lightonml's "
                                     "simulator has no fault injection)", code=SETTINGS_CONFLICT,
                                     command=f"SIM:{name} {value}", resource=self.resource)


# ---------------------------------------------------------------------- construction from a URI
@backend("lightonml", scheme="lightonml", options=None, forms=[
    ("lightonml[?n_components=..]", "a LightOn OPU through lightonml.OPU (needs lightonopu)"),
    ("lightonml:simulated[?seed=..]", "lightonml's own SimulatedOpuDevice"),
])
def open_lightonml_uri(uri: str, **options: Any) -> LightonmlDevice:
    """The (unopened) device for ``"lightonml[:simulated][?option=value&...]"``.

    URI query options and keyword ``options`` (keywords win): ``n_components``, ``max_n_features``,
    ``seed``, ``dn_per_feature_us`` (simulated), ``config_file``, ``config_override`` (a dict, keyword
    only; hardware), ``input_roi_strategy``. See :class:`LightonmlDevice`.
    """
    body, _, query = uri.strip().partition("?")
    if body not in ("lightonml", "lightonml:simulated"):
        raise ValueError(f"unknown lightonml URI {uri!r}: use 'lightonml' or 'lightonml:simulated' "
                         "(options as ?key=value)")
    try:
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError as exc:
        raise ValueError(f"malformed query in {uri!r}: {exc}") from None
    if "config_override" in params:
        raise ValueError(f"config_override is a dict: pass it as a keyword option, not in the URI ({uri!r})")
    params.update(options)
    unknown = set(params) - _OPTIONS
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for {uri!r}; accepted: {sorted(_OPTIONS)}")
    for key in ("n_components", "max_n_features", "seed"):
        if key in params:
            params[key] = _int(key, params[key], uri)
    if "dn_per_feature_us" in params:
        try:
            params["dn_per_feature_us"] = float(params["dn_per_feature_us"])
        except (TypeError, ValueError):
            raise ValueError(f"dn_per_feature_us in {uri!r} must be a number, got "
                             f"{params['dn_per_feature_us']!r}") from None
    return LightonmlDevice(uri.strip(), simulated=body.endswith(":simulated"), **params)


def connect_lightonml(uri: str, **options: Any) -> Device:
    """Open ``uri`` (what ``drivers.connect`` does for the lightonml forms)."""
    return open_lightonml_uri(uri, **options).open()


def _int(key: str, value: Any, uri: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{key} in {uri!r} must be an integer, got {value!r}")
    try:
        return int(value) if isinstance(value, int | np.integer) else int(str(value), 10)
    except ValueError:
        raise ValueError(f"{key} in {uri!r} must be an integer, got {value!r}") from None


def _positive_int(key: str, value: int, resource: str) -> int:
    if value < 1:
        raise ValueError(f"{key} must be >= 1, got {value} ({resource!r})")
    return int(value)


def _seed(seed: int, resource: str) -> int:
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed} ({resource!r})")
    return int(seed)


def _roi_for(n_pixels: int, resource: str) -> CameraRoi:
    """A centred camera ROI of exactly ``n_pixels`` pixels (opu.centred_roi's shape)."""
    import opu

    try:
        r = opu.centred_roi(n_pixels)
    except opu.OPUError as exc:
        raise ValueError(f"n_components: {exc} ({resource!r})") from None
    return CameraRoi(row=r.row, col=r.col, height_px=r.height_px, width_px=r.width_px)


def _settable(cls: type, attr: str) -> bool:
    prop = getattr(cls, attr, None)
    return isinstance(prop, property) and prop.fset is not None


__all__ = ["LightonmlDevice", "connect_lightonml", "import_lightonml"]
