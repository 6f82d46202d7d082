"""The calibration's bookkeeping, without a device: figures and their text, the summary, the twin built
from a report, the plan and its budget, and the session (ROI, exposure limits, frame accounting).

Expected values come from the documentation (docs/calibration.md, docstrings) and from figures put into
a hand-made report (cal_fakes.synthetic_report); nothing is compared with what the code returned.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from cal_fakes import SETTINGS, ToyDevice, synthetic_report
from pydantic import ValidationError

from drivers import SaturationWarning
from host.calibration import PlanError, build_twin, make_plan, summary_text
from host.calibration.photon_transfer import (
    LASER_MIN_PIXELS,
    LASER_MIN_SIGNAL_FRACTION,
    laser_pattern_usable,
)
from host.calibration.plan import NOISE_CHECK_PATTERNS, NOISE_CHECK_REPEATS, REAL_FRAME_S, CalibrationPlan
from host.calibration.report import Budget, Figure, _fmt, fig, sqrt_of_variance
from host.calibration.session import MAX_EXPOSURE_US, MIN_EXPOSURE_US, Session, half_lit_patterns
from host.calibration.summary import budget_text
from host.calibration.twin import QE_ASSUMED

# --------------------------------------------------------------------------- figures and their text


@pytest.mark.parametrize("x, text", [
    (None, "?"), (0, "0"), (0.0, "0"), (1e-3, "0.001"), (-1e-3, "-0.001"), (9.99e-4, "9.990e-04"),
    (123.456, "123.5"), (99_990.0, "9.999e+04"), (1e5, "1.000e+05"), (-2.5e7, "-2.500e+07"),
    (0.012345, "0.01235"),
])
def test_fmt_uses_four_significant_digits_between_1e_3_and_1e5(x, text):
    assert _fmt(x) == text


def test_figure_text():
    assert str(fig(2.5, 0.1, "DN")) == "2.5 ± 0.1 DN"
    assert str(fig(0.03, 0.004, "1")) == "0.03 ± 0.004"  # dimensionless: no unit
    assert str(fig(2.5, None, "e-")) == "2.5 e-"
    assert str(fig(0.5, 0.1, "e-", bound="upper")) == "< 0.5 e-"  # a bound has no ± part
    assert str(fig(300.0, None, "s", bound="lower")) == "> 300 s"
    assert str(fig(None, None, "DN", note="not reached")) == "n/a (not reached)"
    assert str(fig(None, None, "DN")) == "n/a"


def test_figure_keeps_only_finite_numbers():
    f = fig(math.inf, math.nan, "DN")
    assert f.value is None and f.uncertainty is None
    f = fig(np.float32(1.5), np.int64(2), "DN")
    assert (f.value, f.uncertainty) == (1.5, 2.0) and type(f.value) is float
    with pytest.raises(ValidationError):
        Figure(value=1.0, unit="DN", colour="red")


# --------------------------------------------------------------------------- summary


def _line(name, value_text):
    return f"  {name:<34s} {value_text}"


def test_sqrt_of_variance_value_and_upper_bound():
    """sqrt(v) with the delta-method error se(v) / (2 sqrt v) above 2 standard errors; at or below
    them the upper bound sqrt(max(v, 0) + 2 se), without an uncertainty."""
    f = sqrt_of_variance(0.04, 0.001, note="n", bound_note="b")
    assert (f.value, f.unit, f.bound, f.note) == (pytest.approx(0.2), "1", None, "n")
    assert f.uncertainty == pytest.approx(0.001 / (2 * 0.2))
    for v, se in ((0.002, 0.001), (0.0019, 0.001), (-0.003, 0.001), (0.0, 0.0)):
        b = sqrt_of_variance(v, se, note="n", bound_note="b")
        assert (b.uncertainty, b.bound, b.note) == (None, "upper", "b")
        assert b.value == pytest.approx(math.sqrt(max(v, 0.0) + 2 * se))
    # just above the 2-standard-error threshold: the value
    assert sqrt_of_variance(0.0021, 0.001, note="n", bound_note="b").bound is None


def test_laser_estimate_takes_patterns_with_enough_bright_unsaturated_pixels():
    assert LASER_MIN_PIXELS == 17 and LASER_MIN_SIGNAL_FRACTION == 0.05
    assert laser_pattern_usable(17, 17 * 6.0, 100.0)
    assert not laser_pattern_usable(16, 16 * 6.0, 100.0)  # too few pixels
    assert not laser_pattern_usable(17, 17 * 5.0, 100.0)  # mean exactly 5 % of saturation: too dim
    assert laser_pattern_usable(17, 17 * 5.01, 100.0)
    assert not laser_pattern_usable(400, 0.0, 100.0) and not laser_pattern_usable(400, -3.0, 0.0)


def test_summary_text_of_a_complete_report():
    lines = summary_text(synthetic_report()).splitlines()
    assert lines[:5] == [
        "OPU noise calibration (EMVA 1288 linear model) - 2024-05-01T12:00:00+00:00",
        "device  ACME OPU-1 s/n 42 fw 1.2 [sim:test]",
        "status  complete; stages: probe, noise_check, dark",
        "frames  2400 (12.3 s device time, 5.7 s wall)",
        "point   exposure 400 us, 10 bit, gain 6 dB",
    ]
    assert lines[5:] == [
        _line("black level", "20.01 ± 0.0101 DN"),
        _line("temporal dark noise sigma_y.dark", "0.458 ± 0.0032 DN"),
        _line("DSNU", "0.35 ± 0.012 DN"),
        _line("DSNU (e-)", "9.5 ± 0.4 e-"),
        _line("read noise sigma_d", "3.1 ± 0.06 e-"),
        _line("dark current", "48 ± 4 e-/s"),
        _line("system gain K", "0.2 ± 0.002 DN/e-"),
        _line("1/K", "5 ± 0.05 e-/DN"),
        _line("saturation capacity (full_well)", "4000 ± 40 e-"),
        _line("SNR max", "63.25 ± 0.3"),
        _line("linearity error min", "-0.4 ± 0.1 %"),
        _line("linearity error max", "0.3 ± 0.1 %"),
        _line("laser fluctuation (rel. std)", "0.012 ± 0.001"),
        _line("QE x photons per mirror", "0.003 ± 1.000e-04 e-/(mirror us)"),
        _line("speckle grain", "1.5 px"),
        _line("PRNU", "0.03 ± 0.004"),
        _line("decorrelation time tau", "300 ± 20 s"),
        "  linear SNR anchor     at 400 us: 80 ± 2; best 80 ± 2 at 400 us",
        "  linear SNR complement at 400 us: 70 ± 2; best 90 ± 3 at 900 us",
    ]


def test_summary_text_of_an_incomplete_report_without_stages():
    r = synthetic_report(complete=False, error="NoLightError: no light", stages_completed=[], dark=None,
                         photon_transfer=None, prnu=None, linear_snr=None, stability=None)
    text = summary_text(r)
    assert "status  INCOMPLETE: NoLightError: no light; stages: none" in text.splitlines()
    assert len(text.splitlines()) == 5  # no figure rows


def test_summary_text_of_a_noiseless_device():
    base = synthetic_report()
    nc = base.noise_check.model_copy(update={"measurable": False, "note": "no measurable noise: identical"})
    skipped = dict.fromkeys(["dark", "photon_transfer", "prnu", "linear_snr", "stability"], "skipped")
    r = synthetic_report(noise_check=nc, skipped_stages=skipped, dark=None, photon_transfer=None, prnu=None,
                         linear_snr=None, stability=None)
    lines = summary_text(r).splitlines()
    assert lines[5:] == ["noise   no measurable noise: identical",
                         "        not run: dark, photon_transfer, prnu, linear_snr, stability; no twin.json"]


def test_summary_text_leaves_out_missing_figures_and_says_when_all_saturated():
    r = synthetic_report()
    r.dark.dsnu_e = None
    r.dark.read_noise_e = None
    sc = r.linear_snr.schemes[0]
    sc.best_exposure_us = None
    sc.snr_best = fig(None, None, "1", note="every exposure saturated")
    lines = summary_text(r).splitlines()
    assert not any(line.startswith(("  DSNU (e-)", "  read noise")) for line in lines)
    assert ("  linear SNR anchor     at 400 us: 80 ± 2; best n/a (every exposure saturated) "
            "at none unsaturated") in lines


def test_budget_text():
    b = Budget(frames_by_stage={"probe": 40, "dark": 64}, frames_total=104, max_wait_s=900.0,
               seconds_at_2khz=952.3, predicted_gain_rel_precision=0.01126)
    assert budget_text(b, "sim:x") == (
        "Calibration plan for sim:x: about 104 frames\n  (probe 40, dark 64);\n"
        "  waits up to 900 s of device time; a real 2 kHz device needs about 952 s;\n"
        "  expected gain precision 1.1%")


# --------------------------------------------------------------------------- twin


def test_twin_carries_the_report_figures():
    """docs/calibration.md, "Twin": gain_dn_per_e = K / 10^(g/20), full well = capacity + dark electrons
    when the well limits, QE 0.6 and flux = responsivity / QE, drift tau with step min(10 s, tau/100)."""
    twin = build_twin(synthetic_report(), seed=77)
    c, lz, md, dmd = twin.camera, twin.laser, twin.medium, twin.dmd
    assert twin.seed == 77
    assert c.gain_dn_per_e == pytest.approx(0.2 / 10 ** (6.0 / 20))
    assert c.system_gain_dn_per_e == pytest.approx(0.2)  # K at the operating gain
    assert c.analog_gain_db == 6.0 and c.bit_depth == 10
    assert c.black_level_dn == pytest.approx(20.012)
    assert c.read_noise_e == pytest.approx(3.1) and c.dark_current_e_per_s == pytest.approx(48.0)
    assert c.dsnu_e == pytest.approx(9.5) and c.prnu_rel == pytest.approx(0.03)
    assert c.full_well_e == pytest.approx(4000.0 + 48.0 * 400e-6)
    assert c.quantum_efficiency == QE_ASSUMED == 0.6
    assert c.shot_noise is True
    assert (c.exposure_us, c.frame_time_us) == (400.0, 500.0)
    assert (c.roi.row, c.roi.col, c.roi.height_px, c.roi.width_px) == (100, 200, 32, 48)
    assert (c.sensor_height_px, c.sensor_width_px) == (1080, 1920)
    assert lz.photons_per_mirror_us == pytest.approx(0.003 / 0.6)
    assert lz.power_fluctuation_rel == pytest.approx(0.012)
    assert md.drift_time_constant_s == 300.0 and md.drift_step_s == pytest.approx(3.0)
    assert md.speckle_grain_px == pytest.approx(1.5)
    assert (dmd.roi_row, dmd.roi_col, dmd.roi_height_mirrors, dmd.roi_width_mirrors) == (8, 16, 400, 600)
    assert dmd.macro_pixel_mirrors == 4


def test_twin_flux_is_the_measured_responsivity_over_the_assumed_qe():
    """A responsivity unlike the preset's (0.003 e-/(mirror us) there gives the LaserConfig default flux
    0.005): 0.0042 / 0.6 = 0.007 photons per mirror per us."""
    r = synthetic_report()
    r.photon_transfer.responsivity_e_per_mirror_us = fig(0.0042, 0.0001, "e-/(mirror us)")
    assert build_twin(r).laser.photons_per_mirror_us == pytest.approx(0.007, rel=1e-12)


def test_twin_of_an_adc_limited_device_puts_the_well_beyond_the_adc_range():
    r = synthetic_report()
    r.photon_transfer.saturation_limited_by = "adc"
    assert build_twin(r).camera.full_well_e == pytest.approx(1.05 * (1023 - 20.012) / 0.2)


def test_twin_takes_half_of_upper_bounds_and_caps():
    r = synthetic_report()
    r.dark.read_noise_e = fig(0.8, None, "e-", bound="upper")
    r.prnu.prnu_rel = fig(0.04, None, "1", bound="upper")
    r.photon_transfer.laser_fluctuation_rel = fig(0.002, None, "1", bound="upper")
    r.dark.dark_current_e_per_s = fig(-3.0, 1.0, "e-/s")  # a negative estimate enters as 0
    r.photon_transfer.speckle_grain_px = fig(40.0, None, "px")
    t = build_twin(r)
    assert t.camera.read_noise_e == pytest.approx(0.4)
    assert t.camera.prnu_rel == pytest.approx(0.02)
    assert t.laser.power_fluctuation_rel == pytest.approx(0.001)
    assert t.camera.dark_current_e_per_s == 0.0
    assert t.medium.speckle_grain_px == 16.0
    r.prnu.prnu_rel = fig(0.8, 0.1, "1")
    r.photon_transfer.laser_fluctuation_rel = fig(0.9, 0.1, "1")
    t = build_twin(r)
    assert t.camera.prnu_rel == 0.5 and t.laser.power_fluctuation_rel == 0.5


def test_twin_without_prnu_or_with_an_unseen_drift():
    t = build_twin(synthetic_report(prnu=None))
    assert t.camera.prnu_rel == 0.0
    r = synthetic_report()
    r.stability.decorrelation_time_s = fig(900.0, None, "s", bound="lower")
    t = build_twin(r)
    assert t.medium.drift_time_constant_s is None and t.medium.drift_step_s == 1.0
    t = build_twin(synthetic_report(stability=None))
    assert t.medium.drift_time_constant_s is None and t.medium.drift_step_s == 1.0
    r = synthetic_report()
    r.stability.decorrelation_time_s = fig(5000.0, 100.0, "s")
    assert build_twin(r).medium.drift_step_s == 10.0  # min(10 s, tau / 100)
    # a decay seen in too few points for a fit: an upper bound, which enters at half (as other bounds)
    r.stability.decorrelation_time_s = fig(0.4, None, "s", bound="upper")
    t = build_twin(r)
    assert t.medium.drift_time_constant_s == pytest.approx(0.2)
    assert t.medium.drift_step_s == pytest.approx(0.002)
    r.stability.decorrelation_time_s = fig(0.0, None, "s", bound="lower")  # the data bound nothing
    assert build_twin(r).medium.drift_time_constant_s is None


def test_twin_sensor_grows_to_hold_the_roi():
    settings = dict(synthetic_report().settings)
    settings["camera_roi"] = {"row": 1050, "col": 1900, "height_px": 32, "width_px": 48}
    c = build_twin(synthetic_report(settings=settings)).camera
    assert (c.sensor_height_px, c.sensor_width_px) == (1082, 1948)


def test_twin_needs_the_photon_transfer_and_the_dark_results():
    with pytest.raises(ValueError, match="needs the dark and photon-transfer"):
        build_twin(synthetic_report(photon_transfer=None))
    with pytest.raises(ValueError, match="needs the dark and photon-transfer"):
        build_twin(synthetic_report(dark=None))
    r = synthetic_report()
    r.photon_transfer.system_gain_dn_per_e = fig(None, None, "DN/e-")
    with pytest.raises(ValueError):
        build_twin(r)


# --------------------------------------------------------------------------- plan and budget


def test_quick_and_full_plans_have_the_documented_settings():
    """docs/calibration.md: quick 32x32 ROI, full 64x64; PRNU P = 256 / 1024 patterns; stability waits up
    to 900 / 7200 s from 1 s by sqrt(2), Q = 16 patterns at 6 % of saturation; linear SNR V = 8 vectors of
    n = 64 features; photon transfer on n = 256 features; 24 dB read-noise gain; PRNU k = 4 features of
    16x16 mirrors; dark at 10 ms, 50 ms (and 100 ms in full mode)."""
    q, f = make_plan(quick=True), make_plan()
    assert (q.quick, f.quick) == (True, False)
    assert (q.roi_side_px, f.roi_side_px) == (32, 64)
    assert (q.prnu_patterns, f.prnu_patterns) == (256, 1024)
    assert (q.max_wait_s, f.max_wait_s) == (900.0, 7200.0)
    assert q.dark_exposures_us == (10_000.0, 50_000.0)
    assert f.dark_exposures_us == (10_000.0, 50_000.0, 100_000.0)
    for p in (q, f):
        assert p.ptc_features == 256 and p.boost_gain_db == 24.0
        assert (p.prnu_features_per_pattern, p.prnu_macro_pixel_mirrors, p.prnu_level) == (4, 16, 0.15)
        assert (p.stability_patterns, p.stability_level, p.first_wait_s) == (16, 0.06, 1.0)
        assert p.wait_ratio == pytest.approx(math.sqrt(2))
        assert (p.linear_features, p.linear_vectors) == (64, 8)
        assert p.ptc_dark_repeats == 4
        assert p.gain_precision_rel is None and p.max_frames is None
        # levels: fractions of saturation, increasing, from the dark end to beyond saturation
        for levels in (p.ptc_levels, p.linear_levels):
            assert list(levels) == sorted(set(levels))
        assert p.ptc_levels[0] <= 0.03 and p.ptc_levels[-1] > 2
        assert p.linear_levels[0] >= 0.03 and p.linear_levels[-1] <= 0.4  # "3-40 % of saturation"
    assert q.ptc_levels == (0.03, 0.1, 0.25, 0.5, 1.0, 2.2)  # "levels 0.03 ... 2.2 of saturation"
    assert len(f.ptc_levels) == 10 and f.ptc_levels[0] == 0.02 and f.ptc_levels[-1] == 2.5
    # the repeats grow with the mode
    assert (q.ptc_patterns, q.ptc_repeats, q.dark_repeats, q.linear_repeats) == (4, 12, 8, 6)
    assert (f.ptc_patterns, f.ptc_repeats, f.dark_repeats, f.linear_repeats) == (8, 24, 16, 12)


def _n_waits_by_hand(first, ratio, max_wait):
    """The stability stage's cumulative waits: first x ratio^k, the last one capped at max_wait."""
    n, target = 0, first
    while True:
        n += 1
        if target >= max_wait:
            return n
        target *= ratio


