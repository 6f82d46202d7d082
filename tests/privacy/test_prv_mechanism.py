"""Encoding, sensitivity bound and noise of the private feedback (digital path)."""

import itertools
import math

import jax
import numpy as np
import pytest

from host.privacy import PrivacyConfig, PrivateFeedback, encode_error, feedback_bound, sensitivity, support
from host.train.feedback import DigitalFeedback


def _errors(rng, b, c):
    logits = rng.standard_normal((b, c)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, c, b)
    return p - np.eye(c)[y], y


def test_encoding_is_unbiased_and_two_sparse():
    rng = np.random.default_rng(0)
    e, y = _errors(rng, 4, 5)
    n = 40000
    acc = np.zeros_like(e)
    for _ in range(n // 1000):
        ts = np.stack([encode_error(e, y, rng) for _ in range(1000)])
        assert (np.abs(ts).sum(-1) <= 2).all() and set(np.unique(ts)) <= {-1.0, 0.0, 1.0}
        acc += ts.sum(0)
    mean = acc / n
    # each entry is a {-1,0,1} variable: std <= 1, so 5 standard errors is 5/sqrt(n)
    assert np.abs(mean - e).max() < 5 / math.sqrt(n)


def test_support_and_bound_against_brute_force():
    c = 4
    assert support(c).shape == (c * (c - 1) + 1, c)
    a = np.random.default_rng(1).standard_normal((30, c))
    vals = [np.zeros(c)] + [np.eye(c)[j] - np.eye(c)[k] for j in range(c) for k in range(c) if j != k]
    brute_r1 = max(np.linalg.norm(a @ (s - t)) for s, t in itertools.product(vals, vals))
    brute_ar = max(np.linalg.norm(a @ s) for s in vals)
    assert feedback_bound(a, "replace_one") == pytest.approx(brute_r1, rel=1e-9)
    assert feedback_bound(a, "add_remove") == pytest.approx(brute_ar, rel=1e-9)
    assert sensitivity(3.0, 2.0, "replace_one") == pytest.approx(math.sqrt(9 + (2 * 2 * math.sqrt(2)) ** 2))


def test_digital_private_feedback_noise_and_signal():
    m, c, b = 64, 10, 4000
    inner = DigitalFeedback(jax.random.PRNGKey(0), m, c)
    pf = PrivateFeedback(inner, PrivacyConfig(epsilon=3.0), m, c)
    pf.set_noise_multiplier(2.0, 16)
    noise = pf.begin_epoch()
    dv = feedback_bound(np.asarray(inner.matrix), "replace_one")
    assert noise.sigma == pytest.approx(2.0 * sensitivity(dv, 0.5 * math.sqrt(m), "replace_one") / 4.0)
    rng = np.random.default_rng(3)
    e = np.zeros((b, c))
    e[:, 0], e[:, 1] = 0.5, -0.5  # p = (0.5, 0.5, 0...), y = 1
    y = np.ones(b, int)
    fb, top = pf.project(e, y, rng)
    # feedback = A t + N(0, sigma^2): its mean over b samples is A E[t] = A e, its std sigma (host only)
    a = np.asarray(inner.matrix, np.float64)
    resid = fb - (a @ e[0])[None, :]
    assert abs(resid.mean()) < 5 * noise.sigma / math.sqrt(b * m)
    # plus the encoding's own spread: A t - A e = (a_0 - a_1)(Bernoulli(1/2) - 1/2) per output
    expected = math.sqrt(noise.sigma**2 + 0.25 * np.mean((a[:, 0] - a[:, 1]) ** 2))
    assert resid.std() == pytest.approx(expected, rel=0.05)
    assert (top - e).std() == pytest.approx(noise.sigma / pf.c, rel=0.05)
