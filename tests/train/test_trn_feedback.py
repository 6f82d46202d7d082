"""The feedback projections: unbiased stochastic ternarization (and why it needs its rescale),
the deterministic modes, the layer layout and scales, against values computed here by hand.

:class:`OpticalFeedback` only calls ``device.linear_transform``; the statistical test gives it an
exact linear device (``x A^T`` with a known A) so that what is tested is the feedback's own
encoding and rescaling, isolated from the measurement noise that tests/train/test_trn_optical.py
covers on the simulated device.
"""

from __future__ import annotations

import math
import warnings

import jax
import numpy as np
import pytest
from flaky_device import FlakySimDevice

import opu
from host.train.feedback import (
    DigitalFeedback,
    FeedbackConfig,
    OpticalFeedback,
    feedback_slices,
    layer_scales,
    ternary_error,
)

C, M = 10, 48


def _errors(n, seed, scale=2.0, confident=0.0):
    """Output errors softmax(s z + c onehot(y)) - onehot(y) as in training (c: how sure and right)."""
    rng = np.random.default_rng(seed)
    y = np.eye(C)[rng.integers(0, C, n)]
    z = scale * rng.normal(size=(n, C)) + confident * y
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p - y


class _ExactLinearDevice:
    """Stands in for a device: ``linear_transform`` returns x A^T exactly and records its calls."""

    def __init__(self, a: np.ndarray) -> None:
        self.a = a
        self.calls: list[tuple] = []
        self.dtypes: list[np.dtype] = []

    def linear_transform(self, x, scheme, precision, share_repeats=False, dtype=np.float64):
        x = np.asarray(x, dtype=np.float64)
        self.calls.append((x.copy(), scheme, precision, share_repeats))
        self.dtypes.append(np.dtype(dtype))
        return (x @ self.a.T).astype(dtype)


def test_optical_feedback_is_unbiased_and_the_rescale_is_what_makes_it_so():
    """E[project(e)] = e A^T within 5 standard errors per entry; without the per-sample rescale
    s_i = max_j |e_ij| the mean is (e / s) A^T instead, tens of standard errors away."""
    a = np.random.default_rng(0).normal(size=(M, C))
    dev = _ExactLinearDevice(a)
    fb = OpticalFeedback(dev, M, C, FeedbackConfig())
    # a network that is mostly right: s_i = max_j |e_ij| well below 1, where a missing rescale shows
    # (for errors with s_i ~ 1 it would hardly matter)
    e = _errors(24, seed=1, scale=1.0, confident=4.0)
    s = np.abs(e).max(axis=1)
    assert s.max() < 0.8
    draws = 1500
    outs = np.stack([fb.project(e, np.random.default_rng([5, d])).astype(np.float64) for d in range(draws)])
    exact = e @ a.T
    mean, se = outs.mean(0), outs.std(0, ddof=1) / math.sqrt(draws)
    assert np.all(np.abs(mean - exact) < 5 * se + 1e-5)
    # the device saw ternary vectors only (the encoding, not the error itself)
    x0 = dev.calls[0][0]
    assert set(np.unique(x0)) <= {-1.0, 0.0, 1.0}
    assert dev.calls[0][1:] == ("anchor", 6, True)
    # the projection is asked for, and returned, in float32 (the step's host arithmetic)
    assert set(dev.dtypes) == {np.dtype(np.float32)}
    got = fb.project(e, np.random.default_rng(7))
    et, s_i = ternary_error(e, FeedbackConfig(), np.random.default_rng(7))  # the same draw
    # float32 from the device's output on: the rescale is a float32 product, bit for bit
    np.testing.assert_array_equal(got, (et @ a.T).astype(np.float32) * s_i.astype(np.float32)[:, None])
    assert got.dtype == np.float32
    # remove the rescale: divide each sample's projection by its s_i
    no_rescale = mean / s[:, None]
    z = np.abs(no_rescale - exact) / (se / s[:, None])
    assert np.median(z) > 10
    # ... and it estimates (e / s) A^T instead: the bias is exactly the missing factor
    np.testing.assert_array_less(np.abs(no_rescale - exact / s[:, None]), 5 * se / s[:, None] + 1e-5)


