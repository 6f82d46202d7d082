"""Test doubles for the calibration unit tests: a toy device and a hand-made report with known figures.

:class:`ToyDevice` implements the part of ``drivers.Device`` the calibration stages use (settings,
configure, acquire, status, wait) with frames from a function the test writes, so a stage can be run
on a device whose behaviour is exactly known (a signal that does not grow with exposure, light that
only a smaller macro-pixel tames, ...). :func:`synthetic_report` is a complete
:class:`CalibrationReport` whose every figure the tests choose.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np

from drivers import DeviceSettings, SaturationWarning
from host.calibration import make_plan
from host.calibration.report import (
    CalibrationReport,
    DarkResult,
    LinearSNRResult,
    NoiseCheckResult,
    PhotonTransferResult,
    PRNUResult,
    SchemeSNR,
    StabilityResult,
    fig,
)


class ToyDevice:
    """Frames ``frames(settings, patterns, rng) -> (b, m)`` DN, rounded and clipped to [0, ADC max].

    ``log`` holds the settings after every ``configure``; ``warn_saturation`` makes ``acquire`` emit a
    :class:`drivers.SaturationWarning` when a frame touches the ADC maximum (as the real driver does).
    """

    resource = "toy"

    def __init__(self, frames, seed: int = 0, warn_saturation: bool = False, **settings) -> None:
        self._settings = DeviceSettings.model_validate({**DeviceSettings().model_dump(), **settings})
        self.frames_fn = frames
        self.rng = np.random.default_rng(seed)
        self.warn_saturation = warn_saturation
        self.log: list[DeviceSettings] = []
        self.frames_acquired = 0
        self.device_time_s = 0.0

    @property
    def settings(self) -> DeviceSettings:
        return self._settings

    @property
    def n_features(self) -> int:
        return self._settings.n_features

    def configure(self, settings: DeviceSettings | None = None, **changes) -> DeviceSettings:
        base = settings if settings is not None else self._settings
        self._settings = DeviceSettings.model_validate({**base.model_dump(), **changes})
        self.log.append(self._settings)
        return self._settings

    def acquire(self, patterns, progress=None) -> np.ndarray:
        x = np.asarray(patterns, dtype=np.uint8)
        st = self._settings
        y = np.asarray(self.frames_fn(st, x, self.rng), dtype=np.float64)
        y = np.clip(np.round(y), 0, st.adc_max_dn)
        if self.warn_saturation and (y >= st.adc_max_dn).any():
            warnings.warn("frames clipped (toy)", SaturationWarning, stacklevel=2)
        self.frames_acquired += len(x)
        self.device_time_s += len(x) * st.frame_time_us * 1e-6
        return y.astype(st.frame_dtype)

    def status(self) -> SimpleNamespace:
        return SimpleNamespace(device_time_s=self.device_time_s, frames_total=self.frames_acquired)

    def wait(self, seconds: float) -> None:
        self.device_time_s += seconds


# --------------------------------------------------------------------------- a report with known figures

SETTINGS = DeviceSettings.model_validate({
    **DeviceSettings().model_dump(), "analog_gain_db": 6.0, "bit_depth": 10, "exposure_us": 400.0,
    "frame_time_us": 500.0, "macro_pixel_mirrors": 4, "n_features": 1024,
    "camera_roi": {"row": 100, "col": 200, "height_px": 32, "width_px": 48},
    "input_roi": {"row": 8, "col": 16, "height_mirrors": 400, "width_mirrors": 600},
})


def synthetic_report(**changes) -> CalibrationReport:
    """A complete report with chosen figures (K = 0.2 DN/e- at 6 dB, full-well-limited, tau 300 s)."""
    plan = make_plan(quick=True)
    dark = DarkResult(
        exposures_us=[100.0, 400.0, 10_000.0, 50_000.0], mean_dn=[20.0, 20.01, 20.2, 21.0],
        temporal_var_dn2=[0.2, 0.21, 0.25, 0.4],
        black_level_dn=fig(20.012, 0.0101, "DN", note="intercept of mean dark value vs exposure"),
        sigma_y_dark_dn=fig(0.458, 0.0032, "DN"), dsnu_dn=fig(0.35, 0.012, "DN"),
        boost_gain_db=24.0, boost_exposures_us=[100.0, 400.0, 10_000.0, 50_000.0],
        boost_mean_dn=[21.0, 21.1, 22.0, 25.0], boost_temporal_var_dn2=[2.0, 2.1, 2.6, 4.5],
        boost_dsnu_dn=fig(2.9, 0.1, "DN", note="at 24 dB"),
        read_noise_e=fig(3.1, 0.06, "e-"), dark_current_e_per_s=fig(48.0, 4.0, "e-/s"),
        dsnu_e=fig(9.5, 0.4, "e-"),
    )
    x = np.array([0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 400.0])
    ptc = PhotonTransferResult(
        macro_pixel_mirrors=4, lit_mirrors=2048, exposures_us=[10.0, 100.0, 1000.0],
        bin_signal_dn=x.tolist(), bin_var_dn2=(0.2 * x + 0.3).tolist(),
        bin_var_se_dn2=(0.01 * x + 0.01).tolist(),
        bin_count=[50] * 10, fit_max_signal_dn=560.0,
        system_gain_dn_per_e=fig(0.2, 0.002, "DN/e-"), inverse_gain_e_per_dn=fig(5.0, 0.05, "e-/DN"),
        ptc_offset_dn2=fig(0.3, 0.02, "DN^2"), saturation_dn=fig(800.0, 1.5, "DN"),
        saturation_capacity_e=fig(4000.0, 40.0, "e-"), saturation_limited_by="full_well",
        snr_max=fig(63.25, 0.3, "1"), linearity_levels_pct=[10.0, 30.0, 50.0, 70.0, 90.0],
        linearity_deviation_pct=[0.1, -0.2, 0.05, 0.3, -0.4],
        linearity_error_min_pct=fig(-0.4, 0.1, "%"), linearity_error_max_pct=fig(0.3, 0.1, "%"),
        laser_fluctuation_rel=fig(0.012, 0.001, "1"),
        responsivity_e_per_mirror_us=fig(0.003, 0.0001, "e-/(mirror us)"),
        speckle_grain_px=fig(1.5, None, "px"), exposure_level_dn_per_us=0.5,
    )
    prnu = PRNUResult(patterns=256, exposure_us=475.0, prnu_rel=fig(0.03, 0.004, "1"))
    schemes = [
        SchemeSNR(scheme="anchor", frames_per_signed=4, exposures_us=[50.0, 400.0, 900.0],
                  snr=[20.0, 80.0, 60.0], saturated=[False, False, True], best_exposure_us=400.0,
                  snr_at_operating=fig(80.0, 2.0, "1"), snr_best=fig(80.0, 2.0, "1")),
        SchemeSNR(scheme="complement", frames_per_signed=4, exposures_us=[50.0, 400.0, 900.0],
                  snr=[15.0, 70.0, 90.0], saturated=[False, False, False], best_exposure_us=900.0,
                  snr_at_operating=fig(70.0, 2.0, "1"), snr_best=fig(90.0, 3.0, "1")),
    ]
    linear = LinearSNRResult(n_features=64, vectors=8, repeats=6, operating_exposure_us=400.0,
                             schemes=schemes)
    stability = StabilityResult(
        times_s=[0.02, 1.0, 2.0, 4.0, 8.0], correlation=[0.95, 0.94, 0.93, 0.9, 0.86],
        correlation_se=[0.002, 0.002, 0.002, 0.003, 0.003], repeat_correlation=0.95,
        decorrelation_time_s=fig(300.0, 20.0, "s"), intensity_decorrelation_time_s=fig(150.0, 10.0, "s"),
    )
    noise = NoiseCheckResult(exposure_us=400.0, patterns=4, repeats=8, pixels=1536, varying_fraction=0.9,
                             max_temporal_var_dn2=30.0, mean_signal_dn=120.0, dark_mean_dn=20.0,
                             dark_spatial_std_dn=0.4, measurable=True, note="noise is measurable")
    fields = dict(
        date="2024-05-01T12:00:00+00:00", complete=True, stages_completed=["probe", "noise_check", "dark"],
        resource="sim:test", identity={"manufacturer": "ACME", "model": "OPU-1", "serial": "42",
                                       "firmware": "1.2", "is_simulated": True},
        settings=SETTINGS.model_dump(), plan=plan.model_dump(), budget=plan.budget(), frames_used=2400,
        device_time_s=12.34, wall_time_s=5.67, quantum_efficiency_assumed=0.6, noise_check=noise,
        dark=dark, photon_transfer=ptc, prnu=prnu, linear_snr=linear, stability=stability,
    )
    fields.update(changes)
    return CalibrationReport(**fields)