@pytest.mark.parametrize("max_wait", [10.0, 100.0, 900.0, 7200.0, 1000.0])
def test_n_waits_counts_the_geometric_waits(max_wait):
    plan = make_plan(quick=True, max_wait_s=max_wait)
    assert plan.n_waits == _n_waits_by_hand(1.0, math.sqrt(2), max_wait)


def test_zero_wait_is_allowed_and_means_no_waits():
    plan = make_plan(quick=True, max_wait_s=0.0)
    assert plan.max_wait_s == 0.0 and plan.n_waits == 0
    assert plan.budget().frames_by_stage["stability"] == 16 * 2 + 4
    with pytest.raises(PlanError, match="max wait must be >= 0 s"):
        make_plan(quick=True, max_wait_s=-1.0)


@pytest.mark.parametrize("quick", [True, False])
def test_budget_frames_per_stage(quick):
    """Frames per stage from the stage descriptions (docs/calibration.md): noise check 8 repeats of 4
    patterns + 8 darks (40); dark R frames at t_op/4, t_op and the long exposures, at two gains; photon
    transfer P R frames + a dark map per level; PRNU one frame per pattern + R darks; linear SNR 4 frames
    per ternary vector and repeat + 16 calibration frames, per scheme (2) and exposure (levels +
    operating); stability Q frames for the reference, the repeat and each wait + 4 darks; the probe's
    worst case (8 dim steps, test_cal_stages)."""
    p = make_plan(quick=quick)
    b = p.budget()
    e = len(p.ptc_levels)
    expected = {
        "probe": 40,
        "noise_check": 40,
        "dark": 2 * (2 + len(p.dark_exposures_us)) * p.dark_repeats,
        "photon_transfer": e * (p.ptc_patterns * p.ptc_repeats + 4),
        "prnu": p.prnu_patterns + p.dark_repeats,
        "linear_snr": 2 * (len(p.linear_levels) + 1) * (16 + 4 * 8 * p.linear_repeats),
        "stability": 16 * (2 + _n_waits_by_hand(1.0, math.sqrt(2), p.max_wait_s)) + 4,
    }
    assert b.frames_by_stage == expected
    assert NOISE_CHECK_PATTERNS * NOISE_CHECK_REPEATS + NOISE_CHECK_REPEATS == 40
    assert b.frames_total == sum(expected.values())
    assert b.max_wait_s == p.max_wait_s
    long_exposures = 2 * p.dark_repeats * sum(t * 1e-6 - 500e-6 for t in p.dark_exposures_us)
    assert REAL_FRAME_S == 500e-6  # a 2 kHz device
    assert b.seconds_at_2khz == pytest.approx(b.frames_total * 500e-6 + long_exposures + p.max_wait_s)
    assert b.predicted_gain_rel_precision == p.predicted_gain_precision()
    # docs: quick ~2400 frames, full ~9000 (within 20 %)
    assert b.frames_total == pytest.approx(2400 if quick else 9000, rel=0.2)