def test_stochastic_ternarization_statistics():
    """P(e_t,ij = sign e_ij) = |e_ij| / s_i, independently per entry."""
    e = _errors(40, seed=2)
    cfg = FeedbackConfig()
    rng = np.random.default_rng(3)
    draws = 3000
    hits = np.zeros_like(e)
    for _ in range(draws):
        et, s = ternary_error(e, cfg, rng)
        assert np.all((et == 0) | (et == np.sign(e)))  # never the opposite sign
        np.testing.assert_allclose(s, np.abs(e).max(axis=1))
        hits += et != 0
    p = np.abs(e) / np.abs(e).max(axis=1, keepdims=True)
    freq = hits / draws
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / draws) + 1e-9)
    # the largest entry of each sample is always kept (p = 1)
    assert np.all(freq[np.arange(len(e)), np.abs(e).argmax(axis=1)] == 1.0)
    # an all-zero error row stays zero with a finite scale
    et, s = ternary_error(np.zeros((2, C)), cfg, rng)
    assert not et.any() and np.all(s == 1.0)


def test_fixed_and_adaptive_thresholds_and_norm_rescale():
    e = np.array([[0.5, -0.05, 0.2, -0.9], [0.0, 0.0, 0.0, 0.0], [0.08, -0.3, 0.02, 0.0]])
    et, scale = ternary_error(e, FeedbackConfig(threshold_mode="fixed", threshold=0.1))
    np.testing.assert_array_equal(et, [[1, 0, 1, -1], [0, 0, 0, 0], [0, -1, 0, 0]])
    ne = np.linalg.norm(e, axis=1)
    np.testing.assert_allclose(scale, [ne[0] / math.sqrt(3), 0.0, ne[2] / 1.0])
    # adaptive: t_i = 0.25 x max_j |e_ij| per sample (0.225, 0, 0.075)
    et, scale = ternary_error(e, FeedbackConfig(threshold_mode="adaptive", threshold=0.25))
    np.testing.assert_array_equal(et, [[1, 0, 0, -1], [0, 0, 0, 0], [1, -1, 0, 0]])
    np.testing.assert_allclose(scale, [ne[0] / math.sqrt(2), 0.0, ne[2] / math.sqrt(2)])
    _, ones = ternary_error(e, FeedbackConfig(threshold_mode="fixed", rescale="none"))
    np.testing.assert_array_equal(ones, [1.0, 1.0, 1.0])


def test_deterministic_rescale_is_applied_by_optical_feedback():
    a = np.random.default_rng(1).normal(size=(M, C))
    e = _errors(6, seed=4)
    for rescale in ("norm", "none"):
        cfg = FeedbackConfig(threshold_mode="fixed", threshold=0.1, rescale=rescale)
        out = OpticalFeedback(_ExactLinearDevice(a), M, C, cfg).project(e)
        et, scale = ternary_error(e, cfg)
        np.testing.assert_allclose(out, (et @ a.T) * scale[:, None], rtol=1e-5, atol=1e-5)
        assert out.dtype == np.float32 and out.shape == (6, M)


def test_bitplane_encoding_sends_the_error_itself():
    a = np.random.default_rng(2).normal(size=(M, C))
    dev = _ExactLinearDevice(a)
    cfg = FeedbackConfig(encoding="bitplanes", precision=5, scheme="complement", share_repeats=False)
    e = _errors(5, seed=6)
    out = OpticalFeedback(dev, M, C, cfg).project(e)
    np.testing.assert_allclose(dev.calls[0][0], e)
    assert dev.calls[0][1:] == ("complement", 5, False)
    np.testing.assert_allclose(out, e @ a.T, rtol=1e-5, atol=1e-5)


def test_slices_and_layer_scales():
    assert feedback_slices([3, 5, 2]) == [(0, 3), (3, 8), (8, 10)]
    assert feedback_slices([]) == []
    sizes = (4, 16)
    assert layer_scales(FeedbackConfig(normalization="fan_in"), sizes, 9) == pytest.approx((1 / 3, 1 / 3))
    assert layer_scales(FeedbackConfig(normalization="fan_out"), sizes, 9) == pytest.approx((0.5, 0.25))
    assert layer_scales(FeedbackConfig(normalization="none"), sizes, 9) == (1.0, 1.0)


def test_digital_feedback_is_a_fixed_gaussian_projection():
    fb = DigitalFeedback(jax.random.PRNGKey(3), 400, C)
    a = np.asarray(fb.matrix, dtype=np.float64)
    assert a.shape == (400, C)
    assert abs(a.mean()) < 5 / math.sqrt(a.size) and abs(a.var() - 1) < 5 * math.sqrt(2 / a.size)
    e = _errors(7, seed=8)
    fb.begin_epoch()  # nothing changes between epochs
    np.testing.assert_allclose(np.asarray(fb.project(e)), e @ a.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(fb.matrix), a.astype(np.float32))


