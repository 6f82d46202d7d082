"""The dense GEMM on a CPU backend (issue 17): large GEMMs run in numpy's BLAS, small ones in XLA.

Both must give the ideal device's documented frames, ``photons_per_mirror_us * exposure_us * |Bx|^2``
with B from the medium's W, recomputed here in float64 (independent of either float32 GEMM), and the
switch between them must change nothing but float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

import opu
import opu.model as om

N, M, B = 2048, 1024, 64  # B * N * 2M = 2^28 multiply-adds: exactly the host-BLAS threshold


@pytest.fixture(scope="module")
def device():
    sim = opu.Simulator(opu.ideal(seed=3, n_outputs=M), n_features=N, tm_mode="dense")
    x = np.random.default_rng(0).random((B, N)) < 0.5
    sim.acquire(x[:40])  # a big first batch would otherwise go through the lit-feature path
    return sim, x


def _expected(sim, x) -> np.ndarray:
    w = np.asarray(sim.medium.w, dtype=np.float64)
    f = x.astype(np.float64) @ w
    inten = f[:, :M] ** 2 + f[:, M:] ** 2
    c = sim.config.camera
    return sim.photons_per_unit_intensity * c.quantum_efficiency * c.system_gain_dn_per_e * inten


def test_threshold_sends_this_batch_to_the_host_blas():
    assert om.HOST_BLAS_ON_CPU
    assert B * N * 2 * M >= om.HOST_BLAS_MIN_MACS > (B // 2) * N * 2 * M


@pytest.mark.parametrize("host", [True, False])
def test_frames_are_the_ideal_devices_formula_on_either_gemm(device, host, monkeypatch):
    sim, x = device
    monkeypatch.setattr(om, "HOST_BLAS_ON_CPU", host)
    got = sim.acquire(x).astype(np.float64)
    want = _expected(sim, x)
    # float32 GEMM of ~1024 terms of size ~1: relative error ~1e-6 of the summed magnitude
    scale = np.sqrt(want.mean())
    assert np.max(np.abs(np.sqrt(got) - np.sqrt(want))) < 1e-4 * scale * np.sqrt(N)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 1 - 1e-9


def test_host_and_xla_gemms_differ_only_by_rounding(device, monkeypatch):
    sim, x = device
    monkeypatch.setattr(om, "HOST_BLAS_ON_CPU", True)
    a = sim._intensity(x)
    monkeypatch.setattr(om, "HOST_BLAS_ON_CPU", False)
    b = np.asarray(sim._intensity(x))
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (B, M)
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-4 * float(b.mean()))
