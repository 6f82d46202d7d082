"""Transmission matrix generation (counter-based, block-invariant, streamed) and drift."""

from __future__ import annotations

import numpy as np
import pytest

import opu
from opu.medium import TransmissionMatrix, streamed_field


@pytest.fixture(scope="module")
def tm() -> TransmissionMatrix:
    rng = np.random.default_rng(0)
    pixels = np.sort(rng.choice(2**21, size=300, replace=False)).astype(np.uint32)
    mirrors = np.sort(rng.choice(1_039_680, size=500, replace=False)).astype(np.uint32)
    return TransmissionMatrix(seed=42, pixel_ids=pixels, mirror_ids=mirrors)


def test_any_block_is_bit_identical_to_the_dense_matrix(tm):
    dense = tm.dense()
    for rows, cols in [
        (slice(0, 7), slice(3, 11)),
        (slice(100, 300), slice(0, 500)),
        (slice(299, 300), slice(499, 500)),
        (slice(None), slice(250, 251)),
    ]:
        np.testing.assert_array_equal(tm.block(rows, cols), dense[rows, cols])
    # W blocks of any width stack to the same W
    w_full = np.asarray(tm.w_dense(block_features=500))
    n = tm.shape[1]
    w_parts = np.concatenate([np.asarray(tm.w_rows(np.arange(s, min(s + 37, n)))) for s in range(0, n, 37)])
    np.testing.assert_array_equal(w_full, w_parts)
    np.testing.assert_array_equal(w_full[:, :300], dense.real.T)


def test_entries_are_circular_complex_gaussian(tm):
    b = tm.dense().ravel()
    n = b.size
    assert abs(np.mean(np.abs(b) ** 2) - 1) < 5 / np.sqrt(n)
    assert abs(b.real.var() - 0.5) < 5 * 0.5 * np.sqrt(2 / n)
    assert abs(np.mean(b.real * b.imag)) < 5 * 0.5 / np.sqrt(n)
    assert abs(np.mean(b**2)) < 5 / np.sqrt(n)  # circular: E[b^2] = 0


def test_seed_changes_matrix_and_is_reproducible(tm):
    same = TransmissionMatrix(42, tm.pixel_ids, tm.mirror_ids)
    other = TransmissionMatrix(43, tm.pixel_ids, tm.mirror_ids)
    np.testing.assert_array_equal(same.dense(), tm.dense())
    corr = np.vdot(other.dense(), tm.dense()) / tm.dense().size
    assert abs(corr) < 5 / np.sqrt(tm.dense().size)


def test_streamed_field_equals_dense_product(tm):
    x = np.random.default_rng(1).random((5, 500)) < 0.5
    re, im = streamed_field(tm, x, block_features=64)
    exact = x.astype(np.complex128) @ tm.dense().T.astype(np.complex128)
    np.testing.assert_allclose(re, exact.real, atol=2e-4 * np.sqrt(250))
    np.testing.assert_allclose(im, exact.imag, atol=2e-4 * np.sqrt(250))


def test_streamed_simulator_equals_dense_simulator():
    cfg = opu.realistic(seed=9, n_outputs=256).replace(medium={"drift_time_constant_s": None})
    dense = opu.Simulator(cfg, n_features=300, tm_mode="dense")
    streamed = opu.Simulator(cfg, n_features=300, tm_mode="streamed", stream_block_features=64)
    x = np.random.default_rng(2).random((20, 300)) < 0.5
    np.testing.assert_allclose(streamed.intensity(x), dense.intensity(x), rtol=1e-4, atol=1e-3)
    fd, fs = dense.acquire(x).astype(int), streamed.acquire(x).astype(int)
    # identical up to a float32 summation-order tie at a rounding boundary (rare, at most 1 DN)
    assert np.abs(fd - fs).max() <= 1
    assert (fd == fs).mean() > 0.999


def test_same_seed_gives_bit_identical_frames_in_any_chunking():
    cfg = opu.realistic(seed=4, n_outputs=256)
    x = np.random.default_rng(3).random((30, 64)) < 0.5
    a = opu.Simulator(cfg, n_features=64).acquire(x)
    b_sim = opu.Simulator(cfg, n_features=64)
    b = np.concatenate([b_sim.acquire(x[:7]), b_sim.acquire(x[7:8]), b_sim.acquire(x[8:])])
    np.testing.assert_array_equal(a, b)
    c = opu.Simulator(cfg.replace(seed=5), n_features=64).acquire(x)
    assert (a != c).mean() > 0.5


