"""Simulated devices with known parameters: the round-trip grid of the calibration's proof.

Each entry is a set of changes on ``opu.realistic(seed=7)`` and the stability stage's longest wait;
the tests (tests/calibration) and the accuracy benchmark (bench/calibration.py) calibrate these
devices through ``drivers.connect("sim:PATH")`` and compare the recovered figures with the
configuration (the independent ground truth).
"""

from __future__ import annotations

import opu

#: name -> (config changes on opu.realistic(seed=7), max wait of the stability stage in s)
GRID: dict[str, tuple[dict, float]] = {
    "8bit_adc_boost": (dict(camera={"gain_dn_per_e": 0.025, "read_noise_e": 2.4},
                            laser={"power_fluctuation_rel": 0.005},
                            medium={"drift_time_constant_s": 200.0, "drift_step_s": 1.0}), 900.0),
    "8bit_adc_k005": (dict(camera={"gain_dn_per_e": 0.05, "read_noise_e": 12.0, "full_well_e": 20000.0},
                           laser={"power_fluctuation_rel": 0.01, "photons_per_mirror_us": 0.01},
                           medium={"drift_time_constant_s": 60.0, "drift_step_s": 0.5}), 300.0),
    "10bit_fullwell": (dict(camera={"gain_dn_per_e": 0.1, "read_noise_e": 6.0, "full_well_e": 8000.0,
                                    "bit_depth": 10, "black_level_dn": 20.0},
                            laser={"power_fluctuation_rel": 0.02},
                            medium={"drift_time_constant_s": 100.0, "drift_step_s": 0.5}), 400.0),
    "12bit_gain6db_static": (dict(camera={"gain_dn_per_e": 0.2, "analog_gain_db": 6.0, "read_noise_e": 3.0,
                                          "full_well_e": 9000.0, "bit_depth": 12, "black_level_dn": 40.0},
                                  laser={"power_fluctuation_rel": 0.0},
                                  medium={"drift_time_constant_s": None}), 60.0),
}


def grid_config(name: str) -> opu.OPUConfig:
    """The full configuration of grid device ``name``."""
    changes, _ = GRID[name]
    return opu.realistic(seed=7).replace(**changes)


def true_saturation_e(cfg: opu.OPUConfig) -> float:
    """Photo-electrons at which the output clips: the full well or the ADC, whichever comes first."""
    c = cfg.camera
    dark_e = c.dark_current_e_per_s * c.exposure_us * 1e-6
    return min(c.full_well_e, (c.adc_max_dn - c.black_level_dn) / c.system_gain_dn_per_e) - dark_e
