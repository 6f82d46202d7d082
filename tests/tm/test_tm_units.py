"""Unit tests of host/tm, function by function (docs/tm_retrieval.md has the method).

Every expected value is derived independently of the code under test: closed forms of the plan's
frame budget and layout, a hand-traced light-level rule on a scripted device whose level is known
exactly, a second numpy implementation of the per-row geometry (np.linalg.lstsq with the *true*
anchor points), synthetic frames ``dark + |B p|^2`` from a known B, and camera frames drawn from a
known noise model (tolerances from the sample size).
"""

from __future__ import annotations

import importlib
import json
import math
import time
import warnings
from typing import ClassVar

import numpy as np
import pytest
import threadpoolctl

import opu
from drivers import SaturationWarning
from drivers.settings import DeviceSettings
from drivers.sim import SimDevice
from host.calibration.twin import QE_ASSUMED
from host.tm import (
    NoLightError,
    RecoveredTM,
    SaturatedDeviceError,
    TMFileError,
    TMPlan,
    TMPlanError,
    acquire_plan,
    align_rows,
    build_patterns,
    camera_from_frames,
    make_plan,
    pearson,
    prediction_correlation,
    refresh,
    rel_frobenius_error,
    restore_settings,
    retrieve,
    retrieve_tm,
    set_light,
    twin_config,
)
from host.tm import runner as tm_runner
from host.tm.acquire import brightest_pattern, max_macro
from host.tm.retrieve import laterate, mds_points, solve_rows
from host.tm.twin import CameraEstimate

LN2 = math.log(2.0)
DMD_W = 1140  # opu.config.DMD_MAX_WIDTH_MIRRORS
SENSOR_W = 2048  # opu.camera.SENSOR_STRIDE


# ============================================================================ plan
def test_plan_defaults_and_sizes_follow_the_formulas():
    plan = make_plan(7, anchors=4)
    assert (plan.n_features, plan.anchors, plan.anchor_features, plan.signals) == (7, 4, 7, 14)
    assert (plan.anchor_repeats, plan.dark_repeats, plan.seed, plan.signal_density) == (2, 8, 20190703, 0.5)
    assert plan.device_features == 14
    assert plan.anchor_pairs == 10  # S(S+1)/2
    assert plan.frames == 8 + 2 * 10 + 14 * 5 == 98
    assert plan.device_seconds(500.0) == pytest.approx(98 * 500e-6, rel=1e-12)
    assert plan.device_seconds(250.0) == pytest.approx(98 * 250e-6, rel=1e-12)
    # k_s = round(s n_a / S): 0, 1.75, 3.5, 5.25, 7 -> 0, 2, 4, 5, 7 (round half to even)
    np.testing.assert_array_equal(plan.anchor_sizes, [0, 2, 4, 5, 7])
    assert plan.anchor_sizes.dtype == np.int64
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    np.testing.assert_array_equal(plan.anchor_pair_index(), pairs)
    # the default anchor count is the S = 20
    assert make_plan(30).anchors == 20


def test_plan_keeps_every_explicit_argument():
    plan = make_plan(np.int64(5), anchors=np.int32(4), signals=9, anchor_features=6, anchor_repeats=3,
                     dark_repeats=5, seed=11)
    assert isinstance(plan.n_features, int) and isinstance(plan.anchors, int)
    assert (plan.n_features, plan.anchors, plan.signals, plan.anchor_features) == (5, 4, 9, 6)
    assert (plan.anchor_repeats, plan.dark_repeats, plan.seed) == (3, 5, 11)
    assert plan.frames == 5 + 3 * 10 + 9 * 5
    # the smallest valid plan: every bound reached with equality
    small = make_plan(1, anchors=3, signals=1, anchor_features=3, anchor_repeats=1, dark_repeats=2)
    assert small.frames == 2 + 6 + 4
    # signals == features and anchor features == anchors are allowed
    assert make_plan(6, anchors=5, signals=6, anchor_features=5).signals == 6


@pytest.mark.parametrize("kw, message", [
    (dict(n_features=0), "features must be an integer >= 1, got 0"),
    (dict(n_features=True), "features must be an integer >= 1, got True"),
    (dict(n_features=5.0), "features must be an integer >= 1, got 5.0"),
    (dict(n_features="5"), "features must be an integer >= 1, got '5'"),
    (dict(n_features=5, anchors=2), "anchors must be an integer >= 3, got 2"),
    (dict(n_features=5, anchors=False), "anchors must be an integer >= 3, got False"),
    (dict(n_features=5, anchors=3, signals=0), "signals must be an integer >= 1, got 0"),
    (dict(n_features=5, anchors=3, anchor_features=0), "anchor features must be an integer >= 1, got 0"),
    (dict(n_features=5, anchors=3, anchor_repeats=0), "anchor repeats must be an integer >= 1, got 0"),
    (dict(n_features=5, anchors=3, dark_repeats=1), "dark repeats must be an integer >= 2, got 1"),
    (dict(n_features=5, anchors=3, signals=4),
     "4 signals cannot determine 5 columns: the linear solve needs signals >= features (2 x features "
     "recommended)"),
    (dict(n_features=5, anchors=6, anchor_features=5),
     "6 nested anchors need at least 6 anchor features (each anchor adds >= 1), got 5; lower --anchors or "
     "raise --anchor-features"),
    (dict(n_features=5, anchors=3, max_device_features=9),
     "the plan needs 10 device features (5 data + 5 anchor) but the device holds at most 9 at its "
     "macro-pixel size"),
    (dict(n_features=5, anchors=3, max_frames=0), "max frames must be >= 1, got 0"),
    (dict(n_features=5, anchors=3, max_frames=-4), "max frames must be >= 1, got -4"),
    (dict(n_features=5, anchors=3, max_frames=1),
     "the plan needs 60 frames (8 dark + 2 x 6 anchor + 10 signals x 4) but at most 1 are allowed; "
     "raise --max-frames or lower --anchors / --signals"),
    (dict(n_features=5, anchors=3, max_frames=59),
     "the plan needs 60 frames (8 dark + 2 x 6 anchor + 10 signals x 4) but at most 59 are allowed; "
     "raise --max-frames or lower --anchors / --signals"),
])
def test_impossible_plans_are_refused_with_their_reason(kw, message):
    with pytest.raises(TMPlanError) as err:
        make_plan(**kw)
    assert str(err.value) == message


def test_plan_limits_are_inclusive():
    plan = make_plan(5, anchors=3, max_device_features=10, max_frames=60)  # 8 + 2 x 6 + 10 x 4 frames
    assert plan.device_features == 10 and plan.frames == 60
    assert make_plan(5, anchors=3, max_frames=1000).frames == 60


def test_signal_matrix_is_the_seeded_bernoulli_draw_with_rank_n():
    plan = make_plan(6, anchors=3, signals=14, seed=4)
    x = plan.signal_matrix()
    assert x.shape == (14, 6) and x.dtype == bool
    assert np.linalg.matrix_rank(x.astype(float)) == 6 and x.any(axis=1).all()
    # the rows that were not empty are the first Bernoulli(1/2) draw of the seed, unchanged
    x0 = np.random.default_rng(4).random((14, 6)) < 0.5
    keep = x0.any(axis=1)
    np.testing.assert_array_equal(x[keep], x0[keep])
    # a copy: changing it leaves the plan's signals alone
    x[:] = False
    assert plan.signal_matrix().any()
    # another density (TMPlan field) is another draw of the same generator
    dense = TMPlan(n_features=6, anchors=3, anchor_features=6, signals=30, signal_density=0.25, seed=4)
    x1 = np.random.default_rng(4).random((30, 6)) < 0.25
    keep = x1.any(axis=1)
    np.testing.assert_array_equal(dense.signal_matrix()[keep], x1[keep])


def test_an_empty_signal_gets_one_lit_feature():
    # one data feature: a signal that drew 0 would be empty; every signal must light it
    x = make_plan(1, anchors=3, signals=12, anchor_features=3, seed=2).signal_matrix()
    assert x.all()
    # two features, many signals: empty rows were fixed with exactly one feature
    plan = make_plan(2, anchors=3, signals=40, anchor_features=3, seed=1)
    x0 = np.random.default_rng(1).random((40, 2)) < 0.5
    empty = ~x0.any(axis=1)
    assert empty.any()
    fixed = plan.signal_matrix()[empty]
    assert (fixed.sum(axis=1) == 1).all()


def _expected_patterns(plan: TMPlan):
    """The acquisition order of docs/tm_retrieval.md built with plain loops."""
    n, big_n, s = plan.n_features, plan.device_features, plan.anchors
    k = [round(i * plan.anchor_features / s) for i in range(s + 1)]
    x = plan.signal_matrix()
    rows, kinds = [], []

    def add(p, kind):
        rows.append(p)
        kinds.append(kind)

    d1 = plan.dark_repeats // 2
    r1 = (plan.anchor_repeats + 1) // 2
    for _ in range(d1):
        add(np.zeros(big_n, bool), ("dark",))
    pairs = [(i, j) for i in range(s + 1) for j in range(i + 1, s + 1)]
    for r in range(r1):
        for p, (i, j) in enumerate(pairs):
            pat = np.zeros(big_n, bool)
            pat[n + k[i]: n + k[j]] = True
            add(pat, ("first", r, p))
    for kk in range(plan.signals):
        for ss in range(s + 1):
            pat = np.zeros(big_n, bool)
            pat[:n] = x[kk]
            pat[n: n + k[ss]] = True
            add(pat, ("signal", kk, ss))
    for r in range(plan.anchor_repeats - r1):
        for p, (i, j) in enumerate(pairs):
            pat = np.zeros(big_n, bool)
            pat[n + k[i]: n + k[j]] = True
            add(pat, ("last", r, p))
    for _ in range(plan.dark_repeats - d1):
        add(np.zeros(big_n, bool), ("dark",))
    return np.array(rows), kinds


