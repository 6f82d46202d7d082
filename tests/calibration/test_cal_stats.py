"""The statistics the calibration stages share (host/calibration/stats.py) and the linear-SNR estimator,
on synthetic arrays with known parameters.

Covers: ``weighted_line`` against the closed-form weighted least-squares solution (slope, offset and
their standard errors, the reduced-chi^2 scaling only when chi^2 > 1, the zero-offset fit) and a Monte
Carlo of its slope; ``temporal_stats`` (mean and variance of known Gaussian noise, the variance of the
successive-difference estimator, jumps, saturation flags, the laser common mode and its 16-pixel
minimum, pinned pixels); ``bin_points``; ``fit_exponential_decay`` (exact, flat and non-exponential
data, non-positive points); ``neighbour_correlation`` on maps with a known neighbour correlation;
``linear_snr._snr`` and its standard error against a Monte Carlo.

Tolerances of the statistical checks are derived from the sample size in a comment next to each.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, stats

from host.calibration.linear_snr import _snr
from host.calibration.stats import (
    JUMP_FACTOR,
    bin_points,
    fit_exponential_decay,
    neighbour_correlation,
    temporal_stats,
    weighted_line,
)

# --------------------------------------------------------------------------- weighted_line


def _sums(x, se):
    w = 1.0 / se**2
    s, sx, sxx = w.sum(), (w * x).sum(), (w * x * x).sum()
    return w, s, sx, sxx, s * sxx - sx**2


def test_weighted_line_exact_data_gives_the_closed_form_and_unscaled_errors():
    """Data exactly on y = 2.5 x - 1 (chi^2 = 0 < 1): the errors are the plain WLS ones,
    se_a = sqrt(S / D), se_c = sqrt(Sxx / D), D = S Sxx - Sx^2, with no chi^2 scaling."""
    x = np.array([0.5, 1.0, 2.0, 3.5, 5.0])
    se = np.array([0.1, 0.2, 0.1, 0.4, 0.3])
    y = 2.5 * x - 1.0
    a, se_a, c, se_c = weighted_line(x, y, se)
    _, s, _, sxx, d = _sums(x, se)
    assert a == pytest.approx(2.5, rel=1e-12)
    assert c == pytest.approx(-1.0, rel=1e-12)
    assert se_a == pytest.approx(math.sqrt(s / d), rel=1e-12)
    assert se_c == pytest.approx(math.sqrt(sxx / d), rel=1e-12)


def test_weighted_line_scatter_below_the_errors_is_not_scaled_down():
    """Residuals smaller than the stated errors (0.5 <= reduced chi^2 < 1): errors stay unscaled."""
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    se = np.full(6, 1.0)
    resid = np.array([0.7, -0.7, -0.7, 0.7, 0.7, -0.7])
    y = 3.0 * x + 2.0 + resid
    a, se_a, c, se_c = weighted_line(x, y, se)
    w, s, sx, sxx, d = _sums(x, se)
    sy, sxy = (w * y).sum(), (w * x * y).sum()
    a0, c0 = (s * sxy - sx * sy) / d, (sxx * sy - sx * sxy) / d
    chi2 = float((w * (y - a0 * x - c0) ** 2).sum()) / (len(x) - 2)
    assert 0.5 <= chi2 < 1.0  # the regime the test is about
    assert (a, c) == (pytest.approx(a0, rel=1e-12), pytest.approx(c0, rel=1e-12))
    assert se_a == pytest.approx(math.sqrt(s / d), rel=1e-12)
    assert se_c == pytest.approx(math.sqrt(sxx / d), rel=1e-12)


def test_weighted_line_scatter_above_the_errors_scales_by_sqrt_reduced_chi2():
    """Residuals far larger than the stated errors: both errors grow by sqrt(chi^2 / (n - 2))."""
    x = np.linspace(0.0, 9.0, 10)
    se = np.linspace(0.5, 1.4, 10)
    resid = 4.0 * np.array([1, -1, -1, 1, 1, -1, 1, -1, -1, 1], dtype=float)
    y = -0.7 * x + 4.0 + resid
    a, se_a, c, se_c = weighted_line(x, y, se)
    w, s, sx, sxx, d = _sums(x, se)
    sy, sxy = (w * y).sum(), (w * x * y).sum()
    a0, c0 = (s * sxy - sx * sy) / d, (sxx * sy - sx * sxy) / d
    chi2 = float((w * (y - a0 * x - c0) ** 2).sum()) / (len(x) - 2)
    assert chi2 > 4
    assert a == pytest.approx(a0, rel=1e-12) and c == pytest.approx(c0, rel=1e-12)
    assert se_a == pytest.approx(math.sqrt(s / d * chi2), rel=1e-12)
    assert se_c == pytest.approx(math.sqrt(sxx / d * chi2), rel=1e-12)


def test_weighted_line_weights_follow_the_errors():
    """A point with a huge error barely moves the line; the same point with a small error pulls it."""
    x = np.array([0.0, 1.0, 2.0, 3.0])
    y = np.array([0.0, 1.0, 2.0, 10.0])
    a_loose, _, c_loose, _ = weighted_line(x, y, np.array([0.01, 0.01, 0.01, 1e4]))
    assert a_loose == pytest.approx(1.0, abs=1e-6) and c_loose == pytest.approx(0.0, abs=1e-6)
    a_tight, _, _, _ = weighted_line(x, y, np.array([1.0, 1.0, 1.0, 0.01]))
    assert a_tight > 2.5


def test_weighted_line_zero_offset():
    """y = a x through the origin: a = Sxy / Sxx, se_a = sqrt(1 / Sxx) (x sqrt(chi^2 / (n - 1)) if > 1)."""
    x = np.array([1.0, 2.0, 4.0, 8.0])
    se = np.array([0.1, 0.1, 0.2, 0.5])
    w, _, _, sxx, _ = _sums(x, se)
    a, se_a, c, se_c = weighted_line(x, 0.3 * x, se, zero_offset=True)
    assert a == pytest.approx(0.3, rel=1e-12)
    assert se_a == pytest.approx(math.sqrt(1.0 / sxx), rel=1e-12)
    assert (c, se_c) == (0.0, 0.0)
    # with an offset in the data the slope is the through-origin one, and its error is scaled
    y = 0.3 * x + 1.0
    a, se_a, _, _ = weighted_line(x, y, se, zero_offset=True)
    a0 = float((w * x * y).sum() / sxx)
    chi2 = float((w * (y - a0 * x) ** 2).sum()) / (len(x) - 1)
    assert chi2 > 1
    assert a == pytest.approx(a0, rel=1e-12)
    assert se_a == pytest.approx(math.sqrt(chi2 / sxx), rel=1e-12)


def test_weighted_line_slope_error_matches_a_monte_carlo():
    """2000 data sets with Gaussian errors of the stated size: the spread of the fitted slope is the
    plain se_a = sqrt(S / D) (the std of 2000 samples has a relative error of 1.6 %: tolerance 6 %);
    the reported se_a is that times max(1, sqrt(chi^2 / 6)), whose mean for chi^2 ~ chi2(6) is the
    integral below (the mean of 2000 reports is known to ~0.5 %: tolerance 3 %)."""
    rng = np.random.default_rng(11)
    x = np.linspace(1.0, 10.0, 8)
    se = 0.2 + 0.05 * x
    fits = np.array([weighted_line(x, 1.5 * x + 0.5 + rng.normal(0, se), se) for _ in range(2000)])
    _, s, _, _, d = _sums(x, se)
    assert fits[:, 0].mean() == pytest.approx(1.5, abs=4 * math.sqrt(s / d) / math.sqrt(2000))
    assert fits[:, 0].std(ddof=1) == pytest.approx(math.sqrt(s / d), rel=0.06)
    dof = len(x) - 2
    scale, _ = integrate.quad(lambda q: max(1.0, math.sqrt(q / dof)) * stats.chi2.pdf(q, dof), 0, np.inf)
    assert scale > 1.05
    assert fits[:, 1].mean() == pytest.approx(scale * math.sqrt(s / d), rel=0.03)


# --------------------------------------------------------------------------- temporal_stats


def test_temporal_stats_mean_and_variance_of_gaussian_noise():
    """Known per-pixel means and sigma = 2 DN: means and variances recovered; raw_mean / raw_var are the
    plain mean and ddof=1 variance. Tolerances: 5 standard errors of the pixel-averaged estimates."""
    rng = np.random.default_rng(1)
    p, r, m, sigma = 3, 16, 4000, 2.0
    mu = rng.uniform(50, 150, size=(p, 1, m))
    y = mu + rng.normal(0, sigma, size=(p, r, m))
    st = temporal_stats(y, adc_max=4095)
    assert st.mean.shape == st.var.shape == st.saturated.shape == (p, m)
    assert np.abs(st.mean - mu[:, 0]).mean() < 5 * sigma / math.sqrt(r)  # per pixel: sigma / sqrt(R)
    assert float((st.mean - mu[:, 0]).mean()) == pytest.approx(0.0, abs=5 * sigma / math.sqrt(r * m * p))
    v_rel = (3 * r - 4) / (r - 1) ** 2  # relative variance of one pixel's estimate
    assert float(st.var.mean()) == pytest.approx(sigma**2, rel=5 * math.sqrt(v_rel / (m * p)))
    np.testing.assert_allclose(st.raw_mean, y.mean(axis=1))
    np.testing.assert_allclose(st.raw_var, y.var(axis=1, ddof=1))
    np.testing.assert_array_equal(st.mean, st.raw_mean)  # no common-mode correction asked
    assert not st.saturated.any()
    np.testing.assert_array_equal(st.gain_factors, np.ones((p, r)))
    np.testing.assert_array_equal(st.pairs_kept, np.full(p, r - 1))


def test_successive_difference_variance_has_the_documented_spread():
    """The estimator sum (y_i+1 - y_i)^2 / (2 (R - 1)) has variance (3R - 4)/(R - 1)^2 sigma^4
    (docs/calibration.md, "Budget"). Over 40000 pixels the spread of the estimates is known to ~1 %
    (its relative error is ~sqrt((kurtosis - 1) / m), kurtosis ~4): tolerance 5 %."""
    rng = np.random.default_rng(2)
    r, m, sigma = 12, 40000, 3.0
    st = temporal_stats(100.0 + rng.normal(0, sigma, size=(1, r, m)), adc_max=4095)
    assert st.pairs_kept[0] == r - 1  # no false jump on pure noise
    assert float(st.var[0].var(ddof=1)) / sigma**4 == pytest.approx((3 * r - 4) / (r - 1) ** 2, rel=0.05)


def test_a_jump_between_two_frames_is_left_out_of_the_variance():
    """A drift step of 40 DN on every pixel between frames 5 and 6: that pair is rejected (its mean
    squared difference is far above JUMP_FACTOR x the median), the others give sigma^2."""
    rng = np.random.default_rng(3)
    r, m, sigma = 10, 2000, 1.5
    y = 200.0 + rng.normal(0, sigma, size=(1, r, m))
    y[:, 6:] += 40.0
    st = temporal_stats(y, adc_max=4095)
    assert st.pairs_kept[0] == r - 2
    # 8 pairs x 2000 pixels: relative standard error ~ sqrt(v_rel / m) < 2 %; 4 x that
    assert float(st.var.mean()) == pytest.approx(sigma**2, rel=0.08)
    # a step below the jump threshold stays in (here: 0.3 sigma, far below sqrt(1.6))
    y2 = 200.0 + rng.normal(0, sigma, size=(1, r, m))
    y2[:, 6:] += 0.3 * sigma
    assert temporal_stats(y2, adc_max=4095).pairs_kept[0] == r - 1
    assert JUMP_FACTOR == 1.6  # docs/calibration.md: "exceeds 1.6x the pattern's median"


def test_saturation_flag_touching_the_adc_maximum_or_zero():
    """A pixel is saturated when any repeat sits at the ADC maximum, or any at 0; not otherwise."""
    y = np.full((1, 4, 5), 100.0)
    y[0, 2, 0] = 255.0  # touches the maximum once
    y[0, 1, 1] = 0.0  # touches zero once
    y[0, :, 2] = 254.0  # just below the maximum
    y[0, :, 3] = 1.0  # just above zero
    y[0, 3, 4] = 300.0  # beyond the maximum (a float frame)
    st = temporal_stats(y, adc_max=255)
    np.testing.assert_array_equal(st.saturated[0], [True, True, False, False, True])


def test_saturation_below_the_adc_range_from_the_clip_signal():
    """clip_signal_dn: a pixel whose signal above the dark reaches 95 % of it counts as clipped."""
    dark = np.array([10.0, 10.0, 20.0, 10.0])
    y = np.empty((1, 3, 4))
    y[0, :, 0] = 10.0 + 94.0  # 94 % of 100: not clipped
    y[0, :, 1] = 10.0 + 95.0  # 95 %: clipped
    y[0, :, 2] = 20.0 + 96.0  # own dark 20: 96 % -> clipped
    y[0, :, 3] = [50.0, 106.0, 50.0]  # one repeat at 96 %
    st = temporal_stats(y, adc_max=4095, dark=dark, clip_signal_dn=100.0)
    np.testing.assert_array_equal(st.saturated[0], [False, True, True, True])
    # without the dark map the clip signal cannot be applied
    assert not temporal_stats(y, adc_max=4095, clip_signal_dn=100.0).saturated.any()


def _common_mode_frames(m, r=12, seed=4, noise=1.0):
    """Frames dark + signal x g_r + noise with a per-frame (laser) factor g_r of 5 % rms."""
    rng = np.random.default_rng(seed)
    dark = rng.uniform(5, 15, m)
    signal = rng.uniform(200, 800, m)
    g = 1.0 + 0.05 * rng.normal(size=r)
    y = dark[None, None, :] + signal[None, None, :] * g[None, :, None] + rng.normal(0, noise, (1, r, m))
    return y, dark, g


def test_common_mode_removes_a_per_frame_factor():
    """The laser factor g_r is estimated (relative to its mean) and divided out: the variance drops to
    the pixels' own noise; without the correction it carries signal^2 var(g) as well."""
    y, dark, g = _common_mode_frames(m=500)
    st = temporal_stats(y, adc_max=4095, dark=dark, common_mode=True)
    # the factor from 500 pixels' totals: its error is ~ noise / (signal sqrt(m)) ~ 1e-4
    np.testing.assert_allclose(st.gain_factors[0], g / g.mean(), atol=1e-3)
    assert float(st.var.mean()) == pytest.approx(1.0, rel=0.1)  # 11 pairs x 500 pixels: ~2 % error
    np.testing.assert_allclose(st.raw_mean, y.mean(axis=1))
    plain = temporal_stats(y, adc_max=4095, dark=dark)
    assert float(plain.var.mean()) > 100  # (500 DN x 5 %)^2 ~ 600 DN^2 of laser noise
    np.testing.assert_array_equal(plain.gain_factors, 1.0)
    # common_mode needs the dark map
    np.testing.assert_array_equal(temporal_stats(y, adc_max=4095, common_mode=True).gain_factors, 1.0)


