"""The calibration stages one by one (probe, dark, photon transfer, PRNU, linear SNR, stability) and the
runner's plan handling, on the in-process simulator with known parameters (16x16 ROI: ~2 s for all
stages) and on small test doubles where a behaviour needs a device the simulator cannot be (a signal
that does not grow with exposure, pixels that randomly read the ADC maximum, ...).

Expected values: the simulator's configuration (opu.realistic(seed=7): K = 0.025 DN/e-, black level
8 DN, read noise 2.4 e-, 8 bit), closed forms of the documented procedures (docs/calibration.md: the
exposures of each stage, the frames of each stage against the plan's budget, standard errors), and
for the stability stage its documented stopping rule and bound.
"""

from __future__ import annotations

import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
from cal_fakes import ToyDevice
from cal_grid import assert_consistent

import opu
from drivers import DriverError
from drivers.sim import SimDevice
from host.calibration import CalibrationAborted, SaturatedDeviceError, build_twin, calibrate, make_plan
from host.calibration.dark import QUANTIZATION_LIMIT_DN2, dark_in_electrons, run_dark
from host.calibration.linear_snr import SCHEMES, run_linear_snr
from host.calibration.noise_check import run_noise_check
from host.calibration.photon_transfer import run_photon_transfer
from host.calibration.prnu import run_prnu
from host.calibration.probe import PROBE_MAX_EXPOSURE_US, Probe, run_probe
from host.calibration.report import DarkResult, fig
from host.calibration.session import Session, half_lit_patterns
from host.calibration.stability import run_stability
from host.calibration.summary import budget_text

# opu.realistic(seed=7): the simulator's ground truth used below
K_TRUE, BLACK, READ_E, QE, FLUX = 0.025, 8.0, 2.4, 0.6, 0.005


class RecordingSim(SimDevice):
    """The in-process simulator, logging the settings after every configure and each linear scheme."""

    def __init__(self, config: opu.OPUConfig) -> None:
        super().__init__(config=config, resource="recording-sim")
        self.log: list = []
        self.schemes: list[str] = []

    def configure(self, settings=None, **changes):
        out = super().configure(settings, **changes)
        self.log.append(out)
        return out

    def linear_transform(self, x, scheme="anchor", **kw):
        self.schemes.append(scheme)
        return super().linear_transform(x, scheme=scheme, **kw)


def _sim(cls=RecordingSim, **changes):
    return cls(opu.realistic(seed=7).replace(**changes)).open()


def _staged_scope(fixture_name, config):
    """Module scope (the stages run once for all their tests), except in mutmut's statistics pass
    (``MUTANT_UNDER_TEST=stats``): mutmut credits a stage function only to the test that first built
    a shared fixture, so there every test builds its own and is recorded as covering the stages."""
    return "function" if os.environ.get("MUTANT_UNDER_TEST") == "stats" else "module"


@pytest.fixture(scope=_staged_scope)
def staged():
    """Every stage once, in the runner's order, on opu.realistic(seed=7) with a 16x16 ROI; per stage the
    frames it took and the settings it configured."""
    dev = _sim()
    plan = make_plan(quick=True, max_wait_s=10.0, roi_side_px=16)
    s = Session(dev, plan)
    out = SimpleNamespace(dev=dev, plan=plan, s=s, frames={}, log={})

    def stage(name, fn, *args):
        f0, n0 = s.frames, len(dev.log)
        res = fn(*args)
        out.frames[name] = s.frames - f0
        out.log[name] = dev.log[n0:]
        return res

    out.probe = stage("probe", run_probe, s)
    out.dark = stage("dark", run_dark, s)
    out.ptc = stage("photon_transfer", run_photon_transfer, s, out.probe)
    k = out.ptc.system_gain_dn_per_e
    dark_in_electrons(out.dark, k.value, k.uncertainty, 0.0, plan.dark_repeats)
    out.sat_dn = out.ptc.saturation_dn.value
    out.resp_dn = out.ptc.responsivity_e_per_mirror_us.value * k.value
    out.prnu = stage("prnu", run_prnu, s, out.sat_dn, out.resp_dn)
    n_schemes = len(dev.schemes)
    out.linear = stage("linear_snr", run_linear_snr, s, out.sat_dn, out.resp_dn)
    out.schemes = dev.schemes[n_schemes:]
    out.stability = stage("stability", run_stability, s, out.probe)
    return out


# --------------------------------------------------------------------------- probe


