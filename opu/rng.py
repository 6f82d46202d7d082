"""Explicit, counter-based randomness. No global RNG anywhere in the package.

Every random quantity of a device is the Threefry-2x32 hash (JAX's counter-based generator) of a
counter under a key derived from ``(seed, stream)``:

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

import jax.extend.random as jxr
import jax.numpy as jnp


class Stream(IntEnum):
    """Independent random streams of one device (values are arbitrary but fixed forever)."""

    TRANSMISSION = 0x5452  # "TR"
    DRIFT = 0x4452  # "DR"
    SHOT_READ = 0x5348  # "SH"
    LASER = 0x4C41  # "LA"
    PRNU = 0x5052  # "PR"
    DSNU = 0x4453  # "DS"


def threefry_key(seed: int, stream: Stream, sub: int = 0) -> jnp.ndarray:
    """A Threefry key pair (2 x uint32) for ``stream`` (and sub-stream ``sub``) of ``seed``.

    The pair is itself the Threefry hash of ``(stream, sub)`` under the key ``(seed, 0)``, so
    keys of different streams or sub-streams are independent.
    """
    base = jnp.asarray([seed & 0xFFFFFFFF, 0], dtype=jnp.uint32)
    count = jnp.asarray([int(stream), sub & 0xFFFFFFFF], dtype=jnp.uint32)
    return jxr.threefry_2x32(base, count)