@pytest.mark.parametrize("n, s, k, na, r, d", [(3, 3, 4, 4, 3, 5), (4, 4, 5, 6, 2, 4), (2, 3, 3, 3, 1, 3)])
def test_build_patterns_matches_the_documented_order(n, s, k, na, r, d):
    plan = make_plan(n, anchors=s, signals=k, anchor_features=na, anchor_repeats=r, dark_repeats=d)
    patterns, layout = build_patterns(plan)
    want, kinds = _expected_patterns(plan)
    assert patterns.dtype == bool and patterns.shape == want.shape == (plan.frames, n + na)
    np.testing.assert_array_equal(patterns, want)
    dark = [i for i, kd in enumerate(kinds) if kd[0] == "dark"]
    np.testing.assert_array_equal(layout.dark, dark)
    npair = s * (s + 1) // 2
    for name, arr in (("first", layout.anchor_first), ("last", layout.anchor_last)):
        idx = {kd[1:]: i for i, kd in enumerate(kinds) if kd[0] == name}
        reps = len(idx) // npair
        assert arr.shape == (reps, npair)
        for (rep, p), i in idx.items():
            assert arr[rep, p] == i
    assert layout.anchor_first.shape[0] == (r + 1) // 2 and layout.anchor_last.shape[0] == r // 2
    assert layout.signal.shape == (k, s + 1)
    for i, kd in enumerate(kinds):
        if kd[0] == "signal":
            assert layout.signal[kd[1], kd[2]] == i


# ============================================================================ acquire: a scripted device
def _speckle(m: int = 101) -> np.ndarray:
    """Exponential quantiles whose median is exactly ln 2 (m odd)."""
    return -np.log(1.0 - (np.arange(m) + 0.5) / m)


def _speckle_with_hot(n_hot: int, m: int = 100) -> np.ndarray:
    """m values, median exactly ln 2 (both middle values), the n_hot largest always clip."""
    free = np.concatenate([np.linspace(0.01, 0.6, 49), [LN2, LN2], np.linspace(0.8, 1.0, m - n_hot - 51)])
    return np.concatenate([free, np.full(n_hot, 1e9)])


class ScriptedDevice:
    """A ``drivers.Device`` stand-in: a lit frame is ``dark + f * flux * macro^2 * exposure * e``.

    ``e`` is fixed per pixel with median ln 2, so the probe's level (median / ln 2) is exactly
    ``flux * macro^2 * exposure`` when the lit factors are 1; ``f`` alternates between the two lit
    frames of a probe (``lit_factors``, mean 1).
    """

    def __init__(self, flux, *, e=None, dark=0.0, lit_factors=(1.25, 0.75), n_features=8, exposure_us=100.0,
                 frame_time_us=500.0, macro=1, roi=(32, 32), bit_depth=8):
        self.flux = flux
        self.e = _speckle() if e is None else np.asarray(e, dtype=float)
        self.dark = dark
        self.lit_factors = lit_factors
        self._settings = DeviceSettings(
            n_features=n_features, exposure_us=exposure_us, frame_time_us=frame_time_us, bit_depth=bit_depth,
            camera_roi={"row": 0, "col": 0, "height_px": 1, "width_px": self.e.size},
            input_roi={"row": 0, "col": 0, "height_mirrors": roi[0], "width_mirrors": roi[1]},
            macro_pixel_mirrors=macro)
        self.batches: list[np.ndarray] = []
        self.progress: list[object] = []
        self.configured: list[dict] = []

    @property
    def settings(self) -> DeviceSettings:
        return self._settings

    @property
    def n_outputs(self) -> int:
        return self._settings.n_outputs

    @property
    def n_features(self) -> int:
        return self._settings.n_features

    def configure(self, **changes):
        self.configured.append(changes)
        self._settings = DeviceSettings.model_validate({**self._settings.model_dump(), **changes})
        return self._settings

    def acquire(self, patterns, progress=None):
        p = np.asarray(patterns, dtype=bool)
        self.batches.append(p.copy())
        self.progress.append(progress)
        st = self._settings
        level = self.flux * st.macro_pixel_mirrors ** 2 * st.exposure_us
        out, lit = [], 0
        for row in p:
            if row.any():
                y = self.dark + self.lit_factors[lit % 2] * level * self.e
                lit += 1
            else:
                y = np.full(self.e.size, float(self.dark))
            out.append(np.clip(y, 0.0, st.adc_max_dn))
        return np.array(out)

    @property
    def frames(self) -> int:
        return sum(b.shape[0] for b in self.batches)


def _small_plan():
    return make_plan(4, anchors=3, anchor_features=4)  # 8 device features


def test_brightest_pattern_lights_every_other_data_feature_and_all_anchors():
    plan = make_plan(5, anchors=3, anchor_features=4)
    np.testing.assert_array_equal(brightest_pattern(plan), [1, 0, 1, 0, 1, 1, 1, 1, 1])
    assert brightest_pattern(plan).dtype == bool


@pytest.mark.parametrize("n, want", [(5, 4), (6, 4), (7, 3), (120, 1), (30, 2), (31, 1)])
def test_max_macro_is_the_largest_fitting_macro_pixel(n, want):
    dev = ScriptedDevice(1.0, roi=(10, 12), n_features=1)
    # (10 // a) * (12 // a): 120, 30, 12, 6, 4 for a = 1..5
    assert max_macro(dev, n) == want


def test_light_probe_uses_two_dark_and_two_brightest_frames_and_auto_is_the_default():
    plan = _small_plan()
    dev = ScriptedDevice(0.08, exposure_us=100.0)  # level 8 DN, target 255 / 8 = 31.875 DN
    chk = set_light(dev, plan)
    bright = brightest_pattern(plan)
    for b in dev.batches:
        off = np.zeros_like(bright)
        np.testing.assert_array_equal(b, np.stack([off, off, bright, bright]))
    assert dev.progress == [False, False]
    # one step: exposure x 31.875 / 8, no macro-pixel change (so no macro key), nothing else configured
    assert dev.configured == [{"exposure_us": pytest.approx(398.4375, rel=1e-12)}]
    assert chk.exposure_us == pytest.approx(398.4375, rel=1e-12)
    assert chk.macro_pixel_mirrors == 1 and chk.probe_frames == 8
    assert chk.mean_signal_dn == pytest.approx(0.08 * 398.4375, rel=1e-12)
    assert chk.saturated_fraction == 0.0 and chk.dark_median_dn == 0.0


def test_auto_light_grows_the_macro_pixel_when_the_frame_time_caps_the_exposure():
    plan = _small_plan()
    dev = ScriptedDevice(0.0125, exposure_us=400.0)  # 5 DN; x 6.375 needs 2550 us > 500 us frame time
    chk = set_light(dev, plan, "auto")
    # macro ceil(sqrt(2550 / 500)) = 3, exposure 2550 / 3^2
    assert dev.configured == [{"exposure_us": pytest.approx(2550 / 9, rel=1e-12), "macro_pixel_mirrors": 3}]
    assert chk.macro_pixel_mirrors == 3 and chk.mean_signal_dn == pytest.approx(31.875, rel=1e-9)
    # the input ROI caps the macro-pixel: 6x6 mirrors hold 8 features at 2 mirrors, not 3
    dev = ScriptedDevice(0.0125, exposure_us=400.0, roi=(6, 6))
    chk = set_light(dev, plan, "auto")
    assert dev.configured == [{"exposure_us": 500.0, "macro_pixel_mirrors": 2}]
    assert chk.mean_signal_dn == pytest.approx(25.0, rel=1e-12)  # within 25 % of 31.875: kept
    assert (chk.exposure_us, chk.macro_pixel_mirrors, chk.probe_frames) == (500.0, 2, 8)


def test_auto_light_takes_at_most_eight_steps():
    plan = _small_plan()
    dev = ScriptedDevice(0.025, exposure_us=400.0, roi=(4, 4))  # macro-pixel capped at 1: 12.5 DN at most
    chk = set_light(dev, plan, "auto")
    assert dev.configured == [{"exposure_us": 500.0}] * 8
    assert dev.frames == 36 and chk.probe_frames == 36
    assert chk.mean_signal_dn == pytest.approx(12.5, rel=1e-9) and chk.exposure_us == 500.0


def test_auto_light_on_a_dark_device_steps_up_4x_then_refuses():
    plan = _small_plan()
    dev = ScriptedDevice(0.0, exposure_us=100.0)
    with pytest.raises(NoLightError) as err:
        set_light(dev, plan)
    assert str(err.value) == (
        "the brightest planned pattern is only 0.00 DN above dark at 500 us exposure, 10-mirror "
        "macro-pixels, 0 dB (at least 4 DN needed): check the laser, raise the exposure or macro-pixel, or "
        "use --light auto")
    # x4 per step; the macro-pixel grows as ceil(a sqrt(4 t / frame time)) up to the 32x32 ROI's cap 10
    assert dev.configured == [
        {"exposure_us": 400.0}, {"exposure_us": 400.0, "macro_pixel_mirrors": 2},
        {"exposure_us": 400.0, "macro_pixel_mirrors": 4}, {"exposure_us": 400.0, "macro_pixel_mirrors": 8},
        {"exposure_us": 500.0, "macro_pixel_mirrors": 10}, {"exposure_us": 500.0}, {"exposure_us": 500.0},
        {"exposure_us": 500.0}]
    assert dev.frames == 36


@pytest.mark.parametrize("flux, t0, steps", [
    (0.025, 100.0, [1275.0]),  # 2.5 DN: scaled to the target directly
    (1 / 64, 128.0, [2040.0]),  # exactly 2 DN: still scaled directly
    (0.01, 100.0, [400.0, 3187.5]),  # 1 DN: below 2 DN the level is not trusted, x4 first
])
def test_auto_light_below_2_dn_steps_up_4x(flux, t0, steps):
    dev = ScriptedDevice(flux, exposure_us=t0, frame_time_us=5000.0, lit_factors=(1.0, 1.0))
    set_light(dev, _small_plan())
    assert [c["exposure_us"] for c in dev.configured] == pytest.approx(steps, rel=1e-12)
    assert all(set(c) == {"exposure_us"} for c in dev.configured)


