"""A structured scattering medium for full-size devices: B from fast transforms and random phases.

``medium.kind = "structured"`` replaces the i.i.d. transmission matrix (O(n m) work per frame) by

    B = sqrt(a N) · R_m · F D3 F D2 F D1 · P_n          (m x n, complex)

where ``F`` is the unitary DFT of length ``N`` (the smallest power of two >= max(n, m)), ``D_l`` are
diagonals of unit-modulus random phases ``exp(2 pi i u)``, ``P_n`` zero-pads the n inputs to N,
``R_m`` keeps the first m outputs and ``a`` is the number of mirrors per feature. This is the
structured-orthogonal-random-features family (Yu et al. 2016, "Orthogonal Random Features"; three
"HD" blocks as in Choromanski et al. 2017) with complex phases, so that the field is circular.
One frame costs three FFTs of length N: O(N log N) time, O(N) memory (the three phase vectors),
instead of generating n m Gaussian entries. docs/physics.md ("Structured medium") lists what it
preserves of the i.i.d. model and what it does not.

Randomness is counter-based like the rest of the package: phase ``j`` of diagonal ``l`` is the
Threefry-2x32 hash of the counter ``(l, j)`` under the key ``(seed, STRUCTURED)``, so the same seed
gives the same medium, and every pattern of a batch is transformed on its own (same shapes, same
operations), so any split of a batch gives bit-identical fields. The medium depends on (seed, n,
m): unlike the i.i.d. medium, changing the camera ROI or the number of features gives a different
matrix, not a sub-block of the same one.

Drift: every phase performs a random walk, ``phi_l(k) = phi_l(k-1) + sqrt(2 dt / (3 tau)) g``, with
``g`` standard normal keyed by ``(seed, STRUCTURED_DRIFT, step k)`` and counter ``(l, j)``. Each
diagonal stays uniformly random (the uniform law on the circle is invariant under the walk), and
``E[conj(B_ij(0)) B_ij(t)] / E|B_ij|^2 = prod_l E[exp(i (phi_l(t) - phi_l(0)))] = exp(-t / tau)``,
the same entry correlation as the i.i.d. medium's Ornstein-Uhlenbeck drift.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft

from .rng import Stream, threefry2x32, threefry_key

#: number of F D blocks (three: the field of one pixel is a sum over N^2 products, close to Gaussian)
N_BLOCKS = 3


def transform_length(n: int, m: int) -> int:
    """N: the smallest power of two >= max(n, m) (zero-padding keeps the FFT on its fast radix-2 path)."""
    return 1 << max(0, math.ceil(math.log2(max(n, m, 1))))


def _uniform_phases(key: jnp.ndarray, block: int, length: int) -> np.ndarray:
    """Phases 2 pi u in [0, 2 pi), float64 (length,), u the top 24 bits of the hash of (block, j)."""
    j = np.arange(length, dtype=np.uint32)
    w0, _ = threefry2x32(key, np.full(length, block, dtype=np.uint32), j)
    u = (np.asarray(w0) >> np.uint32(8)).astype(np.float64) / 16777216.0
    return 2.0 * np.pi * u


def _normal_increments(key: jnp.ndarray, block: int, length: int) -> np.ndarray:
    """Standard normals, float64 (length,), keyed by the counters (block, j) (Box-Muller, 24-bit)."""
    j = np.arange(length, dtype=np.uint32)
    w0, w1 = threefry2x32(key, np.full(length, block, dtype=np.uint32), j)
    u1 = ((np.asarray(w0) >> np.uint32(8)).astype(np.float64) + 1.0) / 16777216.0
    u2 = (np.asarray(w1) >> np.uint32(8)).astype(np.float64) / 16777216.0
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@partial(jax.jit, static_argnames=("m", "n_fft"))
def _structured_field(x, diagonals, scale, m: int, n_fft: int):
    """(re, im) float32 (b, m) of sqrt(a N) R_m F D3 F D2 F D1 P_n x for a batch x (b, n) float32.

    The batched FFT transforms each pattern with the same operations whatever the batch size
    (checked by the batch-split tests), so a pattern's field does not depend on its batch.
    """
    z = jnp.zeros((x.shape[0], n_fft), jnp.complex64).at[:, : x.shape[1]].set(x.astype(jnp.complex64))
    for d in diagonals:
        z = jnp.fft.fft(z * d, norm="ortho")
    z = z[:, :m] * scale
    return jnp.real(z), jnp.imag(z)


def _host_field(x: np.ndarray, diagonals: np.ndarray, scale: float, m: int, n_fft: int) -> np.ndarray:
    """The same product on the host with scipy's pocketfft, complex64 (b, m).

    Used on CPU: XLA's CPU FFT runs on one thread, pocketfft on every core (``workers=-1``: all
    ``os.cpu_count()`` threads), 1.7x faster on 2 cores. Each pattern is again transformed on its own
    terms (tested: any batch split gives the same bits).
    """
    z = np.zeros((x.shape[0], n_fft), np.complex64)
    z[:, : x.shape[1]] = x
    for d in diagonals:
        z *= d
        z = scipy.fft.fft(z, norm="ortho", workers=-1, overwrite_x=True)
    out = z[:, :m]
    out *= np.float32(scale)
    return out


@partial(jax.jit, static_argnames=("m", "n_fft"))
def _structured_intensity(x, diagonals, scale, m: int, n_fft: int):
    re, im = _structured_field(x, diagonals, scale, m, n_fft)
    return re * re + im * im


class StructuredMedium:
    """The structured transmission matrix of one device, with the drift interface of
    :class:`opu.medium.DriftingMedium` (``tau_s``, ``step``, ``step_at``, ``advance_to_step``).

    Parameters
    ----------
    seed:
        Device seed.
    n_features, n_outputs:
        n (columns) and m (rows, camera pixels including any grain halo) of B.
    mirrors_per_feature:
        Macro-pixel area a: ``E|B_ij|^2 = a``.
    tau_s, step_s:
        Drift time constant (None: static) and the device time between drift updates, seconds.
    """

    def __init__(
        self,
        seed: int,
        n_features: int,
        n_outputs: int,
        mirrors_per_feature: int = 1,
        tau_s: float | None = None,
        step_s: float = 1.0,
    ) -> None:
        self.seed = int(seed)
        self.n = int(n_features)
        self.m = int(n_outputs)
        self.n_fft = transform_length(self.n, self.m)
        self.scale = float(math.sqrt(mirrors_per_feature * self.n_fft))
        self.tau_s = tau_s
        self.step_s = float(step_s)
        self.step = 0
        key = threefry_key(self.seed, Stream.STRUCTURED)
        #: (N_BLOCKS, N) float64 phases of D1..D3 at the current drift step (radians)
        self.phases = np.stack([_uniform_phases(key, blk, self.n_fft) for blk in range(N_BLOCKS)])
        self._diagonals: jnp.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(m, n): outputs x features."""
        return self.m, self.n

    @property
    def nbytes(self) -> int:
        """Bytes held for the medium: the phases (float64) and their complex64 diagonals."""
        return N_BLOCKS * self.n_fft * (8 + 8)

    @property
    def diagonals(self) -> jnp.ndarray:
        """(N_BLOCKS, N) complex64 exp(i phi) of the current drift step."""
        if self._diagonals is None:
            self._diagonals = jnp.asarray(np.exp(1j * self.phases).astype(np.complex64))
        return self._diagonals

    @property
    def is_pristine(self) -> bool:
        return self.step == 0

    @property
    def on_host(self) -> bool:
        """True when the FFTs run on the host (scipy) because JAX's default backend is the CPU."""
        return jax.default_backend() == "cpu"

    def field(self, x: np.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Field B x for a batch x (b, n): (re, im), float32 (b, m)."""
        if self.on_host:
            z = _host_field(np.asarray(x, dtype=np.float32), np.asarray(self.diagonals), self.scale, self.m,
                            self.n_fft)
            return np.ascontiguousarray(z.real), np.ascontiguousarray(z.imag)
        return _structured_field(
            jnp.asarray(x, dtype=jnp.float32), self.diagonals, jnp.float32(self.scale), self.m, self.n_fft
        )

    def intensity(self, x: np.ndarray) -> jnp.ndarray:
        """|B x|^2, float32 (b, m), as a JAX array for the camera kernel."""
        if self.on_host:
            z = _host_field(np.asarray(x, dtype=np.float32), np.asarray(self.diagonals), self.scale, self.m,
                            self.n_fft)
            return jnp.asarray(z.real * z.real + z.imag * z.imag)
        return _structured_intensity(
            jnp.asarray(x, dtype=jnp.float32), self.diagonals, jnp.float32(self.scale), self.m, self.n_fft
        )

    def dense(self) -> np.ndarray:
        """The whole B (m, n), complex64, by transforming the unit vectors (tests and small n only)."""
        re, im = self.field(np.eye(self.n, dtype=np.float32))
        return (np.asarray(re) + 1j * np.asarray(im)).T.astype(np.complex64)

    # ------------------------------------------------------------------ drift
    def step_at(self, t_s: float) -> int:
        """Drift step index in force at device time ``t_s``."""
        return math.floor(t_s / self.step_s + 1e-9)

    def _walk(self, step: int, n_steps: int) -> None:
        # phase increments of variance n_steps * 2 dt / (3 tau) per diagonal: the product of the
        # three characteristic functions exp(-var/2) is exp(-n_steps dt / tau)
        assert self.tau_s is not None
        sigma = math.sqrt(n_steps * 2.0 * self.step_s / (N_BLOCKS * self.tau_s))
        key = threefry_key(self.seed, Stream.STRUCTURED_DRIFT, step)
        for blk in range(N_BLOCKS):
            step_phase = sigma * _normal_increments(key, blk, self.n_fft)
            self.phases[blk] = np.mod(self.phases[blk] + step_phase, 2 * np.pi)
        self._diagonals = None

    def advance_to_step(self, target: int, exact_steps: bool = True) -> None:
        """Move to drift step ``target`` (>= current); ``exact_steps``: one increment per step,
        otherwise one increment of the summed variance (same law, different realization)."""
        if self.tau_s is None or target <= self.step:
            self.step = max(self.step, target)
            return
        if exact_steps:
            for k in range(self.step + 1, target + 1):
                self._walk(k, 1)
        else:
            self._walk(target, target - self.step)
        self.step = target
