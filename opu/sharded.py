"""The exact i.i.d. medium sharded over camera pixels (rows of B) across JAX devices.

Each device owns a contiguous range of output pixels, cut into tiles of ``tile_pixels`` pixels.
For each of its tiles it walks the lit features in blocks of ``tile_features``, generates that
block of ``W = [Re B^T | Im B^T]`` from the counter-based key (:meth:`TransmissionMatrix.w_rows`'s
generator, entry (i, j) is the hash of (pixel id i, mirror id j)), multiplies and accumulates the
field of the tile, and drops the block. No device ever holds more than one W tile
(``tile_features x 2 tile_pixels`` float32) besides its share of the output; the only data sent to
the devices is the broadcast input and the pixel ids, and nothing is exchanged between them
(``jax.shard_map`` over a one-axis :class:`jax.sharding.Mesh`, input replicated, output split).

Bit-identical results whatever the number of devices: tile boundaries are multiples of
``tile_pixels`` in the global pixel order, every tile is computed by the same compiled tile kernel
(same shapes, same operations, same summation order over feature blocks) and the pixel range is
padded (with dropped outputs) to a whole number of tiles per device. So 1, 4 or 8 devices give the
same bits (tested with XLA's ``--xla_force_host_platform_device_count``), and the same code runs
unchanged on GPUs. Multi-host: call ``jax.distributed.initialize()`` in every process before
anything else; ``jax.devices()`` then lists the devices of all hosts and the mesh spans them
(docs/physics.md, "Sharded i.i.d. medium").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .medium import TransmissionMatrix, _w_rows

#: default tile sizes on CPUs: a W tile is 512 x 2 x 1024 float32 = 4 MiB (fits a CPU's cache share)
TILE_PIXELS = 1024
TILE_FEATURES = 512
#: on accelerators: 2048 x 2 x 16384 float32 = 256 MiB tiles keep the GEMMs large
ACCEL_TILE_PIXELS = 16384
ACCEL_TILE_FEATURES = 2048


def default_tiles(mesh: Mesh) -> tuple[int, int]:
    """(tile_pixels, tile_features) for the mesh's platform (results are bit-identical across device
    counts for the same tiles; CPU and GPU tiles differ, and so may the last float32 bit)."""
    if mesh.devices.flat[0].platform == "cpu":
        return TILE_PIXELS, TILE_FEATURES
    return ACCEL_TILE_PIXELS, ACCEL_TILE_FEATURES
_AXIS = "px"


@dataclass(frozen=True)
class ShardPlan:
    """How the m outputs are split: ``n_devices`` x ``tiles_per_device`` tiles of ``tile_pixels``."""

    n_devices: int
    tiles_per_device: int
    tile_pixels: int
    tile_features: int

    @property
    def padded_outputs(self) -> int:
        return self.n_devices * self.tiles_per_device * self.tile_pixels

    def per_device_bytes(self, batch: int, n_lit: int = 0) -> int:
        """Upper bound of the working set of one device, bytes: its output share (re and im, float32),
        one W tile with the same again for its generation temporaries, the accumulator of one tile,
        the broadcast input blocks of ``n_lit`` lit features (float32 values and uint32 ids) and
        64 KiB for loop counters and slices."""
        out = batch * 2 * self.tiles_per_device * self.tile_pixels * 4
        tile = 2 * (self.tile_features * 2 * self.tile_pixels * 4) + batch * 2 * self.tile_pixels * 4 + 65536
        blocks = max(1, math.ceil(n_lit / self.tile_features)) if n_lit else 0
        inputs = blocks * self.tile_features * (batch + 1) * 4
        return out + tile + inputs


def plan(
    m: int, n_devices: int, tile_pixels: int = TILE_PIXELS, tile_features: int = TILE_FEATURES
) -> ShardPlan:
    """The tiling of ``m`` outputs over ``n_devices``."""
    if n_devices < 1 or tile_pixels < 1 or tile_features < 1:
        raise ValueError(
            "n_devices, tile_pixels, tile_features must be >= 1, got "
            f"{n_devices}, {tile_pixels}, {tile_features}"
        )
    tiles = math.ceil(math.ceil(m / tile_pixels) / n_devices)
    return ShardPlan(n_devices, max(1, tiles), tile_pixels, tile_features)


def _tile_field(key, pixel_tile, x_blocks, id_blocks, col_scale):
    """Field of one pixel tile: sum over feature blocks of x_blk @ W_blk, (b, 2 tile_pixels)."""
    b = x_blocks.shape[1]
    tp = pixel_tile.shape[0]
    # the generator's (pixel ids twice, quarter turns 0 | 3) layout: W rows are [Re | Im]
    pixels2 = jnp.concatenate([pixel_tile, pixel_tile])
    turns2 = jnp.concatenate([jnp.zeros(tp, jnp.uint32), jnp.full(tp, 3, jnp.uint32)])

    def body(i, acc):
        w = _w_rows(key, pixels2, turns2, id_blocks[i], col_scale)
        return acc + x_blocks[i] @ w

    acc = jnp.zeros((b, 2 * pixel_tile.shape[0]), jnp.float32)
    return jax.lax.fori_loop(0, x_blocks.shape[0], body, acc)


def _device_program(key, pixels, x_blocks, id_blocks, col_scale, tile_pixels: int):
    # pixels: this device's (tiles * tile_pixels,) ids -> (tiles, b, 2 tile_pixels)
    tiles = pixels.reshape(-1, tile_pixels)
    return jax.lax.map(lambda p: _tile_field(key, p, x_blocks, id_blocks, col_scale), tiles)


@partial(jax.jit, static_argnames=("mesh", "tile_pixels"))
def _sharded(key, pixels, x_blocks, id_blocks, col_scale, mesh: Mesh, tile_pixels: int):
    f = jax.shard_map(
        partial(_device_program, tile_pixels=tile_pixels),
        mesh=mesh,
        in_specs=(P(), P(_AXIS), P(), P(), P()),
        out_specs=P(_AXIS),
        check_vma=False,  # per-device loops carry device-local values; no collective is used
    )
    return f(key, pixels, x_blocks, id_blocks, col_scale)


def make_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh (axis "px") over ``devices`` (default: every device JAX sees, all hosts)."""
    devs = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devs), (_AXIS,))