def test_auto_light_steps_down_hard_when_a_third_of_the_pixels_clip():
    plan = _small_plan()
    # 40 of 100 pixels always clip (stray light): the level is not reduced by 1.99 but by 4 each step
    dev = ScriptedDevice(0.25, e=_speckle_with_hot(40), exposure_us=64.0, lit_factors=(1.0, 1.0))
    with pytest.raises(SaturatedDeviceError) as err:
        set_light(dev, plan)
    assert [c["exposure_us"] for c in dev.configured] == [16.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert str(err.value) == (
        "the brightest planned pattern (6 lit features) puts 40.0% of the pixels at the ADC maximum at 1 us "
        "exposure, 1-mirror macro-pixels, 0 dB (at most 1% allowed): lower the exposure, the macro-pixel or "
        "the gain, or use --light auto")
    # exactly 30 %: not "more than a third", the level is scaled as measured (x 31.875 / 16)
    dev = ScriptedDevice(0.25, e=_speckle_with_hot(30), exposure_us=64.0, lit_factors=(1.0, 1.0))
    with pytest.raises(SaturatedDeviceError, match=r"30\.0% of the pixels"):
        set_light(dev, plan)
    assert dev.configured[0] == {"exposure_us": 127.5}


def test_keep_light_accepts_the_limits_exactly():
    plan = _small_plan()
    # 4 DN exactly (1/32 x 128 us) and exactly 1 % of the lit pixels clipped
    dev = ScriptedDevice(1 / 32, e=_speckle_with_hot(1), exposure_us=128.0, lit_factors=(1.0, 1.0))
    chk = set_light(dev, plan, "keep")
    assert (chk.mean_signal_dn, chk.saturated_fraction, chk.dark_median_dn) == (4.0, 0.01, 0.0)
    assert (chk.macro_pixel_mirrors, chk.exposure_us, chk.probe_frames) == (1, 128.0, 4)
    assert dev.configured == [] and dev.frames == 4


def test_keep_light_refuses_a_saturating_or_dark_device():
    plan = _small_plan()
    dev = ScriptedDevice(1 / 32, e=_speckle_with_hot(2), exposure_us=128.0, lit_factors=(1.0, 1.0))
    with pytest.raises(SaturatedDeviceError, match=r"puts 2\.0% of the pixels"):
        set_light(dev, plan, "keep")
    dev = ScriptedDevice(1 / 32, exposure_us=127.0, lit_factors=(1.0, 1.0))
    with pytest.raises(NoLightError, match=r"only 3\.97 DN above dark at 127 us exposure"):
        set_light(dev, plan, "keep")
    assert dev.configured == [] and dev.frames == 4


def test_probe_level_uses_both_lit_frames_and_both_dark_frames():
    plan = _small_plan()
    # level 40 DN above a 16 DN dark; lit frames at 1.25 and 0.75 x the level: their mean is the level
    dev = ScriptedDevice(40 / 128, exposure_us=128.0, dark=16.0, lit_factors=(1.25, 0.75))
    chk = set_light(dev, plan, "keep")
    assert chk.mean_signal_dn == pytest.approx(40.0, rel=1e-12)
    assert chk.dark_median_dn == 16.0
    # only the brightest pixel of the 1.25 x frame clips: 16 + 50 x 5.31 >= 255 > 16 + 50 x 4.21
    e = _speckle()
    assert 16 + 50 * e[-1] >= 255 > max(16 + 50 * e[-2], 16 + 30 * e[-1])
    assert chk.saturated_fraction == 1 / 202


def test_dark_frames_at_the_adc_maximum_are_refused():
    plan = _small_plan()
    dev = ScriptedDevice(0.1, dark=254.0)
    with pytest.raises(SaturatedDeviceError) as err:
        set_light(dev, plan)
    assert str(err.value) == ("dark frames (all mirrors off) already sit at the ADC maximum 255 DN: lower "
                              "the black level / analog gain or block the stray light")
    assert dev.frames == 4 and dev.configured == []
    # just below: not a dark-frame refusal (the signal check decides)
    dev = ScriptedDevice(0.0, dark=253.5)
    with pytest.raises(NoLightError):
        set_light(dev, plan, "keep")


def test_set_light_refuses_an_unknown_mode_and_a_plan_that_does_not_fit():
    plan = _small_plan()
    dev = ScriptedDevice(0.1)
    with pytest.raises(TMPlanError) as err:
        set_light(dev, plan, "bright")
    assert str(err.value) == "light must be 'auto' or 'keep', got 'bright'"
    dev = ScriptedDevice(0.1, n_features=4, roi=(4, 4), macro=2)
    with pytest.raises(TMPlanError) as err:
        set_light(dev, plan)
    assert str(err.value) == ("the plan's 8 device features (4 data + 4 anchor) do not fit the 4x4-mirror "
                              "input ROI with 2-mirror macro-pixels (at most 4): enlarge the input ROI or "
                              "use fewer features")
    assert dev.frames == 0 and dev.configured == []


def test_set_light_sets_the_feature_count_first_when_it_differs():
    plan = _small_plan()
    dev = ScriptedDevice(0.25, n_features=3, roi=(2, 4), exposure_us=128.0)  # capacity exactly 8
    set_light(dev, plan, "keep")
    assert dev.configured == [{"n_features": 8}] and dev.settings.n_features == 8
    assert all(b.shape == (4, 8) for b in dev.batches)


# ============================================================================ acquire_plan
class FakeBar:
    made: ClassVar[list[FakeBar]] = []

    def __init__(self, **kw):
        self.kw = kw
        self.updates: list[int] = []
        self.closed = False
        FakeBar.made.append(self)

    def update(self, n):
        self.updates.append(n)

    def close(self):
        self.closed = True


@pytest.fixture
def fake_bar(monkeypatch):
    FakeBar.made = []
    monkeypatch.setattr("tqdm.auto.tqdm", FakeBar)
    return FakeBar.made


class CodeDevice:
    """Returns, for each pattern, 3 pixels ``3 v + (0, 1, 2)`` with v the pattern read as a binary number;
    warns like a device with clipped pixels (and once with an unrelated warning)."""

    def __init__(self, bit_depth=8, fail_at=None):
        self._settings = DeviceSettings(n_features=8, bit_depth=bit_depth,
                                        camera_roi={"row": 0, "col": 0, "height_px": 1, "width_px": 3})
        self.sizes: list[int] = []
        self.progress: list[object] = []
        self.fail_at = fail_at

    @property
    def settings(self):
        return self._settings

    @property
    def n_outputs(self):
        return 3

    def acquire(self, patterns, progress=None):
        if self.fail_at is not None and len(self.sizes) == self.fail_at:
            raise RuntimeError("device lost")
        self.sizes.append(patterns.shape[0])
        self.progress.append(progress)
        warnings.warn("clipped", SaturationWarning, stacklevel=2)
        warnings.warn("unrelated", RuntimeWarning, stacklevel=2)
        v = patterns.astype(np.int64) @ (2 ** np.arange(8))
        return 3 * v[:, None] + np.arange(3)[None, :]


def _code_patterns(f):
    return ((np.arange(f)[:, None] >> np.arange(8)[None, :]) & 1).astype(bool)


def test_acquire_plan_chunks_fills_in_order_and_reports_progress(fake_bar):
    dev = CodeDevice()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = acquire_plan(dev, _code_patterns(10), chunk=4)
    assert out.dtype == np.uint8 and out.shape == (10, 3)
    np.testing.assert_array_equal(out, 3 * np.arange(10)[:, None] + np.arange(3))
    assert dev.sizes == [4, 4, 2] and dev.progress == [False, False, False]
    # saturation warnings are silenced, any other warning is not
    assert not any(issubclass(w.category, SaturationWarning) for w in seen)
    assert sum(issubclass(w.category, RuntimeWarning) for w in seen) == 3
    (bar,) = fake_bar
    assert bar.kw == {"total": 10, "unit": "frame", "desc": "tm-retrieve", "leave": False}
    assert bar.updates == [4, 4, 2] and bar.closed


def test_acquire_plan_defaults_and_deep_frames(fake_bar):
    dev = CodeDevice(bit_depth=12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = acquire_plan(dev, _code_patterns(200))
    assert out.dtype == np.uint16  # the device's frame type: 3 x 199 + 2 does not fit uint8
    np.testing.assert_array_equal(out[:, 2], 3 * np.arange(200) + 2)
    assert dev.sizes == [200]  # one chunk of at most 1024 frames
    assert len(fake_bar) == 1 and fake_bar[0].updates == [200]  # a progress bar by default


def test_acquire_plan_without_progress_and_on_failure(fake_bar):
    dev = CodeDevice()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        acquire_plan(dev, _code_patterns(5), progress=False, chunk=2)
        assert fake_bar == [] and dev.sizes == [2, 2, 1]
        with pytest.raises(RuntimeError, match="device lost"):
            acquire_plan(CodeDevice(fail_at=1), _code_patterns(5), chunk=2)
    (bar,) = fake_bar
    assert bar.closed and bar.updates == [2]


# ============================================================================ retrieval pieces
def _rng_complex(rng, *shape):
    return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def test_mds_recovers_planar_points_up_to_a_rigid_motion():
    rng = np.random.default_rng(0)
    pts = _rng_complex(rng, 3, 7) * 0.05  # small: eigenvalues below 1
    pts[:, 0] = 0.0
    dist2 = np.abs(pts[:, :, None] - pts[:, None, :]) ** 2
    z, ratio = mds_points(dist2)
    assert z.shape == (3, 7) and ratio.shape == (3,)
    np.testing.assert_array_equal(z[:, 0], 0.0)
    np.testing.assert_allclose(np.abs(z[:, :, None] - z[:, None, :]) ** 2, dist2, atol=1e-13)
    assert (ratio < 1e-10).all()
    # the rigid motion is a rotation or a reflection about the origin: |z_s| = |p_s| and
    # <z_s, z_t> = <p_s, p_t> up to conjugation
    np.testing.assert_allclose(np.abs(z), np.abs(pts), atol=1e-12)


def test_mds_eigenvalue_ratio_measures_the_third_dimension():
    rng = np.random.default_rng(1)
    p3 = rng.normal(size=(2, 6, 3)) * np.array([0.3, 0.2, 0.05])  # 3-D points, scale < 1
    dist2 = ((p3[:, :, None, :] - p3[:, None, :, :]) ** 2).sum(-1)
    _, ratio = mds_points(dist2)
    # the nonzero eigenvalues of the centred Gram matrix are the squared singular values of the
    # centred coordinates
    for r in range(2):
        s = np.linalg.svd(p3[r] - p3[r].mean(axis=0), compute_uv=False)
        assert ratio[r] == pytest.approx(s[2] ** 2 / s[1] ** 2, rel=1e-9)


def test_mds_of_two_points():
    z, ratio = mds_points(np.array([[[0.0, 4.0], [4.0, 0.0]]]))
    assert z[0, 0] == 0 and abs(z[0, 1]) == pytest.approx(2.0, rel=1e-12)
    np.testing.assert_array_equal(ratio, [0.0])


def _true_points(rng, r, p):
    pts = _rng_complex(rng, r, p)
    pts[:, 0] = 0.0
    return pts


def test_laterate_solves_exact_distances_and_weights_out_saturated_ones():
    rng = np.random.default_rng(2)
    r, k, p = 3, 4, 6
    pts = _true_points(rng, r, p)
    z = _rng_complex(rng, r, k)
    d2 = np.abs(z[:, :, None] - pts[:, None, :]) ** 2
    zz, w, resid, ok = laterate(pts, d2)
    np.testing.assert_allclose(zz, z, atol=1e-10)
    np.testing.assert_allclose(w, np.abs(z) ** 2, atol=1e-10)
    assert (resid < 1e-10).all() and ok.all() and ok.dtype == bool
    # every equation valid: same as no mask
    zv, *_ = laterate(pts, d2, np.ones(d2.shape, bool))
    np.testing.assert_allclose(zv, zz, atol=1e-12)
    # saturated values (corrupted here) are left out; 3 valid equations still determine z
    valid = np.ones(d2.shape, bool)
    valid[0, 1, :3] = False  # 3 valid left
    valid[2, 3, 1:] = False  # 1 valid left: not enough
    valid[1, 0, 5] = False
    bad = np.where(valid, d2, d2 + 50.0)
    zz, w, resid, ok = laterate(pts, bad, valid)
    expect_ok = np.ones((r, k), bool)
    expect_ok[2, 3] = False
    np.testing.assert_array_equal(ok, expect_ok)
    np.testing.assert_allclose(zz[expect_ok], z[expect_ok], atol=1e-9)
    np.testing.assert_allclose(w[expect_ok], (np.abs(z) ** 2)[expect_ok], atol=1e-9)
    assert (resid[expect_ok] < 1e-9).all()


def _lstsq_lateration(pts_row, d2_row, valid_row=None):
    """Second implementation: np.linalg.lstsq of [-2 Re p, -2 Im p, 1] (u, v, w) = d2 - |p|^2."""
    a = np.stack([-2 * pts_row.real, -2 * pts_row.imag, np.ones(pts_row.size)], axis=1)
    rhs = d2_row - np.abs(pts_row) ** 2
    if valid_row is not None:
        a, rhs = a[valid_row], rhs[valid_row]
    sol = np.linalg.lstsq(a, rhs, rcond=None)[0]
    res = np.linalg.norm(a @ sol - rhs) / np.linalg.norm(rhs)
    return sol[0] + 1j * sol[1], sol[2], res


def test_laterate_least_squares_matches_lstsq_on_noisy_distances():
    rng = np.random.default_rng(3)
    r, k, p = 2, 5, 7
    pts = _true_points(rng, r, p) * 0.1  # small: |d2 - |p|^2| below 1
    z = _rng_complex(rng, r, k) * 0.1
    d2 = np.abs(z[:, :, None] - pts[:, None, :]) ** 2 * (1 + 0.05 * rng.normal(size=(r, k, p)))
    valid = rng.random((r, k, p)) > 0.2
    valid[..., :3] = True
    for mask in (None, valid):
        zz, w, resid, ok = laterate(pts, d2, mask)
        assert ok.all()
        for i in range(r):
            for j in range(k):
                ez, ew, eres = _lstsq_lateration(pts[i], d2[i, j], None if mask is None else mask[i, j])
                assert zz[i, j] == pytest.approx(ez, rel=1e-9, abs=1e-12)
                assert w[i, j] == pytest.approx(ew, rel=1e-9, abs=1e-12)
                assert resid[i, j] == pytest.approx(eres, rel=1e-8)


def test_solve_rows_recovers_b_and_ignores_signals_that_are_not_ok():
    rng = np.random.default_rng(4)
    x = make_plan(4, anchors=3, signals=9, seed=3).signal_matrix()
    b = _rng_complex(rng, 3, 4)
    z = b @ x.T.astype(float)
    np.testing.assert_allclose(solve_rows(z, x), b, atol=1e-12)
    np.testing.assert_allclose(solve_rows(z, x, None, np.linalg.pinv(x.T.astype(float))), b, atol=1e-12)
    ok = np.ones(z.shape, bool)
    ok[1, [0, 4]] = False
    zbad = np.where(ok, z, 1e3)
    np.testing.assert_allclose(solve_rows(zbad, x, ok), b, atol=1e-10)
    np.testing.assert_allclose(solve_rows(z, x, np.ones(z.shape, bool)), b, atol=1e-12)


# ============================================================================ retrieve on synthetic frames
def _anchor_patterns(plan):
    """(S, N) bool: the anchors a_1..a_S (first k_s anchor features)."""
    k = [round(s * plan.anchor_features / plan.anchors) for s in range(plan.anchors + 1)]
    a = np.zeros((plan.anchors, plan.device_features), bool)
    for s in range(1, plan.anchors + 1):
        a[s - 1, plan.n_features: plan.n_features + k[s]] = True
    return a


def _synthetic(plan, m, seed, data_gain=1.0, scale=1.0):
    """Frames ``dark + |B p|^2`` of a known B (m, N) for every planned pattern p."""
    rng = np.random.default_rng(seed)
    b = _rng_complex(rng, m, plan.device_features) * scale
    b[:, : plan.n_features] *= data_gain
    dark = rng.uniform(5.0, 10.0, m)
    patterns, layout = build_patterns(plan)
    frames = dark[None, :] + np.abs(patterns.astype(float) @ b.T) ** 2
    return b, dark, frames, layout


def _joint_error(res, plan, b):
    """Relative error of [B_hat, B_hat a_s] against [B, B a_s], one phase/conjugation per row."""
    truth = np.concatenate([b[:, : plan.n_features], b @ _anchor_patterns(plan).astype(float).T], axis=1)
    est = np.concatenate([res.matrix, res.anchor_fields], axis=1)
    return rel_frobenius_error(est, truth)


@pytest.mark.parametrize("block_rows", [3, 0, 256])
def test_retrieve_is_exact_on_exact_frames(block_rows):
    plan = make_plan(4, anchors=4, signals=8, dark_repeats=4)
    b, dark, frames, layout = _synthetic(plan, 7, seed=5)
    res = retrieve(frames, plan, layout, block_rows=block_rows)
    assert res.matrix.shape == (7, 4) and res.anchor_fields.shape == (7, 4)
    assert res.matrix.dtype == np.complex128 and res.anchor_fields.dtype == np.complex128
    assert _joint_error(res, plan, b) < 1e-8
    np.testing.assert_allclose(res.dark_dn, dark, rtol=1e-12)
    d = res.diagnostics
    for k in ("mds_eig_ratio", "lateration_resid", "solve_resid", "modulus_consistency", "anchor_drift"):
        assert d[k].shape == (7,) and (d[k] < 1e-8).all(), k
        assert d[f"{k}_median"] == pytest.approx(float(np.median(d[k])), abs=1e-15)
    np.testing.assert_array_equal(d["saturated"], np.zeros(7))
    assert d["saturated_frames_total"] == 0
    assert d["signal_condition_number"] == pytest.approx(np.linalg.cond(plan.signal_matrix().astype(float)),
                                                         rel=1e-9)


def test_retrieve_leaves_saturated_frames_out():
    plan = make_plan(4, anchors=5, signals=8, anchor_features=5, dark_repeats=4)
    b, _, frames, layout = _synthetic(plan, 6, seed=6, data_gain=4.0)
    anchor_max = frames[np.concatenate([layout.dark, layout.anchor_first.ravel(),
                                        layout.anchor_last.ravel()])].max()
    adc = float(np.quantile(frames[layout.signal.ravel()], 0.95))
    assert adc > anchor_max  # only signal frames clip
    clipped = np.minimum(frames, adc)
    clipped[layout.signal[2], 4] = adc  # one signal of row 4 entirely clipped: dropped for that row
    sig = clipped[layout.signal]  # (K, S+1, m)
    valid_count = (sig < adc).sum(axis=1)
    assert ((valid_count >= 3) | (valid_count == 0)).all() and (sig >= adc).any()
    res = retrieve(clipped, plan, layout, adc_max_dn=adc)
    assert _joint_error(res, plan, b) < 1e-7
    np.testing.assert_array_equal(res.diagnostics["saturated"], (clipped >= adc).sum(axis=0))
    assert res.diagnostics["saturated_frames_total"] == int((clipped >= adc).sum())
    # the same frames with the clipped values taken at face value are not exact
    assert _joint_error(retrieve(clipped, plan, layout), plan, b) > 1e-3


@pytest.mark.parametrize("reps, scale", [(2, 1.0), (3, 1.0), (2, 0.01)])
def test_anchor_drift_is_the_relative_change_between_the_halves(reps, scale):
    plan = make_plan(3, anchors=3, anchor_repeats=reps, dark_repeats=2)
    _, dark, frames, layout = _synthetic(plan, 4, seed=7, scale=scale)
    eps = 0.1
    frames = frames.copy()
    last = layout.anchor_last.ravel()
    frames[last] = dark + (1 + eps) * (frames[last] - dark)
    res = retrieve(frames, plan, layout)
    r2 = reps // 2
    # a1 = D, a2 = (1 + eps) D, mean over all repeats = (1 + eps r2 / R) D
    np.testing.assert_allclose(res.diagnostics["anchor_drift"], eps / (1 + eps * r2 / reps), rtol=1e-7)


def test_anchor_drift_is_undefined_with_one_repeat():
    plan = make_plan(3, anchors=3, anchor_repeats=1, dark_repeats=2)
    b, _, frames, layout = _synthetic(plan, 4, seed=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmedian of an all-NaN row
        res = retrieve(frames, plan, layout)
    assert np.isnan(res.diagnostics["anchor_drift"]).all()
    assert math.isnan(res.diagnostics["anchor_drift_median"])
    assert _joint_error(res, plan, b) < 1e-8


@pytest.mark.parametrize("scale", [1.0, 0.03])  # 0.03: fields, distances and norms all below 1
def test_retrieve_fit_diagnostics_match_a_second_implementation(scale):
    plan = make_plan(3, anchors=5, signals=6, anchor_features=5, dark_repeats=2)
    m = 5
    b, dark, frames, layout = _synthetic(plan, m, seed=9, scale=scale)
    rng = np.random.default_rng(10)
    frames = frames.copy()
    sig_rows = layout.signal.ravel()
    frames[sig_rows] = dark + (frames[sig_rows] - dark) * (1 + 0.03 * rng.normal(size=(sig_rows.size, m)))
    res = retrieve(frames, plan, layout)
    x = plan.signal_matrix().astype(float)
    proj = np.linalg.pinv(x.T) @ x.T  # onto the row space of X^T (right multiplication)
    pts = -(_anchor_patterns(plan).astype(float) @ b.T).T  # true p_s = -B a_s, s = 1..S
    pts = np.concatenate([np.zeros((m, 1)), pts], axis=1)
    d = res.diagnostics
    for i in range(m):
        zs, ws, rs = zip(*(_lstsq_lateration(pts[i], frames[layout.signal[k], i] - dark[i])
                           for k in range(plan.signals)), strict=True)
        z, w = np.array(zs), np.array(ws)
        zfit = z @ proj
        assert d["lateration_resid"][i] == pytest.approx(np.median(rs), rel=1e-6)
        assert d["solve_resid"][i] == pytest.approx(np.linalg.norm(z - zfit) / np.linalg.norm(z), rel=1e-6)
        mod = np.abs(zfit) ** 2
        assert d["modulus_consistency"][i] == pytest.approx(np.median(np.abs(w - mod) / mod.mean()), rel=1e-6)
        assert d["solve_resid"][i] > 1e-3  # the noise is seen
        # the recovered row is the least-squares row of the laterated fields, up to phase/conjugation
        assert rel_frobenius_error(res.matrix[i:i + 1], (z @ np.linalg.pinv(x.T))[None]) < 1e-6


def test_mds_eig_ratio_of_noisy_anchor_distances():
    plan = make_plan(3, anchors=5, signals=6, anchor_features=5, anchor_repeats=1, dark_repeats=2)
    m = 4
    _, dark, frames, layout = _synthetic(plan, m, seed=11)
    rng = np.random.default_rng(12)
    frames = frames.copy()
    rows = layout.anchor_first.ravel()
    frames[rows] = dark + (frames[rows] - dark) * (1 + 0.05 * rng.normal(size=(rows.size, m)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = retrieve(frames, plan, layout)
    s1 = plan.anchors + 1
    for i in range(m):
        dmat = np.zeros((s1, s1))
        for p, (a, c) in enumerate(plan.anchor_pair_index()):
            dmat[a, c] = dmat[c, a] = max(frames[rows[p], i] - dark[i], 0.0)
        g = -0.5 * (dmat - dmat.mean(0)[None] - dmat.mean(1)[:, None] + dmat.mean())
        ev = np.sort(np.linalg.eigvalsh(g))[::-1]
        assert res.diagnostics["mds_eig_ratio"][i] == pytest.approx(abs(ev[2]) / ev[1], rel=1e-8)
        assert res.diagnostics["mds_eig_ratio"][i] > 1e-4


def test_retrieve_refuses_frames_of_another_plan():
    plan = make_plan(3, anchors=3, dark_repeats=2)
    _, layout = build_patterns(plan)
    with pytest.raises(ValueError) as err:
        retrieve(np.zeros((plan.frames - 1, 5)), plan, layout)
    assert str(err.value) == f"frames must be ({plan.frames}, m) for this plan, got ({plan.frames - 1}, 5)"
    with pytest.raises(ValueError, match=rf"got \({plan.frames},\)"):
        retrieve(np.zeros(plan.frames), plan, layout)


def test_retrieve_limits_the_blas_threads(monkeypatch):
    mod = importlib.import_module("host.tm.retrieve")  # the package attribute is the function
    seen = []

    def spy(*args):
        seen.append([p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"])

    monkeypatch.setattr(mod, "_retrieve", spy)
    plan = make_plan(3, anchors=3, dark_repeats=2)
    _, layout = build_patterns(plan)
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        outer = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        retrieve(np.zeros((plan.frames, 2)), plan, layout)
        retrieve(np.zeros((plan.frames, 2)), plan, layout, blas_threads=None)
    assert outer and seen[0] == [1] * len(outer)
    assert seen[1] == outer


# ============================================================================ align
def test_align_rows_picks_phase_and_conjugation():
    rng = np.random.default_rng(13)
    truth = _rng_complex(rng, 4, 5)
    phase = np.exp(1j * np.array([0.3, -2.0, 1.0, 3.0]))[:, None]
    est = truth * phase
    est[1] = np.conj(truth[1]) * phase[1]
    est[3] = np.conj(truth[3]) * phase[3]
    np.testing.assert_allclose(align_rows(est, truth), truth, atol=1e-12)
    # a scaled estimate: only the phase is aligned, the error is the scale
    assert rel_frobenius_error(1.1 * truth * phase, truth) == pytest.approx(0.1, rel=1e-10)
    with pytest.raises(ValueError) as err:
        align_rows(np.zeros((2, 3)), np.zeros((3, 3)))
    assert str(err.value) == "estimate (2, 3) and truth (3, 3) differ in shape"


def test_align_rows_conjugates_only_when_strictly_better():
    # |<c, b>| = |<conj c, b>|: both candidates are as good, the estimate is kept unconjugated
    out = align_rows(np.array([[1.0, 1j]]), np.array([[1.0, 1.0]]))
    np.testing.assert_allclose(out, [[np.exp(-0.25j * np.pi), 1j * np.exp(-0.25j * np.pi)]], atol=1e-15)


def test_pearson_is_the_correlation_of_the_flattened_arrays():
    rng = np.random.default_rng(14)
    a = rng.normal(size=(3, 4))
    b = 2 * a + rng.normal(size=(3, 4)) + 5
    assert pearson(a, b) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1], rel=1e-12)
    assert pearson(a, -a) == pytest.approx(-1.0, rel=1e-12)


# ============================================================================ result
def _tm(m=4, n=3, s=2, bits=10, seed=15):
    rng = np.random.default_rng(seed)
    return RecoveredTM(matrix=_rng_complex(rng, m, n), anchor_fields=_rng_complex(rng, m, s),
                       dark_dn=np.array([-1.5, 0.5, 2.0, 3.0])[:m],
                       pixel_ids=np.array([5, 2049, 4096 + 7, 2 * 2048 + 2047])[:m],
                       mirror_ids=np.array([3, 1140 + 4, 5 * 1140])[:n], mirrors_per_feature=4,
                       settings={"bit_depth": bits, "exposure_us": 10.0},
                       plan={"anchor_features": 5, "anchors": s}, identity={"serial": "X1"},
                       diagnostics={"frames": 12, "solve_resid_median": 0.5},
                       row_diagnostics={"solve_resid": rng.random(m), "saturated": np.arange(m)},
                       device_time_s=12.5)


def test_recovered_tm_predictions():
    tm = _tm()
    assert tm.shape == (4, 3) and tm.adc_max_dn == 1023.0
    assert _tm(bits=8).adc_max_dn == 255.0
    x = np.array([[1, 0, 1], [0.5, -2, 3]])
    inten = np.abs(x @ tm.matrix.T) ** 2
    np.testing.assert_allclose(tm.predict_intensity(x), inten, rtol=1e-12)
    np.testing.assert_allclose(tm.predict_intensity(x[1]), inten[1], rtol=1e-12)
    assert tm.predict_intensity(x[1]).shape == (4,)
    np.testing.assert_allclose(tm.predict_frames(x, clip=False), inten + tm.dark_dn, rtol=1e-12)
    big = 100 * x
    want = np.clip(10_000 * inten + tm.dark_dn, 0, 1023)
    np.testing.assert_allclose(tm.predict_frames(big), want, rtol=1e-12)
    zero = tm.predict_frames(np.zeros(3))
    np.testing.assert_allclose(zero, np.clip(tm.dark_dn, 0, None))  # negative dark values clip at 0
    assert (tm.predict_frames(np.zeros(3), clip=False) < 0).any()


def test_recovered_tm_linear_transform_is_the_anchor_scheme_matrix():
    tm = _tm()
    r = tm.anchor_fields[:, -1]
    c = np.sqrt(2 * 5 / np.mean(np.abs(r) ** 2))
    a = np.array([[c * (np.conj(r[i]) * tm.matrix[i, j]).real / abs(r[i]) for j in range(3)]
                  for i in range(4)])
    np.testing.assert_allclose(tm.effective_matrix(), a, rtol=1e-12)
    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(tm.linear_transform(x), x @ a.T, rtol=1e-12)
    np.testing.assert_allclose(tm.linear_transform(x[0]), x[0] @ a.T, rtol=1e-12)
    assert tm.linear_transform(x[0]).shape == (4,)


@pytest.mark.parametrize("x, message", [
    (np.zeros((2, 4)), "predict_intensity needs (b, 3) or (3,) input, got (2, 4)"),
    (np.zeros((1, 2, 3)), "predict_intensity needs (b, 3) or (3,) input, got (1, 2, 3)"),
    (np.zeros(3, complex), "predict_intensity needs finite real input"),
    (np.array([1.0, np.nan, 0.0]), "predict_intensity needs finite real input"),
    (np.array([1.0, np.inf, 0.0]), "predict_intensity needs finite real input"),
])
def test_recovered_tm_refuses_bad_inputs(x, message):
    with pytest.raises(ValueError) as err:
        _tm().predict_intensity(x)
    assert str(err.value) == message
    with pytest.raises(ValueError, match="linear_transform needs"):
        _tm().linear_transform(x)


def test_recovered_tm_file_round_trip(tmp_path):
    tm = _tm()
    path = tm.save(tmp_path / "tm.npz")
    assert path == tmp_path / "tm.npz" and sorted(p.name for p in tmp_path.iterdir()) == ["tm.npz"]
    with np.load(path) as z:
        np.testing.assert_array_equal(z["pixel_rows"], [0, 1, 2, 2])
        np.testing.assert_array_equal(z["pixel_cols"], [5, 1, 7, 2047])
        np.testing.assert_array_equal(z["feature_rows"], [0, 1, 5])
        np.testing.assert_array_equal(z["feature_cols"], [3, 4, 0])
        assert int(z["format_version"]) == 1 and int(z["mirrors_per_feature"]) == 4
        assert json.loads(str(z["settings_json"])) == tm.settings
        np.testing.assert_array_equal(z["diag_saturated"], np.arange(4))
    back = RecoveredTM.load(path)
    for k in ("matrix", "anchor_fields", "dark_dn", "pixel_ids", "mirror_ids"):
        np.testing.assert_array_equal(getattr(back, k), getattr(tm, k))
    assert back.mirrors_per_feature == 4 and back.device_time_s == 12.5
    assert (back.settings, back.plan, back.identity, back.diagnostics) == (tm.settings, tm.plan, tm.identity,
                                                                           tm.diagnostics)
    assert set(back.row_diagnostics) == {"solve_resid", "saturated"}
    np.testing.assert_array_equal(back.row_diagnostics["solve_resid"], tm.row_diagnostics["solve_resid"])


def test_recovered_tm_load_refuses_bad_files(tmp_path):
    missing = tmp_path / "none.npz"
    with pytest.raises(TMFileError) as err:
        RecoveredTM.load(missing)
    assert str(err.value).startswith(f"cannot read {str(missing)!r}: ")
    other = tmp_path / "other.npz"
    np.savez(other, format_version=np.int64(2), matrix=np.zeros((1, 1)))
    with pytest.raises(TMFileError) as err:
        RecoveredTM.load(other)
    assert str(err.value) == f"{str(other)!r} is not a tm.npz of format 1"
    np.savez(other, matrix=np.zeros((1, 1)))
    with pytest.raises(TMFileError, match=r"is not a tm\.npz of format 1"):
        RecoveredTM.load(other)
    # pickled objects are never loaded from a tm.npz
    np.savez(other, format_version=np.int64(1), matrix=np.array([{"x": 1}], dtype=object))
    with pytest.raises(TMFileError, match=r"cannot read .*allow_pickle"):
        RecoveredTM.load(other)


# ============================================================================ runner on a noiseless device
def _noiseless_device(m=64, seed=3):
    return SimDevice(config=opu.noiseless(seed=seed, n_outputs=m)).open()


def _fresh_frames(dev, n, count=30, seed=21):
    x = np.random.default_rng(seed).random((count, n)) < 0.5
    pats = np.zeros((count, dev.n_features), bool)
    pats[:, :n] = x
    return x, dev.acquire(pats, progress=False).astype(np.float64)


def test_retrieve_tm_records_what_it_did(tmp_path, monkeypatch, fake_bar):
    dev = _noiseless_device()
    plan = make_plan(6, anchors=4)
    calls = []
    real = tm_runner.retrieve

    def spy(*args, **kw):
        calls.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(tm_runner, "retrieve", spy)
    msgs: list[str] = []
    out = tmp_path / "a" / "b"
    t0 = time.perf_counter()
    tm, info = retrieve_tm(dev, plan, out, echo=msgs.append, block_rows=16)
    wall = time.perf_counter() - t0
    st = dev.settings
    assert calls == [{"adc_max_dn": 255.0, "block_rows": 16}]
    assert len(fake_bar) == 1 and fake_bar[0].kw["total"] == plan.frames  # progress bar by default
    # light "auto" by default: the brightest pattern within 25 % of span / 8
    span = 255 - info.light.dark_median_dn
    assert abs(info.light.mean_signal_dn / (span / 8) - 1) < 0.25
    assert info.light.exposure_us == st.exposure_us
    assert info.light.macro_pixel_mirrors == st.macro_pixel_mirrors
    assert msgs == [
        f"plan: 88 frames = 8 dark + 2 x 10 anchor + 12 signals x 5; device time "
        f"{88 * st.frame_time_us * 1e-6:.2f} s at {1e6 / st.frame_time_us:.0f} Hz; 64 rows x 6 columns; "
        f"light {info.light.mean_signal_dn:.1f} DN (brightest pattern) at {st.exposure_us:g} us, "
        f"{st.macro_pixel_mirrors}-mirror macro-pixels"]
    assert info.frames == 88 and info.probe_frames == info.light.probe_frames
    assert info.seconds_device == pytest.approx(88 * st.frame_time_us * 1e-6, rel=1e-12)
    assert info.seconds_acquire_host > 0 and info.seconds_compute > 0
    assert info.seconds_acquire_host + info.seconds_compute < wall
    # the maps: absolute sensor pixels of the ROI and top-left mirrors of the features
    r = st.camera_roi
    rows, cols = np.divmod(tm.pixel_ids, SENSOR_W)
    np.testing.assert_array_equal(rows, np.repeat(r.row + np.arange(r.height_px), r.width_px))
    np.testing.assert_array_equal(cols, np.tile(r.col + np.arange(r.width_px), r.height_px))
    a, ir = st.macro_pixel_mirrors, st.input_roi
    per_row = ir.width_mirrors // a
    f = np.arange(6)
    want = (ir.row + (f // per_row) * a) * DMD_W + ir.col + (f % per_row) * a
    np.testing.assert_array_equal(tm.mirror_ids, want)
    assert tm.mirrors_per_feature == a * a
    assert tm.settings == st.model_dump() and tm.plan == plan.model_dump()
    idn = dev.identity
    assert tm.identity == {"manufacturer": idn.manufacturer, "model": idn.model, "serial": idn.serial,
                           "firmware": idn.firmware, "resource": "sim"}
    assert tm.device_time_s == dev.status().device_time_s
    dg = tm.diagnostics
    assert (dg["frames"], dg["probe_frames"]) == (88, info.probe_frames)
    assert dg["seconds_device"] == info.seconds_device and dg["seconds_compute"] == info.seconds_compute
    assert dg["seconds_acquire_host"] == info.seconds_acquire_host
    assert dg["light_mean_signal_dn"] == info.light.mean_signal_dn
    assert dg["light_saturated_fraction"] == info.light.saturated_fraction
    assert "signal_condition_number" in dg and "solve_resid_median" in dg
    assert not any(isinstance(v, np.ndarray) for v in dg.values())
    assert set(tm.row_diagnostics) == {"mds_eig_ratio", "lateration_resid", "solve_resid",
                                       "modulus_consistency", "anchor_drift", "saturated"}
    # the camera fit of the frames: the noiseless preset's black level (8 DN), no laser fluctuation
    assert dg["camera_black_level_dn"] == pytest.approx(8.0, abs=0.5)
    assert dg["camera_laser_fluctuation_rel"] < 1e-3
    back = RecoveredTM.load(out / "tm.npz")
    assert back.diagnostics == json.loads(json.dumps(dg))
    cfg = opu.OPUConfig.model_validate_json((out / "twin.json").read_text())
    assert cfg.seed == 12345 and cfg.camera.exposure_us == st.exposure_us
    # the prediction of fresh inputs follows the device's noiseless frames pixel by pixel (8-bit
    # rounding of the planned frames is the only error; with 4 anchors a few rows are thrown off by
    # it, and their modulus consistency says so), and the matrix does not predict another medium
    x, y = _fresh_frames(dev, 6, count=200)

    def per_pixel_corr(meas, pred):
        return np.array([np.corrcoef(meas[:, j], pred[:, j])[0, 1] for j in range(meas.shape[1])])

    corr = per_pixel_corr(y, tm.predict_frames(x))
    assert np.median(corr) > 0.97
    consistent = np.asarray(tm.row_diagnostics["modulus_consistency"]) < 0.2
    assert consistent.mean() > 0.8 and corr[consistent].min() > 0.8
    other = _noiseless_device(seed=4)
    restore_settings(other, tm)  # same ROI, exposure and features: only the medium differs
    x2, y2 = _fresh_frames(other, 6, count=200)
    assert np.abs(np.median(per_pixel_corr(y2, tm.predict_frames(x2)))) < 0.3


def test_retrieve_tm_without_files_or_progress_and_with_a_calibration(tmp_path, fake_bar):
    dev = _noiseless_device(seed=4)
    plan = make_plan(5, anchors=3)
    tm, _ = retrieve_tm(dev, plan, None, progress=False, echo=None)
    assert fake_bar == [] and list(tmp_path.iterdir()) == []
    assert not any(k.startswith("camera_") for k in tm.diagnostics)
    cal = opu.realistic(seed=1, n_outputs=64).replace(camera={"read_noise_e": 3.5},
                                                      medium={"drift_time_constant_s": 900.0})
    out = tmp_path / "cal"
    before = dev.settings.model_dump()
    tm, info = retrieve_tm(dev, plan, out, light="keep", progress=False, echo=None, calibration=cal,
                           twin_seed=99)
    assert info.probe_frames == 4 and dev.settings.model_dump() == before  # keep: only checked
    assert not any(k.startswith("camera_") for k in tm.diagnostics)
    cfg = opu.OPUConfig.model_validate_json((out / "twin.json").read_text())
    assert cfg.seed == 99 and cfg.camera.read_noise_e == 3.5 and cfg.medium.drift_time_constant_s == 900.0


def test_prediction_correlation_restores_the_settings_and_uses_fresh_inputs(tmp_path):
    dev = _noiseless_device(seed=6)
    tm, _ = retrieve_tm(dev, make_plan(6, anchors=4), None, progress=False, echo=None)
    want_settings = dev.settings.model_dump()
    dev.configure(exposure_us=123.0)
    before = dev.status().frames_total
    corr = prediction_correlation(dev, tm)
    assert dev.settings.model_dump() == want_settings
    assert dev.status().frames_total - before == 32
    x = np.random.default_rng(7).random((32, 6)) < 0.5
    pats = np.zeros((32, dev.n_features), bool)
    pats[:, :6] = x
    y = dev.acquire(pats, progress=False).astype(np.float64)
    assert corr == pytest.approx(np.corrcoef(y.ravel(), tm.predict_frames(x).ravel())[0, 1], rel=1e-12)
    assert 0.9 < corr < 1.0
    before = dev.status().frames_total
    corr5 = prediction_correlation(dev, tm, n_probes=5, seed=3)
    assert dev.status().frames_total - before == 5
    x = np.random.default_rng(3).random((5, 6)) < 0.5
    pats = np.zeros((5, dev.n_features), bool)
    pats[:, :6] = x
    y = dev.acquire(pats, progress=False).astype(np.float64)
    assert corr5 == pytest.approx(np.corrcoef(y.ravel(), tm.predict_frames(x).ravel())[0, 1], rel=1e-12)


def test_restore_settings_configures_only_when_something_differs(monkeypatch):
    dev = _noiseless_device(seed=7)
    tm = RecoveredTM(np.zeros((64, 1)), np.zeros((64, 1)), np.zeros(64), np.arange(64), np.arange(1), 1,
                     settings=dev.settings.model_dump(), plan={})
    calls = []
    real = dev.configure
    monkeypatch.setattr(dev, "configure", lambda **kw: calls.append(kw) or real(**kw))
    restore_settings(dev, tm)
    assert calls == []
    real(exposure_us=100.0)
    restore_settings(dev, tm)
    assert calls == [tm.settings] and dev.settings.model_dump() == tm.settings


def test_refresh_refuses_bad_thresholds_and_missing_files(tmp_path):
    dev = _noiseless_device(seed=8)
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(TMPlanError) as err:
            refresh(dev, tmp_path, bad, echo=None)
        assert str(err.value) == f"refresh threshold must be a correlation in (0, 1), got {bad}"
    with pytest.raises(TMFileError) as err:
        refresh(dev, tmp_path, 0.5, echo=None)
    assert str(err.value) == (f"{str(tmp_path / 'tm.npz')!r} does not exist: run a first retrieval without "
                              "--refresh")


def test_refresh_keeps_a_good_matrix(tmp_path, monkeypatch):
    # 256 pixels: one bright speckle grain at the ADC maximum is < 1 % of them (64 pixels: 1.6 %,
    # refused); 4 anchors: with the minimum of 3 the 8-bit frames leave the geometry too noisy
    # (prediction correlation ~0.35 on this device, docs/tm_retrieval.md recommends 20)
    dev = _noiseless_device(m=256, seed=9)
    retrieve_tm(dev, make_plan(5, anchors=4), tmp_path, progress=False, echo=None)
    old = RecoveredTM.load(tmp_path / "tm.npz")
    before = dev.status().frames_total
    msgs: list[str] = []
    outcome = refresh(dev, tmp_path, 0.5, echo=msgs.append)
    assert dev.status().frames_total - before == 32  # the check only (32 probes by default)
    assert outcome.refreshed is False and outcome.threshold == 0.5 and outcome.backup is None
    np.testing.assert_array_equal(outcome.tm.matrix, old.matrix)
    assert 0.9 < outcome.correlation < 1.0
    path = tmp_path / "tm.npz"
    assert msgs == [f"prediction correlation of {path} on 32 fresh inputs: {outcome.correlation:.4f} "
                    f"(threshold 0.5, retrieved at device time {old.device_time_s:.1f} s, now "
                    f"{dev.status().device_time_s:.1f} s)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tm.npz", "twin.json"]
    # a correlation exactly at the threshold is good enough
    monkeypatch.setattr(tm_runner, "prediction_correlation", lambda dev, tm, n: 0.75)
    outcome = refresh(dev, tmp_path, 0.75, echo=None)
    assert outcome.refreshed is False and outcome.correlation == 0.75


def test_refresh_re_retrieves_below_the_threshold(tmp_path, monkeypatch, fake_bar):
    dev = _noiseless_device(seed=10)
    plan = make_plan(5, anchors=3)
    retrieve_tm(dev, plan, tmp_path, progress=False, echo=None)
    old = RecoveredTM.load(tmp_path / "tm.npz")
    calls = []
    real = tm_runner.retrieve_tm

    def spy(*args, **kw):
        calls.append((args, kw))
        return real(*args, **kw)

    monkeypatch.setattr(tm_runner, "retrieve_tm", spy)
    msgs: list[str] = []
    before = dev.status().frames_total
    outcome = refresh(dev, tmp_path, 0.999999, n_probes=8, echo=msgs.append)
    assert outcome.refreshed is True and outcome.correlation < 0.999999
    (args, kw), = calls
    assert args == (dev, plan, tmp_path)
    assert kw == {"light": "keep", "progress": True, "calibration": None, "twin_seed": 12345,
                  "echo": msgs.append}
    assert len(fake_bar) == 1  # the re-acquisition shows its progress by default
    assert dev.status().frames_total - before == 8 + plan.frames + 4  # check, planned frames, keep probe
    backup = tmp_path / f"tm-{old.device_time_s:.0f}s.npz"
    assert outcome.backup == backup
    np.testing.assert_array_equal(RecoveredTM.load(backup).matrix, old.matrix)
    new = RecoveredTM.load(tmp_path / "tm.npz")
    assert new.diagnostics["refreshed_from_correlation"] == outcome.correlation
    np.testing.assert_array_equal(new.matrix, outcome.tm.matrix)
    assert json.loads(msgs[-1]) == {"refreshed": True, "previous": str(backup)}


def test_a_refresh_with_a_calibration_writes_its_camera_into_the_twin(tmp_path):
    dev = _noiseless_device(seed=10)
    retrieve_tm(dev, make_plan(5, anchors=3), tmp_path, progress=False, echo=None)
    cal = opu.realistic(seed=1, n_outputs=64).replace(camera={"read_noise_e": 4.25},
                                                      medium={"drift_time_constant_s": 700.0})
    outcome = refresh(dev, tmp_path, 0.999999, n_probes=8, progress=False, calibration=cal, twin_seed=31,
                      echo=None)
    assert outcome.refreshed is True
    cfg = opu.OPUConfig.model_validate_json((tmp_path / "twin.json").read_text())
    # the calibration's figures, not the camera fit of the frames (a noiseless device: read noise ~0)
    assert cfg.camera.read_noise_e == 4.25 and cfg.medium.drift_time_constant_s == 700.0 and cfg.seed == 31


def test_a_failed_refresh_restores_the_previous_file(tmp_path, monkeypatch):
    dev = _noiseless_device(seed=11)
    retrieve_tm(dev, make_plan(5, anchors=3), tmp_path, progress=False, echo=None)
    old = RecoveredTM.load(tmp_path / "tm.npz")

    def boom(*args, **kw):
        raise RuntimeError("device lost")

    monkeypatch.setattr(tm_runner, "retrieve_tm", boom)
    with pytest.raises(RuntimeError, match="device lost"):
        refresh(dev, tmp_path, 0.999999, echo=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tm.npz", "twin.json"]
    np.testing.assert_array_equal(RecoveredTM.load(tmp_path / "tm.npz").matrix, old.matrix)


# ============================================================================ twin
def _settings(**kw):
    base = dict(n_features=8, exposure_us=200.0, frame_time_us=500.0, bit_depth=10, analog_gain_db=6.0,
                camera_roi={"row": 1062, "col": 1910, "height_px": 24, "width_px": 20},
                input_roi={"row": 4, "col": 6, "height_mirrors": 40, "width_mirrors": 50},
                macro_pixel_mirrors=2)
    base.update(kw)
    return DeviceSettings(**base).model_dump()


def _twin_tm(settings):
    rng = np.random.default_rng(16)
    b = _rng_complex(rng, 480, 4) * 3.0
    return RecoveredTM(b, b[:, :2], np.zeros(480), np.arange(480), np.arange(4), 4, settings=settings,
                       plan={"anchor_features": 4})


def test_twin_config_from_the_retrieval_camera_estimate():
    st = _settings()
    tm = _twin_tm(st)
    cam = CameraEstimate(system_gain_dn_per_e=0.1, read_noise_e=3.0, black_level_dn=12.0, dsnu_e=7.0,
                         laser_fluctuation_rel=0.02)
    cfg = twin_config(tm, cam)
    c = cfg.camera
    assert (c.sensor_height_px, c.sensor_width_px) == (1086, 1930)  # the ROI reaches past 1080 x 1920
    assert c.roi.model_dump() == st["camera_roi"]
    assert (c.exposure_us, c.frame_time_us, c.analog_gain_db, c.bit_depth) == (200.0, 500.0, 6.0, 10)
    assert c.shot_noise is True and c.prnu_rel == 0.0 and c.dark_current_e_per_s == 0.0
    assert c.quantum_efficiency == QE_ASSUMED and c.read_noise_e == 3.0 and c.dsnu_e == 7.0
    assert c.black_level_dn == 12.0
    assert c.system_gain_dn_per_e == pytest.approx(0.1, rel=1e-12)  # K at 6 dB
    assert c.gain_dn_per_e == pytest.approx(0.1 / 10 ** (6 / 20), rel=1e-12)
    assert c.full_well_e == pytest.approx(1.05 * (1023 - 12) / 0.1, rel=1e-12)
    # g |B_twin|^2 = |B_hat|^2 with E|B_twin|^2 = a = 4 mirrors: ppm = mean|B|^2 / (a t QE K)
    ppm = np.mean(np.abs(tm.matrix) ** 2) / (4 * 200.0 * QE_ASSUMED * 0.1)
    assert cfg.laser.photons_per_mirror_us == pytest.approx(ppm, rel=1e-12)
    assert cfg.laser.power_fluctuation_rel == 0.02
    assert cfg.medium.drift_time_constant_s is None and cfg.medium.drift_step_s == 1.0
    assert cfg.medium.speckle_grain_px == 0.0 and cfg.seed == 12345
    d = cfg.dmd
    assert (d.roi_row, d.roi_col, d.roi_height_mirrors, d.roi_width_mirrors) == (4, 6, 40, 50)
    assert d.macro_pixel_mirrors == 2
    assert twin_config(tm, cam, seed=5).seed == 5


def test_twin_config_clamps_the_fitted_figures():
    small = _settings(camera_roi={"row": 0, "col": 0, "height_px": 10, "width_px": 10}, bit_depth=8,
                      analog_gain_db=0.0)
    tm = _twin_tm(small)
    cfg = twin_config(tm, CameraEstimate(0.05, 1.0, -3.0, 0.0, 0.9))
    assert (cfg.camera.sensor_height_px, cfg.camera.sensor_width_px) == (1080, 1920)
    assert cfg.camera.black_level_dn == 0.0 and cfg.laser.power_fluctuation_rel == 0.5
    assert cfg.camera.full_well_e == pytest.approx(1.05 * 255 / 0.05, rel=1e-12)
    assert cfg.camera.gain_dn_per_e == pytest.approx(0.05, rel=1e-12)
    cfg = twin_config(tm, CameraEstimate(0.05, 1.0, 300.0, 0.0, 0.01))
    assert cfg.camera.black_level_dn == 255.0
    assert cfg.camera.full_well_e == pytest.approx(1.05 * 1.0 / 0.05, rel=1e-12)  # at least 1 DN of range


def test_twin_config_from_a_calibration_twin():
    st = _settings()
    tm = _twin_tm(st)
    cal = opu.realistic(seed=2, n_outputs=64).replace(
        camera={"quantum_efficiency": 0.5, "dark_current_e_per_s": 40.0, "read_noise_e": 2.0,
                "full_well_e": 9000.0, "gain_dn_per_e": 0.03, "analog_gain_db": 12.0, "black_level_dn": 6.0,
                "dsnu_e": 9.0},
        laser={"power_fluctuation_rel": 0.007}, medium={"drift_time_constant_s": 1800.0, "drift_step_s": 5.0})
    cfg = twin_config(tm, None, cal)
    c = cfg.camera
    k_sys = 0.03 * 10 ** (12 / 20)  # the calibration's K at its gain
    assert (c.quantum_efficiency, c.dark_current_e_per_s) == (0.5, 40.0)
    assert (c.read_noise_e, c.full_well_e) == (2.0, 9000.0)
    assert (c.black_level_dn, c.dsnu_e, c.prnu_rel) == (6.0, 9.0, 0.0)
    # the same K at the retrieval's 6 dB
    assert c.gain_dn_per_e == pytest.approx(k_sys / 10 ** (6 / 20), rel=1e-12)
    assert c.system_gain_dn_per_e == pytest.approx(k_sys, rel=1e-12)
    assert cfg.laser.power_fluctuation_rel == 0.007
    assert cfg.medium.drift_time_constant_s == 1800.0 and cfg.medium.drift_step_s == 5.0
    ppm = np.mean(np.abs(tm.matrix) ** 2) / (4 * 200.0 * 0.5 * k_sys)
    assert cfg.laser.photons_per_mirror_us == pytest.approx(ppm, rel=1e-12)
    # a calibration wins over a camera estimate
    assert twin_config(tm, CameraEstimate(1.0, 1.0, 1.0, 1.0, 0.1), cal).camera.read_noise_e == 2.0
    with pytest.raises(ValueError) as err:
        twin_config(tm)
    assert str(err.value) == "twin_config needs a camera estimate or a calibration twin"


def _camera_frames(plan, m, *, k_dn=0.05, read_e=20.0, black=8.0, dsnu_e=40.0, laser=0.0, mean_e=400.0,
                   seed=0, adc=255):
    """Frames of the plan from a known camera: electrons Poisson(mu L_f), L_f = 1 + laser N(0,1) per frame,
    read noise, DSNU, black level, rounding and clipping (the anchor frames' means are speckle)."""
    rng = np.random.default_rng(seed)
    _, layout = build_patterns(plan)
    f = plan.frames
    offset = black + k_dn * dsnu_e * rng.normal(size=m)
    mu_e = np.zeros((f, m))
    npair = plan.anchor_pairs
    speckle = rng.exponential(mean_e, size=(npair, m))
    mu_e[layout.anchor_first] = speckle
    mu_e[layout.anchor_last] = speckle
    mu_e[layout.signal] = rng.exponential(mean_e, size=(*layout.signal.shape, m))
    lam = mu_e * np.clip(1 + laser * rng.normal(size=(f, 1)), 0, None)
    electrons = rng.poisson(lam) + read_e * rng.normal(size=(f, m))
    y = np.clip(np.round(offset + k_dn * electrons), 0, adc)
    return y, layout


def test_camera_from_frames_recovers_a_known_camera():
    plan = make_plan(2, anchors=12, anchor_features=12, signals=2, dark_repeats=8)
    y, layout = _camera_frames(plan, 1024)
    cam = camera_from_frames(y, layout, 255.0)
    # 8 x 1024 dark samples: the read noise (1 DN) to ~1 %; 1024 pixels: the DSNU (2 DN) to ~3 %;
    # 78 x 1024 repeated pairs: K to a few %
    assert cam.system_gain_dn_per_e == pytest.approx(0.05, rel=0.08)
    assert cam.read_noise_e * cam.system_gain_dn_per_e == pytest.approx(1.0, rel=0.04)
    assert cam.dsnu_e * cam.system_gain_dn_per_e == pytest.approx(2.0, rel=0.08)
    assert cam.black_level_dn == pytest.approx(8.0, abs=4 * 2.0 / 32)  # mean of 1024 offsets (2 DN spread)
    assert cam.laser_fluctuation_rel < 0.003


def test_camera_from_frames_measures_the_laser_fluctuation():
    plan = make_plan(2, anchors=40, anchor_features=40, signals=2, dark_repeats=8)
    y, layout = _camera_frames(plan, 64, laser=0.01, mean_e=300.0, seed=1)
    cam = camera_from_frames(y, layout, 255.0)
    assert cam.laser_fluctuation_rel == pytest.approx(0.01, rel=0.25)


def test_camera_from_frames_needs_two_repeats():
    plan = make_plan(2, anchors=3, anchor_features=3, anchor_repeats=1)
    y, layout = _camera_frames(plan, 16)
    with pytest.raises(ValueError) as err:
        camera_from_frames(y, layout, 255.0)
    assert str(err.value) == "the camera fit needs anchor_repeats >= 2"


def test_camera_from_frames_on_exact_photon_transfer_data():
    """Frames built so that every statistic is exact: dark frames d_i +/- a (temporal variance 4a^2/3 with
    ddof 1), two anchor repeats mu +/- delta with 2 delta^2 = c + K mu exactly (so the photon-transfer
    line is exact), pixel pairs of opposite sign (so the repeats' pixel sums are equal: no laser term),
    plus points that must be left out: clipped ones (at the ADC maximum) and ones with mu <= 0."""
    plan = make_plan(2, anchors=8, anchor_features=8, signals=2, anchor_repeats=2, dark_repeats=4)
    _, layout = build_patterns(plan)
    m, k_dn, c, a = 40, 0.07, 1.2, 0.9
    pixel = np.arange(m)
    dark = 10.0 + 2.0 * np.sin(pixel)
    y = np.zeros((plan.frames, m))
    y[layout.dark] = dark + a * np.array([1.0, -1.0, 1.0, -1.0])[:, None]
    sign = np.where(pixel % 2 == 0, 1.0, -1.0)
    npair = plan.anchor_pairs
    mu = 1.0 + 0.1 * (np.arange(npair)[:, None] * (m // 2) + pixel[None, :] // 2)  # (P, m), 1 .. 73 DN
    delta = np.sqrt((c + k_dn * mu) / 2)
    first = dark + mu + sign * delta
    last = dark + mu - sign * delta
    # off the line: pairs 0-1 clipped at 255 in both repeats, pair 2 below the dark level +/- 3 DN
    # (mu = -0.5: no signal; exactly 0 would round to +-1e-15 and fall on either side of the cut)
    first[0:2, :] = last[0:2, :] = 255.0
    first[2, :] = dark - 0.5 + 3.0 * sign
    last[2, :] = dark - 0.5 - 3.0 * sign
    y[layout.anchor_first[0]] = first
    y[layout.anchor_last[0]] = last
    cam = camera_from_frames(y, layout, 255.0)
    var_dark = 4 * a**2 / 3
    assert cam.system_gain_dn_per_e == pytest.approx(k_dn, rel=1e-9)
    assert cam.read_noise_e == pytest.approx(math.sqrt(var_dark - 1 / 12) / k_dn, rel=1e-9)
    assert cam.black_level_dn == pytest.approx(dark.mean(), rel=1e-12)
    assert cam.dsnu_e == pytest.approx(math.sqrt(dark.var() - var_dark / 4) / k_dn, rel=1e-9)
    assert cam.laser_fluctuation_rel == 0.0
    # uint8-like integer frames are read as numbers too
    cam2 = camera_from_frames(np.round(y).astype(np.uint8), layout, 255.0)
    assert cam2.black_level_dn == pytest.approx(np.round(y[layout.dark]).mean(), rel=1e-12)


def _zero_sum_frames(m=64):
    """Frames on a black level of 8 DN whose anchor pairs all have a pixel sum of exactly 0 above it
    (opposite signs on alternate pixels, the same in both repeats): (frames, layout, first, last)."""
    plan = make_plan(2, anchors=4, anchor_features=4, signals=2, dark_repeats=4)
    _, layout = build_patterns(plan)
    y = np.full((plan.frames, m), 8.0)
    y[layout.dark] += np.array([0.5, -0.5, 0.5, -0.5])[:, None]
    sign = np.where(np.arange(m) % 2 == 0, 1.0, -1.0)
    level = 1.0 + np.arange(plan.anchor_pairs)[:, None] * np.ones(m)
    return y, layout, 8.0 + sign * level, 8.0 + sign * level


def test_camera_from_frames_without_bright_patterns():
    # no anchor pattern has a positive pixel sum in both repeats: no laser estimate (0), the fit still runs
    y, layout, first, last = _zero_sum_frames()
    y[layout.anchor_first[0]] = first
    y[layout.anchor_last[0]] = last
    cam = camera_from_frames(y, layout, 255.0)
    assert cam.laser_fluctuation_rel == 0.0 and cam.black_level_dn == 8.0
    assert cam.system_gain_dn_per_e == 1e-6  # no temporal variance at all: the floor


@pytest.mark.parametrize("n_bright", [2, 3])
def test_camera_from_frames_estimates_the_laser_from_three_bright_patterns_or_more(n_bright):
    # pairs with a zero pixel sum (opposite signs) plus n_bright uniformly lit ones: one identical in
    # both repeats, the others 1.5x brighter in the second (a laser change of 50 %); a variance of the
    # log ratio needs at least three of them, so two give no laser estimate at all
    m = 64
    y, layout, first, last = _zero_sum_frames(m)
    first[:n_bright] = 8.0 + 10.0
    last[:n_bright] = 8.0 + 10.0 * np.array([1.0] + [1.5] * (n_bright - 1))[:, None]
    y[layout.anchor_first[0]] = first
    y[layout.anchor_last[0]] = last
    cam = camera_from_frames(y, layout, 255.0)
    if n_bright == 2:
        assert cam.laser_fluctuation_rel == 0.0
    else:
        # log ratios 0, ln(1/1.5), ln(1/1.5); the repeats' pixel variance (10 vs 15 DN: 12.5 DN^2 a
        # pixel for the changed pairs) over the squared mean sum is the shot part, 2 x its mean subtracted
        lr = np.log([1.0, 1 / 1.5, 1 / 1.5])
        shot = np.array([0.0, 12.5 * m / (12.5 * m) ** 2, 12.5 * m / (12.5 * m) ** 2])
        want = math.sqrt((np.var(lr) - 2 * shot.mean()) / 2)
        assert cam.laser_fluctuation_rel == pytest.approx(want, rel=1e-9)


def test_mirror_ids_follow_the_settings_input_roi_and_macro_pixel():
    """Features fill the ROI's grid of macro-pixels row by row: a 30 x 40-mirror ROI at (10, 20) with
    4 x 4 macro-pixels has 10 per row, so feature k's top-left mirror is at row 10 + 4 (k // 10),
    column 20 + 4 (k % 10), id = row x 1140 + column (the DMD is 1140 mirrors wide)."""
    from host.tm.runner import mirror_ids_of

    settings = {"input_roi": {"row": 10, "col": 20, "height_mirrors": 30, "width_mirrors": 40},
                "macro_pixel_mirrors": 4}
    k = np.arange(25)
    want = (10 + 4 * (k // 10)) * 1140 + 20 + 4 * (k % 10)
    got = mirror_ids_of(settings, 25)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)
    # the ROI's height bounds the features: 7 rows of 10 macro-pixels hold 70
    import opu

    assert mirror_ids_of(settings, 70)[-1] == (10 + 4 * 6) * 1140 + 20 + 4 * 9
    with pytest.raises(opu.CapacityError, match="71 features do not fit the 30x40-mirror input ROI"):
        mirror_ids_of(settings, 71)
