"""The i.i.d. medium sharded over camera pixels across 8 virtual CPU devices (a subprocess:
``--xla_force_host_platform_device_count`` must be set before JAX is imported)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("shard_worker.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("shard") / "out.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, str(WORKER), "8", str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out))


def test_sharded_field_is_bit_identical_on_1_4_and_8_devices(result):
    for d in (4, 8):
        np.testing.assert_array_equal(result[f"re{d}"], result["re1"])
        np.testing.assert_array_equal(result[f"im{d}"], result["im1"])


def test_sharded_field_equals_the_streamed_product(result):
    # same entries, float32 sums in another order: agreement to float32 rounding of ~160 terms
    scale = np.sqrt(2 * 160)
    np.testing.assert_allclose(result["re8"], result["ref_re"], atol=3e-5 * scale)
    np.testing.assert_allclose(result["im8"], result["ref_im"], atol=3e-5 * scale)


def test_sharded_simulator_frames_equal_the_dense_ones(result):
    a, b = result["frames_sharded"].astype(int), result["frames_dense"].astype(int)
    # identical except, rarely, 1 DN at a rounding tie (different float32 summation order)
    assert np.abs(a - b).max() <= 1
    assert (a != b).mean() < 1e-3


def test_per_device_memory_is_bounded(result):
    """XLA's figures for one device: temporaries (the W tile) do not grow with the device count or
    n, the output share shrinks with it, and both stay under opu.sharded's stated bound."""
    for d in (1, 4, 8):
        used = result[f"temp{d}"] + result[f"output{d}"]
        assert 0 < used <= result[f"bound{d}"], (d, used, result[f"bound{d}"])
    assert result["temp8"] <= result["temp1"]
    assert result["output8"] < result["output1"]
