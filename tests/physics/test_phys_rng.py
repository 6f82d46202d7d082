"""The counter-based generator: Threefry-2x32 known answers, and the exact-Poisson loop bound."""

import jax.extend.random as jxr
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from opu.camera import poisson_iterations
from opu.rng import threefry2x32

# Random123's kat_vectors for threefry2x32_20: (key, counter) -> output (Salmon et al. 2011)
KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


@pytest.mark.parametrize(("key", "ctr", "expected"), KAT)
def test_threefry_matches_random123_known_answers(key, ctr, expected):
    for arr in (np, jnp):  # the key derivation runs it on numpy, the kernels on JAX
        out = threefry2x32(arr.asarray(key, dtype=arr.uint32), arr.asarray(ctr[:1], dtype=arr.uint32),
                           arr.asarray(ctr[1:], dtype=arr.uint32))
        assert (int(out[0][0]), int(out[1][0])) == expected


def test_threefry_equals_jax_on_random_counters():
    rng = np.random.default_rng(0)
    key = jnp.asarray(rng.integers(0, 2**32, 2, dtype=np.uint64).astype(np.uint32))
    c0, c1 = (jnp.asarray(rng.integers(0, 2**32, 10_000, dtype=np.uint64).astype(np.uint32))
              for _ in range(2))
    ours = threefry2x32(key, c0, c1)
    ref = jxr.threefry_2x32(key, jnp.stack([c0, c1]))
    np.testing.assert_array_equal(np.asarray(ours[0]), np.asarray(ref[0]))
    np.testing.assert_array_equal(np.asarray(ours[1]), np.asarray(ref[1]))


@pytest.mark.parametrize("threshold_e", [1.0, 5.0, 20.0, 200.0])
def test_poisson_inversion_covers_every_reachable_quantile(threshold_e):
    # the largest uniform the kernel draws is 1 - 2^-25; its Poisson quantile must be reachable
    lam = np.geomspace(1e-6, threshold_e, 4000)
    needed = stats.poisson.ppf(1.0 - 2.0**-25, lam)
    cap = np.ceil(lam + 6.0 * np.sqrt(lam) + 3.0)  # the per-draw cap the kernel applies
    assert (cap >= needed).all()
    assert poisson_iterations(threshold_e) >= needed.max()