def test_common_mode_uses_exactly_16_unclipped_pixels_but_not_15():
    """The factor is estimated from 16 or more unclipped pixels, left at 1 with fewer."""
    y, dark, g = _common_mode_frames(m=16, noise=0.5)
    st = temporal_stats(y, adc_max=4095, dark=dark, common_mode=True)
    # 16 pixels of 200-800 DN, 0.5 DN noise: the factor is known to ~1e-4
    np.testing.assert_allclose(st.gain_factors[0], g / g.mean(), atol=1e-3)
    y[0, 3, 0] = 4095.0  # one pixel touches the ADC maximum: 15 unclipped pixels remain
    st15 = temporal_stats(y, adc_max=4095, dark=dark, common_mode=True)
    np.testing.assert_array_equal(st15.gain_factors, 1.0)


def test_common_mode_skips_a_pattern_without_signal():
    """Frames at or below the dark level (total signal <= 0): no factor is estimated."""
    rng = np.random.default_rng(5)
    dark = np.full(64, 20.0)
    y = 20.0 - np.abs(rng.normal(0, 1.0, (1, 6, 64)))
    st = temporal_stats(y, adc_max=4095, dark=dark, common_mode=True)
    np.testing.assert_array_equal(st.gain_factors, 1.0)


def test_pinned_pixel_has_exactly_zero_variance_with_the_common_mode():
    """A pixel held at one value (full-well plateau) keeps variance exactly 0 even though the common-mode
    correction divides its signal by a varying factor; its raw variance is 0 as well."""
    y, dark, _ = _common_mode_frames(m=100)
    y[0, :, 7] = 900.0  # pinned below the ADC maximum: not flagged as saturated
    y[0, :, 8] = 4095.0  # pinned at the ADC maximum
    st = temporal_stats(y, adc_max=4095, dark=dark, common_mode=True)
    assert not st.saturated[0, 7] and st.saturated[0, 8]
    assert st.var[0, 7] == 0.0 and st.var[0, 8] == 0.0
    assert st.raw_var[0, 7] == 0.0
    assert (np.delete(st.var[0], [7, 8]) > 0).all()
    assert st.mean[0, 7] != 900.0  # the mean is corrected, only the variance is kept exact