def test_short_dark_exposures_add_no_time_beyond_the_frame():
    p = make_plan(quick=True).model_copy(update={"dark_exposures_us": (100.0, 20_000.0)})
    b = p.budget()
    assert b.seconds_at_2khz == pytest.approx(b.frames_total * 500e-6 + 2 * 8 * (0.02 - 500e-6) + 900.0)


@pytest.mark.parametrize("quick", [True, False])
def test_predicted_gain_precision_is_the_documented_formula(quick):
    """2 sqrt(v / N), v = (3R - 4)/(R - 1)^2 (the spread of the successive-difference variance, checked
    by Monte Carlo in test_cal_stats), N = 0.35 P m E; docs: K to ~1 % (quick), ~0.3 % (full)."""
    p = make_plan(quick=quick)
    r = p.ptc_repeats
    n = 0.35 * p.ptc_patterns * p.roi_side_px**2 * len(p.ptc_levels)
    v = (3 * r - 4) / (r - 1) ** 2
    assert p.predicted_gain_precision() == pytest.approx(2 * math.sqrt(v / n), rel=1e-12)
    assert p.predicted_gain_precision() == pytest.approx(0.01 if quick else 0.003, rel=0.35)


def test_requested_gain_precision_grows_the_patterns():
    """Var(K) ~ 1 / patterns: the patterns grow by (predicted / requested)^2, rounded up."""
    base = make_plan(quick=True)
    plan = make_plan(quick=True, gain_precision_rel=0.005)
    factor = (base.predicted_gain_precision() / 0.005) ** 2
    assert plan.ptc_patterns == math.ceil(base.ptc_patterns * factor)
    assert plan.predicted_gain_precision() <= 0.005
    assert plan.gain_precision_rel == 0.005
    # a precision the plan already reaches changes nothing
    loose = make_plan(quick=True, gain_precision_rel=0.5)
    assert loose.ptc_patterns == base.ptc_patterns


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_gain_precision_outside_0_1_is_refused(bad):
    with pytest.raises(PlanError, match=r"gain precision must be a relative error in \(0, 1\)"):
        make_plan(quick=True, gain_precision_rel=bad)