@pytest.mark.parametrize("t_s", [5.0, 20.0, 50.0])
def test_drift_correlation_follows_exponential(t_s):
    tau = 20.0
    cfg = opu.ideal(seed=6, n_outputs=1024).replace(
        medium={"drift_time_constant_s": tau, "drift_step_s": 1.0}
    )
    sim = opu.Simulator(cfg, n_features=256)
    w0 = np.asarray(sim.medium.w, dtype=np.float64).copy()
    sim.idle(t_s)
    wt = np.asarray(sim.medium.w, dtype=np.float64)
    corr = (w0 * wt).sum() / np.sqrt((w0**2).sum() * (wt**2).sum())
    assert abs(corr - np.exp(-t_s / tau)) < 5 / np.sqrt(w0.size)
    # the drifted matrix keeps its law: E|B_ij|^2 = 1
    assert abs((wt**2).mean() * 2 - 1) < 5 * np.sqrt(2 / wt.size)


def test_drift_during_frames_steps_exactly_and_set_clock_reproduces_it():
    tau, step = 2.0, 0.01
    cfg = opu.ideal(seed=7, n_outputs=256).replace(
        medium={"drift_time_constant_s": tau, "drift_step_s": step},
        camera={"frame_time_us": 5000.0, "exposure_us": 400.0},
    )
    x = np.ones((1, 32), bool)
    run = opu.Simulator(cfg, n_features=32)
    w0 = np.asarray(run.medium.w, dtype=np.float64).copy()
    first = np.concatenate([run.acquire(np.repeat(x, 50, axis=0)) for _ in range(4)])  # 1 s of frames
    wt = np.asarray(run.medium.w, dtype=np.float64)
    corr = (w0 * wt).sum() / np.sqrt((w0**2).sum() * (wt**2).sum())
    t_last = (200 - 1) * 5000e-6  # the last frame started here
    expected = np.exp(-np.floor(t_last / step) * step / tau)
    assert abs(corr - expected) < 5 / np.sqrt(w0.size)
    # a fresh device whose clock is set to the same point continues identically
    resumed = opu.Simulator(cfg, n_features=32)
    resumed.set_clock(run.clock.frames, run.clock.device_time_s)
    np.testing.assert_array_equal(
        resumed.acquire(np.repeat(x, 20, axis=0)), run.acquire(np.repeat(x, 20, axis=0))
    )
    assert first.shape == (200, 256)


def test_threaded_exposure_of_a_large_batch_equals_frame_by_frame_chunks():
    cfg = opu.realistic(seed=8, n_outputs=1024)
    x = np.random.default_rng(5).random((600, 64)) < 0.5  # 614k values: exposed on worker threads
    whole = opu.Simulator(cfg, n_features=64).acquire(x)
    chunked_sim = opu.Simulator(cfg, n_features=64)
    chunks = np.concatenate([chunked_sim.acquire(x[i : i + 100]) for i in range(0, 600, 100)])
    np.testing.assert_array_equal(whole, chunks)


def test_small_batches_before_w_exists_use_lit_rows_with_the_same_result():
    cfg = opu.realistic(seed=10, n_outputs=512)
    x = np.random.default_rng(6).random((3, 200)) < 0.3
    lazy = opu.Simulator(cfg, n_features=200)
    full = opu.Simulator(cfg, n_features=200)
    _ = full.medium.w  # materialise W: the dense path
    assert lazy._use_lit_columns(x) and not full._use_lit_columns(x)
    np.testing.assert_allclose(lazy.intensity(x), full.intensity(x), rtol=2e-5, atol=1e-4)
    fl, ff = lazy.acquire(x).astype(int), full.acquire(x).astype(int)
    assert np.abs(fl - ff).max() <= 1 and (fl == ff).mean() > 0.999
    assert lazy.medium._w is None  # nothing held


def test_exact_poisson_pixels_are_the_same_in_any_batch():
    # dark frames: every pixel is below the exact-Poisson threshold, more than one kernel call's worth
    cfg = opu.realistic(seed=11, n_outputs=4096)
    x = np.zeros((40, 16), bool)
    x[::3, :4] = True  # a few lit frames in between: dim and bright pixels mixed
    assert 2 * opu.camera.EXACT_CHUNK < 40 * 4096
    whole = opu.Simulator(cfg, n_features=16).acquire(x)
    one_sim = opu.Simulator(cfg, n_features=16)
    single = np.concatenate([one_sim.acquire(x[i : i + 1]) for i in range(40)])
    np.testing.assert_array_equal(whole, single)