class _WarningDevice(_ExactLinearDevice):
    """Emits a saturation warning and one other warning from each projection; records recalibrations."""

    def __init__(self, a: np.ndarray) -> None:
        super().__init__(a)
        self.projector_calls: list[tuple] = []

    def linear_transform(self, x, scheme, precision, share_repeats=False, dtype=np.float64):
        warnings.warn("frames at the ADC maximum", opu.SaturationWarning, stacklevel=2)
        warnings.warn("something else", RuntimeWarning, stacklevel=2)
        return super().linear_transform(x, scheme, precision, share_repeats, dtype)

    def projector(self, n_features, scheme, precision):
        self.projector_calls.append((n_features, scheme, precision))
        return self

    def recalibrate(self):
        self.projector_calls.append("recalibrate")


def test_saturation_warnings_are_counted_and_others_passed_on():
    dev = _WarningDevice(np.random.default_rng(3).normal(size=(M, C)))
    fb = OpticalFeedback(dev, M, C, FeedbackConfig(precision=4, scheme="complement"))
    with pytest.warns(RuntimeWarning, match="something else"):
        fb.project(_errors(3, seed=9), np.random.default_rng(1))
    with pytest.warns(RuntimeWarning):
        fb.project(_errors(3, seed=9), np.random.default_rng(2))
    assert fb.saturation_warnings == 2
    fb.begin_epoch()  # re-measures the dark and reference frames of the projector in use
    assert dev.projector_calls == [(C, "complement", 4), "recalibrate"]


def test_setup_configures_roi_and_features_or_applies_stored_settings():
    with FlakySimDevice(opu.realistic(seed=1)) as dev:
        fb = OpticalFeedback(dev, M, C, FeedbackConfig(exposure_target_frac=None))
        settings = fb.setup()
        roi = opu.centred_roi(M)
        assert dev.n_outputs == M and dev.settings.n_features == C + C  # data + anchor features
        assert dev.settings.camera_roi.model_dump() == roi.model_dump()
        assert settings == dev.settings.model_dump(mode="json") and fb.exposure is None
        assert dev.frames_acquired == 0  # no auto-exposure asked: nothing acquired
    with FlakySimDevice(opu.realistic(seed=1)) as dev:
        stored = {**settings, "exposure_us": 123.0}
        fb = OpticalFeedback(dev, M, C, FeedbackConfig())  # auto-exposure would run without settings
        assert fb.setup(stored) == {**settings, "exposure_us": 123.0}
        assert dev.frames_acquired == 0 and fb.exposure is None
        with pytest.raises(ValueError, match=f"device gives {M} outputs, the network needs {M + 1}"):
            OpticalFeedback(dev, M + 1, C, FeedbackConfig()).setup(stored)
    with FlakySimDevice(opu.realistic(seed=1)) as dev:
        fb = OpticalFeedback(dev, M, C, FeedbackConfig(scheme="complement", exposure_target_frac=0.3))
        fb.setup()
        assert dev.settings.n_features == C  # complement: no spare mirrors
        assert fb.exposure is not None and fb.exposure.converged and dev.frames_acquired > 0
        assert fb.exposure.p999_frac == pytest.approx(0.3, abs=0.06)  # the configured target, not 0.6


def test_stochastic_draws_are_independent_per_entry_and_float64():
    """One uniform per entry: a less likely entry is sometimes kept while a likelier one is dropped
    (a shared uniform would make the kept sets nested); the result is float64 whatever e's dtype."""
    e = np.array([[0.2, -0.5, 0.9, -1.0]], dtype=np.float32)
    rng = np.random.default_rng(4)
    crossed = 0
    for _ in range(200):
        et, s = ternary_error(e, FeedbackConfig(), rng)
        assert et.dtype == np.float64 and s.dtype == np.float64
        crossed += bool(et[0, 0] != 0 and et[0, 1] == 0)  # p = 0.2 kept, p = 0.5 dropped
    # expected 200 x 0.2 x 0.5 = 20 such draws; a shared uniform gives none
    assert crossed > 5
    et, _ = ternary_error(e, FeedbackConfig(threshold_mode="fixed"))
    assert et.dtype == np.float64
    message = r"^stochastic ternarization needs an explicit numpy Generator \(rng=\.\.\.\)$"
    with pytest.raises(ValueError, match=message):
        ternary_error(e, FeedbackConfig())


def test_norm_rescale_is_zero_when_nothing_survives_the_threshold():
    """An error entirely below the threshold ternarizes to 0; its scale must be 0, not
    ||e|| / 1e-30 (which would multiply the measurement noise of an all-zero projection by 1e28)."""
    e = np.array([[0.05, -0.02, 0.0], [0.5, 0.0, -0.2]])
    et, scale = ternary_error(e, FeedbackConfig(threshold_mode="fixed", threshold=0.1))
    assert not et[0].any()
    assert scale[0] == 0.0
    assert scale[1] == pytest.approx(np.linalg.norm(e[1]) / math.sqrt(2))