def test_single_repeat_gives_zero_variance():
    """One frame per pattern: no pair, no variance (0, not NaN); the mean is the frame."""
    y = np.arange(12.0).reshape(2, 1, 6) + 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the median of no pair
        st = temporal_stats(y, adc_max=255)
    np.testing.assert_array_equal(st.var, 0.0)
    np.testing.assert_array_equal(st.raw_var, 0.0)
    np.testing.assert_array_equal(st.mean, y[:, 0])
    np.testing.assert_array_equal(st.pairs_kept, 0)


def test_noiseless_frames_keep_every_pair():
    """Identical repeats: every squared difference is 0, no pair is a jump, the variance is exactly 0."""
    st = temporal_stats(np.full((2, 5, 10), 42.0), adc_max=255)
    np.testing.assert_array_equal(st.pairs_kept, 4)
    np.testing.assert_array_equal(st.var, 0.0)


# --------------------------------------------------------------------------- bin_points


def test_bin_points_means_errors_counts_and_dropped_bins():
    edges = np.array([0.0, 10.0, 20.0, 30.0])
    x = np.concatenate([np.linspace(0.0, 9.9, 25),  # bin 0 (0 <= x < 10), incl. the left edge
                        np.full(5, 15.0),  # bin 1: too few points
                        np.linspace(20.0, 29.0, 30),  # bin 2, incl. its left edge 20
                        [30.0, -1.0, 45.0]])  # at / beyond the last edge, below the first: dropped
    y = np.concatenate([np.arange(25.0), np.zeros(5), 2.0 * np.arange(30.0), [1e6, 1e6, 1e6]])
    b = bin_points(x, y, edges, min_count=20)
    np.testing.assert_array_equal(b.count, [25, 30])
    assert b.count.dtype.kind == "i"
    np.testing.assert_allclose(b.x, [np.linspace(0.0, 9.9, 25).mean(), 24.5])
    np.testing.assert_allclose(b.y, [12.0, 29.0])
    # standard error of the mean: sample std (ddof 1) / sqrt(n); std of 0..n-1 is sqrt(n (n + 1) / 12)
    se_expected = [math.sqrt(25 * 26 / 12) / 5, 2 * math.sqrt(30 * 31 / 12) / math.sqrt(30)]
    np.testing.assert_allclose(b.y_se, se_expected)
    # a lower min_count keeps the small bin
    b5 = bin_points(x, y, edges, min_count=5)
    np.testing.assert_array_equal(b5.count, [25, 5, 30])
    assert b5.y[1] == 0.0 and b5.y_se[1] == 0.0
    # the default minimum is 20 points
    np.testing.assert_array_equal(bin_points(x, y, edges).count, [25, 30])
    b_empty = bin_points(x, y, edges, min_count=100)
    assert b_empty.x.size == b_empty.y.size == b_empty.y_se.size == b_empty.count.size == 0


