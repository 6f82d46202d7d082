"""Linear projections from intensities: identities, effective matrix law, linearity, noise."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import opu

N = 32
M = 1024


def _ideal_sim(scheme: opu.LinearScheme, seed: int = 0, **replace) -> opu.Simulator:
    cfg = opu.ideal(seed=seed, n_outputs=M)
    if replace:
        cfg = cfg.replace(**replace)
    return opu.Simulator(cfg, n_features=scheme.device_features)


def _effective_matrix(scheme, sim) -> np.ndarray:
    proj = opu.LinearProjector(sim.acquire, scheme)
    return proj.transform(np.eye(N)).T  # (m, n): column j = A e_j


@pytest.mark.parametrize("name", ["anchor", "complement"])
def test_matches_interference_term_of_noiseless_field(name):
    scheme = opu.make_scheme(name, N)
    sim = _ideal_sim(scheme, seed=1)
    proj = opu.LinearProjector(sim.acquire, scheme)
    x = np.random.default_rng(0).random((6, N)) < 0.4
    y = proj.transform(x.astype(np.int8))  # binary input is ternary too
    B = sim.tm.dense().astype(np.complex128)
    ref_pattern = np.zeros(scheme.device_features, bool)
    ref_pattern[N:] = True
    if name == "complement":
        ref_pattern[:] = True
    b_ref = B @ ref_pattern
    cross = np.real(np.conj(b_ref)[None, :] * (x.astype(np.complex128) @ B[:, :N].T))
    # undo the per-output normalisation with the known gain (ideal: 1 DN per photon, 2 photons/unit)
    gain = sim.photons_per_unit_intensity
    scale = proj.calibration.scale
    expected = cross * gain * (scale / np.sqrt(gain * np.abs(b_ref) ** 2))[None, :]
    if name == "complement":  # the known row-sum term along the all-ones direction is removed
        expected -= x.sum(axis=1)[:, None] * (scale * np.sqrt(gain) * np.abs(b_ref) / N)[None, :]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("name", ["anchor", "complement"])
def test_effective_matrix_is_real_iid_standard_gaussian(name):
    scheme = opu.make_scheme(name, N)
    A = _effective_matrix(scheme, _ideal_sim(scheme, seed=2))
    assert A.dtype == np.float64
    n = A.size
    assert abs(A.mean()) < 5 / np.sqrt(n)
    assert abs(A.var() - 1) < 5 * np.sqrt(2 / n) + 0.03  # + scale estimated from m pixels (~1/sqrt(m))
    assert stats.kstest(A.ravel() / A.std(), "norm").pvalue > 1e-3
    # columns (features) uncorrelated
    c = np.corrcoef(A.T)
    off = c[~np.eye(N, dtype=bool)]
    limit = 5 / np.sqrt(M) if name == "anchor" else 8 / np.sqrt(M)  # complement: O(1/n) coupling
    assert np.abs(off).mean() < limit


@pytest.mark.parametrize("name", ["anchor", "complement"])
def test_linear_in_the_input(name):
    scheme = opu.make_scheme(name, N)
    proj = opu.LinearProjector(_ideal_sim(scheme, seed=3).acquire, scheme)
    rng = np.random.default_rng(4)
    u = rng.integers(-1, 2, size=(4, N))
    v = rng.integers(-1, 2, size=(4, N))
    a, b = 0.7, -1.3
    lhs = proj.transform(a * u + b * v)  # real input: bit planes
    rhs = a * proj.transform(u) + b * proj.transform(v)
    scale = np.abs(rhs).max()
    # 8-bit planes: quantization of (a u + b v) is at most max|.| / 255 / 2 per entry
    assert np.abs(lhs - rhs).max() < 0.02 * scale


def test_realistic_noisy_projection_correlates_with_ideal():
    scheme = opu.AnchorScheme(N, anchor_features=N, adc_max_dn=255)
    # light budget: 64 x 9-mirror features -> ~576 lit mirrors ~ 700 e- per pixel
    cfg = opu.realistic(seed=5, n_outputs=M).replace(
        dmd={"macro_pixel_mirrors": 3}, medium={"drift_time_constant_s": None}
    )
    noisy = opu.Simulator(cfg, n_features=scheme.device_features)
    clean = opu.Simulator(
        cfg.replace(
            camera={
                "shot_noise": False,
                "read_noise_e": 0.0,
                "bit_depth": None,
                "prnu_rel": 0.0,
                "dsnu_e": 0.0,
                "dark_current_e_per_s": 0.0,
                "full_well_e": 1e30,
            },
            laser={"power_fluctuation_rel": 0.0},
        ),
        n_features=scheme.device_features,
    )
    e = np.random.default_rng(6).integers(-1, 2, size=(16, N))
    with warnings.catch_warnings():
        warnings.simplefilter("error", opu.SaturationWarning)
        y_noisy = opu.LinearProjector(noisy.acquire, scheme).transform(e)
    y_clean = opu.LinearProjector(clean.acquire, scheme).transform(e)
    r = np.corrcoef(y_noisy.ravel(), y_clean.ravel())[0, 1]
    assert r > 0.9


def test_saturation_is_reported():
    scheme = opu.AnchorScheme(N, adc_max_dn=255)
    cfg = opu.realistic(seed=5, n_outputs=256).replace(dmd={"macro_pixel_mirrors": 20})
    sim = opu.Simulator(cfg, n_features=scheme.device_features)
    with pytest.warns(opu.SaturationWarning, match="saturated"):
        opu.LinearProjector(sim.acquire, scheme).transform(np.ones((1, N)))


def test_frame_costs_are_declared_and_counted():
    scheme = opu.AnchorScheme(N, dark_repeats=2, reference_repeats=3)
    sim = _ideal_sim(scheme)
    proj = opu.LinearProjector(sim.acquire, scheme)
    proj.transform(np.zeros((5, N), dtype=int))
    assert sim.clock.frames == 2 + 3 + 5 * scheme.frames_per_signed
    proj.transform(np.full((2, N), 0.5))  # real -> 8 bit planes
    assert sim.clock.frames == 5 + 20 + 2 * 8 * scheme.frames_per_signed
    assert scheme.frames_for(7, signed=True) == 28


def test_dark_reference_is_refused():
    scheme = opu.AnchorScheme(N)
    sim = _ideal_sim(scheme, laser={"photons_per_mirror_us": 0.0})
    with pytest.raises(opu.OPUError, match="no light"):
        opu.LinearProjector(sim.acquire, scheme).transform(np.ones((1, N), dtype=int))


def _one_hot_like_errors(b: int, seed: int) -> np.ndarray:
    """Ternary rows as DFA produces them: -1 at one class, +1 at a few others (many repeats)."""
    rng = np.random.default_rng(seed)
    e = np.zeros((b, N), dtype=np.int8)
    e[np.arange(b), rng.integers(0, 4, b)] = -1
    plus = rng.integers(4, 7, b)
    e[np.arange(b), plus] = np.where(rng.random(b) < 0.7, 1, 0)
    return e


@pytest.mark.parametrize("name", ["anchor", "complement"])
def test_shared_repeats_give_the_same_projection_with_one_acquisition_per_distinct_part(name):
    scheme = opu.make_scheme(name, N)
    sim = _ideal_sim(scheme, seed=2)
    proj = opu.LinearProjector(sim.acquire, scheme)
    e = _one_hot_like_errors(60, seed=1)
    every = proj.transform(e)
    before = sim.clock.frames
    shared = proj.transform(e, share_repeats=True)
    # distinct binary parts counted independently of the implementation
    parts = {tuple(np.flatnonzero(row > 0)) for row in e} | {tuple(np.flatnonzero(row < 0)) for row in e}
    assert sim.clock.frames - before == scheme.frames_per_binary * len(parts) < 4 * len(e)
    np.testing.assert_allclose(shared, every, rtol=1e-5, atol=1e-5 * np.abs(every).max())


def test_shared_repeats_share_the_noise_of_a_repeated_vector():
    scheme = opu.AnchorScheme(N, adc_max_dn=255)
    cfg = opu.realistic(seed=5, n_outputs=M).replace(dmd={"macro_pixel_mirrors": 3})
    sim = opu.Simulator(cfg, n_features=scheme.device_features)
    proj = opu.LinearProjector(sim.acquire, scheme)
    e = np.repeat(_one_hot_like_errors(1, seed=3), 3, axis=0)
    own = proj.transform(e)
    shared = proj.transform(e, share_repeats=True)
    assert not np.array_equal(own[0], own[1])  # each vector measured with its own frames
    np.testing.assert_array_equal(shared[0], shared[1])  # one measurement, reused
    assert np.corrcoef(shared[0], own[0])[0, 1] > 0.8  # and it measures the same A e
