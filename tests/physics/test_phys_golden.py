"""Same seed -> same values on every machine: digests of the transmission matrix entries and of camera
frames for a given intensity.

The digests were recorded before the kernels were restructured for speed (issue 17) and hold on
x86-64 machines with FMA (AVX2 and AVX-512 code paths: run with ``XLA_FLAGS=--xla_cpu_max_isa=AVX2``
to check the former on an AVX-512 machine). A kernel change that moves any value by one bit fails
here. The GEMM that turns W into a field is not covered: BLAS kernels sum in an order of their own.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import opu
from opu.camera import Camera
from opu.medium import TransmissionMatrix, streamed_field


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def tm() -> TransmissionMatrix:
    rng = np.random.default_rng(0)
    pixels = np.sort(rng.choice(2**21, size=300, replace=False)).astype(np.uint32)
    mirrors = np.sort(rng.choice(1_039_680, size=70, replace=False)).astype(np.uint32)
    return TransmissionMatrix(seed=42, pixel_ids=pixels, mirror_ids=mirrors, mirrors_per_feature=4)


def test_transmission_matrix_entries_are_the_recorded_ones(tm):
    assert _digest(np.asarray(tm.w_dense(block_features=32))) == "636fc632f354d670"
    assert _digest(tm.block()) == "db826e3bb35dbce5"
    assert _digest(np.asarray(tm.w_rows(np.arange(5, 40)))) == "ff03c71cbccfb426"


def test_streamed_field_of_one_feature_is_its_w_row(tm):
    # a one-hot input selects one row of W exactly (a sum of one term), whatever the block size
    x = np.zeros((1, 70), np.float32)
    x[0, 17] = 1
    re, im = streamed_field(tm, x, block_features=8)
    row = np.asarray(tm.w_rows(np.array([17])))[0]
    np.testing.assert_array_equal(np.concatenate([re[0], im[0]]), row)


@pytest.mark.parametrize(
    ("name", "cfg", "expected"),
    [
        ("realistic 8-bit, laser, exact Poisson", opu.realistic(seed=5, n_outputs=1024), "a76bd278e6825a3e"),
        ("12-bit", opu.realistic(seed=6, n_outputs=1600).replace(camera={"bit_depth": 12}),
         "1ba27d56a1b0c22c"),
        ("ideal float32", opu.ideal(seed=7, n_outputs=256), "3a7a9c97b6128dee"),
        # float output with every noise: the noise values themselves, not only their rounding to DN
        # (recorded 2026-12-01; the same with --xla_cpu_max_isa=AVX2)
        ("noisy float32", opu.ideal(seed=8, n_outputs=256).replace(
            camera={"shot_noise": True, "read_noise_e": 2.0, "bit_depth": None},
            laser={"power_fluctuation_rel": 0.01}), "478457a6c0d5f875"),
    ],
)
def test_camera_frames_are_the_recorded_ones(name, cfg, expected):
    cam = Camera(cfg.camera, cfg.seed)
    n_frames, m = 300, cfg.camera.n_outputs
    inten = np.random.default_rng(3).exponential(1.0, (n_frames, m)).astype(np.float32)
    inten[::7] *= 1e-3  # dim frames: the exact-Poisson path
    ppu = 2000.0 if cfg.camera.bit_depth else 3.0
    frames = cam.expose(inten, ppu, np.arange(1000, 1000 + n_frames), cfg.laser.power_fluctuation_rel)
    assert _digest(frames) == expected, name
