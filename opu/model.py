"""The simulated OPU: binary patterns (b, n) in, camera frames (b, m) out.

>>> import numpy as np, opu
>>> sim = opu.Simulator(opu.realistic(seed=1, n_outputs=1024), n_features=256)
>>> x = np.random.default_rng(0).integers(0, 2, size=(8, 256), dtype=np.uint8)
>>> sim.acquire(x).shape, sim.acquire(x).dtype
((8, 1024), dtype('uint8'))

Pipeline per frame (docs/physics.md): field ``E = B x`` (one float32 GEMM against
``W = [Re B^T | Im B^T]``) -> optional speckle grain (a Gaussian filter of the field over the camera
plane) -> intensity ``|E|^2`` -> photons ``= photons_per_mirror_us * exposure_us * laser_f * |E|^2``
-> camera (:mod:`opu.camera`). ``E|B_ij|^2`` equals the number of mirrors of feature j, so the mean
photon count of a pixel is proportional to the number of lit mirrors.
"""

from __future__ import annotations

import itertools
import math
from functools import cache, partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from .camera import Camera, roi_pixel_ids
from .config import OPUConfig
from .dmd import as_pattern_batch, feature_mirror_ids
from .errors import ConfigError
from .medium import DriftingMedium, RecoveredMedium, TransmissionMatrix, streamed_field
from .sharded import sharded_field
from .structured import StructuredMedium
from .timing import DeviceClock

#: CPU backend: whether the dense GEMM X W runs in numpy's BLAS instead of XLA (see
#: ``_intensity_dense_host``): True or False forces it; None (default) asks :func:`host_blas_full_width`,
#: once per process. Accelerators always use XLA. Frames agree to float32 rounding of the GEMM, which
#: no promise covers.
HOST_BLAS_ON_CPU: bool | None = None
#: ... for GEMMs of at least this many multiply-adds: below it XLA's GEMM is as fast, and the BLAS
#: threads' spin-wait after a call slows the JAX kernels that follow (measured on the DFA step).
HOST_BLAS_MIN_MACS = 1 << 28
#: Dense W above this size switches ``tm_mode="auto"`` to streaming.
DENSE_LIMIT_BYTES = 4 * 2**30
#: Batches smaller than this, on a medium that has not drifted yet, use only the W rows their lit
#: features select instead of materialising W.
LIT_PATH_MAX_BATCH = 32
#: W rows generated per block on the lit-feature path (one compiled shape per m); None: a block of
#: about ``opu.medium.W_BLOCK_BYTES``, multiplied while it is in cache (``opu.medium.w_block_rows``).
LIT_BLOCK_FEATURES: int | None = None


def _grain_matrix(size_out: int, halo: int, sigma_px: float) -> np.ndarray:
    """Banded (size_out, size_out + 2 halo) Gaussian filter matrix with unit energy per row."""
    offsets = np.arange(-halo, halo + 1)
    k = np.exp(-(offsets**2) / (2.0 * sigma_px**2))
    k /= np.sqrt((k**2).sum())  # keeps E|E|^2 of an i.i.d. field
    g = np.zeros((size_out, size_out + 2 * halo), dtype=np.float32)
    for i in range(size_out):
        g[i, i : i + 2 * halo + 1] = k
    return g


@partial(jax.jit, static_argnames=("m",))
def _field_parts(x: jnp.ndarray, w: jnp.ndarray, m: int):
    f = x @ w
    return f[:, :m], f[:, m:]