def _feature_blocks(x: np.ndarray, mirror_ids: np.ndarray, tile_features: int):
    """Lit features of the batch in fixed-size blocks: x (blocks, b, T_f), ids (blocks, T_f)."""
    lit = np.flatnonzero(x.any(axis=0))
    n_blocks = max(1, math.ceil(lit.size / tile_features))
    cols = np.zeros(n_blocks * tile_features, dtype=np.int64)
    cols[: lit.size] = lit
    xs = np.zeros((x.shape[0], n_blocks * tile_features), dtype=np.float32)
    xs[:, : lit.size] = x[:, lit]
    ids = np.zeros(n_blocks * tile_features, dtype=np.uint32)
    ids[: lit.size] = mirror_ids[lit]
    x_blocks = xs.reshape(x.shape[0], n_blocks, tile_features).transpose(1, 0, 2)
    return np.ascontiguousarray(x_blocks), ids.reshape(n_blocks, tile_features)


def sharded_field(
    tm: TransmissionMatrix,
    x: np.ndarray,
    mesh: Mesh | None = None,
    tile_pixels: int | None = None,
    tile_features: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Field B x of the i.i.d. medium ``tm`` for a batch x (b, n), sharded over the devices of
    ``mesh`` (default: all): returns (re, im), float32 (b, m), as numpy on the host.

    Only the lit features (columns of x with a non-zero entry) are generated. Bit-identical for
    any number of devices with the same tile sizes (default: :func:`default_tiles`); equal to
    :func:`opu.medium.streamed_field` up to the float32 summation order.
    """
    mesh = make_mesh() if mesh is None else mesh
    dp, df = default_tiles(mesh)
    tile_pixels, tile_features = tile_pixels or dp, tile_features or df
    x = np.asarray(x, dtype=np.float32)
    m = tm.shape[0]
    sp = plan(m, mesh.devices.size, tile_pixels, tile_features)
    pixels = np.zeros(sp.padded_outputs, dtype=np.uint32)
    pixels[:m] = tm.pixel_ids  # padded outputs reuse id 0 and are dropped below
    x_blocks, id_blocks = _feature_blocks(x, tm.mirror_ids, tile_features)
    replicated = NamedSharding(mesh, P())
    out = _sharded(
        jax.device_put(tm._key, replicated),
        jax.device_put(pixels, NamedSharding(mesh, P(_AXIS))),
        jax.device_put(x_blocks, replicated),
        jax.device_put(id_blocks, replicated),
        jax.device_put(jnp.float32(tm.col_scale), replicated),
        mesh,
        tile_pixels,
    )
    out = np.asarray(out)  # (tiles, b, 2 tile_pixels), gathered on the host
    re = out[:, :, :tile_pixels].transpose(1, 0, 2).reshape(x.shape[0], -1)[:, :m]
    im = out[:, :, tile_pixels:].transpose(1, 0, 2).reshape(x.shape[0], -1)[:, :m]
    return re, im


def compiled_memory(
    tm: TransmissionMatrix,
    batch: int,
    n_lit: int,
    mesh: Mesh | None = None,
    tile_pixels: int | None = None,
    tile_features: int | None = None,
) -> dict[str, int | None]:
    """XLA's own memory figures of the compiled per-device program, bytes (None where the
    backend does not report them): arguments, outputs and temporaries of one device."""
    mesh = make_mesh() if mesh is None else mesh
    dp, df = default_tiles(mesh)
    tile_pixels, tile_features = tile_pixels or dp, tile_features or df
    sp = plan(tm.shape[0], mesh.devices.size, tile_pixels, tile_features)
    n_blocks = max(1, math.ceil(n_lit / tile_features))
    args = (
        jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=NamedSharding(mesh, P())),
        jax.ShapeDtypeStruct((sp.padded_outputs,), jnp.uint32, sharding=NamedSharding(mesh, P(_AXIS))),
        jax.ShapeDtypeStruct((n_blocks, batch, tile_features), jnp.float32,
                             sharding=NamedSharding(mesh, P())),
        jax.ShapeDtypeStruct((n_blocks, tile_features), jnp.uint32, sharding=NamedSharding(mesh, P())),
        jax.ShapeDtypeStruct((), jnp.float32, sharding=NamedSharding(mesh, P())),
    )
    compiled = _sharded.lower(*args, mesh=mesh, tile_pixels=tile_pixels).compile()
    stats = compiled.memory_analysis()
    names = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    return {k: (int(getattr(stats, k)) if stats is not None and hasattr(stats, k) else None) for k in names}