def test_max_frames_checks():
    with pytest.raises(PlanError, match="max_frames must be >= 1"):
        make_plan(quick=True, max_frames=0)
    total = make_plan(quick=True).budget().frames_total
    assert make_plan(quick=True, max_frames=total).max_frames == total  # exactly enough
    with pytest.raises(PlanError, match=f"too few frames: this plan needs {total} frames") as info:
        make_plan(quick=True, max_frames=total - 1)
    assert f"at most {total - 1} are allowed" in str(info.value)
    with pytest.raises(PlanError, match=r"a gain precision of 0\.50% needs"):
        make_plan(quick=True, gain_precision_rel=0.005, max_frames=3000)


def test_roi_side_override_and_plan_validation():
    assert make_plan(quick=True, roi_side_px=16).roi_side_px == 16
    assert make_plan(roi_side_px=100).roi_side_px == 100
    with pytest.raises(ValidationError):
        make_plan(quick=True, roi_side_px=2)
    with pytest.raises(ValidationError):
        CalibrationPlan(**{**make_plan(quick=True).model_dump(), "colour": 1})
    with pytest.raises(ValidationError):
        make_plan(quick=True).roi_side_px = 8  # frozen


# --------------------------------------------------------------------------- session


def _frames_by_lit_count(settings, x, rng):
    """Every pixel of a frame reads the number of lit features + 10 (tells patterns apart)."""
    return np.repeat(x.sum(axis=1, keepdims=True).astype(float) + 10.0, settings.camera_roi.n_pixels, axis=1)


