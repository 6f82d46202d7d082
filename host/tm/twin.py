"""The digital twin of a retrieval: an ``opu.OPUConfig`` (``twin.json``) next to ``tm.npz``.

``drivers.connect("twin:DIR")`` builds a simulated device whose medium is the recovered matrix
(``opu.RecoveredMedium``) and whose camera is this config's. Units: the recovered rows are in
sqrt(DN); the simulator's frame above dark is ``g |B_twin x|^2`` with
``g = photons_per_mirror_us * exposure_us * QE * K``, so the twin's medium is ``B / sqrt(g)`` and
the flux is chosen so that ``E|B_twin|^2`` is the macro-pixel area a (the simulator's law):
``photons_per_mirror_us = mean|B|^2 / (a exposure_us QE K)``.

Camera figures come from a calibration twin (``opu calibrate``'s ``twin.json``) when given, else from
the retrieval's own frames (a small photon-transfer fit on the repeated anchor frames and the dark
frames, :func:`camera_from_frames`). PRNU is set to 0: each pixel's gain is already in its
recovered row. The twin's medium is static unless the calibration twin measured a drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import opu
from host.calibration.twin import QE_ASSUMED

from .plan import PatternLayout
from .result import RecoveredTM


@dataclass(frozen=True)
class CameraEstimate:
    """Camera figures estimated from the retrieval's frames (DN units unless named)."""

    system_gain_dn_per_e: float
    read_noise_e: float
    black_level_dn: float
    dsnu_e: float
    laser_fluctuation_rel: float


def camera_from_frames(frames: np.ndarray, layout: PatternLayout, adc_max_dn: float) -> CameraEstimate:
    """Photon transfer on the repeated frames: temporal variance = c + K mu + s_L^2 mu^2.

    s_L (laser) first, from the spread of the ratio of the pixel sums of two repeats of a pattern
    (the shot-noise part of that spread is subtracted), then (c, K) by least squares on binned means.

    mu is the mean signal above dark of an anchor-difference pattern at a pixel and the variance is
    taken across its repeats (first and second half of the acquisition: drift in between inflates
    K, see docs/tm_retrieval.md). Points within 20 % of the ADC maximum are left out (clipping).
    """
    y = np.asarray(frames, dtype=np.float64)
    dark_f = y[layout.dark]
    dark = dark_f.mean(axis=0)
    var_dark = float(dark_f.var(axis=0, ddof=1).mean())
    reps = np.concatenate([y[layout.anchor_first], y[layout.anchor_last]])  # (R, P, m)
    if reps.shape[0] < 2:
        raise ValueError("the camera fit needs anchor_repeats >= 2")
    sig = reps - dark  # (R, P, m)
    # laser fluctuation: a common factor per frame, seen in the ratio of the pixel sums of two repeats
    # of a pattern (shot noise averages out over the m pixels): var(log ratio) = 2 s_L^2
    tot = sig.sum(axis=2)
    bright = tot.min(axis=0) > 0
    s2 = 0.0
    if bright.sum() > 2:
        lr = np.log(tot[0, bright] / tot[1, bright])
        shot = (reps[:2, bright].var(axis=0, ddof=1).sum(axis=1) / tot[:2, bright].mean(axis=0) ** 2)
        s2 = max(float(np.var(lr) - np.mean(shot) * 2.0) / 2.0, 0.0)
    mu = sig.mean(axis=0)
    var = reps.var(axis=0, ddof=1) - s2 * mu**2
    keep = (reps.max(axis=0) < 0.8 * adc_max_dn) & (mu > 0)
    mu, var = mu[keep], var[keep]
    edges = np.unique(np.quantile(mu, np.linspace(0, 1, 41)))
    idx = np.clip(np.searchsorted(edges, mu, side="right") - 1, 0, edges.size - 2)
    cnt = np.bincount(idx, minlength=edges.size - 1)
    ok = cnt > 10
    mb = np.bincount(idx, mu, minlength=edges.size - 1)[ok] / cnt[ok]
    vb = np.bincount(idx, var, minlength=edges.size - 1)[ok] / cnt[ok]
    design = np.stack([np.ones_like(mb), mb], axis=1)
    _, k = np.linalg.lstsq(design, vb, rcond=None)[0]
    k = float(max(k, 1e-6))
    read_dn2 = max(var_dark - 1.0 / 12.0, 0.0)
    dsnu_dn2 = max(float(dark.var()) - var_dark / dark_f.shape[0], 0.0)
    return CameraEstimate(k, float(np.sqrt(read_dn2) / k), float(np.mean(dark)), float(np.sqrt(dsnu_dn2) / k),
                          float(np.sqrt(max(s2, 0.0))))


