"""Configuration of the simulated device: pydantic models with units in the field names.

One :class:`OPUConfig` describes a whole device (DMD, scattering medium, laser, camera). Two presets:
:func:`ideal` (noiseless, unquantized float detector, static medium) and :func:`realistic` (the
documented default, see ``docs/physics.md`` for the source or assumption behind every value).

Configs are frozen; derive variants with ``cfg.model_copy(update=...)`` or :meth:`OPUConfig.replace`.
Invalid values raise :class:`pydantic.ValidationError` (a ``ValueError``) naming the field and the
allowed range.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import CapacityError, ConfigError

#: Full DMD geometry of the LightOn OPU (lightonml source: 912 rows x 1140 columns).
DMD_MAX_HEIGHT_MIRRORS = 912
DMD_MAX_WIDTH_MIRRORS = 1140
#: Largest camera modelled (lightonml "type1": 1920 x 1080, about 2 M pixels).
CAMERA_MAX_WIDTH_PX = 2048
CAMERA_MAX_HEIGHT_PX = 1088


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DMDConfig(_Frozen):
    """Digital micro-mirror device: geometry and the mapping of features onto mirrors.

    Features are laid out in raster order on a grid of square macro-pixels
    (``macro_pixel_mirrors`` x ``macro_pixel_mirrors`` mirrors each) inside the input region of
    interest; mirrors outside the features stay off.
    """

    height_mirrors: int = Field(DMD_MAX_HEIGHT_MIRRORS, ge=1, le=DMD_MAX_HEIGHT_MIRRORS)
    width_mirrors: int = Field(DMD_MAX_WIDTH_MIRRORS, ge=1, le=DMD_MAX_WIDTH_MIRRORS)
    roi_row: int = Field(0, ge=0, description="first mirror row of the input ROI")
    roi_col: int = Field(0, ge=0, description="first mirror column of the input ROI")
    roi_height_mirrors: int | None = Field(None, ge=1, description="None: to the DMD edge")
    roi_width_mirrors: int | None = Field(None, ge=1, description="None: to the DMD edge")
    macro_pixel_mirrors: int = Field(1, ge=1, le=DMD_MAX_HEIGHT_MIRRORS)

    @model_validator(mode="after")
    def _roi_inside(self) -> DMDConfig:
        h, w = self.roi_shape_mirrors
        if self.roi_row + h > self.height_mirrors or self.roi_col + w > self.width_mirrors:
            raise ValueError(
                f"input ROI rows {self.roi_row}..{self.roi_row + h}, cols {self.roi_col}.."
                f"{self.roi_col + w} does not fit the {self.height_mirrors}x{self.width_mirrors} DMD"
            )
        if h < self.macro_pixel_mirrors or w < self.macro_pixel_mirrors:
            raise ValueError(
                f"macro-pixel of {self.macro_pixel_mirrors} mirrors does not fit the {h}x{w} ROI"
            )
        return self

    @property
    def roi_shape_mirrors(self) -> tuple[int, int]:
        """(height, width) of the input ROI in mirrors."""
        h = self.roi_height_mirrors or self.height_mirrors - self.roi_row
        w = self.roi_width_mirrors or self.width_mirrors - self.roi_col
        return h, w

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(rows, cols) of the macro-pixel grid inside the ROI."""
        h, w = self.roi_shape_mirrors
        return h // self.macro_pixel_mirrors, w // self.macro_pixel_mirrors

    @property
    def max_features(self) -> int:
        """Number of macro-pixels (features) the ROI can hold."""
        r, c = self.grid_shape
        return r * c


class MediumConfig(_Frozen):
    """Multiple-scattering medium: transmission matrix statistics and slow drift.

    ``kind="iid"``: complex Gaussian i.i.d. B generated per entry (exact law, O(n m) per frame);
    ``kind="structured"``: B from FFTs and random phase diagonals (:mod:`opu.structured`,
    O((n + m) log(n + m)) per frame), for full-size devices (docs/physics.md lists what it preserves).
    """

    kind: Literal["iid", "structured"] = Field(
        "iid", description="transmission matrix model: exact i.i.d. Gaussian or structured (FFT x phases)"
    )

    drift_time_constant_s: float | None = Field(
        None, gt=0, description="tau of corr(B(0), B(t)) = exp(-t/tau); None = static medium"
    )
    drift_step_s: float = Field(
        1.0, gt=0, description="device time between two drift updates of B (Ornstein-Uhlenbeck)"
    )
    speckle_grain_px: float = Field(
        0.0, ge=0, le=16, description="Gaussian speckle-grain radius (1/e field) on the camera, px"
    )


class LaserConfig(_Frozen):
    """Laser power and its frame-to-frame fluctuation."""

    photons_per_mirror_us: float = Field(
        5.0e-3,
        ge=0,
        description="mean photons reaching one camera pixel per lit mirror per microsecond",
    )
    power_fluctuation_rel: float = Field(
        0.0, ge=0, le=0.5, description="relative std of the common per-frame power factor"
    )


