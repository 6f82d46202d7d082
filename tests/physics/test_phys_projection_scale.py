"""The scale of ``linear_transform``: A has i.i.d. N(0, 1) entries, variance pinned to +-1 %.

Sample size from the standard error. On a noiseless device the variance of the measured A is
``(true g a) / (estimated g a)`` times the sample variance of N(0, 1) entries, where ``g a`` is
estimated from the mean reference intensity over the m outputs (an Exp(1) speckle mean: relative
standard error 1/sqrt(m)). The sample variance of N entries has relative standard error
sqrt(2 / N). With n = 8 features and m = 512 x 512 outputs (N = 2^21 entries) the two combine to
sqrt(2 / N + 1 / m) = 0.22 %, so +-1 % is 4.5 standard errors; a projection off by 2 % in scale
(1 % in amplitude) fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import opu

N_FEAT = 8
SIDE = 512
M = SIDE * SIDE


def _matrix(name: str, seed: int = 31) -> np.ndarray:
    """The measured A (n, m) (row j = A e_j), from unit vectors through LinearProjector."""
    scheme = opu.make_scheme(name, N_FEAT)
    sim = opu.Simulator(opu.ideal(seed=seed, n_outputs=M), n_features=scheme.device_features)
    return opu.LinearProjector(sim.acquire, scheme).transform(np.eye(N_FEAT))


@pytest.fixture(scope="module")
def anchor_matrix():
    return _matrix("anchor")


def test_sample_size_gives_a_one_percent_pin():
    se = math.sqrt(2 / (N_FEAT * M) + 1 / M)
    assert 0.01 / se > 4.4


def test_anchor_variance_is_one_within_one_percent(anchor_matrix):
    a = anchor_matrix
    assert a.shape == (N_FEAT, M)
    assert a.var() == pytest.approx(1.0, abs=0.01)
    # each feature's column of A has the same unit variance (no per-feature scale error):
    # sample variance of M values (se sqrt(2/M)) around the common device factor
    per_feature = a.var(axis=1)
    assert np.all(np.abs(per_feature / a.var() - 1) < 5 * math.sqrt(2 / M))


def test_anchor_mean_is_zero(anchor_matrix):
    a = anchor_matrix
    assert abs(a.mean()) < 5 / math.sqrt(a.size)
    # per-feature means: each N(0, 1/M); their sum of squares is chi2(n)
    chi2 = float((a.mean(axis=1) ** 2 * M).sum())
    assert chi2 < 35.0  # chi2(8) upper 1e-4 quantile is ~ 31.8 (then some room)


def test_anchor_has_no_row_or_column_structure(anchor_matrix):
    a = anchor_matrix
    # features uncorrelated: off-diagonal correlations ~ N(0, 1/M)
    c = np.corrcoef(a)
    off = c[~np.eye(N_FEAT, dtype=bool)]
    assert np.abs(off).max() < 5 / math.sqrt(M)
    # outputs: per-output means over the n features ~ N(0, 1/n): sum of n mean^2 is chi2(M)
    col = a.mean(axis=0) * math.sqrt(N_FEAT)
    assert abs(float((col**2).mean()) - 1) < 5 * math.sqrt(2 / M) + 0.01
    # no spatial structure on the camera: neighbouring pixels (rows and columns of the ROI) are
    # uncorrelated, lag-1 products average to 0 with se 1/sqrt(count)
    img = a.reshape(N_FEAT, SIDE, SIDE)
    for lag in (img[:, :, 1:] * img[:, :, :-1], img[:, 1:, :] * img[:, :-1, :]):
        assert abs(float(lag.mean())) < 5 / math.sqrt(lag.size)
    # nor a per-output scale pattern: |A| per output is the same law everywhere (no gain map left)
    rms_rows = np.sqrt((img**2).mean(axis=(0, 2)))
    assert np.all(np.abs(rms_rows - 1) < 5 * math.sqrt(1 / (2 * N_FEAT * SIDE)) + 0.01)


def test_complement_variance_and_row_sums():
    """Complement: variance 1 - 1/n (the known all-ones term is removed), rows summing to zero."""
    a = _matrix("complement", seed=32)
    assert a.var() == pytest.approx(1 - 1 / N_FEAT, abs=0.01)
    np.testing.assert_allclose(a.sum(axis=0), 0.0, atol=1e-3)
    assert abs(a.mean()) < 1e-6
