"""The digital twin: an ``opu.OPUConfig`` whose camera, laser and medium carry the fitted figures.

Only QE x photon flux is observable without a calibrated light source: the twin takes the documented
:data:`QE_ASSUMED` and the flux that reproduces the measured responsivity. Figures known only as an
upper bound (read noise below quantization, PRNU below the speckle-averaging limit, laser fluctuation
below the shot noise) enter at half their bound; an unseen drift leaves the twin's medium static.
"""

from __future__ import annotations

import opu

from .report import CalibrationReport, Figure

#: quantum efficiency written into the twin (the default preset's value; only QE x flux is measured)
QE_ASSUMED = 0.6


def _val(f: Figure | None, default: float = 0.0) -> float:
    if f is None or f.value is None:
        return default
    return max(f.value * (0.5 if f.bound == "upper" else 1.0), 0.0)


def build_twin(report: CalibrationReport, seed: int = 12345) -> opu.OPUConfig:
    """The twin configuration (raises ValueError when the photon transfer stage is missing)."""
    ptc, dark = report.photon_transfer, report.dark
    if ptc is None or dark is None or ptc.system_gain_dn_per_e.value is None:
        raise ValueError("a twin needs the dark and photon-transfer results; this report has none")
    st = report.settings
    gain_db = float(st["analog_gain_db"])
    k = ptc.system_gain_dn_per_e.value
    adc_max = 2 ** int(st["bit_depth"]) - 1
    black = _val(dark.black_level_dn)
    t_us = float(st["exposure_us"])
    dark_current = _val(dark.dark_current_e_per_s)
    if ptc.saturation_limited_by == "full_well" and ptc.saturation_capacity_e.value is not None:
        full_well = ptc.saturation_capacity_e.value + dark_current * t_us * 1e-6
    else:  # the ADC clips first: the well is not observable, put it just beyond the ADC range
        full_well = 1.05 * (adc_max - black) / k
    roi = st["camera_roi"]
    iroi = st["input_roi"]
    camera = opu.CameraConfig(
        sensor_height_px=max(1080, roi["row"] + roi["height_px"]),
        sensor_width_px=max(1920, roi["col"] + roi["width_px"]),
        roi=opu.Roi(**roi), exposure_us=t_us, frame_time_us=float(st["frame_time_us"]),
        quantum_efficiency=QE_ASSUMED, shot_noise=True, dark_current_e_per_s=dark_current,
        read_noise_e=_val(dark.read_noise_e), full_well_e=full_well,
        gain_dn_per_e=k / 10 ** (gain_db / 20), analog_gain_db=gain_db, black_level_dn=black,
        prnu_rel=min(_val(report.prnu.prnu_rel if report.prnu else None), 0.5),
        dsnu_e=_val(dark.dsnu_e), bit_depth=int(st["bit_depth"]),
    )
    tau = report.stability.decorrelation_time_s if report.stability else None
    tau_s = None  # a lower bound (no decay seen) leaves the medium static
    if tau is not None and tau.value and tau.bound != "lower":
        tau_s = tau.value * (0.5 if tau.bound == "upper" else 1.0)  # an upper bound enters at half
    medium = opu.MediumConfig(
        drift_time_constant_s=tau_s, drift_step_s=min(10.0, tau_s / 100) if tau_s else 1.0,
        speckle_grain_px=min(_val(ptc.speckle_grain_px), 16.0),
    )
    laser = opu.LaserConfig(
        photons_per_mirror_us=_val(ptc.responsivity_e_per_mirror_us) / QE_ASSUMED,
        power_fluctuation_rel=min(_val(ptc.laser_fluctuation_rel), 0.5),
    )
    dmd = opu.DMDConfig(roi_row=iroi["row"], roi_col=iroi["col"], roi_height_mirrors=iroi["height_mirrors"],
                        roi_width_mirrors=iroi["width_mirrors"],
                        macro_pixel_mirrors=int(st["macro_pixel_mirrors"]))
    return opu.OPUConfig(seed=seed, dmd=dmd, medium=medium, laser=laser, camera=camera)