class Roi(_Frozen):
    """A rectangle on the camera sensor, in pixels."""

    row: int = Field(0, ge=0)
    col: int = Field(0, ge=0)
    height_px: int = Field(..., ge=1)
    width_px: int = Field(..., ge=1)

    @property
    def n_pixels(self) -> int:
        return self.height_px * self.width_px


class CameraConfig(_Frozen):
    """Camera following the EMVA 1288 linear model (see docs/physics.md for the equations)."""

    sensor_height_px: int = Field(1080, ge=1, le=CAMERA_MAX_HEIGHT_PX)
    sensor_width_px: int = Field(1920, ge=1, le=CAMERA_MAX_WIDTH_PX)
    roi: Roi = Field(default_factory=lambda: Roi(row=508, col=928, height_px=64, width_px=64))
    exposure_us: float = Field(400.0, gt=0, le=1e6)
    frame_time_us: float = Field(500.0, gt=0, le=1e7)
    quantum_efficiency: float = Field(0.6, gt=0, le=1)
    shot_noise: bool = True
    dark_current_e_per_s: float = Field(0.0, ge=0)
    read_noise_e: float = Field(0.0, ge=0)
    full_well_e: float = Field(10_500.0, gt=0)
    gain_dn_per_e: float = Field(0.025, gt=0, description="system gain K at 0 dB analog gain")
    analog_gain_db: float = Field(0.0, ge=0, le=24, description="amplifier gain, K x 10^(dB/20)")
    black_level_dn: float = Field(0.0, ge=0)
    prnu_rel: float = Field(0.0, ge=0, le=0.5, description="photo-response non-uniformity, std")
    dsnu_e: float = Field(0.0, ge=0, description="dark-signal non-uniformity, std in electrons")
    bit_depth: Literal[8, 10, 12] | None = Field(
        8, description="ADC bits; None = ideal detector returning float32 electrons x K"
    )
    poisson_exact_below_e: float = Field(
        20.0,
        ge=0,
        le=200,
        description="shot noise is sampled exactly (Poisson) below this mean; Gaussian above",
    )

    @model_validator(mode="after")
    def _consistent(self) -> CameraConfig:
        if self.frame_time_us < self.exposure_us:
            raise ValueError(f"frame_time_us={self.frame_time_us} must be >= exposure_us={self.exposure_us}")
        r = self.roi
        if r.row + r.height_px > self.sensor_height_px or r.col + r.width_px > self.sensor_width_px:
            raise ValueError(
                f"camera ROI rows {r.row}..{r.row + r.height_px}, cols {r.col}.."
                f"{r.col + r.width_px} is outside the {self.sensor_height_px}x"
                f"{self.sensor_width_px} sensor"
            )
        return self

    @property
    def n_outputs(self) -> int:
        return self.roi.n_pixels

    @property
    def system_gain_dn_per_e(self) -> float:
        """Effective K (DN per electron) including the analog gain."""
        return self.gain_dn_per_e * 10.0 ** (self.analog_gain_db / 20.0)

    @property
    def adc_max_dn(self) -> float:
        """Largest code of the ADC (inf for the ideal detector)."""
        return math.inf if self.bit_depth is None else float(2**self.bit_depth - 1)

    @property
    def output_dtype(self) -> str:
        if self.bit_depth is None:
            return "float32"
        return "uint8" if self.bit_depth <= 8 else "uint16"


