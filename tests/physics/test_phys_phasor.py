"""The fast (cos, sin) of the generator against numpy, to its documented float32 accuracy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from opu.medium import _unit_phasor


def test_unit_phasor_matches_numpy_to_2e_7():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32)
    # every quadrant edge and centre too (the polynomials are worst at |phi| = pi/4)
    offsets = np.array([0, 1 << 29, (1 << 30) - 256], np.uint64)
    edges = (np.arange(4, dtype=np.uint64)[:, None] << 30) + offsets
    bits = np.concatenate([bits, edges.ravel().astype(np.uint32)])
    cos, sin = (np.asarray(v, dtype=np.float64) for v in _unit_phasor(jnp.asarray(bits)))
    angle = 2 * np.pi * (bits >> 8).astype(np.float64) / 2**24  # u: the top 24 bits, a fraction of a turn
    assert np.abs(cos - np.cos(angle)).max() < 2e-7 + 6e-8  # documented bound + float32 rounding
    assert np.abs(sin - np.sin(angle)).max() < 2e-7 + 6e-8
