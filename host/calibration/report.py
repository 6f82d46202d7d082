"""The calibration report: a pydantic record of every figure with its unit and uncertainty.

``calibration.json`` is :meth:`CalibrationReport.model_dump_json`. A report whose run was cut short
(device dropped out, ...) keeps the stages it finished and has ``complete = False`` and ``error``.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Figure(BaseModel):
    """One measured figure: ``value`` ± ``uncertainty`` (one standard error) in ``unit``.

    ``value`` is None when the data cannot give it (then ``note`` says why); ``bound`` is 'upper'
    or 'lower' when ``value`` is only a 95 % bound.
    """

    model_config = ConfigDict(extra="forbid")
    value: float | None
    uncertainty: float | None = None
    unit: str
    bound: str | None = None
    note: str = ""

    @field_validator("value", "uncertainty", mode="before")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        if v is None:
            return None
        v = float(v)
        return v if math.isfinite(v) else None

    def __str__(self) -> str:
        if self.value is None:
            return f"n/a ({self.note})" if self.note else "n/a"
        prefix = {"upper": "< ", "lower": "> "}.get(self.bound or "", "")
        unc = f" ± {_fmt(self.uncertainty)}" if self.uncertainty is not None and not self.bound else ""
        unit = "" if self.unit == "1" else f" {self.unit}"
        return f"{prefix}{_fmt(self.value)}{unc}{unit}"


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    if x == 0:
        return "0"
    a = abs(x)
    return f"{x:.4g}" if 1e-3 <= a < 1e5 else f"{x:.3e}"


def fig(value: float | None, uncertainty: float | None, unit: str, **kw: Any) -> Figure:
    return Figure(value=value, uncertainty=uncertainty, unit=unit, **kw)


def sqrt_of_variance(v: float, v_se: float, note: str, bound_note: str) -> Figure:
    """sqrt(v) (unit "1") of a variance estimate v with standard error v_se.

    Above 2 standard errors: the value with the delta-method error v_se / (2 sqrt v). Otherwise the
    data cannot tell sqrt(v) from 0: an upper bound sqrt(max(v, 0) + 2 v_se) instead (used for the
    PRNU, a covariance of two halves, and the laser fluctuation, an excess variance).
    """
    if v > 2 * v_se:
        val = math.sqrt(v)
        return fig(val, v_se / (2 * val), "1", note=note)
    return fig(math.sqrt(max(v, 0.0) + 2 * v_se), None, "1", bound="upper", note=bound_note)


class Budget(BaseModel):
    """Frames and device time planned before measuring (upper estimates for the exposure-dependent parts)."""

    model_config = ConfigDict(extra="forbid")
    frames_by_stage: dict[str, int]
    frames_total: int
    max_wait_s: float
    seconds_at_2khz: float = Field(description="frames at 2 kHz (500 us frames) + waits, seconds")
    predicted_gain_rel_precision: float


class NoiseCheckResult(BaseModel):
    """Repeats of fixed patterns and of the dark frame: does any pixel vary (noise_check.py)?"""

    model_config = ConfigDict(extra="forbid")
    exposure_us: float
    patterns: int
    repeats: int
    pixels: int
    varying_fraction: float = Field(description="fraction of (pattern, pixel) values changing over repeats")
    max_temporal_var_dn2: float
    mean_signal_dn: float
    dark_mean_dn: float
    dark_spatial_std_dn: float
    measurable: bool
    note: str


class DarkResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exposures_us: list[float]
    mean_dn: list[float]
    temporal_var_dn2: list[float]
    black_level_dn: Figure
    sigma_y_dark_dn: Figure
    dsnu_dn: Figure
    boost_gain_db: float | None = Field(None, description="analog gain of the read-noise measurement")
    boost_exposures_us: list[float] = []
    boost_mean_dn: list[float] = []
    boost_temporal_var_dn2: list[float] = []
    boost_dsnu_dn: Figure | None = None
    read_noise_e: Figure | None = None
    dark_current_e_per_s: Figure | None = None
    dsnu_e: Figure | None = None


class PhotonTransferResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    macro_pixel_mirrors: int
    lit_mirrors: int
    exposures_us: list[float]
    bin_signal_dn: list[float] = Field(description="mu_y - mu_y.dark per bin")
    bin_var_dn2: list[float] = Field(description="temporal variance sigma_y^2 per bin")
    bin_var_se_dn2: list[float]
    bin_count: list[int]
    fit_max_signal_dn: float
    system_gain_dn_per_e: Figure
    inverse_gain_e_per_dn: Figure
    ptc_offset_dn2: Figure
    saturation_dn: Figure
    saturation_capacity_e: Figure
    saturation_limited_by: str = Field(description="'adc' or 'full_well'")
    snr_max: Figure
    dynamic_range_db: Figure | None = None
    linearity_levels_pct: list[float]
    linearity_deviation_pct: list[float]
    linearity_error_min_pct: Figure
    linearity_error_max_pct: Figure
    laser_fluctuation_rel: Figure
    responsivity_e_per_mirror_us: Figure
    speckle_grain_px: Figure
    exposure_level_dn_per_us: float = Field(description="mean signal of the PTC patterns per us")


class PRNUResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patterns: int
    exposure_us: float
    prnu_rel: Figure


class StabilityResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    times_s: list[float]
    correlation: list[float]
    correlation_se: list[float]
    repeat_correlation: float
    decorrelation_time_s: Figure
    intensity_decorrelation_time_s: Figure


class SchemeSNR(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scheme: str
    frames_per_signed: int
    exposures_us: list[float]
    snr: list[float]
    saturated: list[bool]
    best_exposure_us: float | None
    snr_at_operating: Figure
    snr_best: Figure


class LinearSNRResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_features: int
    vectors: int
    repeats: int
    operating_exposure_us: float
    schemes: list[SchemeSNR]


class CalibrationReport(BaseModel):
    """Everything ``opu calibrate`` measured (``calibration.json``)."""

    model_config = ConfigDict(extra="forbid")
    schema_version: int = 1
    tool: str = "opu calibrate"
    date: str
    complete: bool = False
    error: str | None = None
    stages_completed: list[str] = []
    resource: str
    identity: dict[str, Any]
    settings: dict[str, Any]
    plan: dict[str, Any]
    budget: Budget
    frames_used: int = 0
    device_time_s: float = 0.0
    wall_time_s: float = 0.0
    quantum_efficiency_assumed: float
    photons_per_mirror_us: Figure | None = None
    noise_check: NoiseCheckResult | None = None
    skipped_stages: dict[str, str] = Field(default_factory=dict, description="stage -> why it did not run")
    dark: DarkResult | None = None
    photon_transfer: PhotonTransferResult | None = None
    prnu: PRNUResult | None = None
    linear_snr: LinearSNRResult | None = None
    stability: StabilityResult | None = None
