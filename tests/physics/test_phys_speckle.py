"""Fully developed speckle and the optical kernel, against closed-form statistics.

For B complex Gaussian i.i.d. with E|B_ij|^2 = a (mirrors per feature) and a binary x with k ones,
(Bx)_i is CN(0, k a): the intensity is exponential with mean k a, contrast 1, and independent
across pixels (docs/physics.md). Tolerances are a few standard errors of the estimators.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import opu

M = 4096


@pytest.fixture(scope="module")
def sim() -> opu.Simulator:
    return opu.Simulator(opu.ideal(seed=3, n_outputs=M), n_features=512)


def _patterns(k: int, count: int, n: int = 512, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((count, n), dtype=bool)
    for row in x:
        row[rng.choice(n, size=k, replace=False)] = True
    return x


def test_intensity_is_exponential_with_mean_equal_to_lit_mirrors(sim):
    x = _patterns(k=100, count=4)
    intensity = sim.intensity(x).astype(np.float64)
    for row in intensity:  # each pattern: m pixels, i.i.d. Exp(mean=100) under the model
        res = stats.kstest(row / 100.0, "expon")
        assert res.pvalue > 1e-3, res


@pytest.mark.parametrize("k", [8, 64, 300])
def test_mean_proportional_to_lit_mirrors_and_unit_contrast(sim, k):
    intensity = sim.intensity(_patterns(k=k, count=8, seed=k)).astype(np.float64)
    n = intensity.size
    mean = intensity.mean()
    # the exponential's mean estimator has relative std 1/sqrt(N); the std estimator ~1/sqrt(N) too
    assert abs(mean / k - 1) < 5 / np.sqrt(n)
    contrast = intensity.std() / mean
    assert abs(contrast - 1) < 6 / np.sqrt(n)


def test_macro_pixels_scale_the_mean_by_their_area():
    cfg = opu.ideal(seed=1, n_outputs=1024).replace(dmd={"macro_pixel_mirrors": 3})
    s = opu.Simulator(cfg, n_features=64)
    intensity = s.intensity(_patterns(k=10, count=16, n=64)).astype(np.float64)
    assert abs(intensity.mean() / (10 * 9) - 1) < 5 / np.sqrt(intensity.size)


def test_outputs_uncorrelated_across_pixels(sim):
    intensity = sim.intensity(_patterns(k=50, count=64, seed=7)).astype(np.float64)
    img = intensity.reshape(64, 64, 64)  # (patterns, rows, cols)
    z = (img - img.mean()) / img.std()
    n = z[:, :, :-1].size
    horizontal = (z[:, :, :-1] * z[:, :, 1:]).mean()
    vertical = (z[:, :-1, :] * z[:, 1:, :]).mean()
    # for independent exponentials the product of standardized values has std ~ 1
    assert abs(horizontal) < 5 / np.sqrt(n)
    assert abs(vertical) < 5 / np.sqrt(n)


def test_optical_kernel_matches_closed_form():
    """E[|b.x|^2 |b.x'|^2] = |x|^2 |x'|^2 + <x, x'>^2 for binary x, x' and E|b_j|^2 = 1."""
    n = 256
    x = np.zeros(n, bool)
    xp = np.zeros(n, bool)
    x[:40] = True
    xp[25:85] = True  # overlap 15
    expected = 40 * 60 + 15**2
    samples = []
    for seed in range(6):  # independent media
        s = opu.Simulator(opu.ideal(seed=100 + seed, n_outputs=M), n_features=n)
        i = s.intensity(np.stack([x, xp])).astype(np.float64)
        samples.append(i[0] * i[1])
    prod = np.concatenate(samples)
    se = prod.std() / np.sqrt(prod.size)
    assert abs(prod.mean() - expected) < 5 * se
    # and it is not the kernel without the interference term
    assert abs(prod.mean() - 40 * 60) > 5 * se


def test_finite_speckle_grain_correlates_neighbours():
    """Field correlation exp(-d^2/rho^2) => intensity correlation exp(-2 d^2 / rho^2)."""
    rho = 2.0
    cfg = opu.ideal(seed=5, n_outputs=4096).replace(medium={"speckle_grain_px": rho})
    s = opu.Simulator(cfg, n_features=128)
    intensity = s.intensity(_patterns(k=40, count=32, n=128, seed=1)).astype(np.float64)
    img = intensity.reshape(32, 64, 64)
    assert abs(img.mean() / 40 - 1) < 0.05  # the filter keeps the mean intensity
    z = (img - img.mean()) / img.std()
    for d in (1, 2):
        measured = (z[:, :, :-d] * z[:, :, d:]).mean()
        assert abs(measured - np.exp(-2 * d**2 / rho**2)) < 0.06, (d, measured)
