"""The scattering medium: a complex Gaussian i.i.d. transmission matrix B (m x n), drift and grain.

Entry ``B[i, j]`` couples mirror block ``j`` to camera pixel ``i``. It is a pure function of
``(seed, absolute pixel id, absolute mirror id)``: the Threefry-2x32 hash of the counter
``(pixel id, mirror id)`` gives two uniform 24-bit numbers that Box-Muller turns into a circular
complex Gaussian ``sqrt(-ln u1) * exp(2i pi u2)`` with ``E|B_ij|^2 = 1`` (``|B_ij|^2`` exactly
Exp(1) up to the 24-bit resolution of ``u1``, which truncates the tail at ``|B_ij|^2 < 17.3``).
Because every entry is computed from its own counter, any block of rows and columns is
bit-identical whatever block it was computed in, and a transform can stream through column
blocks with bounded memory (:func:`streamed_field`).

A macro-pixel of ``a`` mirrors is one column of variance ``a`` (the sum of ``a`` i.i.d. CN(0,1)
columns has exactly that law); it is keyed by its top-left mirror.

Layout used by the fast path: the real matrix ``W = [Re B^T | Im B^T]`` of shape (n, 2m), float32,
so that one GEMM ``X @ W`` gives both quadratures of the field for a batch X (b, n).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .errors import ConfigError, ShapeError
from .rng import Stream, threefry2x32, threefry_key

_SQRT_HALF = np.float32(math.sqrt(0.5))


def _phasor_parts(bits: jnp.ndarray):
    """(quadrant, c1, s1): cos and sin of 2 pi u, u the top 24 bits of ``bits`` as a fraction of a
    turn, are (c1, s1) rotated by ``quadrant`` quarter turns.

    The top 2 bits pick the quadrant, the next 22 the position inside it; the angle inside a
    quadrant is reduced to [-pi/4, pi/4) where short Taylor polynomials are exact to float32
    (error < 2e-7). About 4x faster than ``jnp.cos`` and ``jnp.sin`` on CPU, whose general range
    reduction dominated the generator's cost.
    """
    quadrant = bits >> 30
    # through int32 (exact below 2^22): uint32 -> float32 is a long sequence before AVX-512
    frac = ((bits >> 8) & 0x3FFFFF).astype(jnp.int32).astype(jnp.float32) * (1.0 / 4194304.0)
    phi = (frac - 0.5) * (math.pi / 2)
    p2 = phi * phi
    s = phi * (1 + p2 * (-1 / 6 + p2 * (1 / 120 + p2 * (-1 / 5040 + p2 * (1 / 362880)))))
    c = 1 + p2 * (-1 / 2 + p2 * (1 / 24 + p2 * (-1 / 720 + p2 * (1 / 40320 + p2 * (-1 / 3628800)))))
    # rotate by pi/4; the quadrant's multiple of pi/2 is applied by the callers
    return quadrant, (c - s) * _SQRT_HALF, (s + c) * _SQRT_HALF


def _quarter_turns(q: jnp.ndarray, c1: jnp.ndarray, s1: jnp.ndarray) -> jnp.ndarray:
    """Real part of (c1 + i s1) turned by q (0..3) quarter turns: c1, -s1, -c1, s1."""
    return jnp.where(q == 0, c1, jnp.where(q == 1, -s1, jnp.where(q == 2, -c1, s1)))


def _unit_phasor(bits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(cos, sin) of the angle 2 pi u (:func:`_phasor_parts`); sin is cos three quarter turns on."""
    q, c1, s1 = _phasor_parts(bits)
    return _quarter_turns(q, c1, s1), _quarter_turns((q + 3) & 3, c1, s1)


def _radius(bits0: jnp.ndarray) -> jnp.ndarray:
    """sqrt(-ln u1) for the 24-bit uniform u1 in (0, 1] of ``bits0`` (finite log)."""
    u1 = ((bits0 >> 8).astype(jnp.int32).astype(jnp.float32) + 1.0) * (1.0 / 16777216.0)
    return jnp.sqrt(-jnp.log(u1))


