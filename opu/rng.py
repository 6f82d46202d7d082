"""Explicit, counter-based randomness. No global RNG anywhere in the package.

Every random quantity of a device is the Threefry-2x32 hash (JAX's counter-based generator,
:func:`threefry2x32`) of a counter under a key derived from ``(seed, stream)``:

* the transmission matrix: counter ``(pixel id, mirror id)``, so any block of it can be produced on
  its own and is bit-identical whatever the block size;
* the drift innovations: the same counters under a key per drift step;
* the fixed patterns (PRNU, DSNU): counter ``(pixel id, 0)``;
* the camera noise: counter ``(frame index, pixel id)``, and the laser factor ``(frame index,
  2^32 - 1)``, so frame ``f`` is the same whether it is acquired alone, in a batch, or in chunks
  (the in-process and instrument paths rely on this).
"""

from __future__ import annotations

from enum import IntEnum

import jax
import jax.numpy as jnp
import numpy as np


class Stream(IntEnum):
    """Independent random streams of one device (values are arbitrary but fixed forever)."""

    TRANSMISSION = 0x5452  # "TR"
    DRIFT = 0x4452  # "DR"
    SHOT_READ = 0x5348  # "SH"
    LASER = 0x4C41  # "LA"
    PRNU = 0x5052  # "PR"
    DSNU = 0x4453  # "DS"
    STRUCTURED = 0x5354  # "ST": phase diagonals of the structured medium (opu.structured)
    STRUCTURED_DRIFT = 0x5344  # "SD": their drift increments


def threefry_key(seed: int, stream: Stream, sub: int = 0) -> jnp.ndarray:
    """A Threefry key pair (2 x uint32) for ``stream`` (and sub-stream ``sub``) of ``seed``.

    The pair is itself the Threefry hash of ``(stream, sub)`` under the key ``(seed, 0)``, so
    keys of different streams or sub-streams are independent.
    """
    # numpy arithmetic (same wrap-around uint32 ops): a key costs microseconds, not 100 dispatches
    base = np.asarray([seed & 0xFFFFFFFF, 0], dtype=np.uint32)
    w0, w1 = threefry2x32(
        base, np.asarray([int(stream)], dtype=np.uint32), np.asarray([sub & 0xFFFFFFFF], dtype=np.uint32)
    )
    return jax.device_put(np.concatenate([w0, w1]))


#: Threefry-2x32 rotation constants and key-schedule parity (Salmon et al. 2011, Random123)
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotl(v: jnp.ndarray, r: int) -> jnp.ndarray:
    return (v << np.uint32(r)) | (v >> np.uint32(32 - r))


def threefry2x32(key: jnp.ndarray, x0: jnp.ndarray, x1: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Threefry-2x32 with 20 rounds of the counter pair ``(x0, x1)`` under ``key`` (2,) uint32.

    ``x0`` and ``x1`` are broadcast-compatible uint32 arrays (JAX or numpy); returns the two
    output words.
    Bit-identical to ``jax.extend.random.threefry_2x32`` (and to Random123's known-answer vectors),
    but written out round by round: JAX lowers its own version on CPU as a rolled loop that
    XLA cannot fuse with the code consuming the words, so every round became a pass over
    memory. Unrolled, the hash fuses into the caller's elementwise kernel (3x faster alone).
    """
    k0, k1 = key[0], key[1]
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(_PARITY))
    x0 = x0 + ks[0]
    x1 = x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = x0 ^ _rotl(x1, r)
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1