def _toy(**settings):
    roi = {"row": 3, "col": 5, "height_px": 41, "width_px": 50}
    return ToyDevice(_frames_by_lit_count, **{"camera_roi": roi, **settings})


def test_session_centres_the_calibration_roi_in_the_operating_roi():
    """row = row0 + (h0 - side) // 2 (integer pixels), col likewise; a side larger than the ROI keeps it."""
    s = Session(_toy(), make_plan(quick=True, roi_side_px=16))
    assert s.roi == {"row": 3 + 12, "col": 5 + 17, "height_px": 16, "width_px": 16}
    assert all(type(v) is int for v in s.roi.values())
    assert s.roi_shape == (16, 16)
    s.configure()
    assert s.dev.settings.camera_roi.model_dump() == s.roi
    big = Session(_toy(), make_plan(quick=True, roi_side_px=64))
    assert big.roi == {"row": 3, "col": 5, "height_px": 41, "width_px": 50}
    assert big.roi_shape == (41, 50)
    assert big.adc_max == 255.0 and big.frames == 0


def test_session_configure_limits_the_exposure_and_grows_the_frame_time():
    dev = _toy(exposure_us=400.0, frame_time_us=500.0)
    s = Session(dev, make_plan(quick=True, roi_side_px=16))
    st = s.configure(exposure_us=0.2)
    assert st.exposure_us == MIN_EXPOSURE_US == 1.0 and st.frame_time_us == 500.0
    st = s.configure(exposure_us=5e6)
    assert st.exposure_us == MAX_EXPOSURE_US == 1e6 and st.frame_time_us == 1e6
    st = s.configure(exposure_us=2000.0, analog_gain_db=12.0)
    assert (st.exposure_us, st.frame_time_us, st.analog_gain_db) == (2000.0, 2000.0, 12.0)
    st = s.configure(exposure_us=100.0)
    assert st.frame_time_us == 500.0  # back to the operating frame time
    st = s.configure(analog_gain_db=3.0)  # no exposure: exposure and frame time untouched
    assert (st.exposure_us, st.frame_time_us) == (100.0, 500.0)
    s.restore()
    assert dev.settings == s.original