def test_drift_steps_follow_the_documented_update_exactly():
    """W_k = a W_{k-1} + sqrt(1 - a^2) G_k with a = exp(-step_s / tau) and G_k the matrix generated with
    the key (seed, DRIFT, k) (docs/physics.md); a jump over s idle steps is a^s W + sqrt(1 - a^2s) G,
    G keyed by the step it lands on. Recomputed here from the generated matrices in float64."""
    from opu.medium import DriftingMedium
    from opu.rng import Stream, threefry_key

    pixels, mirrors = np.arange(16, dtype=np.uint32), np.arange(8, dtype=np.uint32) * 3
    tau, step = 5.0, 0.5
    med = DriftingMedium(TransmissionMatrix(11, pixels, mirrors), tau, step)
    gen = TransmissionMatrix(11, pixels, mirrors)

    def g(k):
        return np.asarray(gen.w_dense(key=threefry_key(11, Stream.DRIFT, k)), np.float64)

    a = np.exp(-step / tau)
    w = np.asarray(gen.w_dense(), np.float64)
    med.advance_to_step(2)  # two exact steps
    for k in (1, 2):
        w = a * w + np.sqrt(1 - a * a) * g(k)
    np.testing.assert_allclose(np.asarray(med.w), w, rtol=0, atol=2e-6)
    med.advance_to_step(5, exact_steps=False)  # one jump of 3 steps from step 2
    a3 = np.exp(-3 * step / tau)
    w = a3 * w + np.sqrt(1 - a3 * a3) * g(5)
    np.testing.assert_allclose(np.asarray(med.w), w, rtol=0, atol=2e-6)
    assert med.step == 5 and not med.is_pristine


def test_streamed_field_of_given_features_only(tm):
    """``features`` restricts the product to those columns, whatever x holds elsewhere; a given
    (explicit) matrix takes the same path without generating anything."""
    from opu.medium import ExplicitTransmissionMatrix

    x = np.random.default_rng(3).random((3, 500)).astype(np.float32)
    feats = np.array([4, 17, 250])
    re, im = streamed_field(tm, x, block_features=2, features=feats)
    b = tm.block(cols=slice(None)).astype(np.complex128)[:, feats]
    expected = x[:, feats].astype(np.float64) @ b.T
    np.testing.assert_allclose(re, expected.real, rtol=0, atol=1e-4)
    np.testing.assert_allclose(im, expected.imag, rtol=0, atol=1e-4)
    small = tm.block(cols=slice(0, 6))
    given = ExplicitTransmissionMatrix(42, small, tm.pixel_ids, tm.mirror_ids[:6])
    xs = x[:, :6]
    for sel in (None, np.array([5, 0])):
        re, im = streamed_field(given, xs, features=sel)
        cols = np.arange(6) if sel is None else sel
        want = xs[:, cols].astype(np.float64) @ small[:, cols].astype(np.complex128).T
        assert re.dtype == im.dtype == np.float32 and re.shape == (3, 300)
        np.testing.assert_allclose(re, want.real, rtol=0, atol=1e-4)
        np.testing.assert_allclose(im, want.imag, rtol=0, atol=1e-4)


def test_counters_are_uint32_whatever_integer_type_the_ids_come_in():
    """Pixel and mirror ids are uint32 counters: ids given as int64 (also above 2^31, where an int32
    would overflow) give the same entries as the same ids as uint32; the parts are float32."""
    from opu.medium import complex_gaussian
    from opu.rng import Stream, threefry_key

    key = threefry_key(3, Stream.TRANSMISSION)
    rows = np.array([5, 2**31 + 3, 2**32 - 2])
    cols = np.array([7, 2**31 + 1])
    re, im = complex_gaussian(key, rows.astype(np.uint32), cols.astype(np.uint32))
    re2, im2 = complex_gaussian(key, rows, cols)  # int64
    assert re.dtype == im.dtype == np.float32 and re.shape == (3, 2)
    np.testing.assert_array_equal(re2, re)
    np.testing.assert_array_equal(im2, im)
    big = TransmissionMatrix(3, rows, cols)
    assert big.pixel_ids.dtype == big.mirror_ids.dtype == np.uint32
    np.testing.assert_array_equal(big.block(), TransmissionMatrix(3, rows.astype(np.uint32),
                                                                  cols.astype(np.uint32)).block())


def test_complex_gaussian_of_many_columns_equals_its_pieces():
    """More columns than two blocks of the one-hot product (16 rows: 8192 columns a block): every column
    is the one a call for that column alone gives."""
    from opu.medium import complex_gaussian
    from opu.rng import Stream, threefry_key

    key = threefry_key(4, Stream.TRANSMISSION)
    rows, cols = np.arange(16, dtype=np.uint32), np.arange(20_000, dtype=np.uint32) * 7
    re, im = complex_gaussian(key, rows, cols)
    for lo in (0, 9000, 19_990):
        re2, im2 = complex_gaussian(key, rows, cols[lo : lo + 10])
        np.testing.assert_array_equal(re[:, lo : lo + 10], re2)
        np.testing.assert_array_equal(im[:, lo : lo + 10], im2)