def _w_rows(keypair, pixels2, turns2, mirror_ids, col_scale):
    """Rows of W = [Re B^T | Im B^T] (k, 2m) for mirror ids (k,), in one elementwise pass.

    ``pixels2`` (2m,) is the pixel ids twice and ``turns2`` (2m,) is 0 on the real half and 3 on
    the imaginary one (sin is cos three quarter turns on). Each value is computed on its own from
    the hash of its counter: two hashes per complex entry, but one loop that XLA vectorizes and
    writes once. Written as two parts (re, im), XLA emits one loop per part plus one for the
    radius and hashes every entry three times, then copies both parts into W.
    """
    shape = (mirror_ids.shape[0], pixels2.shape[0])
    bits = threefry2x32(keypair, jnp.broadcast_to(pixels2[None, :], shape),
                        jnp.broadcast_to(mirror_ids[:, None], shape))
    q, c1, s1 = _phasor_parts(bits[1])
    return (_radius(bits[0]) * _quarter_turns((q + turns2[None, :]) & 3, c1, s1)) * col_scale


_w_block = jax.jit(_w_rows)


@partial(jax.jit, static_argnames=("block",))
def _w_build(keypair, pixels2, turns2, mirror_ids, col_scale, block: int):
    """Whole W (n, 2m) in one compiled loop over feature blocks, written in place (no concat)."""
    n = mirror_ids.shape[0]
    n_blocks = -(-n // block)
    padded = jnp.concatenate([mirror_ids, jnp.zeros(n_blocks * block - n, jnp.uint32)])
    w = jnp.zeros((n_blocks * block, pixels2.shape[0]), jnp.float32)

    def body(i, w):
        ids = jax.lax.dynamic_slice(padded, (i * block,), (block,))
        rows = _w_rows(keypair, pixels2, turns2, ids, col_scale)
        return jax.lax.dynamic_update_slice(w, rows, (i * block, 0))

    return jax.lax.fori_loop(0, n_blocks, body, w)[:n]


def _doubled(pixel_ids: np.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(pixels2, turns2) of :func:`_w_rows` for these pixel ids."""
    m = pixel_ids.size
    turns = np.concatenate([np.zeros(m, np.uint32), np.full(m, 3, np.uint32)])
    return jax.device_put(np.concatenate([pixel_ids, pixel_ids]).astype(np.uint32)), jax.device_put(turns)


def complex_gaussian(keypair: jnp.ndarray, rows: np.ndarray, cols: np.ndarray):
    """CN(0, 1) samples for the counters ``(rows[i], cols[j])``: returns (re, im), float32 (r, c).

    ``rows`` (r,) and ``cols`` (c,) are uint32 absolute ids (pixels, mirrors). Each part has
    variance 1/2. Computed as the W rows of the ``cols``, selected by a one-hot product through the
    lit-feature path's compiled kernel (:func:`_accumulate_field`): the same values (1 w + 0 w' + ...
    is exactly w), and a device's fixed-pattern maps and first vector share one compilation
    (about 0.3 s of CPU each) instead of two.
    """
    rows = np.asarray(rows, dtype=np.uint32)
    cols = np.asarray(cols, dtype=np.uint32)
    r, c = rows.size, cols.size
    pixels2, turns2 = _doubled(rows)
    block = w_block_rows(r, 1 << 16)
    out = np.empty((c, 2 * r), dtype=np.float32)
    for lo in range(0, c, block):
        ids = cols[lo : lo + block]
        k = ids.size
        mirrors = np.zeros(block, dtype=np.uint32)
        mirrors[:k] = ids
        select = np.zeros((k, block), dtype=np.float32)
        select[np.arange(k), np.arange(k)] = 1.0
        acc = np.zeros((k, 2 * r), dtype=np.float32)
        out[lo : lo + k] = _accumulate_field(acc, select, keypair, pixels2, turns2, mirrors, np.float32(1.0))
    return out[:, :r].T, out[:, r:].T


#: bytes of one block of W rows on the streamed and lit-feature paths: the block is multiplied
#: while it is still in the core's cache (1-2 MiB of L2 on current x86 and ARM cores)
W_BLOCK_BYTES = 1 << 20


def w_block_rows(m: int, limit: int) -> int:
    """Features per block of W rows for m outputs: a power of two near W_BLOCK_BYTES of float32
    (at least 8, at most ``limit``)."""
    rows = 1 << max(3, math.floor(math.log2(max(1, W_BLOCK_BYTES // (8 * m)))))
    return max(1, min(limit, rows))


class TransmissionMatrix:
    """B (m x n) of one device, generated on demand from its seed.

    Parameters
    ----------
    seed:
        Device seed.
    pixel_ids:
        (m,) absolute camera pixel ids of the outputs (row-major on a 2048-wide sensor grid).
    mirror_ids:
        (n,) absolute ids of the top-left mirror of each feature's macro-pixel.
    mirrors_per_feature:
        Macro-pixel area ``a``; columns are scaled by ``sqrt(a)`` so that ``E|B_ij|^2 = a``.
    drift_step:
        Index of the drift step (0 = the medium as built). Steps > 0 are produced by
        :class:`DriftingMedium`.
    """

    def __init__(
        self,
        seed: int,
        pixel_ids: np.ndarray,
        mirror_ids: np.ndarray,
        mirrors_per_feature: int = 1,
    ) -> None:
        self.seed = int(seed)
        self.pixel_ids = np.asarray(pixel_ids, dtype=np.uint32)
        self.mirror_ids = np.asarray(mirror_ids, dtype=np.uint32)
        self.col_scale = float(math.sqrt(mirrors_per_feature))
        self._key = threefry_key(self.seed, Stream.TRANSMISSION)
        self._pixels2 = _doubled(self.pixel_ids)

    @property
    def shape(self) -> tuple[int, int]:
        """(m, n): outputs x features."""
        return int(self.pixel_ids.size), int(self.mirror_ids.size)

    def block(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """B[rows, cols] as complex64 (numpy). Bit-identical to the same entries of any block."""
        re, im = complex_gaussian(self._key, self.pixel_ids[rows], self.mirror_ids[cols])
        out = re.astype(np.float64) + 1j * im.astype(np.float64)
        return (out * self.col_scale).astype(np.complex64)

    def dense(self) -> np.ndarray:
        """The whole B (m, n), complex64. Memory: 8 m n bytes."""
        return self.block()

    def w_dense(self, block_features: int = 512, key: jnp.ndarray | None = None) -> jnp.ndarray:
        """W (n, 2m) float32, generated block by block in one compiled loop (bounded temporaries).

        ``key`` overrides the Threefry key (the drift innovations use their own keys).
        """
        n = self.shape[1]
        return _w_build(
            self._key if key is None else key,
            *self._pixels2,
            self.mirror_ids,
            np.float32(self.col_scale),
            min(block_features, n),
        )

    def w_rows(self, features: np.ndarray) -> jnp.ndarray:
        """Rows of W for the given feature indices (k,): float32 (k, 2m)."""
        return _w_block(
            self._key, *self._pixels2, self.mirror_ids[features], np.float32(self.col_scale)
        )


@partial(jax.jit, donate_argnums=0)
def _accumulate_field(acc, x, keypair, pixels2, turns2, mirror_ids, col_scale):
    """acc + x @ W[features]: the block's W rows (k, 2m) are generated and multiplied in one call,
    while they are still in cache. acc (b, 2m) float32 is updated in place."""
    return acc + x @ _w_rows(keypair, pixels2, turns2, mirror_ids, col_scale)


def streamed_field(
    tm: TransmissionMatrix,
    x: np.ndarray,
    block_features: int | None = None,
    features: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Field B x for a batch x (b, n) without ever holding B: returns (re, im), float32 (b, m).

    Walks the features (all of them, or only ``features`` (k,) indices, e.g. the lit ones) in
    blocks of ``block_features`` rows of W (default :func:`w_block_rows`: about W_BLOCK_BYTES, so
    that a block is multiplied while it is in cache), each generated, multiplied and dropped; the
    last block is padded (with zero inputs) so every block has the same shape and one compilation
    serves all. Peak memory is a few W blocks (``block_features * 2m * 4`` bytes each),
    independent of n. Equal to the dense product up to the float32 summation order.
    """
    x = np.asarray(x, dtype=np.float32)
    m = tm.shape[0]
    order = np.arange(x.shape[1]) if features is None else np.asarray(features, dtype=np.int64)
    if features is None:
        order = order[x.any(axis=0)]  # dark features contribute nothing: skip generating them
    if isinstance(tm, ExplicitTransmissionMatrix):  # given entries (a recovered matrix): nothing to generate
        out = np.asarray(jnp.asarray(x[:, order]) @ tm.w_rows(order))
        return out[:, :m], out[:, m:]
    acc = np.zeros((x.shape[0], 2 * m), dtype=np.float32)
    if block_features is None:
        block_features = w_block_rows(m, 1 << 16)
    block = max(1, min(block_features, order.size))
    n_blocks = -(-order.size // block)
    ids = np.zeros(n_blocks * block, dtype=np.int64)
    ids[: order.size] = order
    xs = np.zeros((x.shape[0], n_blocks * block), dtype=np.float32)
    xs[:, : order.size] = x[:, order]
    mirrors = tm.mirror_ids[ids]
    fixed = (tm._key, *tm._pixels2)
    scale = np.float32(tm.col_scale)
    for i in range(n_blocks):
        sl = slice(i * block, (i + 1) * block)
        acc = _accumulate_field(acc, xs[:, sl], *fixed, mirrors[sl], scale)
        # JAX dispatches asynchronously: without a wait the loop would queue every block's
        # generation at once and memory would grow with n instead of staying bounded (waiting
        # every 8 small blocks keeps a few blocks in flight)
        if i % 8 == 7:
            acc.block_until_ready()
    acc = np.asarray(acc)
    return acc[:, :m], acc[:, m:]


@jax.jit
def _ou_step(w: jnp.ndarray, noise: jnp.ndarray, a: jnp.ndarray) -> jnp.ndarray:
    return a * w + jnp.sqrt(1.0 - a * a) * noise


class DriftingMedium:
    """Dense W that decorrelates as an Ornstein-Uhlenbeck process: corr(B(0), B(t)) = exp(-t/tau).

    Time is quantised in steps of ``step_s``; step k is
    ``W_k = a W_{k-1} + sqrt(1 - a^2) G_k`` with ``a = exp(-step_s / tau)`` and ``G_k`` a fresh
    i.i.d. matrix of the same law (keyed by (seed, k)), so W_k is again CN(0, a) i.i.d. and
    ``corr(W_0, W_k) = a^k``. Jumps over many idle steps use the exact s-step transition
    ``a^s W + sqrt(1 - a^{2s}) G``; the realisation then depends on where jumps happen, not the law.
    """

    def __init__(self, tm: TransmissionMatrix, tau_s: float | None, step_s: float) -> None:
        self.tm = tm
        self.tau_s = tau_s
        self.step_s = float(step_s)
        self.step = 0
        self._w: jnp.ndarray | None = None

    @property
    def w(self) -> jnp.ndarray:
        """Current W (n, 2m), float32, built lazily on first use."""
        if self._w is None:
            self._w = self.tm.w_dense()
        return self._w

    def _innovation(self, step: int) -> jnp.ndarray:
        return self.tm.w_dense(key=threefry_key(self.tm.seed, Stream.DRIFT, step))

    @property
    def is_pristine(self) -> bool:
        """True while B is still the medium as built (no drift step taken): W may be generated
        on demand from the counters instead of being held."""
        return self.step == 0 and self._w is None

    def advance_to_step(self, target: int, exact_steps: bool = True) -> None:
        """Move to drift step ``target`` (>= current). ``exact_steps``: one update per step."""
        if self.tau_s is None or target <= self.step:
            self.step = max(self.step, target)
            return
        w = self.w
        if exact_steps:
            a = np.float32(math.exp(-self.step_s / self.tau_s))
            for k in range(self.step + 1, target + 1):
                w = _ou_step(w, self._innovation(k), a)
        else:
            a = np.float32(math.exp(-(target - self.step) * self.step_s / self.tau_s))
            w = _ou_step(w, self._innovation(target), a)
        self._w = w
        self.step = target

    def step_at(self, t_s: float) -> int:
        """Drift step index in force at device time ``t_s``."""
        return math.floor(t_s / self.step_s + 1e-9)


class ExplicitTransmissionMatrix(TransmissionMatrix):
    """A transmission matrix given by its entries (e.g. one recovered from a device's frames).

    Same interface as :class:`TransmissionMatrix` (blocks, W, W rows), so the :class:`Simulator`'s
    dense and on-demand paths use it unchanged. Drift innovations ``w_dense(key=...)`` still come
    from the counter-based generator of ``seed``, so a drifting twin decorrelates from the given
    matrix with the documented Ornstein-Uhlenbeck law.

    Parameters
    ----------
    matrix:
        B (m, n) complex, in the simulator's units (``E|B_ij|^2`` = mirrors per feature).
    pixel_ids, mirror_ids:
        (m,) and (n,) absolute ids of the rows and columns (as for :class:`TransmissionMatrix`).
    """

    def __init__(
        self,
        seed: int,
        matrix: np.ndarray,
        pixel_ids: np.ndarray,
        mirror_ids: np.ndarray,
        mirrors_per_feature: int = 1,
    ) -> None:
        super().__init__(seed, pixel_ids, mirror_ids, mirrors_per_feature)
        b = np.asarray(matrix)
        if b.shape != (self.pixel_ids.size, self.mirror_ids.size):
            raise ShapeError(
                f"matrix of shape {b.shape} does not match {self.pixel_ids.size} pixel ids x "
                f"{self.mirror_ids.size} mirror ids"
            )
        self._matrix = b.astype(np.complex64)
        bt = self._matrix.T
        self._w = jnp.asarray(np.concatenate([bt.real, bt.imag], axis=1).astype(np.float32))

    def block(self, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """B[rows, cols] as complex64 (numpy)."""
        return self._matrix[rows, cols].copy()

    def w_dense(self, block_features: int = 512, key: jnp.ndarray | None = None) -> jnp.ndarray:
        """W (n, 2m) of the given matrix; with ``key``, a generated matrix of the same law (drift)."""
        if key is None:
            return self._w
        return super().w_dense(block_features, key)

    def w_rows(self, features: np.ndarray) -> jnp.ndarray:
        """Rows of W for the given feature indices (k,): float32 (k, 2m)."""
        return self._w[jnp.asarray(np.asarray(features, dtype=np.int64))]


class RecoveredMedium:
    """A medium known by its matrix on a set of camera pixels and DMD macro-pixels.

    The medium seam of :class:`opu.Simulator` (``medium=``): instead of generating B from the
    seed, the simulator takes the rows and columns it needs from this matrix, by absolute pixel
    and mirror id, so a device built on it reproduces exactly the pixels and features it was
    measured on (any ROI or feature count inside them; anything outside raises ConfigError).

    Parameters
    ----------
    matrix:
        B (m, n) complex in the simulator's intensity units (``E|B_ij|^2`` = mirrors per feature).
    pixel_ids:
        (m,) absolute camera pixel ids of the rows (``opu.camera.roi_pixel_ids``), unique.
    mirror_ids:
        (n,) absolute ids of the top-left mirror of each column's macro-pixel, unique.
    mirrors_per_feature:
        Macro-pixel area the columns were measured with; a device with another macro-pixel size
        has other columns and is refused.
    """

    def __init__(
        self,
        matrix: np.ndarray,
        pixel_ids: np.ndarray,
        mirror_ids: np.ndarray,
        mirrors_per_feature: int = 1,
    ) -> None:
        b = np.asarray(matrix)
        if b.ndim != 2 or not np.iscomplexobj(b):
            raise ShapeError(f"matrix must be a complex (m, n) array, got {b.dtype} {b.shape}")
        if not np.isfinite(b).all():
            raise ConfigError("matrix contains NaN or infinite entries")
        p = np.asarray(pixel_ids).astype(np.int64).ravel()
        c = np.asarray(mirror_ids).astype(np.int64).ravel()
        if b.shape != (p.size, c.size):
            raise ShapeError(f"matrix of shape {b.shape} needs {b.shape[0]} pixel ids and {b.shape[1]} "
                             f"mirror ids, got {p.size} and {c.size}")
        if np.unique(p).size != p.size or np.unique(c).size != c.size:
            raise ConfigError("pixel_ids and mirror_ids must be unique")
        self.matrix = b.astype(np.complex64)
        self.pixel_ids = p
        self.mirror_ids = c
        self.mirrors_per_feature = int(mirrors_per_feature)
        self._row = {int(v): i for i, v in enumerate(p)}
        self._col = {int(v): j for j, v in enumerate(c)}

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape  # type: ignore[return-value]

    def transmission_matrix(
        self, seed: int, pixel_ids: np.ndarray, mirror_ids: np.ndarray, mirrors_per_feature: int
    ) -> ExplicitTransmissionMatrix:
        """The sub-matrix for these pixels and features (raises ConfigError for any not covered)."""
        if int(mirrors_per_feature) != self.mirrors_per_feature:
            raise ConfigError(
                f"the recovered medium was measured with {self.mirrors_per_feature}-mirror macro-pixels; "
                f"a device with {mirrors_per_feature}-mirror macro-pixels has other columns"
            )
        rows = [self._row.get(int(v), -1) for v in np.asarray(pixel_ids)]
        cols = [self._col.get(int(v), -1) for v in np.asarray(mirror_ids)]
        if min(rows, default=0) < 0:
            missing = sum(r < 0 for r in rows)
            raise ConfigError(
                f"{missing} of the {len(rows)} camera pixels are outside the {self.shape[0]} pixels of "
                "the recovered medium: keep the camera ROI inside the retrieval's ROI (and no speckle grain)"
            )
        if min(cols, default=0) < 0:
            missing = sum(c < 0 for c in cols)
            raise ConfigError(
                f"{missing} of the {len(cols)} features are outside the {self.shape[1]} recovered "
                "features: use at most that many features, with the retrieval's input ROI"
            )
        sub = self.matrix[np.ix_(rows, cols)]
        return ExplicitTransmissionMatrix(seed, sub, pixel_ids, mirror_ids, mirrors_per_feature)