class _Bar:
    def __init__(self):
        self.n = 0

    def update(self, n):
        self.n += n


def test_session_frames_shapes_and_progress():
    dev = _toy(n_features=8, input_roi={"row": 0, "col": 0, "height_mirrors": 16, "width_mirrors": 16})
    bar = _Bar()
    s = Session(dev, make_plan(quick=True, roi_side_px=4), bar)
    assert s.bar is bar
    s.configure()
    patterns = np.array([[1, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]], dtype=np.uint8)
    y = s.repeated(patterns, 3)
    assert y.shape == (2, 3, 16) and y.dtype == np.float64
    np.testing.assert_array_equal(y[:, :, 0], [[11, 11, 11], [13, 13, 13]])  # pattern-major
    d = s.dark(5)
    assert d.shape == (5, 16) and (d == 10).all()
    assert s.frames == 11 and bar.n == 11 and dev.frames_acquired == 11
    s.count_frames(7)
    assert s.frames == 18 and bar.n == 18
    assert s.device_time_s() == pytest.approx(11 * 500e-6)


def test_session_acquire_silences_the_saturation_warning():
    dev = ToyDevice(lambda st, x, rng: np.full((len(x), st.camera_roi.n_pixels), 300.0), warn_saturation=True)
    s = Session(dev, make_plan(quick=True, roi_side_px=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = s.acquire(np.zeros((2, dev.n_features), dtype=np.uint8))
    assert not any(issubclass(w.category, SaturationWarning) for w in caught)
    assert (y == 255).all()


@pytest.mark.parametrize("h, w, n", [(912, 1140, 256), (16, 16, 64), (100, 100, 100), (30, 7, 5)])
def test_max_macro_is_the_largest_macro_pixel_that_fits(h, w, n):
    dev = _toy(input_roi={"row": 0, "col": 0, "height_mirrors": h, "width_mirrors": w}, n_features=1)
    m = Session(dev, make_plan(quick=True)).max_macro(n)
    assert (h // m) * (w // m) >= n
    assert (h // (m + 1)) * (w // (m + 1)) < n


def test_half_lit_patterns():
    p = half_lit_patterns(6, 11, seed=3)
    assert p.shape == (6, 11) and p.dtype == np.uint8
    assert (p.sum(axis=1) == 5).all() and set(np.unique(p)) == {0, 1}
    assert len({row.tobytes() for row in p}) == 6
    np.testing.assert_array_equal(p, half_lit_patterns(6, 11, seed=3))
    assert not np.array_equal(p, half_lit_patterns(6, 11, seed=4))


def test_synthetic_settings_are_valid_device_settings():
    """Guard for the fixtures above: the hand-made report's settings are real DeviceSettings."""
    assert SETTINGS.adc_max_dn == 1023 and SETTINGS.macro_pixel_mirrors == 4


def test_grid_devices_are_the_documented_changes_on_the_seed_7_preset():
    """bench/calibration.py and the round-trip tests compare against these configurations: each is
    ``opu.realistic(seed=7)`` with its grid changes, nothing else."""
    import opu
    from host.calibration.reference_devices import GRID, grid_config

    for name, (changes, _) in GRID.items():
        cfg = grid_config(name)
        assert cfg == opu.realistic(seed=7).replace(**changes), name
        assert cfg.seed == 7 and cfg != opu.realistic(seed=8).replace(**changes), name
