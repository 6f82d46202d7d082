"""The dense GEMM on a CPU backend (issue 17): large GEMMs run in numpy's BLAS when its kernels are as
wide as the CPU's vectors, otherwise (and for small GEMMs) in XLA.

Both must give the ideal device's documented frames, ``photons_per_mirror_us * exposure_us * |Bx|^2``
with B from the medium's W, recomputed here in float64 (independent of either float32 GEMM), and the
switch between them must change nothing but float32 rounding.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

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
    assert B * N * 2 * M >= om.HOST_BLAS_MIN_MACS > (B // 2) * N * 2 * M


@pytest.mark.parametrize("avx512, cores, host", [
    (True, ["haswell"], False),  # AVX2 kernels on an AVX-512 CPU: XLA's GEMM
    (True, ["zen"], False),
    (True, ["skylakex"], True),
    (True, ["sapphirerapids"], True),
    (True, ["skylakex", "haswell"], False),  # numpy's BLAS would be the narrow one of two
    (True, [], True),  # not OpenBLAS (MKL, Accelerate): kept
    (False, ["haswell"], True),  # an AVX2 CPU: its kernels are full width
    (False, ["neoversen1"], True),
])
def test_the_gemm_engine_follows_the_width_of_numpys_blas_kernels(avx512, cores, host, monkeypatch):
    om.host_blas_full_width.cache_clear()
    monkeypatch.setattr(om, "_cpu_has_avx512", lambda: avx512)
    monkeypatch.setattr(om, "_numpy_openblas_cores", lambda: cores)
    try:
        assert om.host_blas_full_width() is host
        monkeypatch.setattr(om, "HOST_BLAS_ON_CPU", None)
        assert om._host_blas_on_cpu() is host
        monkeypatch.setattr(om, "HOST_BLAS_ON_CPU", not host)  # a forced choice wins
        assert om._host_blas_on_cpu() is (not host)
    finally:
        om.host_blas_full_width.cache_clear()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 OpenBLAS core names")
@pytest.mark.parametrize("coretype", ["Haswell", "SkylakeX"])
def test_openblas_core_type_is_read_from_the_loaded_library(coretype):
    """OpenBLAS takes ``OPENBLAS_CORETYPE`` when it loads: the detection must report that core."""
    code = "import opu.model as m; print(','.join(m._numpy_openblas_cores()))"
    env = {**os.environ, "OPENBLAS_CORETYPE": coretype, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == coretype.lower()


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
