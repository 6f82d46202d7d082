"""The structured medium (``medium.kind = "structured"``): its matrix against an independent numpy
construction, the speckle statistics of the i.i.d. model (tolerances a few standard errors of the
estimators), where it deviates (exact unitarity), batch-split invariance, drift and full size."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import opu
from opu.structured import StructuredMedium, transform_length


def _patterns(k: int, count: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((count, n), dtype=bool)
    for row in x:
        row[rng.choice(n, size=k, replace=False)] = True
    return x


def _structured(seed: int, n_outputs: int) -> opu.OPUConfig:
    return opu.ideal(seed=seed, n_outputs=n_outputs).replace(medium={"kind": "structured"})


def test_matrix_equals_the_product_of_dfts_and_phase_diagonals():
    """Second implementation: dense numpy DFT matrices and the medium's own phases."""
    n, m = 48, 100
    med = StructuredMedium(seed=5, n_features=n, n_outputs=m, mirrors_per_feature=4)
    big_n = transform_length(n, m)
    assert big_n == 128
    f = np.fft.fft(np.eye(big_n)) / np.sqrt(big_n)  # unitary DFT matrix
    u = np.eye(big_n, dtype=np.complex128)
    for phi in med.phases:
        u = f @ (np.exp(1j * phi)[:, None] * u)
    expected = np.sqrt(4 * big_n) * u[:m, :n]
    np.testing.assert_allclose(med.dense(), expected, atol=2e-5 * np.sqrt(4 * big_n))


def test_same_seed_same_medium_other_seed_uncorrelated():
    a = StructuredMedium(7, 64, 200).dense()
    np.testing.assert_array_equal(StructuredMedium(7, 64, 200).dense(), a)
    b = StructuredMedium(8, 64, 200).dense()
    assert abs(np.vdot(a, b)) / a.size < 5 / np.sqrt(a.size)


def test_intensity_is_exponential_with_mean_equal_to_lit_mirrors():
    sim = opu.Simulator(_structured(3, 4096), n_features=512)
    for row in sim.intensity(_patterns(k=100, count=4, n=512)).astype(np.float64):
        res = stats.kstest(row / 100.0, "expon")
        assert res.pvalue > 1e-3, res


@pytest.mark.parametrize("k", [8, 64, 300])
def test_mean_proportional_to_lit_mirrors_and_unit_contrast(k):
    sim = opu.Simulator(_structured(3, 4096), n_features=512)
    intensity = sim.intensity(_patterns(k=k, count=8, n=512, seed=k)).astype(np.float64)
    n = intensity.size
    assert abs(intensity.mean() / k - 1) < 5 / np.sqrt(n)
    assert abs(intensity.std() / intensity.mean() - 1) < 6 / np.sqrt(n)


def test_macro_pixels_scale_the_mean_by_their_area():
    cfg = _structured(1, 1024).replace(dmd={"macro_pixel_mirrors": 3})
    sim = opu.Simulator(cfg, n_features=64)
    intensity = sim.intensity(_patterns(k=10, count=16, n=64)).astype(np.float64)
    assert abs(intensity.mean() / (10 * 9) - 1) < 5 / np.sqrt(intensity.size)


def test_outputs_uncorrelated_across_pixels():
    sim = opu.Simulator(_structured(3, 4096), n_features=512)
    img = sim.intensity(_patterns(k=50, count=64, n=512, seed=7)).astype(np.float64).reshape(64, 64, 64)
    z = (img - img.mean()) / img.std()
    n = z[:, :, :-1].size
    assert abs((z[:, :, :-1] * z[:, :, 1:]).mean()) < 5 / np.sqrt(n)
    assert abs((z[:, :-1, :] * z[:, 1:, :]).mean()) < 5 / np.sqrt(n)
    # patterns differing in one half are independent speckles too (no leakage across inputs)
    x = _patterns(k=60, count=2, n=512, seed=11)
    x[1] = False
    x[1, 256:] = x[0, :256]
    i = sim.intensity(x).astype(np.float64)
    r = np.corrcoef(i[0], i[1])[0, 1]
    assert abs(r) < 5 / np.sqrt(i.shape[1])


def test_optical_kernel_matches_closed_form():
    """E[|b.x|^2 |b.x'|^2] = |x|^2 |x'|^2 + <x, x'>^2, averaged over pixels of 6 media."""
    n = 256
    x = np.zeros(n, bool)
    xp = np.zeros(n, bool)
    x[:40] = True
    xp[25:85] = True  # overlap 15
    expected = 40 * 60 + 15**2
    samples = []
    for seed in range(6):
        s = opu.Simulator(_structured(100 + seed, 4096), n_features=n)
        i = s.intensity(np.stack([x, xp])).astype(np.float64)
        samples.append(i[0] * i[1])
    prod = np.concatenate(samples)
    se = prod.std() / np.sqrt(prod.size)
    assert abs(prod.mean() - expected) < 5 * se
    assert abs(prod.mean() - 40 * 60) > 5 * se