def centred_roi(n_outputs: int, sensor_height_px: int = 1080, sensor_width_px: int = 1920) -> Roi:
    """A centred camera ROI with exactly ``n_outputs`` pixels, as square as the divisors allow.

    Raises :class:`CapacityError` when no rectangle of that area fits the sensor.
    """
    if n_outputs < 1:
        raise CapacityError(f"n_outputs must be >= 1, got {n_outputs}")
    if n_outputs > sensor_height_px * sensor_width_px:
        raise CapacityError(
            f"n_outputs={n_outputs} exceeds the {sensor_height_px}x{sensor_width_px} sensor "
            f"({sensor_height_px * sensor_width_px} pixels)"
        )
    best: tuple[int, int] | None = None
    for h in range(1, math.isqrt(n_outputs) + 1):
        if n_outputs % h:
            continue
        w = n_outputs // h
        for hh, ww in ((h, w), (w, h)):
            if (
                hh <= sensor_height_px
                and ww <= sensor_width_px
                and (best is None or abs(hh - ww) < abs(best[0] - best[1]))
            ):
                best = (hh, ww)
    if best is None:
        raise CapacityError(
            f"no rectangle of exactly {n_outputs} pixels fits the {sensor_height_px}x"
            f"{sensor_width_px} sensor; choose a number of outputs with a divisor <= "
            f"{sensor_height_px}"
        )
    h, w = best
    return Roi(row=(sensor_height_px - h) // 2, col=(sensor_width_px - w) // 2, height_px=h, width_px=w)


class OPUConfig(_Frozen):
    """Complete description of a simulated OPU. ``seed`` keys every random draw of the device."""

    seed: int = Field(0, ge=0, lt=2**32)
    dmd: DMDConfig = Field(default_factory=DMDConfig)
    medium: MediumConfig = Field(default_factory=MediumConfig)
    laser: LaserConfig = Field(default_factory=LaserConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    electrical_power_w: float = Field(
        30.0, ge=0, description="wall power used for energy accounting (arXiv 2409.12965: <30 W)"
    )

    def replace(self, **sections: Any) -> OPUConfig:
        """Copy with whole sections or nested fields replaced.

        ``cfg.replace(seed=3, camera={"exposure_us": 200})`` updates one camera field and keeps
        the rest; the result is validated again.
        """
        data = self.model_dump()
        for key, value in sections.items():
            if isinstance(value, BaseModel):
                value = value.model_dump()
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = _deep_merge(data[key], value)
            else:
                data[key] = value
        return OPUConfig.model_validate(data)

    def with_outputs(self, n_outputs: int) -> OPUConfig:
        """Copy whose camera ROI is a centred rectangle of exactly ``n_outputs`` pixels."""
        roi = centred_roi(n_outputs, self.camera.sensor_height_px, self.camera.sensor_width_px)
        return self.replace(camera={"roi": roi.model_dump()})


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def ideal(seed: int = 0, n_outputs: int = 4096) -> OPUConfig:
    """Noiseless device: float32 detector (no quantization, no clipping), static medium.

    Frames equal ``photons_per_mirror_us * exposure_us * QE * K * |Bx|^2`` exactly.
    """
    camera = CameraConfig(
        shot_noise=False,
        bit_depth=None,
        full_well_e=1e30,
        gain_dn_per_e=1.0,
        quantum_efficiency=1.0,
    )
    return OPUConfig(seed=seed, camera=camera).with_outputs(n_outputs)


def noiseless(seed: int = 0, n_outputs: int = 4096) -> OPUConfig:
    """:func:`realistic` with every noise source off and a static medium, same 8-bit ADC and black level:
    frames are the quantized expected values (what ``set_noise(False)`` gives, as a config that
    ``drivers.connect("sim:PATH.json")`` can load, unlike :func:`ideal`'s float detector)."""
    return realistic(seed, n_outputs).replace(
        camera={"shot_noise": False, "read_noise_e": 0.0, "dark_current_e_per_s": 0.0, "prnu_rel": 0.0,
                "dsnu_e": 0.0},
        laser={"power_fluctuation_rel": 0.0},
        medium={"drift_time_constant_s": None},
    )


def realistic(
    seed: int = 0,
    n_outputs: int | None = None,
    full_size: bool = False,
    medium_kind: Literal["iid", "structured"] | None = None,
) -> OPUConfig:
    """The documented default device (values and sources in docs/physics.md, "Presets").

    ``n_outputs`` (default 4096) is the size of a centred camera ROI. ``full_size=True`` gives the
    whole 1080 x 1920 sensor as the ROI (m = 2,073,600; the full 912 x 1140 DMD is always there) and
    the structured medium unless ``medium_kind`` says otherwise.
    """
    if full_size and n_outputs is not None:
        raise ConfigError(
            f"realistic(full_size=True) uses the whole sensor; do not also pass n_outputs={n_outputs}"
        )
    kind = medium_kind or ("structured" if full_size else "iid")
    camera = CameraConfig(
        exposure_us=400.0,
        frame_time_us=500.0,
        quantum_efficiency=0.6,
        shot_noise=True,
        dark_current_e_per_s=50.0,
        read_noise_e=2.4,
        full_well_e=10_500.0,
        gain_dn_per_e=0.025,
        black_level_dn=8.0,
        prnu_rel=0.01,
        dsnu_e=10.0,
        bit_depth=8,
    )
    cfg = OPUConfig(
        seed=seed,
        medium=MediumConfig(kind=kind, drift_time_constant_s=3600.0, drift_step_s=10.0),
        laser=LaserConfig(photons_per_mirror_us=5.0e-3, power_fluctuation_rel=0.005),
        camera=camera,
    )
    if full_size:
        return cfg.replace(camera={"roi": full_sensor_roi(cfg.camera).model_dump()})
    return cfg.with_outputs(4096 if n_outputs is None else n_outputs)


def full_sensor_roi(camera: CameraConfig) -> Roi:
    """The ROI covering the whole sensor of ``camera``."""
    return Roi(row=0, col=0, height_px=camera.sensor_height_px, width_px=camera.sensor_width_px)