# --------------------------------------------------------------------------- fit_exponential_decay


def test_exponential_decay_recovers_exact_parameters():
    t = np.array([0.0, 1.0, 1.41, 2.0, 2.83, 4.0, 5.66, 8.0, 11.3, 16.0, 22.6])
    c = 0.8 * np.exp(-t / 7.5)
    a, se_a, tau, se_tau = fit_exponential_decay(t, c, np.full_like(t, 0.01))
    assert a == pytest.approx(0.8, rel=1e-6)
    assert tau == pytest.approx(7.5, rel=1e-6)
    assert se_a < 1e-6 and se_tau < 1e-5  # errors scaled by the (zero) residuals: absolute_sigma False


def test_exponential_decay_recovers_a_sub_second_time_constant():
    """Time in any unit: a decay of tau = 0.04 (a fast-drifting medium sampled every 10 ms) is fitted as
    such, not held at some floor (tau is only kept positive)."""
    t = np.linspace(0.0, 0.1, 11)
    c = 0.7 * np.exp(-t / 0.04)
    a, _, tau, _ = fit_exponential_decay(t, c, np.full_like(t, 0.01))
    assert a == pytest.approx(0.7, rel=1e-6) and tau == pytest.approx(0.04, rel=1e-6)


def test_exponential_decay_errors_match_a_monte_carlo():
    """Noisy data (se 0.01): over 400 fits the spread of tau and A is the mean reported error (the std of
    400 samples is known to 3.5 %; the residual-scaled errors scatter too: tolerance 15 %)."""
    rng = np.random.default_rng(6)
    t = np.array([0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    truth = 0.9 * np.exp(-t / 20.0)
    se = np.full_like(t, 0.01)
    fits = np.array([fit_exponential_decay(t, truth + rng.normal(0, 0.01, t.size), se) for _ in range(400)])
    assert fits[:, 2].mean() == pytest.approx(20.0, abs=5 * fits[:, 2].std() / math.sqrt(400))
    assert fits[:, 0].mean() == pytest.approx(0.9, abs=5 * fits[:, 0].std() / math.sqrt(400))
    assert fits[:, 2].std(ddof=1) == pytest.approx(fits[:, 3].mean(), rel=0.15)
    assert fits[:, 0].std(ddof=1) == pytest.approx(fits[:, 1].mean(), rel=0.15)


def test_exponential_decay_of_flat_data_does_not_raise():
    """No decay at all: the log-linear slope is exactly 0 (constant c = 1); the fit returns A = 1 and
    a decay time far beyond the observed span."""
    t = np.array([0.0, 1.0, 2.0, 3.0])
    a, _, tau, _ = fit_exponential_decay(t, np.ones(4), np.full(4, 0.01))
    assert a == pytest.approx(1.0, rel=1e-6)
    assert tau > 1e3 * t.max()
    # a slowly rising series (positive slope) does not raise either
    a, _, tau, _ = fit_exponential_decay(t, np.array([0.5, 0.5, 0.51, 0.51]), np.full(4, 0.01))
    assert a == pytest.approx(0.505, abs=0.01) and tau > 10 * t.max()


def _wsse(t, c, se, a, tau):
    return float((((c - a * np.exp(-t / tau)) / se) ** 2).sum())


def test_exponential_decay_of_non_exponential_data_is_the_least_squares_optimum():
    """A Gaussian-shaped decorrelation c = exp(-(t/20)^2) with equal absolute errors: the fit is the
    weighted least-squares exponential, i.e. no (A, tau) on a fine grid around it does better (A from
    its closed form for each tau); and the start from the log-linear fit (weighted by the relative
    errors se / c) must stay inside the bounds A <= 2."""
    t = np.arange(0.0, 45.0, 5.0)
    c = np.exp(-((t / 20.0) ** 2))
    se = np.full_like(t, 0.01)
    a, _, tau, _ = fit_exponential_decay(t, c, se)
    best = math.inf
    for tau_g in np.linspace(5.0, 40.0, 3501):
        e = np.exp(-t / tau_g)
        a_g = min(float((c * e).sum() / (e * e).sum()), 2.0)
        best = min(best, _wsse(t, c, se, a_g, tau_g))
    assert _wsse(t, c, se, a, tau) <= best * (1 + 1e-6)
    assert 0 < a <= 2


def test_exponential_decay_ignores_non_positive_points_in_the_start():
    """A point at or below 0 (noise around a decayed correlation) has no logarithm: it is left out of the
    starting line but still fitted."""
    t = np.array([0.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    c = 0.7 * np.exp(-t / 6.0)
    c[-1] = -0.001
    a, _, tau, _ = fit_exponential_decay(t, c, np.full_like(t, 0.002))
    assert a == pytest.approx(0.7, rel=0.01) and tau == pytest.approx(6.0, rel=0.02)


# --------------------------------------------------------------------------- neighbour_correlation


def _maps_with_neighbour(axis, k=20, h=48, w=80, seed=8):
    """z = u + roll(u) along one axis: adjacent pixels along it share one u, correlation 1/2."""
    u = np.random.default_rng(seed).normal(size=(k, h, w))
    return (u + np.roll(u, 1, axis=axis)).reshape(k, h * w)


@pytest.mark.parametrize("axis", [1, 2], ids=["vertical", "horizontal"])
def test_neighbour_correlation_of_maps_with_a_known_correlation(axis):
    """0.5 along the correlated axis and 0 across: the mean of both is 0.25. Each mean is over
    ~76000 products of unit-variance values (std ~1.1): standard error ~0.004, tolerance 0.02."""
    c = neighbour_correlation(_maps_with_neighbour(axis), (48, 80))
    assert c == pytest.approx(0.25, abs=0.02)


def test_neighbour_correlation_of_independent_pixels_is_zero_and_scale_free():
    rng = np.random.default_rng(9)
    maps = rng.exponential(size=(10, 64 * 32))
    c = neighbour_correlation(maps, (64, 32))
    assert c == pytest.approx(0.0, abs=0.02)
    # per-map offsets and scales do not matter (each map is standardized)
    scaled = maps * np.arange(1, 11)[:, None] + 100.0 * np.arange(10)[:, None]
    assert neighbour_correlation(scaled, (64, 32)) == pytest.approx(c, abs=1e-9)
    # a perfectly smooth map (a ramp along the rows) is highly correlated
    ramp = np.tile(np.arange(32.0), (64, 1)).reshape(1, -1)
    assert neighbour_correlation(ramp, (64, 32)) > 0.45


def test_neighbour_correlation_of_a_constant_map_is_zero():
    assert neighbour_correlation(np.full((2, 16), 7.0), (4, 4)) == 0.0


# --------------------------------------------------------------------------- linear SNR estimator


def test_linear_snr_is_unbiased_at_low_snr():
    """S / N = 2 with R = 3 repeats: the repeat means still carry N / R of noise variance, which the
    estimator removes (without it the mean would be 2 + 1/3). 2000 data sets: standard error of the
    mean ~0.005; tolerance 0.03."""
    rng = np.random.default_rng(12)
    est = [_snr(rng.normal(0.0, math.sqrt(2.0), (1, 64, 8)) + rng.normal(0.0, 1.0, (3, 64, 8)))[0]
           for _ in range(2000)]
    assert np.mean(est) == pytest.approx(2.0, abs=0.03)


def test_linear_snr_standard_error_matches_a_monte_carlo_at_high_snr():
    """_snr on y = a + e with signal variance S and noise N per repeat: mean S / N, and the stated
    error sqrt(2 / (V m) + 2 / ((R - 1) V m)) x SNR is the spread over 2000 data sets (std of 2000 samples:
    1.6 % relative; the formula neglects V - 1 vs V (0.4 %): tolerance 6 %). R = 3 weighs the noise term."""
    r, v, m = 3, 128, 8
    rng = np.random.default_rng(10)
    est, ses = [], []
    for _ in range(2000):
        y = rng.normal(0.0, math.sqrt(50.0), (1, v, m)) + rng.normal(0.0, 1.0, (r, v, m))
        snr, se = _snr(y)
        est.append(snr)
        ses.append(se)
    est, ses = np.array(est), np.array(ses)
    assert est.mean() == pytest.approx(50.0, rel=5 * est.std() / 50.0 / math.sqrt(2000))
    assert est.std(ddof=1) == pytest.approx(ses.mean(), rel=0.06)
    # the error is exactly the stated formula for each data set
    np.testing.assert_allclose(ses / est, math.sqrt(2.0 / (v * m) + 2.0 / ((r - 1) * v * m)), rtol=1e-12)


def test_common_mode_skips_a_pattern_whose_frames_are_not_all_above_dark():
    """A faint pattern: mean total signal > 0 but one frame's total at or below 0 (noise around a
    near-dark level). Its factor would divide that frame by ~0 or flip its sign: it stays 1, and the
    statistics are those of the uncorrected frames, finite."""
    dark = np.full(64, 20.0)
    y = np.full((1, 4, 64), 20.0)
    y[0, :, :] += np.array([0.5, 0.25, 0.5, -0.25])[:, None]  # frame totals 32, 16, 32, -16 DN
    st = temporal_stats(y, adc_max=4095, dark=dark, common_mode=True)
    np.testing.assert_array_equal(st.gain_factors, 1.0)
    assert np.isfinite(st.var).all() and np.isfinite(st.mean).all()
    np.testing.assert_allclose(st.mean[0], 20.25)  # the plain mean of 20.5, 20.25, 20.5, 19.75