def test_deviation_square_medium_is_exactly_unitary():
    """Where it is not i.i.d.: for n = m = N, B^H B = a N I exactly, so the total intensity
    sum_i |(Bx)_i|^2 = a N |x|^2 has no fluctuation (i.i.d.: relative std 1/sqrt(m))."""
    big_n = 256
    b = StructuredMedium(2, big_n, big_n, mirrors_per_feature=2).dense().astype(np.complex128)
    np.testing.assert_allclose(b.conj().T @ b / (2 * big_n), np.eye(big_n), atol=1e-5)
    x = _patterns(k=77, count=3, n=big_n, seed=2).astype(np.float64)
    total = (np.abs(x @ b.T) ** 2).sum(axis=1)
    np.testing.assert_allclose(total, 2 * big_n * 77, rtol=1e-5)


def test_any_batch_split_gives_identical_noisy_frames():
    cfg = opu.realistic(seed=4, n_outputs=2048, medium_kind="structured")
    x = _patterns(k=200, count=8, n=700, seed=3)
    whole = opu.Simulator(cfg, n_features=700).acquire(x)
    for cuts in ([4], [1, 5]):
        sim = opu.Simulator(cfg, n_features=700)
        parts = [sim.acquire(p) for p in np.split(x, cuts)]
        np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_drift_decorrelates_as_exp_minus_t_over_tau():
    med = StructuredMedium(3, 256, 512, tau_s=100.0, step_s=10.0)
    b0 = med.dense()
    med.advance_to_step(5)  # t = 50 s
    b1 = med.dense()
    corr = np.vdot(b0, b1).real / np.sqrt(np.vdot(b0, b0).real * np.vdot(b1, b1).real)
    # 131k entries; the estimator's std is about 1/sqrt(n) of the independent phase paths, 1/16
    assert abs(corr - np.exp(-0.5)) < 0.06, corr
    assert abs(np.mean(np.abs(b1) ** 2) - 1) < 0.01  # the law (power) is unchanged


def test_drift_in_the_simulator_and_the_camera_unchanged():
    cfg = opu.realistic(seed=2, n_outputs=1024, medium_kind="structured")
    sim = opu.Simulator(cfg, n_features=256)
    x = _patterns(k=64, count=2, n=256)
    before = sim.intensity(x)
    sim.idle(3 * 3600.0)  # three time constants
    after = sim.intensity(x)
    r = np.corrcoef(before.ravel(), after.ravel())[0, 1]
    # intensity correlation |corr_field|^2 = exp(-6) = 0.0025; std of r ~ 1/sqrt(2048)
    assert abs(r - np.exp(-6)) < 5 / np.sqrt(before.size)
    frames = sim.acquire(x)
    assert frames.dtype == np.uint8 and frames.shape == (2, 1024)


def test_realistic_full_size_geometry():
    cfg = opu.realistic(seed=0, full_size=True)
    assert cfg.medium.kind == "structured"
    assert (cfg.camera.roi.height_px, cfg.camera.roi.width_px) == (1080, 1920)
    assert cfg.camera.n_outputs == 2_073_600 and cfg.dmd.max_features == 1_039_680
    with pytest.raises(opu.ConfigError, match="n_outputs"):
        opu.realistic(full_size=True, n_outputs=4096)
    with pytest.raises(ValueError, match="kind"):
        opu.realistic().replace(medium={"kind": "gaussian"})


@pytest.mark.slow
def test_full_size_frames_have_the_iid_statistics():
    """1,039,680 -> 2,073,600 with half the mirrors lit: mean k, contrast 1 over 2 M pixels."""
    cfg = opu.realistic(seed=1, full_size=True)
    sim = opu.Simulator(cfg, n_features=cfg.dmd.max_features)
    x = np.random.default_rng(0).random((1, sim.n_features)) < 0.5
    k = int(x.sum())
    i = np.asarray(sim.intensity(x), dtype=np.float64).ravel()
    assert abs(i.mean() / k - 1) < 5 / np.sqrt(i.size)
    assert abs(i.std() / i.mean() - 1) < 6 / np.sqrt(i.size)
    # neighbouring pixels (rows of the sensor) are uncorrelated
    img = (i.reshape(1080, 1920) - i.mean()) / i.std()
    assert abs((img[:, :-1] * img[:, 1:]).mean()) < 5 / np.sqrt(img[:, :-1].size)


def test_speckle_grain_applies_unchanged():
    """Field correlation exp(-d^2/rho^2) => intensity correlation exp(-2 d^2 / rho^2), as for i.i.d."""
    cfg = _structured(5, 4096).replace(medium={"speckle_grain_px": 2.0})
    img = opu.Simulator(cfg, n_features=128).intensity(_patterns(k=40, count=32, n=128, seed=1))
    img = img.astype(np.float64).reshape(32, 64, 64)
    assert abs(img.mean() / 40 - 1) < 0.05
    z = (img - img.mean()) / img.std()
    for d in (1, 2):
        assert abs((z[:, :, :-d] * z[:, :, d:]).mean() - np.exp(-2 * d**2 / 4.0)) < 0.06
