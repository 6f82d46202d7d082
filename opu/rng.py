"""Explicit, counter-based randomness. No global RNG anywhere in the package.

Every random quantity of a device is keyed by ``(seed, stream, counter)``:

* the transmission matrix uses JAX's Threefry-2x32 hash on the counter ``(pixel, mirror)``, so
  any block of it can be produced on its own and is bit-identical whatever the block size;
* per-frame camera and laser noise use numpy's Philox-4x64 with key ``(seed, stream)`` and the
  frame index in the counter's third word, so frame ``f`` is the same whether it is acquired alone,
  in a batch, or in chunks (the in-process and instrument paths rely on this).
"""

from __future__ import annotations

from enum import IntEnum

import jax.extend.random as jxr
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
    ANCHOR = 0x414E  # "AN"


def threefry_key(seed: int, stream: Stream, sub: int = 0) -> jnp.ndarray:
    """A Threefry key pair (2 x uint32) for ``stream`` (and sub-stream ``sub``) of ``seed``.

    The pair is itself the Threefry hash of ``(stream, sub)`` under the key ``(seed, 0)``, so
    keys of different streams or sub-streams are independent.
    """
    base = jnp.asarray([seed & 0xFFFFFFFF, 0], dtype=jnp.uint32)
    count = jnp.asarray([int(stream), sub & 0xFFFFFFFF], dtype=jnp.uint32)
    return jxr.threefry_2x32(base, count)


def frame_generator(seed: int, stream: Stream, frame_index: int) -> np.random.Generator:
    """numpy Generator for frame ``frame_index`` of ``stream``: Philox-4x64, no SeedSequence.

    The frame index sits in the third counter word; a frame would have to draw 2**128 numbers
    before reaching the next frame's counter range.
    """
    counter = np.array([0, 0, frame_index, 0], dtype=np.uint64)
    key = np.array([seed, int(stream)], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(counter=counter, key=key))


def map_generator(seed: int, stream: Stream) -> np.random.Generator:
    """numpy Generator for a fixed pattern (PRNU, DSNU, anchor) of ``stream``."""
    return frame_generator(seed, stream, 0)