def twin_config(tm: RecoveredTM, camera: CameraEstimate | None = None,
                calibration: opu.OPUConfig | None = None, seed: int = 12345) -> opu.OPUConfig:
    """The twin's config at the retrieval's settings (camera from ``calibration`` if given)."""
    st = tm.settings
    gain_db = float(st["analog_gain_db"])
    bits = int(st["bit_depth"])
    adc_max = 2**bits - 1
    roi = st["camera_roi"]
    iroi = st["input_roi"]
    a = int(st["macro_pixel_mirrors"]) ** 2
    t_us = float(st["exposure_us"])
    cam_fields: dict = dict(
        sensor_height_px=max(1080, roi["row"] + roi["height_px"]),
        sensor_width_px=max(1920, roi["col"] + roi["width_px"]),
        roi=opu.Roi(**roi), exposure_us=t_us, frame_time_us=float(st["frame_time_us"]),
        analog_gain_db=gain_db, bit_depth=bits, shot_noise=True, prnu_rel=0.0,
    )
    tau = None
    if calibration is not None:
        c = calibration.camera
        k_sys = c.system_gain_dn_per_e
        cam_fields.update(quantum_efficiency=c.quantum_efficiency,
                          dark_current_e_per_s=c.dark_current_e_per_s,
                          read_noise_e=c.read_noise_e, full_well_e=c.full_well_e,
                          gain_dn_per_e=k_sys / 10 ** (gain_db / 20), black_level_dn=c.black_level_dn,
                          dsnu_e=c.dsnu_e)
        fluct = calibration.laser.power_fluctuation_rel
        tau = calibration.medium.drift_time_constant_s
        step = calibration.medium.drift_step_s
    else:
        if camera is None:
            raise ValueError("twin_config needs a camera estimate or a calibration twin")
        k_sys = camera.system_gain_dn_per_e
        # the twin's black level lies in [0, ADC max]; its full well spans the range above *that* level
        black = min(max(camera.black_level_dn, 0.0), adc_max)
        cam_fields.update(quantum_efficiency=QE_ASSUMED, dark_current_e_per_s=0.0,
                          read_noise_e=camera.read_noise_e,
                          full_well_e=1.05 * max(adc_max - black, 1.0) / k_sys,
                          gain_dn_per_e=k_sys / 10 ** (gain_db / 20),
                          black_level_dn=black, dsnu_e=camera.dsnu_e)
        fluct = min(camera.laser_fluctuation_rel, 0.5)
        step = 1.0
    qe = cam_fields["quantum_efficiency"]
    mean_b2 = float(np.mean(np.abs(tm.matrix) ** 2))
    ppm = mean_b2 / (a * t_us * qe * k_sys)
    dmd = opu.DMDConfig(roi_row=iroi["row"], roi_col=iroi["col"], roi_height_mirrors=iroi["height_mirrors"],
                        roi_width_mirrors=iroi["width_mirrors"],
                        macro_pixel_mirrors=int(st["macro_pixel_mirrors"]))
    return opu.OPUConfig(
        seed=seed, dmd=dmd, camera=opu.CameraConfig(**cam_fields),
        laser=opu.LaserConfig(photons_per_mirror_us=ppm, power_fluctuation_rel=fluct),
        medium=opu.MediumConfig(drift_time_constant_s=tau, drift_step_s=step, speckle_grain_px=0.0),
    )
