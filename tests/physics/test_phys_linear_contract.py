"""The linear schemes' contract beyond the projection itself: ``project_binary``, frame costs, input
checks and their messages (written from mutation testing: these paths had no test)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import opu

N, M = 16, 256
BINARY_ONLY = r"^project_binary expects 0/1 patterns; use linear_transform for real data$"
DISJOINT = r"^pos and neg patterns must be disjoint \(a value cannot be \+1 and -1\)$"


def _sim(scheme: opu.LinearScheme, **replace) -> opu.Simulator:
    cfg = opu.ideal(seed=3, n_outputs=M)
    if replace:
        cfg = cfg.replace(**replace)
    return opu.Simulator(cfg, n_features=scheme.device_features)


@pytest.mark.parametrize("name", ["anchor", "complement"])
def test_project_binary_equals_the_signed_projection_and_costs_two_frames(name):
    scheme = opu.make_scheme(name, N)
    sim = _sim(scheme)
    cal = scheme.calibrate(sim.acquire)
    assert cal.frames == scheme.calibration_frames == 16
    x = np.random.default_rng(1).random((5, N)) < 0.5
    before = sim.clock.frames
    binary = scheme.project_binary(sim.acquire, x, cal)
    assert sim.clock.frames - before == scheme.frames_per_binary * 5 == 10
    before = sim.clock.frames
    signed = scheme.project_signed(sim.acquire, x, np.zeros_like(x), cal)
    assert sim.clock.frames - before == 4 * 5  # by default every part is acquired (no sharing)
    assert np.isfinite(binary).all() and np.abs(binary).max() > 0.1
    assert binary.shape == (5, M) and binary.dtype == np.float64
    np.testing.assert_allclose(binary, signed, rtol=1e-4, atol=1e-4 * np.abs(signed).max())
    # 0/1 integers are binary patterns too; other values are refused with advice
    np.testing.assert_allclose(scheme.project_binary(sim.acquire, x.astype(np.int64), cal), binary,
                               rtol=1e-4, atol=1e-4 * np.abs(signed).max())
    with pytest.raises(opu.OPUError, match=BINARY_ONLY):
        scheme.project_binary(sim.acquire, np.full((1, N), 2), cal)
    with pytest.raises(opu.ShapeError, match=rf"expected binary patterns \(b, {N}\), got \(1, {N + 1}\)"):
        scheme.project_binary(sim.acquire, np.zeros((1, N + 1), bool), cal)


def test_project_binary_warns_on_saturation():
    scheme = opu.AnchorScheme(N, adc_max_dn=255)
    sim = opu.Simulator(opu.realistic(seed=5, n_outputs=M).replace(dmd={"macro_pixel_mirrors": 4}),
                        n_features=scheme.device_features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", opu.SaturationWarning)
        cal = scheme.calibrate(sim.acquire)
    sim.reconfigure(sim.config.replace(laser={"photons_per_mirror_us": 5.0}))  # 1000x brighter
    message = (r"^\d+\.\d\d% of the pixels are saturated at 255 DN: the projection is biased there; "
               r"lower the exposure or the number of lit mirrors$")
    with pytest.warns(opu.SaturationWarning, match=message) as caught:
        scheme.project_binary(sim.acquire, np.ones((2, N), bool), cal)
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampolines add stack frames of their own
        assert caught[0].filename == __file__  # reported where the projection was asked for
    # the signed projection and the calibration itself warn too
    with pytest.warns(opu.SaturationWarning, match=message):
        scheme.project_signed(sim.acquire, np.ones((2, N), bool), np.zeros((2, N), bool), cal)
    with pytest.warns(opu.SaturationWarning, match=message):
        scheme.calibrate(sim.acquire)


def test_signed_parts_are_checked():
    scheme = opu.AnchorScheme(N)
    sim = _sim(scheme)
    cal = scheme.calibrate(sim.acquire)
    a = np.zeros((2, N), bool)
    a[:, 0] = True
    with pytest.raises(opu.OPUError, match=DISJOINT):
        scheme.project_signed(sim.acquire, a, a, cal)
    with pytest.raises(opu.ShapeError, match=rf"^pos \(2, {N}\) and neg \(1, {N}\) differ$"):
        scheme.project_signed(sim.acquire, a, a[:1], cal)


def test_scheme_construction_is_checked():
    message = r"^unknown linear scheme 'fourier'; choose one of \['anchor', 'complement'\]$"
    with pytest.raises(opu.OPUError, match=message):
        opu.make_scheme("fourier", N)
    with pytest.raises(opu.OPUError, match="n_features must be >= 1, got 0"):
        opu.AnchorScheme(0)
    with pytest.raises(opu.OPUError, match=r"^dark_repeats and reference_repeats must be >= 1$"):
        opu.AnchorScheme(N, dark_repeats=0)
    with pytest.raises(opu.OPUError, match=r"^dark_repeats and reference_repeats must be >= 1$"):
        opu.ComplementScheme(N, reference_repeats=0)
    # the smallest allowed values are allowed
    one = opu.AnchorScheme(1, anchor_features=1, dark_repeats=1, reference_repeats=1)
    assert (one.n_features, one.device_features, one.calibration_frames) == (1, 2, 2)
    assert opu.ComplementScheme(1, dark_repeats=1, reference_repeats=1).device_features == 1
    with pytest.raises(opu.OPUError, match="anchor_features must be >= 1, got 0"):
        opu.AnchorScheme(N, anchor_features=0)
    s = opu.make_scheme("anchor", N, anchor_features=3, dark_repeats=2, reference_repeats=5)
    assert (s.device_features, s.calibration_frames, s.anchor_features) == (N + 3, 7, 3)
    assert opu.AnchorScheme(N).anchor_features == N  # default: as many anchor features as data
    assert opu.make_scheme("complement", N).device_features == N
    assert s.frames_for(3, signed=False) == 6 and s.frames_for(3, signed=True, planes=4) == 48


def test_linear_transform_input_checks_and_single_vectors():
    scheme = opu.AnchorScheme(N)
    proj = opu.LinearProjector(_sim(scheme).acquire, scheme)
    y = proj.transform(np.ones(N, dtype=int))  # one vector in, one out
    assert y.shape == (M,)
    with pytest.raises(opu.ShapeError,
                       match=rf"^x must be \(n,\) or \(batch, n\) with n = {N}, got \(2, {N + 1}\)$"):
        proj.transform(np.ones((2, N + 1)))
    with pytest.raises(opu.OPUError, match=r"^x must be real, got dtype complex128$"):
        proj.transform(np.ones((2, N), dtype=complex))
    for text in (np.full((1, N), "1"), np.full((1, N), None, dtype=object)):  # neither numbers nor bool
        with pytest.raises(opu.OPUError, match=rf"^x must be real, got dtype {text.dtype}$"):
            proj.transform(text)
    with pytest.raises(opu.OPUError, match=r"^x contains NaN or infinite values$"):
        proj.transform(np.full((1, N), np.nan))
    cal = proj.calibration
    frames = proj.acquire.__self__.clock.frames
    again = proj.recalibrate()
    assert isinstance(again, opu.LinearCalibration) and again is not cal
    assert proj.acquire.__self__.clock.frames - frames == scheme.calibration_frames  # measured again
    assert proj.calibration is again


def test_weak_outputs_are_floored_at_four_standard_errors_of_their_own_measurement():
    """The documented rule (LinearCalibration.weak_outputs), recomputed from the calibration frames."""
    scheme = opu.AnchorScheme(N, adc_max_dn=255, dark_repeats=6, reference_repeats=6)
    sim = opu.Simulator(opu.realistic(seed=8, n_outputs=M).replace(dmd={"macro_pixel_mirrors": 2}),
                        n_features=scheme.device_features)
    seen = []

    def acquire(p):
        y = sim.acquire(p)
        seen.append(y.astype(np.float64))
        return y

    cal = scheme.calibrate(acquire)
    y = seen[0]
    dark, ref = y[:6], y[6:]
    q = 1 / 12
    se = np.sqrt((ref.var(axis=0, ddof=1) + q) / 6 + (dark.var(axis=0, ddof=1) + q) / 6)
    r = ref.mean(axis=0) - dark.mean(axis=0)
    floor = np.maximum(4 * se, 1e-6 * r.mean())
    weak = r < floor
    assert 0 < weak.sum() < M  # a realistic device has some dark speckle grains
    np.testing.assert_array_equal(cal.weak_outputs, weak)
    np.testing.assert_allclose(cal.reference_dn, np.where(weak, floor, r))
    np.testing.assert_allclose(cal.dark_dn, dark.mean(axis=0))
    assert cal.scale == pytest.approx(np.sqrt(2 * N / r.mean()))  # E[ref] = g a x lit features (N)


def test_dark_reference_message_says_what_to_check():
    scheme = opu.AnchorScheme(N)
    sim = _sim(scheme, laser={"photons_per_mirror_us": 0.0})
    message = (r"^the reference frame is no brighter than the dark frame: no light reaches the camera "
               r"\(check laser power, exposure, or the number of lit mirrors\)$")
    with pytest.raises(opu.OPUError, match=message):
        scheme.calibrate(sim.acquire)


@pytest.mark.parametrize("name", ["anchor", "complement"])
@pytest.mark.parametrize("share", [False, True])
def test_float32_projection_is_the_float64_one_rounded(name, share):
    """``dtype=float32`` (the optical DFA step's choice) computes from the same integer frames: it
    equals the float64 projection (whose scale is checked independently in the physics tests) to
    float32 rounding, for ternary and bit-plane input, and the results are float32."""
    scheme = opu.make_scheme(name, N, adc_max_dn=255)
    sim = opu.Simulator(opu.realistic(seed=4, n_outputs=M), n_features=scheme.device_features)
    cal = scheme.calibrate(sim.acquire)
    recorded: dict[bytes, np.ndarray] = {}

    def replay(patterns):  # the same frames for both dtypes: acquired once per pattern batch
        key = np.packbits(patterns).tobytes()
        if key not in recorded:
            recorded[key] = sim.acquire(patterns)
        return recorded[key]

    rng = np.random.default_rng(2)
    for x in (rng.integers(-1, 2, size=(9, N)), rng.normal(size=(3, N))):  # ternary, then bit planes
        y64 = opu.linear_transform(replay, x, scheme, cal, precision=4, share_repeats=share)
        y32 = opu.linear_transform(replay, x, scheme, cal, precision=4, share_repeats=share, dtype=np.float32)
        assert y64.dtype == np.float64 and y32.dtype == np.float32 and y32.shape == y64.shape == (len(x), M)
        assert np.abs(y64).max() > 1.0  # a projection of unit-variance scale, not zeros
        np.testing.assert_allclose(y32, y64, rtol=0, atol=2e-6 * np.abs(y64).max())
    binary = rng.random((4, N)) < 0.5
    b64 = scheme.project_binary(replay, binary, cal)
    b32 = scheme.project_binary(replay, binary, cal, dtype="float32")
    assert b32.dtype == np.float32
    np.testing.assert_allclose(b32, b64, rtol=0, atol=2e-6 * np.abs(b64).max())


@pytest.mark.parametrize("bad", [np.int8, np.float16, "complex64", "fp32", None])
def test_projection_dtype_is_checked_before_acquiring(bad):
    scheme = opu.AnchorScheme(N)
    sim = _sim(scheme)
    proj = opu.LinearProjector(sim.acquire, scheme)
    cal = proj.calibration
    before = sim.clock.frames
    with pytest.raises(opu.OPUError, match=r"dtype must be float32 or float64, got"):
        proj.transform(np.ones((2, N)), dtype=bad)
    with pytest.raises(opu.OPUError, match=r"dtype must be float32 or float64, got"):
        scheme.project_signed(sim.acquire, np.ones((1, N), bool), np.zeros((1, N), bool), cal, dtype=bad)
    assert sim.clock.frames == before  # nothing acquired


def test_frame_costs_of_the_defaults_and_of_sharing():
    """linear_transform acquires 4 frames a ternary vector and 4 x precision (8 by default) a real one;
    sharing acquires each distinct binary part once, for ternary and bit-plane input alike."""
    scheme = opu.AnchorScheme(N)
    sim = _sim(scheme)
    cal = scheme.calibrate(sim.acquire)
    rng = np.random.default_rng(4)
    real = np.repeat(rng.normal(size=(1, N)), 3, axis=0)  # three copies of one real vector
    tern = np.repeat(rng.integers(-1, 2, size=(1, N)), 3, axis=0)

    def cost(x, **kw):
        before = sim.clock.frames
        opu.linear_transform(sim.acquire, x, scheme, cal, **kw)
        return sim.clock.frames - before

    assert cost(tern) == 4 * 3 and cost(real) == 4 * 8 * 3 and cost(real, precision=4) == 4 * 4 * 3
    # shared: the copies repeat every part; each plane's parts are acquired once (2 frames each)
    planes = opu.BitPlanes.encode(real[:1], 4).planes.reshape(2, 4, N)
    distinct = len({p.tobytes() for p in planes.reshape(8, N)})
    assert cost(real, precision=4, share_repeats=True) == 2 * distinct < 4 * 4 * 3
    assert cost(tern, share_repeats=True) == 2 * 2  # one e+ and one e- part


def test_float32_bit_planes_are_decoded_from_float32_plane_projections():
    """dtype=float32 runs the per-plane projections in float32 too (then the weighted sum)."""
    scheme = opu.AnchorScheme(N)
    sim = _sim(scheme)
    cal = scheme.calibrate(sim.acquire)
    x = np.random.default_rng(5).normal(size=(3, N))
    got = opu.linear_transform(sim.acquire, x, scheme, cal, precision=3, dtype=np.float32)
    bp = opu.BitPlanes.encode(x, 3)
    pos, neg = bp.planes[0].reshape(9, N), bp.planes[1].reshape(9, N)
    replay = _sim(scheme)  # the same device again, the same frames for the same calls
    cal2 = scheme.calibrate(replay.acquire)
    planes = scheme.project_signed(replay.acquire, pos, neg, cal2, dtype=np.float32)
    assert planes.dtype == np.float32
    np.testing.assert_array_equal(got, bp.decode(planes.reshape(3, 3, -1)).astype(np.float32))


def _fixed_frames(dark: np.ndarray, ref: np.ndarray):
    """An acquire that answers the calibration with the given dark and reference frames."""
    def acquire(p):
        return np.concatenate([dark, ref])[: len(p)]
    return acquire


def test_weak_output_floor_without_noise_and_with_one_or_two_repeats():
    """The floor is max(4 se, 1e-6 mean reference); se uses the repeat variance only with >= 2 repeats
    (one frame has no variance: the rounding 1/12 DN^2 alone), and a reference exactly at the floor
    is not weak."""
    # ideal detector (no ADC, no rounding term), identical repeats: se = 0, floor = 1e-6 x mean = 1.0
    scheme = opu.AnchorScheme(1, dark_repeats=2, reference_repeats=2, adc_max_dn=None)
    ref = np.array([1.0, 1999999.0, 0.5, 1999999.5])  # mean 1e6 (exactly)
    cal = scheme.calibrate(_fixed_frames(np.zeros((2, 4)), np.tile(ref, (2, 1))))
    np.testing.assert_array_equal(cal.weak_outputs, [False, False, True, False])  # 1.0 is not below 1.0
    np.testing.assert_array_equal(cal.reference_dn, [1.0, 1999999.0, 1.0, 1999999.5])
    # one repeat each, 8-bit: se = sqrt(1/12 + 1/12), floor = 4 se ~ 1.63 DN
    one = opu.AnchorScheme(1, dark_repeats=1, reference_repeats=1, adc_max_dn=255)
    cal1 = one.calibrate(_fixed_frames(np.full((1, 3), 10.0), np.array([[11.0, 12.0, 200.0]])))
    floor = 4 * np.sqrt(2 / 12)
    np.testing.assert_array_equal(cal1.weak_outputs, [True, False, False])
    np.testing.assert_allclose(cal1.reference_dn, [floor, 2.0, 190.0])
    # two repeats: the repeats' own variance counts (var of [0, 4] = 8 with ddof 1)
    two = opu.AnchorScheme(1, dark_repeats=2, reference_repeats=2, adc_max_dn=255)
    cal2 = two.calibrate(_fixed_frames(np.zeros((2, 2)), np.array([[0.0, 50.0], [4.0, 50.0]])))
    se0 = np.sqrt((8 + 1 / 12) / 2 + (1 / 12) / 2)
    np.testing.assert_allclose(cal2.reference_dn, [4 * se0, 50.0])
    np.testing.assert_array_equal(cal2.weak_outputs, [True, False])
