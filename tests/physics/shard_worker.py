"""Run in a subprocess by test_phys_sharded.py: XLA's host device count must be set before JAX loads.

    python shard_worker.py N_DEVICES OUT.npz

Writes the sharded field on 1, 4 (when available) and N_DEVICES virtual CPU devices, the streamed
reference, the noisy frames of a ``tm_mode="sharded"`` Simulator and the per-device memory figures.
"""

from __future__ import annotations

import os
import sys

n_devices = int(sys.argv[1])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"

import jax  # noqa: E402
import numpy as np  # noqa: E402

import opu  # noqa: E402
from opu.medium import TransmissionMatrix, streamed_field  # noqa: E402
from opu.sharded import compiled_memory, make_mesh, plan, sharded_field  # noqa: E402

assert len(jax.devices()) == n_devices, jax.devices()
rng = np.random.default_rng(0)
m, n, b = 1500, 400, 5  # m not a multiple of the tiles: padding is exercised
pixels = np.sort(rng.choice(2**21, size=m, replace=False)).astype(np.uint32)
mirrors = np.sort(rng.choice(1_039_680, size=n, replace=False)).astype(np.uint32)
tm = TransmissionMatrix(11, pixels, mirrors, mirrors_per_feature=2)
x = rng.random((b, n)) < 0.4
out = {}
for d in sorted({1, min(4, n_devices), n_devices}):
    re, im = sharded_field(tm, x, make_mesh(jax.devices()[:d]), tile_pixels=256, tile_features=128)
    out[f"re{d}"], out[f"im{d}"] = re, im
    mem = compiled_memory(tm, b, int(x.any(axis=0).sum()), make_mesh(jax.devices()[:d]), 256, 128)
    out[f"temp{d}"] = np.int64(mem["temp_size_in_bytes"] or -1)
    out[f"output{d}"] = np.int64(mem["output_size_in_bytes"] or -1)
    out[f"bound{d}"] = np.int64(plan(m, d, 256, 128).per_device_bytes(b, int(x.any(axis=0).sum())))
out["ref_re"], out["ref_im"] = streamed_field(tm, x, block_features=128)
cfg = opu.realistic(seed=3, n_outputs=1024).replace(medium={"drift_time_constant_s": None})
patterns = rng.random((4, 300)) < 0.5
out["frames_sharded"] = opu.Simulator(cfg, 300, tm_mode="sharded").acquire(patterns)
out["frames_dense"] = opu.Simulator(cfg, 300, tm_mode="dense").acquire(patterns)
np.savez(sys.argv[2], **out)