@jax.jit
def _intensity_dense(x: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    f = x @ w
    m = f.shape[1] // 2
    return f[:, :m] ** 2 + f[:, m:] ** 2


def _intensity_dense_host(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """|x W|^2 with numpy's BLAS: x (b, n) float32, w (n, 2m) float32 -> (b, m) float32.

    On a CPU backend the GEMM is the whole cost of a frame; the host BLAS (OpenBLAS, whose kernels
    are chosen per micro-architecture at run time) was faster than XLA's GEMM on the machine
    measured (docs/physics.md) and needs no compilation per batch shape. The squares are taken in
    place, in the GEMM's own output (the result is a strided view of it).
    """
    f = x @ w
    m = f.shape[1] // 2
    re, im = f[:, :m], f[:, m:]
    np.multiply(re, re, out=re)
    np.multiply(im, im, out=im)
    re += im
    return re


#: OpenBLAS core types (as ``openblas_get_corename`` names them) whose SGEMM kernels use AVX-512
_OPENBLAS_AVX512_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


def _cpu_has_avx512() -> bool:
    """Whether this CPU runs AVX-512F, as numpy's own run-time CPU dispatch detected it."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # a numpy without the table: assume the narrower vectors
        return False
    return bool(features.get("AVX512F"))


def _numpy_openblas_cores() -> list[str]:
    """The core types of the OpenBLAS libraries numpy loaded (lower case; [] for another BLAS)."""
    from threadpoolctl import threadpool_info

    found = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
    own = [i for i in found if "numpy" in str(i.get("filepath", ""))] or found
    return [str(i.get("architecture") or "").lower() for i in own]


@cache
def host_blas_full_width() -> bool:
    """Whether numpy's BLAS runs GEMM kernels as wide as this CPU's vectors (decides
    ``HOST_BLAS_ON_CPU=None``; computed once per process, from no timing, so the choice and the
    frames' rounding are the same in every run on a machine).

    False only when numpy's BLAS is OpenBLAS running AVX2 kernels on an AVX-512 CPU - a CPU its
    build does not know, or ``OPENBLAS_CORETYPE=Haswell`` in the environment, as on the AMD EPYC
    machines this project runs on: there XLA's GEMM, compiled for the CPU it runs on, took 0.143 s
    against OpenBLAS's 0.256 s for (1000, 4096) x (4096, 8192) (docs/physics.md). MKL, Apple's
    Accelerate and OpenBLAS with matching kernels are kept: they were as fast as XLA or faster.
    """
    if not _cpu_has_avx512():
        return True
    cores = _numpy_openblas_cores()
    return all(c in _OPENBLAS_AVX512_CORES for c in cores)


def _host_blas_on_cpu() -> bool:
    return host_blas_full_width() if HOST_BLAS_ON_CPU is None else bool(HOST_BLAS_ON_CPU)


def _on_cpu(a: jax.Array) -> bool:
    """Whether a JAX array lives in host memory (numpy can then read it without a copy)."""
    return all(d.platform == "cpu" for d in a.devices())


@jax.jit
def _grain(re, im, gh, gw):
    # re, im: (b, H_ext, W_ext) -> filtered (b, h, w) along both axes
    def filt(a):
        a = jnp.einsum("hH,bHW->bhW", gh, a)
        return jnp.einsum("wW,bhW->bhw", gw, a)

    return filt(re), filt(im)


class Simulator:
    """A physics-level model of one OPU.

    Parameters
    ----------
    config:
        Device description (:func:`opu.realistic`, :func:`opu.ideal` or your own).
    n_features:
        Number of input features n; each is one macro-pixel of the DMD input ROI.
    tm_mode:
        ``"dense"`` keeps W = [Re B^T | Im B^T] (8 n m bytes) for speed; ``"streamed"`` regenerates
        B in feature blocks at every call (bounded memory, no drift); ``"sharded"`` regenerates it
        in tiles sharded over camera pixels across all JAX devices (:mod:`opu.sharded`, no drift);
        ``"auto"`` picks dense below 4 GiB. Ignored (set to ``"structured"``) when
        ``config.medium.kind == "structured"``.
    medium:
        Optional :class:`opu.medium.RecoveredMedium`: the transmission matrix is taken from it (by
        absolute pixel and mirror id) instead of being generated from the seed, e.g. a matrix
        recovered from a real device's frames (a digital twin). The seed still keys the noise and
        any drift innovations.

    Attributes
    ----------
    clock:
        Frames, device time and energy so far (:class:`opu.timing.DeviceClock`).
    """

    def __init__(
        self,
        config: OPUConfig,
        n_features: int,
        tm_mode: Literal["auto", "dense", "streamed", "sharded"] = "auto",
        stream_block_features: int = 512,
        medium: RecoveredMedium | None = None,
    ) -> None:
        if not isinstance(config, OPUConfig):
            raise ConfigError(f"config must be an opu.OPUConfig, got {type(config).__name__}")
        if medium is not None and not isinstance(medium, RecoveredMedium):
            raise ConfigError(f"medium must be an opu.medium.RecoveredMedium, got {type(medium).__name__}")
        self.config = config
        self.recovered_medium = medium
        self.n_features = int(n_features)
        cam = config.camera
        mirror_ids = feature_mirror_ids(config.dmd, self.n_features)
        grain = config.medium.speckle_grain_px
        # Field correlation exp(-d^2 / rho^2) <=> Gaussian filter of std rho / 2 (docs/physics.md).
        self._grain_sigma = grain / 2.0
        self._halo = math.ceil(3 * self._grain_sigma) if grain > 0 else 0
        pixel_ids = roi_pixel_ids(cam, self._halo)
        macro_area = config.dmd.macro_pixel_mirrors**2
        if medium is None:
            self.tm = TransmissionMatrix(config.seed, pixel_ids, mirror_ids, macro_area)
        else:
            self.tm = medium.transmission_matrix(config.seed, pixel_ids, mirror_ids, macro_area)
            tm_mode = "dense"  # the given matrix is held anyway
        m_ext = pixel_ids.size
        self.structured = config.medium.kind == "structured"
        self._requested_tm_mode = tm_mode  # kept for reconfigure (a structured device ignores it)
        if tm_mode not in ("auto", "dense", "streamed", "sharded"):
            raise ConfigError(f"tm_mode must be 'auto', 'dense', 'streamed' or 'sharded', got {tm_mode!r}")
        if self.structured:
            tm_mode = "structured"
        dense_bytes = 8 * m_ext * self.n_features
        if tm_mode == "auto":
            tm_mode = "dense" if dense_bytes <= DENSE_LIMIT_BYTES else "streamed"
        if tm_mode in ("streamed", "sharded") and config.medium.drift_time_constant_s is not None:
            raise ConfigError(
                "a drifting medium needs the dense transmission matrix (tm_mode='dense', "
                f"{dense_bytes / 2**30:.1f} GiB); set medium.drift_time_constant_s=None to stream"
            )
        self.tm_mode = tm_mode
        self._lit_entries = 0  # W entries generated on demand so far (see _use_lit_columns)
        self.stream_block_features = int(stream_block_features)
        med = config.medium
        if self.structured:
            self.medium: DriftingMedium | StructuredMedium = StructuredMedium(
                config.seed, self.n_features, m_ext, config.dmd.macro_pixel_mirrors**2,
                med.drift_time_constant_s, med.drift_step_s,
            )
        else:
            self.medium = DriftingMedium(self.tm, med.drift_time_constant_s, med.drift_step_s)
        self.camera = Camera(cam, config.seed)
        self.clock = DeviceClock(electrical_power_w=config.electrical_power_w)
        if self._halo:
            r = cam.roi
            self._gh = jnp.asarray(_grain_matrix(r.height_px, self._halo, self._grain_sigma))
            self._gw = jnp.asarray(_grain_matrix(r.width_px, self._halo, self._grain_sigma))

    def reconfigure(self, config: OPUConfig) -> None:
        """Switch to ``config`` keeping what it leaves physically unchanged.

        Camera-only changes (exposure, gain, bit depth, noise figures) keep the transmission matrix,
        its drift state and the clock; a new seed, DMD mapping, medium or camera ROI rebuilds the
        optics (the clock is kept: the device does not forget the time it has run).
        """
        if not isinstance(config, OPUConfig):
            raise ConfigError(f"config must be an opu.OPUConfig, got {type(config).__name__}")
        old = self.config
        same_optics = (
            config.seed == old.seed
            and config.dmd == old.dmd
            and config.medium == old.medium
            and config.camera.roi == old.camera.roi
            and config.camera.sensor_height_px == old.camera.sensor_height_px
            and config.camera.sensor_width_px == old.camera.sensor_width_px
        )
        if not same_optics:
            clock = self.clock
            self.__init__(config, self.n_features, self._requested_tm_mode, self.stream_block_features,
                          self.recovered_medium)
            self.clock = clock
            self.clock.electrical_power_w = config.electrical_power_w
            return
        self.config = config
        self.camera = Camera(config.camera, config.seed)
        self.clock.electrical_power_w = config.electrical_power_w

    # ------------------------------------------------------------------ geometry
    @property
    def n_outputs(self) -> int:
        """m, the number of camera pixels in the output ROI."""
        return self.config.camera.n_outputs

    @property
    def frame_dtype(self) -> np.dtype:
        return np.dtype(self.config.camera.output_dtype)

    @property
    def photons_per_unit_intensity(self) -> float:
        """Mean photons per pixel per unit of |Bx|^2 at the configured exposure."""
        return self.config.laser.photons_per_mirror_us * self.config.camera.exposure_us

    # ------------------------------------------------------------------ noiseless access
    def field(self, patterns: object) -> np.ndarray:
        """Noiseless field B x, complex64 (b, m) (or (m,) for one pattern), current drift state."""
        x, single = as_pattern_batch(patterns, self.n_features)
        re, im = self._field(x)
        out = (re + 1j * im).astype(np.complex64)
        return out[0] if single else out

    def intensity(self, patterns: object) -> np.ndarray:
        """Noiseless speckle intensity |B x|^2, float32 (b, m), in units of E|B_ij|^2 = 1/mirror."""
        x, single = as_pattern_batch(patterns, self.n_features)
        out = np.asarray(self._intensity(x))
        return out[0] if single else out

    def _use_lit_columns(self, x: np.ndarray) -> bool:
        # Until a large batch needs the whole W, small batches are served from the rows of W
        # their lit features select, generated on demand: a device answers its first vectors
        # without paying for (or holding) the full matrix. Only valid before any drift step.
        # Once on-demand rows have cost as much as W itself, build W (total cost at most twice).
        return (
            self.tm_mode == "dense"
            and self.medium.is_pristine
            and x.shape[0] < LIT_PATH_MAX_BATCH
            and self._lit_entries < self.tm.shape[0] * self.n_features
        )

    def _field(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m_ext = self.tm.shape[0]
        if self.structured:
            re, im = self.medium.field(x)
        elif self._use_lit_columns(x):
            lit = np.flatnonzero(x.any(axis=0))
            self._lit_entries += lit.size * m_ext
            re, im = streamed_field(self.tm, x, LIT_BLOCK_FEATURES, features=lit)
        elif self.tm_mode == "dense":
            re, im = _field_parts(x.astype(np.float32), self.medium.w, m_ext)
        elif self.tm_mode == "sharded":
            re, im = sharded_field(self.tm, x)
        else:
            re, im = streamed_field(self.tm, x, self.stream_block_features)
        if self._halo:
            r = self.config.camera.roi
            shape = (x.shape[0], r.height_px + 2 * self._halo, r.width_px + 2 * self._halo)
            re, im = _grain(
                jnp.reshape(jnp.asarray(re), shape),
                jnp.reshape(jnp.asarray(im), shape),
                self._gh,
                self._gw,
            )
            re = jnp.reshape(re, (x.shape[0], -1))
            im = jnp.reshape(im, (x.shape[0], -1))
        return np.asarray(re), np.asarray(im)

    def _intensity(self, x: np.ndarray) -> jnp.ndarray:
        """|Bx|^2 (b, m) float32, left on the JAX device for the camera kernel."""
        if self.structured and not self._halo:
            return self.medium.intensity(x)
        if self.tm_mode == "dense" and not self._halo and not self._use_lit_columns(x):
            b = x.shape[0]
            w = self.medium.w
            if _host_blas_on_cpu() and b * x.shape[1] * w.shape[1] >= HOST_BLAS_MIN_MACS and _on_cpu(w):
                return _intensity_dense_host(x.astype(np.float32), np.asarray(w))
            # converted on the host and short batches padded to a few row counts: eager device
            # conversions and new GEMM shapes would each cost a compilation
            rows = _batch_bucket(b)
            xf = np.zeros((rows, x.shape[1]), np.float32)
            xf[:b] = x
            out = _intensity_dense(xf, self.medium.w)
            return out if rows == b else np.asarray(out)[:b]
        re, im = self._field(x)
        return re * re + im * im

    # ------------------------------------------------------------------ acquisition
    def acquire(self, patterns: object) -> np.ndarray:
        """Camera frames for a batch of binary patterns: (b, n) -> (b, m) uint8/uint16/float32.

        Advances the device clock by b frames; the medium drifts between frames at its configured
        step (frames are grouped by drift step, so chunking a batch never changes the result).
        """
        x, single = as_pattern_batch(patterns, self.n_features)
        b = x.shape[0]
        cam = self.config.camera
        starts = self.clock.frame_start_times(b, cam.frame_time_us)
        steps = np.array([self.medium.step_at(t) for t in starts]) if self.medium.tau_s else None
        first = self.clock.frames
        frames = np.empty((b, self.n_outputs), dtype=self.frame_dtype)
        for lo, hi in _runs(steps, b):
            if steps is not None:
                self.medium.advance_to_step(int(steps[lo]))
            idx = np.arange(first + lo, first + hi)
            frames[lo:hi] = self.camera.expose(
                self._intensity(x[lo:hi]),
                self.photons_per_unit_intensity,
                idx,
                self.config.laser.power_fluctuation_rel,
            )
        self.clock.tick_frames(b, cam.frame_time_us)
        return frames[0] if single else frames

    def dark_frame_mean_dn(self) -> np.ndarray:
        """Expected dark level per pixel (m,), DN: black level + K (dark current t + DSNU)."""
        c = self.config.camera
        dark_e = c.dark_current_e_per_s * c.exposure_us * 1e-6
        return c.black_level_dn + c.system_gain_dn_per_e * (dark_e + self.camera.dsnu_e)

    def set_clock(self, frames: int, device_time_s: float) -> None:
        """Move a simulated device's clock forward to (``frames``, ``device_time_s``).

        Used to resume a run exactly: frame noise is keyed by the global frame counter, and the
        medium is advanced one drift step at a time, as an uninterrupted run of frames would.
        Refuses to go back in time (the medium cannot un-drift).
        """
        if frames < self.clock.frames or device_time_s < self.clock.device_time_s - 1e-12:
            raise ConfigError(
                f"cannot move the clock back from ({self.clock.frames} frames, "
                f"{self.clock.device_time_s} s) to ({frames}, {device_time_s})"
            )
        self.clock.frames = int(frames)
        self.clock.device_time_s = float(device_time_s)
        if self.medium.tau_s:
            self.medium.advance_to_step(self.medium.step_at(self.clock.device_time_s))

    def idle(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass with no frames; the medium drifts meanwhile."""
        self.clock.idle(seconds)
        if self.medium.tau_s:
            self.medium.advance_to_step(self.medium.step_at(self.clock.device_time_s), exact_steps=False)


def _batch_bucket(b: int) -> int:
    """Rows a batch of b patterns is padded to for the dense GEMM: a power of two (>= 8) below 64,
    a multiple of 64 below 512, of 8 above (under 1.6 % of extra work there). Batches whose size
    varies from call to call (e.g. the distinct patterns of DFA steps) then reuse a few compiled
    shapes instead of compiling one per size."""
    if b < 64:
        return max(8, 1 << math.ceil(math.log2(max(b, 1))))
    step = 64 if b < 512 else 8
    return -(-b // step) * step


def _runs(steps: np.ndarray | None, b: int) -> list[tuple[int, int]]:
    """Split [0, b) into runs of equal drift step."""
    if steps is None or b == 0:
        return [(0, b)]
    cuts = [0, *list(np.flatnonzero(np.diff(steps)) + 1), b]
    return list(itertools.pairwise(cuts))