def test_probe_on_the_simulator(staged):
    p, plan = staged.probe, staged.plan
    assert staged.frames["probe"] <= plan.budget().frames_by_stage["probe"]
    assert p.patterns.shape == (plan.ptc_patterns, plan.ptc_features)
    assert (p.patterns.sum(axis=1) == plan.ptc_features // 2).all()
    assert p.lit_mirrors == (plan.ptc_features // 2) * p.macro_pixel_mirrors**2
    # the ADC clips first on this device: saturation signal = 255 - black level (to the dark current)
    assert p.saturation_signal_dn == pytest.approx(255 - BLACK, abs=2)
    # unit exposure: mean speckle signal = saturation signal; mean signal per us = QE flux K lit mirrors
    rate = QE * FLUX * K_TRUE * p.lit_mirrors
    assert p.unit_exposure_us == pytest.approx(p.saturation_signal_dn / rate, rel=0.15)
    assert p.dark_dn.shape == (16 * 16,) and float(np.median(p.dark_dn)) == pytest.approx(BLACK, abs=1)


def _toy_probe_device(signal, exposure_us, macro, input_side, seed=0):
    """A 16x16-pixel toy whose lit frames add ``signal(settings, rng)`` (m,) DN to a black level of 10 DN
    with 1 DN of read noise; dark frames (no feature lit) are the black level only."""
    def frames(st, x, rng):
        m = st.camera_roi.n_pixels
        y = 10.0 + rng.normal(0.0, 1.0, (len(x), m))
        lit = x.any(axis=1)
        y[lit] += signal(st, rng)[None, :]
        return y

    side = {"row": 0, "col": 0, "height_mirrors": input_side, "width_mirrors": input_side}
    return ToyDevice(frames, seed=seed, exposure_us=exposure_us, frame_time_us=500.0,
                     macro_pixel_mirrors=macro, n_features=256, input_roi=side,
                     camera_roi={"row": 0, "col": 0, "height_px": 16, "width_px": 16})


def test_probe_worst_case_takes_exactly_its_frame_budget():
    """A signal that does not grow with exposure (20 DN whatever the exposure, macro-pixel already the
    largest that fits): the dim search raises the exposure 8 times (2 frames + a new 2-frame dark each)
    and gives up; with the 2 first darks, 2 level frames and the 4 frames of the saturation search the
    probe takes 2 + 2 + 8 x 4 + 4 = 40 frames, the plan's probe budget."""
    dev = _toy_probe_device(lambda st, rng: np.full(st.camera_roi.n_pixels, 20.0), exposure_us=1.0, macro=1,
                            input_side=16)
    plan = make_plan(quick=True, roi_side_px=16)
    s = Session(dev, plan)
    assert s.max_macro(plan.ptc_features) == 1
    p = run_probe(s)
    assert s.frames == 40 == plan.budget().frames_by_stage["probe"]
    exposures = [st.exposure_us for st in dev.log]
    grown = [t for t in exposures if t > 1.0]
    # level 20 / ln 2 = 28.9 DN against a target of 0.4 x 245 DN: x 3.4 per step, below the 0.2 s limit
    assert len(set(grown)) == 8 + 1  # eight dim steps and the saturation search
    assert max(grown[:8]) < PROBE_MAX_EXPOSURE_US
    assert p.macro_pixel_mirrors == 1
    assert p.saturation_signal_dn == pytest.approx(20.0, abs=2.0)


def test_probe_shrinks_the_macro_pixel_when_the_shortest_exposure_still_clips():
    """Light scaling with exposure x macro^2 (exponential speckle, 16 DN per us per mirror^2 on average):
    at 1 us with 4x4 mirrors 38 % of the pixels clip, with 2x2 about 2 %: the probe halves the macro-pixel
    once and measures there (docs: "the exposure is divided by 4 down to 1 us, then the macro-pixel
    shrinks")."""
    e = np.random.default_rng(5).exponential(size=256)
    dev = _toy_probe_device(lambda st, rng: 16.0 * st.exposure_us * st.macro_pixel_mirrors**2 * e,
                            exposure_us=10.0, macro=4, input_side=912)
    s = Session(dev, make_plan(quick=True, roi_side_px=16))
    p = run_probe(s)
    assert p.macro_pixel_mirrors == 2 and dev.settings.macro_pixel_mirrors == 2
    assert p.lit_mirrors == 128 * 4
    assert [st.exposure_us for st in dev.log][:4] == [10.0, 2.5, 1.0, 1.0]  # /4, then the 1 us floor
    assert [st.macro_pixel_mirrors for st in dev.log][:4] == [4, 4, 4, 2]


def test_probe_grows_the_macro_pixel_then_stays_linear():
    """Dim light scaling with exposure x macro^2 (exponential speckle): at 1x1 mirrors the level is ~5 % of
    the target 0.4 x (255 - 10) DN, so the macro-pixel grows at once to ceil(sqrt(target / level)) = 5
    (level 4.6-5.2 DN with the 1 DN noise: sqrt(ratio) 4.3-4.6); there ~13 % of the pixels clip
    (P(E > 2)), so the exposure is halved (1.8 % clip). The saturation search then runs at 3 x span / rate
    and the unit exposure is saturation signal / rate, rate = level / exposure (~ 0.01225 x 25 DN/us)."""
    e = np.random.default_rng(6).exponential(size=256)
    dev = _toy_probe_device(lambda st, rng: 0.01225 * st.exposure_us * st.macro_pixel_mirrors**2 * e,
                            exposure_us=400.0, macro=1, input_side=912)
    s = Session(dev, make_plan(quick=True, roi_side_px=16))
    p = run_probe(s)
    assert p.macro_pixel_mirrors == 5 and p.lit_mirrors == 128 * 25
    assert [st.macro_pixel_mirrors for st in dev.log] == [1, 5, 5, 5]
    exposures = [st.exposure_us for st in dev.log]
    assert exposures[:3] == [400.0, 400.0, 200.0]
    span = 255 - float(np.median(p.dark_dn))
    assert exposures[3] == pytest.approx(3 * span * p.unit_exposure_us / p.saturation_signal_dn)
    assert p.saturation_signal_dn == pytest.approx(245.0, abs=2)  # most pixels clip at 3x the span
    assert p.unit_exposure_us == pytest.approx(245.0 / (0.01225 * 25), rel=0.1)
    assert s.frames == 2 + 2 + 2 + 2 + 2 + 2  # dark, level, macro step, halving, saturation dark + frames


def test_probe_keeps_its_exposure_with_exactly_5_percent_clipped():
    """20 hot pixels of 400 sit at the ADC maximum in every frame: exactly 5 % of the level frames clip,
    whatever the exposure. The probe halves the exposure only *above* 5 % (docs: "stay linear for the
    slope"), so it keeps 400 us and goes straight to the saturation search."""
    u = np.random.default_rng(3).uniform(0.5, 1.5, 400)  # 50-150 DN at 400 us: nothing else clips
    hot = np.zeros(400, bool)
    hot[::20] = True

    def frames(st, x, rng):
        y = 10.0 + rng.normal(0.0, 1.0, (len(x), 400))
        y[x.any(axis=1)] += 0.25 * st.exposure_us * u
        y[:, hot] = 300.0
        return y

    side = {"row": 0, "col": 0, "height_mirrors": 912, "width_mirrors": 912}
    dev = ToyDevice(frames, exposure_us=400.0, frame_time_us=500.0, macro_pixel_mirrors=1, n_features=256,
                    input_roi=side, camera_roi={"row": 0, "col": 0, "height_px": 20, "width_px": 20})
    run_probe(Session(dev, make_plan(quick=True, roi_side_px=20)))
    exposures = [st.exposure_us for st in dev.log]
    assert exposures[0] == 400.0 and len(exposures) == 2 and exposures[1] > 400.0  # then t_sat


def test_probe_grows_a_single_mirror_to_2x2_when_that_suffices():
    """At 1x1 mirrors the level is a third of the target 0.4 x (255 - 10) = 98 DN: the macro-pixel grows
    to max(1 + 1, ceil(sqrt(3))) = 2, where the level (x 4) is above half the target, so it stays 2."""
    e = np.random.default_rng(8).exponential(size=256)
    level_1x1 = 98.0 / 3 * np.log(2.0) / np.median(e)  # median(signal) / ln 2 = target / 3 at 1x1
    dev = _toy_probe_device(lambda st, rng: level_1x1 * st.macro_pixel_mirrors**2 * e, exposure_us=400.0,
                            macro=1, input_side=912)
    p = run_probe(Session(dev, make_plan(quick=True, roi_side_px=16)))
    assert p.macro_pixel_mirrors == 2 and [st.macro_pixel_mirrors for st in dev.log][:2] == [1, 2]


def test_probe_shrinks_a_2x2_macro_pixel_to_single_mirrors():
    """100 DN per us per mirror^2 of exponential speckle: at the 1 us floor with 2x2 mirrors 54 % of the
    pixels clip (P(400 E > 245)), with 1x1 about 9 % (P(100 E > 245)), under the 30 % limit."""
    e = np.random.default_rng(9).exponential(size=256)
    dev = _toy_probe_device(lambda st, rng: 100.0 * st.exposure_us * st.macro_pixel_mirrors**2 * e,
                            exposure_us=1.0, macro=2, input_side=912)
    p = run_probe(Session(dev, make_plan(quick=True, roi_side_px=16)))
    assert p.macro_pixel_mirrors == 1 and [st.macro_pixel_mirrors for st in dev.log][:2] == [2, 1]


@pytest.mark.parametrize("black, raises", [(254.0, True), (253.0, False)])
def test_probe_refuses_dark_frames_at_the_adc_maximum(black, raises):
    """Dark frames whose median is within 1 DN of the ADC maximum (254 of 255) mean the black level or
    stray light is too high; the message says what to do."""
    dev = ToyDevice(lambda st, x, rng: np.full((len(x), st.camera_roi.n_pixels), black),
                    camera_roi={"row": 0, "col": 0, "height_px": 16, "width_px": 16})
    s = Session(dev, make_plan(quick=True, roi_side_px=16))
    if raises:
        with pytest.raises(SaturatedDeviceError) as info:
            run_probe(s)
        msg = str(info.value)
        assert msg.startswith("dark frames (all mirrors off) already sit at the ADC maximum 255 DN: the "
                              "black level or the stray light is too high; lower the black level / analog "
                              "gain or block the light")
    else:
        with pytest.raises(Exception) as info:  # no light above this dark level: another error
            run_probe(s)
        assert "dark frames" not in str(info.value)


# --------------------------------------------------------------------------- noise check


def _toy16(frames):
    """A 16x16-pixel :class:`ToyDevice` with frames from ``frames(settings, patterns, rng)``."""
    return ToyDevice(frames, camera_roi={"row": 0, "col": 0, "height_px": 16, "width_px": 16})


def _hand_probe(plan):
    """The probe's result for the 16x16 toys, by hand: the plan's half-lit patterns of 2x2 mirrors,
    dark 10 DN, saturation 245 DN above it, unit exposure 800 us."""
    patterns = half_lit_patterns(plan.ptc_patterns, plan.ptc_features, seed=1)
    return Probe(macro_pixel_mirrors=2, lit_mirrors=128 * 4, patterns=patterns, dark_dn=np.full(256, 10.0),
                 saturation_signal_dn=245.0, unit_exposure_us=800.0)


def _noise_check_on(noise_dn):
    """A 16x16 toy: dark 10 DN, +50 DN where a feature is lit, plus ``noise_dn`` of Gaussian noise."""
    def frames(st, x, rng):
        y = 10.0 + 50.0 * x.any(axis=1, keepdims=True) * np.ones((1, st.camera_roi.n_pixels))
        return y + rng.normal(0.0, noise_dn, y.shape) if noise_dn else y

    dev = _toy16(frames)
    plan = make_plan(quick=True, roi_side_px=16)
    s = Session(dev, plan)
    probe = _hand_probe(plan)
    return run_noise_check(s, probe), s, dev


def test_noise_check_of_a_noiseless_device():
    """8 repeats of 4 patterns and 8 darks (40 frames) at half the unit exposure, all bit-identical."""
    r, s, dev = _noise_check_on(0.0)
    assert s.frames == 40 == make_plan(quick=True).budget().frames_by_stage["noise_check"]
    assert (r.exposure_us, r.patterns, r.repeats, r.pixels) == (400.0, 4, 8, 256)
    assert (dev.settings.n_features, dev.settings.macro_pixel_mirrors) == (256, 2)
    assert not r.measurable and r.varying_fraction == 0.0 and r.max_temporal_var_dn2 == 0.0
    assert (r.mean_signal_dn, r.dark_mean_dn, r.dark_spatial_std_dn) == (50.0, 10.0, 0.0)
    assert r.note == ("no measurable noise: 8 repeats of 4 patterns and of the dark frame are bit-identical "
                      "on all 256 pixels (mean signal 50.0 DN, dark 10.0 DN); the EMVA 1288 figures (system "
                      "gain K, read noise, dark current, DSNU/PRNU in e-, linear SNR) come from temporal "
                      "variance and cannot be measured on this device")


def test_noise_check_of_a_noisy_device():
    """2 DN of noise: nearly every (pattern, pixel) of the 5 x 256 varies over 8 repeats; the largest
    temporal variance of 1280 estimates with 7 degrees of freedom lies well above 2^2."""
    r, _, _ = _noise_check_on(2.0)
    assert r.measurable and r.varying_fraction > 0.99
    n = round(r.varying_fraction * 5 * 256)
    assert r.note == f"{n} of 1280 pattern-pixels vary between repeats: noise is measurable"
    assert 4.0 < r.max_temporal_var_dn2 < 20.0
    assert r.mean_signal_dn == pytest.approx(50.0, abs=0.2)  # 8 x 4 x 256 values of sd 2: se 0.02
    assert r.dark_mean_dn == pytest.approx(10.0, abs=0.2)
    assert r.dark_spatial_std_dn == pytest.approx(2.0 / math.sqrt(8), rel=0.15)  # 256 means of 8


def test_noise_check_reports_the_unbiased_temporal_variance():
    """Each pattern (and the dark frame) alternates between two levels 2 DN apart over its 8 repeats,
    whatever the acquisition order: four at a, four at a + 2, so the sample variance (ddof 1) is
    4 x 1^2 x 2 / 7 = 8/7 DN^2 on every pixel."""
    seen: dict[bytes, int] = {}

    def frames(st, x, rng):
        y = 10.0 + 50.0 * x.any(axis=1, keepdims=True) * np.ones((1, st.camera_roi.n_pixels))
        for i, row in enumerate(x):
            k = seen.get(row.tobytes(), 0)
            seen[row.tobytes()] = k + 1
            y[i] += 2.0 * (k % 2)
        return y

    dev = _toy16(frames)
    plan = make_plan(quick=True, roi_side_px=16)
    probe = _hand_probe(plan)
    r = run_noise_check(Session(dev, plan), probe)
    assert sorted(seen.values()) == [8] * 5  # 4 patterns and the dark frame, 8 repeats each
    assert r.max_temporal_var_dn2 == pytest.approx(8 / 7, rel=1e-12)
    assert r.measurable and r.varying_fraction == 1.0


# --------------------------------------------------------------------------- dark


def test_dark_series_exposures_units_and_boost(staged):
    """docs: all mirrors off at t_op/4, t_op, 10 ms, 50 ms; sigma_y.dark^2 < 0.3 DN^2 at 0 dB on this 8-bit
    device, so the series is repeated at 24 dB."""
    d, plan = staged.dark, staged.plan
    assert d.exposures_us == [100.0, 400.0, 10_000.0, 50_000.0]
    assert d.temporal_var_dn2[1] < QUANTIZATION_LIMIT_DN2 == 0.3
    assert d.boost_gain_db == 24.0 and d.boost_exposures_us == d.exposures_us
    assert len(d.boost_mean_dn) == len(d.boost_temporal_var_dn2) == 4
    assert d.black_level_dn.unit == d.sigma_y_dark_dn.unit == d.dsnu_dn.unit == d.boost_dsnu_dn.unit == "DN"
    assert d.black_level_dn.note == "intercept of mean dark value vs exposure"
    assert d.sigma_y_dark_dn.note == "includes 1/12 DN^2 of quantization"
    assert d.boost_dsnu_dn.note == "at 24 dB"
    assert d.black_level_dn.value == pytest.approx(BLACK, abs=0.3)
    assert staged.frames["dark"] == plan.budget().frames_by_stage["dark"] == 2 * 4 * plan.dark_repeats


def test_dark_switches_gain_at_the_operating_exposure_and_restores_it(staged):
    log, roi = staged.log["dark"], staged.s.roi
    gains = [st.analog_gain_db for st in log]
    i = gains.index(24.0)
    assert set(gains[:i]) == {0.0} and gains[-1] == 0.0
    assert log[i].exposure_us == 400.0  # the gain is switched at the operating point
    assert [st.exposure_us for st in log[i + 1:i + 5]] == staged.dark.exposures_us
    assert [st.exposure_us for st in log[1:5]] == staged.dark.exposures_us
    assert all(st.camera_roi.model_dump() == roi for st in log)


def test_dark_uncertainties_follow_their_closed_forms(staged):
    """sigma_y.dark: the mean variance of n pixels has the relative error sqrt(v / n), v the relative
    variance of one pixel's successive-difference estimate, (3R - 4)/(R - 1)^2 (~3/R: within 5 % at
    R = 8), halved for the square root; DSNU: the standard error of a standard deviation from n pixels,
    s / sqrt(2 (n - 1))."""
    d, r, n = staged.dark, staged.plan.dark_repeats, 16 * 16
    sig = d.sigma_y_dark_dn
    assert sig.value == pytest.approx(math.sqrt(d.temporal_var_dn2[1]), rel=1e-12)
    v = (3 * r - 4) / (r - 1) ** 2
    assert sig.uncertainty == pytest.approx(sig.value / 2 * math.sqrt(v / n), rel=0.06)
    assert d.dsnu_dn.uncertainty == pytest.approx(d.dsnu_dn.value / math.sqrt(2 * (n - 1)), rel=1e-9)


def test_dark_in_electrons_on_the_boost_series(staged):
    """K at 24 dB is K x 10^(24/20); the dark current is the slope of the 24 dB mean vs exposure (equal
    weights) / K_24dB; the read noise is the configured one (10 % + 4 standard errors, 16x16 ROI)."""
    d, ptc = staged.dark, staged.ptc
    k24 = ptc.system_gain_dn_per_e.value * 10 ** (24 / 20)
    slope = np.polyfit(d.boost_exposures_us, d.boost_mean_dn, 1)[0]
    assert d.dark_current_e_per_s.value == pytest.approx(slope * 1e6 / k24, rel=1e-6)
    assert d.dark_current_e_per_s.unit == "e-/s"
    where = "at 24 dB analog gain (read noise referred to the input)"
    assert d.dark_current_e_per_s.note == f"slope of the mean dark value vs exposure {where}"
    assert d.read_noise_e.unit == "e-" and d.read_noise_e.bound is None
    assert d.read_noise_e.note == f"sqrt(sigma_y.dark^2 - 1/12) / K {where}"
    assert_consistent(d.read_noise_e, READ_E, n_se=4, rel=0.1, what="read noise")
    assert d.dsnu_e.value == pytest.approx(d.boost_dsnu_dn.value / k24, rel=1e-9)
    assert d.dsnu_e.note == where


def _wls_se(x, se):
    w = 1 / np.asarray(se) ** 2
    s, sx, sxx = w.sum(), (w * x).sum(), (w * x * x).sum()
    d = s * sxx - sx**2
    return math.sqrt(s / d), math.sqrt(sxx / d)


def _dark_result(var, mean, **kw):
    t = [100.0, 400.0, 10_000.0, 50_000.0]
    return DarkResult(exposures_us=t, mean_dn=list(mean), temporal_var_dn2=list(var),
                      black_level_dn=fig(20.0, 0.01, "DN"), sigma_y_dark_dn=fig(1.0, 0.01, "DN"),
                      dsnu_dn=fig(3.0, 0.1, "DN"), **kw)


def test_dark_in_electrons_closed_forms_at_the_operating_gain():
    """Exact dark series of K = 0.5 DN/e-, read noise 4 e-, dark current 100 e-/s, black 20 DN:
    sigma_y^2 = 1/12 + K^2 (sigma_d^2 + I t), mean = black + K I t. K known to 1 %."""
    k, k_se = 0.5, 0.005
    t = np.array([100.0, 400.0, 10_000.0, 50_000.0])
    var = 1 / 12 + k**2 * (4.0**2 + 100.0 * t * 1e-6)
    mean = 20.0 + k * 100.0 * t * 1e-6
    res = _dark_result(var, mean)
    dark_in_electrons(res, k, k_se, 0.0, repeats=8)
    where = "at the operating gain"
    rn = res.read_noise_e
    assert rn.value == pytest.approx(4.0, rel=1e-9) and rn.unit == "e-" and rn.bound is None
    assert rn.note == f"sqrt(sigma_y.dark^2 - 1/12) / K {where}"
    assert rn.uncertainty >= 4.0 * 0.01  # at least K's 1 %
    dc = res.dark_current_e_per_s
    assert dc.value == pytest.approx(100.0, rel=1e-6)
    slope_se, _ = _wls_se(t, np.full(4, 0.01))
    assert dc.uncertainty == pytest.approx(math.hypot(slope_se * 1e6 / k, 100.0 * 0.01), rel=1e-6)
    assert res.dsnu_e.value == pytest.approx(3.0 / k) and res.dsnu_e.unit == "e-"
    assert res.dsnu_e.uncertainty == pytest.approx(math.hypot(0.1 / k, 6.0 * 0.01))
    assert res.dsnu_e.note == where


def test_dark_in_electrons_below_the_quantization_limit_is_an_upper_bound():
    """Intercept of the dark variance below 0.3 DN^2: only sigma_d < sqrt(0.3) / K is known."""
    res = _dark_result([0.1, 0.1, 0.11, 0.12], [20.0, 20.0, 20.01, 20.05])
    dark_in_electrons(res, 0.25, 0.0025, 0.0, repeats=8)
    rn = res.read_noise_e
    assert rn.bound == "upper" and rn.uncertainty is None and rn.unit == "e-"
    assert rn.value == pytest.approx(math.sqrt(0.3) / 0.25)
    assert rn.note == "temporal dark noise below the quantization limit at the operating gain"


def test_dark_in_electrons_uses_the_boost_gain_series():
    """A 24 dB series measured from a 6 dB operating point: K_24 = K x 10^(18/20); without a DSNU at
    24 dB no DSNU in electrons is given."""
    k = 0.2
    k24 = k * 10 ** (18 / 20)
    t = np.array([100.0, 400.0, 10_000.0, 50_000.0])
    res = _dark_result([0.1] * 4, [20.0] * 4, boost_gain_db=24.0, boost_exposures_us=t.tolist(),
                       boost_mean_dn=(30.0 + k24 * 50.0 * t * 1e-6).tolist(),
                       boost_temporal_var_dn2=(1 / 12 + k24**2 * (3.0**2 + 50.0 * t * 1e-6)).tolist())
    dark_in_electrons(res, k, 0.002, 6.0, repeats=8)
    assert res.read_noise_e.value == pytest.approx(3.0, rel=1e-9)
    assert res.dark_current_e_per_s.value == pytest.approx(50.0, rel=1e-6)
    assert res.read_noise_e.note.endswith("at 24 dB analog gain (read noise referred to the input)")
    assert res.dsnu_e is None


class _RefusesHighGain(RecordingSim):
    def configure(self, settings=None, **changes):
        if changes.get("analog_gain_db", 0.0) > 12.0:
            raise DriverError("gain refused (test)", resource=self.resource)
        return super().configure(settings, **changes)


def test_dark_keeps_the_operating_gain_figures_when_the_boost_gain_is_refused():
    dev = _sim(_RefusesHighGain)
    s = Session(dev, make_plan(quick=True, roi_side_px=16))
    d = run_dark(s)
    assert d.boost_gain_db is None and d.boost_mean_dn == [] and d.boost_dsnu_dn is None
    assert d.black_level_dn.value == pytest.approx(BLACK, abs=0.3)
    assert s.frames == 4 * 8 and dev.settings.analog_gain_db == 0.0


def test_dark_without_boost_when_the_dark_noise_is_resolved():
    """K = 0.4 DN/e- and 3 e- read noise: sigma_y.dark^2 ~ 1.5 DN^2, no 24 dB series; sigma_y.dark is
    sqrt(K^2 sigma_d^2 + 1/12) (+ the dark current's shot noise, 0.1 % here) within 4 standard errors."""
    dev = _sim(camera={"gain_dn_per_e": 0.4, "read_noise_e": 3.0, "bit_depth": 12, "black_level_dn": 40.0})
    s = Session(dev, make_plan(quick=True, roi_side_px=16))
    d = run_dark(s)
    assert d.boost_gain_db is None and s.frames == 4 * 8
    assert [st.analog_gain_db for st in dev.log] == [0.0] * len(dev.log)
    assert_consistent(d.sigma_y_dark_dn, math.sqrt(0.4**2 * 9 + 1 / 12), n_se=4, what="sigma_y.dark")
    assert_consistent(d.black_level_dn, 40.0, n_se=4, rel=0.005, what="black level")
    assert_consistent(d.dsnu_dn, 0.4 * 10.0, n_se=4, what="DSNU")  # dsnu_e 10 e- of the preset


# --------------------------------------------------------------------------- photon transfer


def test_photon_transfer_exposures_frames_and_units(staged):
    p, plan, probe = staged.ptc, staged.plan, staged.probe
    assert p.exposures_us == pytest.approx([f * probe.unit_exposure_us for f in plan.ptc_levels])
    assert staged.frames["photon_transfer"] == plan.budget().frames_by_stage["photon_transfer"]
    units = {"system_gain_dn_per_e": "DN/e-", "inverse_gain_e_per_dn": "e-/DN", "ptc_offset_dn2": "DN^2",
             "saturation_dn": "DN", "saturation_capacity_e": "e-", "snr_max": "1",
             "linearity_error_min_pct": "%", "linearity_error_max_pct": "%", "laser_fluctuation_rel": "1",
             "responsivity_e_per_mirror_us": "e-/(mirror us)", "speckle_grain_px": "px"}
    assert {name: getattr(p, name).unit for name in units} == units
    assert p.system_gain_dn_per_e.note == "slope of sigma_y^2 vs mu_y - mu_y.dark"
    assert p.saturation_dn.note == "signal above dark where pixels are pinned"
    assert p.ptc_offset_dn2.note == "sigma_y.dark^2 + K^2 I_dark t seen by the fit"
    assert p.responsivity_e_per_mirror_us.note == "QE x photons per mirror per us"
    # the laser fluctuation is measured here, not bounded
    assert p.laser_fluctuation_rel.note == "relative std of the per-frame common factor"
    assert (p.macro_pixel_mirrors, p.lit_mirrors) == (probe.macro_pixel_mirrors, probe.lit_mirrors)


def test_photon_transfer_figures_against_the_device_and_closed_forms(staged):
    p = staged.ptc
    k = p.system_gain_dn_per_e
    assert_consistent(k, K_TRUE, n_se=4, what="K")
    assert p.inverse_gain_e_per_dn.value == pytest.approx(1 / k.value)
    assert p.inverse_gain_e_per_dn.uncertainty == pytest.approx(k.uncertainty / k.value**2)
    sat = p.saturation_dn
    assert sat.value == pytest.approx(255 - BLACK, abs=1.0)  # ADC-limited: 255 DN minus the black level
    assert p.saturation_limited_by == "adc"
    cap = p.saturation_capacity_e
    assert cap.value == pytest.approx(sat.value / k.value)
    assert cap.uncertainty == pytest.approx(cap.value * math.hypot(sat.uncertainty / sat.value,
                                                                   k.uncertainty / k.value))
    assert p.snr_max.value == pytest.approx(math.sqrt(cap.value))
    assert p.snr_max.uncertainty == pytest.approx(0.5 * cap.uncertainty / math.sqrt(cap.value))
    assert p.fit_max_signal_dn == pytest.approx(0.7 * sat.value)  # EMVA fit range: 70 % of saturation
    assert_consistent(p.responsivity_e_per_mirror_us, QE * FLUX, n_se=4, rel=0.06, what="QE x flux")
    assert min(p.bin_count) >= 20
    assert np.all(np.diff(p.bin_signal_dn) > 0)
    # the fit's offset carries its standard error (EMVA: sigma_y.dark^2 seen by the PTC fit)
    assert p.ptc_offset_dn2.uncertainty is not None and p.ptc_offset_dn2.uncertainty > 0


def test_photon_transfer_of_a_device_that_never_saturates(staged):
    """A device 30x dimmer than its probe found: even the brightest pixels of the longest exposure stay
    below saturation, so the saturation figures are absent, in their units, and say why; K is still
    measured (from the unsaturated points)."""
    dev = _sim(laser={"photons_per_mirror_us": FLUX / 30})
    s = Session(dev, make_plan(quick=True, roi_side_px=16))
    probe = staged.probe
    s.configure(n_features=probe.patterns.shape[1], macro_pixel_mirrors=probe.macro_pixel_mirrors)
    p = run_photon_transfer(s, probe)
    note = "no pixel reached saturation at the longest exposure"
    for name, unit in (("saturation_dn", "DN"), ("saturation_capacity_e", "e-"), ("snr_max", "1")):
        f = getattr(p, name)
        assert (f.value, f.uncertainty, f.unit, f.note) == (None, None, unit, note), name
    assert p.saturation_limited_by == "not_reached"
    assert_consistent(p.system_gain_dn_per_e, K_TRUE, n_se=4, what="K")


def test_photon_transfer_after_the_light_fell_says_what_it_cannot_measure(staged):
    """The probe ran on the bright device; the light then fell 300x (a laser failing mid-calibration):
    no pattern is bright enough for the laser estimate, no exposure is bright and unsaturated enough for
    the speckle grain, no pixel lies in 5-95 % of saturation at the reference exposure. The stage
    returns those figures empty, in their units and saying why, instead of failing inside numpy."""
    dev = _sim(laser={"photons_per_mirror_us": FLUX / 300})
    s = Session(dev, make_plan(quick=True, roi_side_px=16))
    probe = staged.probe
    s.configure(n_features=probe.patterns.shape[1], macro_pixel_mirrors=probe.macro_pixel_mirrors)
    p = run_photon_transfer(s, probe)

    def parts(f):
        return f.value, f.uncertainty, f.unit, f.note

    assert parts(p.laser_fluctuation_rel) == (None, None, "1", "no exposure bright enough")
    assert parts(p.speckle_grain_px) == (None, None, "px", "no unsaturated bright exposure")
    note = "no pixel between 5 and 95 % of saturation at the reference exposure"
    for f in (p.linearity_error_min_pct, p.linearity_error_max_pct):
        assert parts(f) == (None, None, "%", note)
    assert p.linearity_levels_pct == [] and p.linearity_deviation_pct == []
    assert p.saturation_limited_by == "not_reached"
    # the faint frames' laser factors are not estimated (their totals reach 0): the rate stays finite,
    # and the responsivity (QE x flux = 0.6 x 0.005 / 300 = 1e-5 e-/(mirror us)) is within its errors
    assert math.isfinite(p.exposure_level_dn_per_us)
    assert_consistent(p.responsivity_e_per_mirror_us, QE * FLUX / 300, n_se=4, what="faint responsivity")


def _ptc_on_toy(signal, hot=None):
    """The photon-transfer stage on a 16x16 toy: lit frames add ``signal(exposure_us)`` (256,) DN to a
    10 DN black level, with noise of variance 1 + 0.05 x signal; ``hot`` pixels sit at the ADC maximum in
    every frame. A hand-made probe: 4 half-lit patterns, saturation at 245 DN, unit exposure 800 us."""
    def frames(st, x, rng):
        sig = signal(st.exposure_us)[None, :] * x.any(axis=1, keepdims=True)
        y = 10.0 + sig + rng.normal(0.0, 1.0, sig.shape) * np.sqrt(1.0 + 0.05 * sig)
        if hot is not None:
            y[:, hot] = 300.0
        return y

    dev = _toy16(frames)
    plan = make_plan(quick=True, roi_side_px=16)
    s = Session(dev, plan)
    s.configure(n_features=plan.ptc_features, macro_pixel_mirrors=2)
    probe = _hand_probe(plan)
    return run_photon_transfer(s, probe)


def test_photon_transfer_rate_with_pixels_pinned_at_every_exposure():
    """5 % hot pixels: no exposure has 99.9 % of its pixels unsaturated, so the exposure level (DN per
    us) is the first exposure's mean signal over its exposure: 0.2 DN/us x u on the live pixels, 0 on
    the hot ones."""
    u = np.random.default_rng(4).uniform(0.5, 1.5, 256)
    hot = np.zeros(256, bool)
    hot[::20] = True  # 13 of 256 pixels
    p = _ptc_on_toy(lambda t: 0.2 * t * u, hot)
    expected = 0.2 * u[~hot].sum() / 256  # DN per us, averaged over all 256 pixels
    # at 24 us (4.6 DN a pixel on average) the 4-frame dark subtracted from every pixel dominates the
    # noise: 0.5 DN / sqrt(256 pixels) = 0.03 DN, 0.7 % of the signal; 3 % is over 4 standard errors
    assert p.exposure_level_dn_per_us == pytest.approx(expected, rel=0.03)


def test_photon_transfer_linearity_is_relative_to_the_quarter_saturation_exposure():
    """A response that grows faster than linear, s = a t (1 + b t) with b = 1/1000 per us: relative to
    the reference exposure t_ref = 0.25 x 800 = 200 us (docs), a point at t deviates by
    b (t - t_ref) / (1 + b t_ref): -15 % at 24 us, +17 % at 400 us. Both signs must appear."""
    u = np.random.default_rng(5).uniform(0.8, 1.2, 256)
    p = _ptc_on_toy(lambda t: 0.22 * t * (1 + t / 1000) * u)
    dev = np.array(p.linearity_deviation_pct)
    assert dev.min() < -8 and dev.max() > 8, dev
    assert p.linearity_error_min_pct.value == dev.min() and p.linearity_error_max_pct.value == dev.max()


def test_photon_transfer_linearity_of_a_linear_camera(staged):
    """The simulated camera is linear up to the clip: every linearity bin (5-95 % of saturation; points
    that clip at either exposure left out, docs) is within 0.5 % of 0. The bins' standard errors are
    <= 0.1 % for this plan (checked), so 0.5 % is 5 of them beyond the ~0.1 % the rounding leaves;
    a pixel clipped at the reference exposure would predict too little at the shorter ones and put
    ~+1 % into its bin."""
    p = staged.ptc
    lv, dev = np.array(p.linearity_levels_pct), np.array(p.linearity_deviation_pct)
    assert lv.size >= 5 and lv.min() >= 5 and lv.max() <= 95
    for f in (p.linearity_error_min_pct, p.linearity_error_max_pct):
        assert f.uncertainty <= 0.1, f
    assert np.abs(dev).max() < 0.5
    assert p.linearity_error_min_pct.value == dev.min() and p.linearity_error_max_pct.value == dev.max()


# --------------------------------------------------------------------------- PRNU


def test_prnu_on_the_simulator(staged):
    """P = 256 patterns of k = 4 features of 16x16 mirrors at 15 % of saturation (docs)."""
    r, plan = staged.prnu, staged.plan
    assert r.patterns == 256
    assert r.exposure_us == pytest.approx(0.15 * staged.sat_dn / (staged.resp_dn * 4 * 16**2))
    assert staged.frames["prnu"] == plan.budget().frames_by_stage["prnu"]
    assert r.prnu_rel.unit == "1"
    assert_consistent(r.prnu_rel, 0.01, what="PRNU")
    last = staged.log["prnu"][0]
    assert (last.n_features, last.macro_pixel_mirrors) == (1024, 16)


def test_prnu_on_a_dim_device_uses_fewer_brighter_patterns():
    """At 3 s the exposure would exceed 1 s: each halving of the patterns doubles the features per pattern
    and halves the exposure (3 s -> 1.5 s -> 0.75 s with 64 patterns of 16 features)."""
    resp = 0.15 * (255 - BLACK) / (4 * 16**2 * 3e6)  # DN per mirror per us giving 3 s
    dev = _sim(laser={"photons_per_mirror_us": resp / (QE * K_TRUE)})
    s = Session(dev, make_plan(quick=True, roi_side_px=16))
    r = run_prnu(s, 255 - BLACK, resp)
    assert r.patterns == 64
    assert r.exposure_us == pytest.approx(7.5e5)
    assert dev.settings.n_features == 1024
    assert s.frames == 64 + 8


def _prnu_on(dev, roi):
    s = Session(dev, make_plan(quick=True, roi_side_px=roi))
    return run_prnu(s, 255 - BLACK, QE * FLUX * K_TRUE).prnu_rel


def test_prnu_standard_error_uses_both_halves_of_the_patterns():
    """PRNU 3 % on 64x64 pixels: the standard error of cov(G_A, G_B) from m pixels is
    sqrt((s_A^2 s_B^2 + p^2 (s_A^2 + s_B^2) + 2 p^4) / m) with s^2 = 2 / P the variance of a half's
    per-pixel mean of P / 2 exponential speckles (docs: ~2 / (P sqrt(m)) for a small PRNU). The sample
    estimate of that spread from m = 4096 pixels is good to ~2 % (kurtosis ~9): tolerance 10 %."""
    f = _prnu_on(_sim(camera={"prnu_rel": 0.03}), 64)
    assert f.bound is None
    c_se = 2 * f.value * f.uncertainty  # the figure is sqrt(c) with se(c) / (2 sqrt(c))
    p_, n_pat, m = 0.03, 256, 64 * 64
    s2 = 2 / n_pat
    predicted = math.sqrt((s2 * s2 + p_**2 * 2 * s2 + 2 * p_**4) / m)
    assert c_se == pytest.approx(predicted, rel=0.1)
    assert_consistent(f, 0.03, n_se=4, what="PRNU")


def test_prnu_without_gain_variations_is_an_upper_bound():
    """PRNU 0 on 32x32 pixels: cov(G_A, G_B) ~ 0 +- 2 / (P sqrt(m)) = 2.4e-4, so only a bound
    sqrt(max(c, 0) + 2 se) of ~0.02-0.035 is given (docs: the quick plan resolves PRNU above ~2 %)."""
    f = _prnu_on(_sim(camera={"prnu_rel": 0.0}), 32)
    assert f.bound == "upper" and f.uncertainty is None
    assert f.note == "PRNU below the speckle averaging limit of this plan"
    assert 0.018 < f.value < 0.04


class _FlakyPixelsSim(RecordingSim):
    """One pixel in ten reads the ADC maximum in 30 % of the lit frames (blooming / hot events)."""

    def _run_sequence(self, packed):
        frames = np.array(super()._run_sequence(packed))
        rng = np.random.default_rng(int(self.frames_acquired) + 1)
        flaky = np.arange(0, frames.shape[1], 10)
        lit = packed.reshape(len(packed), -1).any(axis=1)
        hit = (rng.random((len(frames), flaky.size)) < 0.3) & lit[:, None]
        sub = frames[:, flaky]
        sub[hit] = self.settings.adc_max_dn
        frames[:, flaky] = sub
        return frames


def test_prnu_leaves_out_frames_at_the_adc_maximum():
    """Values at the ADC maximum carry no gain: they are left out of each half's mean, and the halves are
    renormalized to mean 1 (the clipped values also raised every frame's mean). The PRNU of the device
    (5 %) is then still found within 4 standard errors."""
    f = _prnu_on(_sim(_FlakyPixelsSim, camera={"prnu_rel": 0.05}), 32)
    assert f.bound is None
    assert_consistent(f, 0.05, n_se=4, what="PRNU with flaky pixels")


# --------------------------------------------------------------------------- linear SNR


def test_linear_snr_schemes_exposures_and_frames(staged):
    """Both schemes, each at the operating exposure and at the exposures giving 5, 15, 35 % of saturation
    for a typical anchor frame (4/3 n macro^2 lit mirrors), each exposure one linear_transform call with
    that scheme; 4 frames per ternary vector (docs)."""
    ls, plan, o = staged.linear, staged.plan, staged.s.original
    macro = 1  # the device's own macro-pixel
    lit = 4 / 3 * 64 * macro**2
    expected = sorted({400.0, *(f * staged.sat_dn / (staged.resp_dn * lit) for f in plan.linear_levels)})
    assert [sc.scheme for sc in ls.schemes] == list(SCHEMES) == ["anchor", "complement"]
    assert staged.schemes == ["anchor"] * len(expected) + ["complement"] * len(expected)
    assert (ls.n_features, ls.vectors, ls.repeats, ls.operating_exposure_us) == (64, 8, 6, o.exposure_us)
    assert staged.frames["linear_snr"] == plan.budget().frames_by_stage["linear_snr"]
    # the 64 features of the test vectors: 2 x 64 device features for the anchor, 64 for the complement
    assert {st.n_features for st in staged.log["linear_snr"]} == {128, 64}
    for sc in ls.schemes:
        assert sc.exposures_us == pytest.approx(expected)
        assert sc.frames_per_signed == 4
        assert len(sc.snr) == len(sc.saturated) == len(expected)
        i_op = sc.exposures_us.index(400.0)
        assert sc.snr_at_operating.value == sc.snr[i_op] and sc.snr_at_operating.unit == "1"
        assert sc.snr_at_operating.note == ("saturated" if sc.saturated[i_op]
                                            else "signal/noise variance per output")
        ok = [i for i, sat in enumerate(sc.saturated) if not sat]
        best = max(ok, key=lambda i: sc.snr[i])
        assert sc.best_exposure_us == sc.exposures_us[best] and sc.snr_best.value == sc.snr[best]
        assert sc.snr_best.note == ""  # a best exposure was found: no "every exposure saturated"
        # the SNR grows with the exposure while nothing clips (shot noise ~ signal)
        assert sc.snr[0] < sc.snr[best]


def test_linear_snr_with_every_exposure_saturated():
    """Too much light for every exposure: no best exposure, and the figures say why."""
    dev = _sim(laser={"photons_per_mirror_us": 5.0})
    s = Session(dev, make_plan(quick=True, roi_side_px=16))
    ls = run_linear_snr(s, 255 - BLACK, 1e-3)  # claims a 1000x dimmer device: exposures far too long
    for sc in ls.schemes:
        assert all(sc.saturated)
        assert sc.best_exposure_us is None
        assert sc.snr_best.value is None and sc.snr_best.note == "every exposure saturated"
        assert sc.snr_at_operating.note == "saturated"


# --------------------------------------------------------------------------- stability


def test_stability_waits_and_frames(staged):
    """Cumulative waits 1, 1.41, 2, ... s (ratio sqrt 2) up to the plan's 10 s; Q = 16 patterns for the
    reference, the immediate repeat and each wait, plus 4 dark frames."""
    st, plan = staged.stability, staged.plan
    t = np.array(st.times_s)
    targets = [min(math.sqrt(2) ** k, 10.0) for k in range(len(t) - 1)]
    assert t[0] < 0.1
    np.testing.assert_allclose(t[1:], targets, atol=0.02)  # each wait ends at its target (+ frame time)
    assert staged.frames["stability"] == 4 + 16 * (2 + len(targets))
    assert len(targets) == plan.n_waits  # no early stop on this slowly drifting device
    assert st.repeat_correlation == st.correlation[0]
    assert st.decorrelation_time_s.unit == st.intensity_decorrelation_time_s.unit == "s"
    # the patterns at 6 % of saturation, n = 256 features at the probe's macro-pixel
    first = staged.log["stability"][0]
    assert first.exposure_us == pytest.approx(0.06 * staged.probe.unit_exposure_us)
    assert (first.n_features, first.macro_pixel_mirrors) == (256, staged.probe.macro_pixel_mirrors)


def _stability(max_wait_s, **medium):
    dev = _sim(medium=medium)
    s = Session(dev, make_plan(quick=True, max_wait_s=max_wait_s, roi_side_px=16))
    return run_stability(s, run_probe(s))


def test_stability_stops_once_the_correlation_falls_below_e_minus_2():
    """tau = 60 s: corr_I = A exp(-2 t / 60) drops below A e^-2 after 60 s, long before the 900 s limit;
    the waits stop at the first point below it. tau from the decay within 15 % (docs)."""
    st = _stability(900.0, drift_time_constant_s=60.0, drift_step_s=0.5)
    c, c0 = np.array(st.correlation), st.repeat_correlation
    assert c[-1] < c0 * math.exp(-2) <= c[:-1].min()
    assert 60.0 <= st.times_s[-1] < 2 * 60.0
    tau = st.decorrelation_time_s
    assert tau.bound is None and tau.value == pytest.approx(60.0, rel=0.15)
    assert tau.note == "field decorrelation time: corr_I = A exp(-2t/tau)"
    assert st.intensity_decorrelation_time_s.value == pytest.approx(tau.value / 2)
    # tau = 2 tau_I: its standard error doubles too
    tau_i_se = st.intensity_decorrelation_time_s.uncertainty
    assert tau.uncertainty > 0 and tau.uncertainty == pytest.approx(2 * tau_i_se)


def test_stability_lower_bound_of_a_static_medium():
    """No decay: tau_I >= t_last / -ln(r_lo), r_lo = c_last / c0 - 2 se_last / c0 (the 95 % lower bound of
    the correlation ratio), and the field tau is twice that."""
    st = _stability(10.0, drift_time_constant_s=None)
    t, c, se, c0 = st.times_s[-1], st.correlation[-1], st.correlation_se[-1], st.repeat_correlation
    r_lo = c / c0 - 2 * se / c0
    assert 0 < r_lo < 1
    ti = st.intensity_decorrelation_time_s
    assert ti.bound == "lower" and ti.uncertainty is None
    assert ti.value == pytest.approx(t / -math.log(r_lo), rel=1e-9)
    assert st.decorrelation_time_s.value == pytest.approx(2 * ti.value, rel=1e-12)
    assert st.decorrelation_time_s.bound == "lower"
    assert st.decorrelation_time_s.note == ti.note == "no decorrelation seen within 10 s of device time"
    assert ti.value > 10 * t


def test_stability_with_a_single_wait_past_full_decorrelation_gives_an_upper_bound():
    """max_wait_s = first wait (one wait) on a medium that decorrelates in 0.05 s: the last correlation is
    ~0 and two points are too few for a fit. The data say tau_I <= t_last / -ln(r_hi), r_hi = c_last / c0
    + 2 se_last / c0 (the 95 % upper limit of the ratio): an upper bound that holds the true tau."""
    st = _stability(1.0, drift_time_constant_s=0.05, drift_step_s=0.001)
    assert len(st.times_s) == 2
    t, c, se, c0 = st.times_s[-1], st.correlation[-1], st.correlation_se[-1], st.repeat_correlation
    assert abs(c) < 3 * se
    r_hi = c / c0 + 2 * se / c0
    assert 0 < r_hi < 1
    ti = st.intensity_decorrelation_time_s
    assert ti.bound == "upper" and ti.value == pytest.approx(t / -math.log(r_hi), rel=1e-9)
    tau = st.decorrelation_time_s
    assert tau.bound == "upper" and tau.value == pytest.approx(2 * ti.value, rel=1e-12)
    assert tau.value >= 0.05  # the bound does not exclude the true field decorrelation time
    assert "too few points for a fit" in tau.note


# --------------------------------------------------------------------------- runner


def _black_saturated():
    cfg = opu.realistic(seed=1).replace(camera={"black_level_dn": 255.0})
    return SimDevice(config=cfg, resource="sim:black-saturated").open()


def test_calibrate_without_a_plan_uses_the_full_default_plan(tmp_path):
    """plan=None: the full plan (make_plan(quick=False)) is recorded and its budget printed (a device
    whose dark frames are saturated stops in the probe, before any long measurement)."""
    printed = []
    dev = _black_saturated()
    before = dev.settings
    with pytest.raises(CalibrationAborted) as info:
        calibrate(dev, tmp_path / "out", progress=False, plots=False, echo=printed.append)
    full = make_plan(quick=False)
    rep = info.value.report
    assert rep.plan == full.model_dump() and rep.budget == full.budget()
    assert len(printed) == 1 and printed[0].startswith(f"Calibration plan for {dev.resource}: about "
                                                       f"{full.budget().frames_total} frames")
    assert dev.settings == before  # restored
    assert str(info.value).startswith("calibration stopped (measurement impossible) after no stage: ")
    saved = tmp_path / "out" / "calibration.json"
    assert str(info.value).endswith(f"Partial results (marked incomplete) are in {saved}")
    assert saved.is_file()
    assert rep.error.startswith("SaturatedDeviceError: dark frames")


def test_calibrate_records_the_given_plan(tmp_path):
    plan = make_plan(quick=True, max_wait_s=5.0, roi_side_px=8)
    with pytest.raises(CalibrationAborted) as info:
        calibrate(_black_saturated(), tmp_path / "out", plan, progress=False, plots=False, echo=None)
    assert info.value.report.plan == plan.model_dump()
    assert info.value.report.budget == plan.budget()


def test_calibrate_runs_every_stage_and_writes_its_outputs(tmp_path, monkeypatch):
    """A whole quick calibration (16x16 ROI): the stages in the documented order, every frame accounted,
    the QE x flux turned into photons for the assumed QE, calibration.json equal to the report, the twin
    of the report in twin.json, the plots, the budget printed once, and the operating point restored."""
    dev = _sim()
    before = dev.settings
    printed = []
    plan = make_plan(quick=True, max_wait_s=10.0, roi_side_px=16)
    bars = []

    class Bar:  # stands in for tqdm: records what the progress bar is told
        def __init__(self, **kw):
            self.kw, self.n, self.closed = kw, 0, False
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def close(self):
            self.closed = True

    monkeypatch.setattr("tqdm.auto.tqdm", Bar)
    rep = calibrate(dev, tmp_path, plan, progress=True, plots=True, echo=printed.append, twin_seed=99)
    assert rep.complete and rep.error is None
    # one bar, in frames, sized by the plan's budget, told of every frame, closed at the end
    [bar] = bars
    budget = plan.budget().frames_total
    assert bar.kw == {"total": budget, "unit": "frame", "desc": "calibrate", "leave": False}
    assert bar.n == rep.frames_used and bar.closed
    assert rep.stages_completed == ["probe", "noise_check", "dark", "photon_transfer", "prnu", "linear_snr",
                                    "stability"]
    assert rep.frames_used == dev.status().frames_total == dev.frames_acquired
    assert 0 < rep.device_time_s <= dev.status().device_time_s and rep.wall_time_s > 0
    assert rep.identity["is_simulated"] is True and rep.resource == dev.resource
    assert rep.settings == before.model_dump() and rep.quantum_efficiency_assumed == 0.6
    resp = rep.photon_transfer.responsivity_e_per_mirror_us
    ph = rep.photons_per_mirror_us
    assert ph.value == pytest.approx(resp.value / 0.6)
    assert ph.uncertainty == pytest.approx(resp.uncertainty / 0.6)
    assert ph.unit == "photons/(mirror us)" and ph.note == "for the assumed QE 0.6"
    assert rep.dark.read_noise_e is not None and rep.dark.dark_current_e_per_s is not None  # in electrons
    assert json.loads((tmp_path / "calibration.json").read_text()) == json.loads(rep.model_dump_json())
    twin = opu.OPUConfig.model_validate_json((tmp_path / "twin.json").read_text())
    assert twin == build_twin(rep, seed=99)
    pngs = {"photon_transfer.png", "snr.png", "linearity.png", "dark.png", "stability.png", "linear_snr.png"}
    assert {p.name for p in tmp_path.glob("*.png")} == pngs
    assert printed == [budget_text(plan.budget(), dev.resource)]
    assert dev.settings == before
