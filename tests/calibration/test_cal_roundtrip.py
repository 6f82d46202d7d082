"""Round trip: calibrate simulated devices with known parameters and recover them.

Tolerances (issue 5): K 3 %, read noise 10 %, saturation capacity 5 %, decorrelation time 15 %. The
quick plan's statistical errors are about 1 % (K), 2 % (read noise), 1 % (saturation) and 5-8 %
(tau), so the tolerances are 3 sigma or more; the seeds are fixed.
"""

from __future__ import annotations

import pytest
from cal_grid import GRID, assert_consistent, true_saturation_e


@pytest.mark.parametrize("name", list(GRID))
def test_recovers_known_parameters(calibrated, name):
    cfg, rep, _ = calibrated(name)
    c = cfg.camera
    assert rep.complete and rep.error is None
    ptc, dark = rep.photon_transfer, rep.dark
    k = ptc.system_gain_dn_per_e.value
    assert k == pytest.approx(c.system_gain_dn_per_e, rel=0.03)
    # the reported uncertainty is honest: within 4 standard errors of the truth
    assert abs(k - c.system_gain_dn_per_e) < 4 * ptc.system_gain_dn_per_e.uncertainty + 0.005 * k
    assert dark.read_noise_e.bound is None
    assert dark.read_noise_e.value == pytest.approx(c.read_noise_e, rel=0.10)
    assert ptc.saturation_capacity_e.value == pytest.approx(true_saturation_e(cfg), rel=0.05)
    adc_limited = (c.adc_max_dn - c.black_level_dn) / c.system_gain_dn_per_e < c.full_well_e
    assert ptc.saturation_limited_by == ("adc" if adc_limited else "full_well")
    assert dark.black_level_dn.value == pytest.approx(c.black_level_dn, abs=0.3)
    # QE x flux: the only observable product
    qe_flux = c.quantum_efficiency * cfg.laser.photons_per_mirror_us
    assert ptc.responsivity_e_per_mirror_us.value == pytest.approx(qe_flux, rel=0.06)
    laser = ptc.laser_fluctuation_rel
    if cfg.laser.power_fluctuation_rel > 0:
        assert laser.bound is None
        assert laser.value == pytest.approx(cfg.laser.power_fluctuation_rel, rel=0.25)
    else:
        assert laser.value < 0.003
    tau = rep.stability.decorrelation_time_s
    if cfg.medium.drift_time_constant_s is None:
        assert tau.bound == "lower"
    else:
        assert tau.bound is None
        assert tau.value == pytest.approx(cfg.medium.drift_time_constant_s, rel=0.15)


def test_dark_current_and_dsnu(calibrated):
    cfg, rep, _ = calibrated("8bit_adc_boost")
    d = rep.dark
    assert d.boost_gain_db == 24.0  # sigma_y.dark is 0.06 DN at 0 dB: measured at 24 dB
    assert d.dark_current_e_per_s.value == pytest.approx(cfg.camera.dark_current_e_per_s, rel=0.25)
    # DSNU at 24 dB: pixels clipped at 0 DN are left out, which narrows the spread (docs/calibration.md)
    assert d.dsnu_e.value == pytest.approx(cfg.camera.dsnu_e, rel=0.2)


def test_linear_snr_reported_for_both_schemes(calibrated):
    _, rep, _ = calibrated("10bit_fullwell")
    ls = rep.linear_snr
    assert [s.scheme for s in ls.schemes] == ["anchor", "complement"]
    for s in ls.schemes:
        assert s.frames_per_signed == 4
        assert s.best_exposure_us is not None and not s.saturated[s.exposures_us.index(s.best_exposure_us)]
        # brighter unsaturated exposures have more photons per projection: SNR grows with exposure
        ok = [snr for snr, sat in zip(s.snr, s.saturated, strict=True) if not sat]
        assert ok[-1] > ok[0]


@pytest.mark.parametrize("name", list(GRID))
def test_calibrated_prnu_and_dsnu_match_the_configuration(calibrated, name):
    """PRNU and DSNU figures agree with the configured maps within their stated bounds."""
    cfg, rep, _ = calibrated(name)
    c = cfg.camera
    prnu = rep.prnu.prnu_rel
    assert_consistent(prnu, c.prnu_rel, what=f"PRNU of {name}")
    if prnu.bound == "upper":  # the quick plan's speckle averaging limit: a bound, but a useful one
        assert prnu.value < 10 * c.prnu_rel
    d = rep.dark
    gain_db = d.boost_gain_db if d.boost_gain_db is not None else c.analog_gain_db
    k = c.gain_dn_per_e * 10 ** (gain_db / 20)
    dsnu_dn = d.boost_dsnu_dn if d.boost_gain_db is not None else d.dsnu_dn
    # DN and electrons: the same map; the 0 DN floor narrows the spread a little (docs/calibration.md)
    assert_consistent(dsnu_dn, k * c.dsnu_e, rel=0.15, what=f"DSNU (DN) of {name}")
    assert_consistent(d.dsnu_e, c.dsnu_e, rel=0.15, what=f"DSNU (e-) of {name}")


@pytest.mark.parametrize("name", list(GRID))
def test_twin_camera_gain_and_dark_figures_are_the_devices(calibrated, name):
    """The twin's camera at the device's own analog gain: its base gain times 10^(gain/20) is the
    configured system gain (a twin of a device calibrated at 6 dB would be off 4x if the gain were
    applied the wrong way), and its dark figures are the configured ones."""
    from host.calibration import build_twin

    cfg, rep, _ = calibrated(name)
    c, t = cfg.camera, build_twin(rep).camera
    assert t.analog_gain_db == c.analog_gain_db
    assert t.gain_dn_per_e == pytest.approx(c.gain_dn_per_e, rel=0.03)
    assert t.gain_dn_per_e * 10 ** (t.analog_gain_db / 20) == pytest.approx(c.system_gain_dn_per_e, rel=0.03)
    assert t.black_level_dn == pytest.approx(c.black_level_dn, abs=0.3)
    assert t.read_noise_e == pytest.approx(c.read_noise_e, rel=0.10)
