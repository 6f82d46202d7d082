"""Linear projections from intensity frames: the anchor and complement schemes.

The device measures ``y = g |B x|^2 + dark`` (g: DN per unit intensity). Two identities of the
field give a real projection linear in x (docs/physics.md, "Linear projections")::

    anchor      Re(conj(Br) . Bx) = (|B(x + r)|^2 - |Bx|^2 - |Br|^2) / 2   r on spare mirrors
    complement  Re(conj(B1) . Bx) = (|Bx|^2 - |B(1 - x)|^2 + |B1|^2) / 2   1 = all data mirrors

Divided per output pixel by ``|Br|`` (or ``|B1|``) and by ``sqrt(g a / 2)`` (a: mirrors per
feature, g a estimated from the mean reference level), the result is ``A x`` with ``A`` real
i.i.d. N(0, 1) (exactly so for the anchor, whose phase reference is independent of the data
columns; the complement's reference is their sum, a correlation of order 1/n).

Schemes work on any ``acquire(patterns) -> frames`` callable, so the same code runs on the
in-process simulator and on a real or emulated instrument. Each declares its frame cost.
Signed (ternary) vectors cost 4 frames with either scheme: the |Br|^2 (|B1|^2) term cancels in
``proj(e+) - proj(e-)``. With ``share_repeats`` a part that repeats within a batch (e.g. a one-hot
e-) is acquired once.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .encoding import BitPlanes, is_ternary
from .errors import OPUError, ShapeError

Acquire = Callable[[np.ndarray], np.ndarray]
"""Maps binary patterns (b, N) bool to frames (b, m) (any numeric dtype)."""


class SaturationWarning(UserWarning):
    """Some frames hit the ADC maximum: the intensity -> projection identities no longer hold."""


@dataclass(frozen=True)
class LinearCalibration:
    """What a scheme measured once before projecting.

    Attributes
    ----------
    dark_dn:
        Mean dark frame (m,), DN.
    reference_dn:
        Dark-subtracted mean reference frame |Br|^2 (or |B1|^2) in DN, (m,).
    scale:
        Factor turning ``cross / sqrt(reference_dn)`` into unit-variance projections.
    frames:
        Frames this calibration cost.
    weak_outputs:
        bool (m,): outputs whose reference was below 4 standard errors of its measurement (dark
        speckle grains); their reference is floored there, so they carry little signal.
    """

    dark_dn: np.ndarray
    reference_dn: np.ndarray
    scale: float
    frames: int
    weak_outputs: np.ndarray


class LinearScheme(ABC):
    """A way to get ``A x`` (A real i.i.d. N(0, 1), m x n) from intensity frames."""

    name: str
    #: frames per binary vector / per signed (ternary) vector
    frames_per_binary: int
    frames_per_signed: int

    def __init__(
        self,
        n_features: int,
        dark_repeats: int = 8,
        reference_repeats: int = 8,
        adc_max_dn: float | None = None,
    ) -> None:
        if n_features < 1:
            raise OPUError(f"n_features must be >= 1, got {n_features}")
        if dark_repeats < 1 or reference_repeats < 1:
            raise OPUError("dark_repeats and reference_repeats must be >= 1")
        self.n_features = int(n_features)
        self.dark_repeats = int(dark_repeats)
        self.reference_repeats = int(reference_repeats)
        #: frames at or above this value count as saturated (None: no check)
        self.adc_max_dn = adc_max_dn

    @property
    @abstractmethod
    def device_features(self) -> int:
        """Features the device must expose (data + spare mirrors)."""

    @property
    def calibration_frames(self) -> int:
        return self.dark_repeats + self.reference_repeats

    @abstractmethod
    def _reference_pattern(self) -> np.ndarray:
        """The reference pattern (device_features,) bool: anchor r, or all data ones."""

    @abstractmethod
    def _binary_patterns(self, x: np.ndarray) -> np.ndarray:
        """Frames to acquire for binary x (b, n): (frames_per_binary * b, N)."""

    @abstractmethod
    def _binary_cross(self, y: np.ndarray, b: int, ref: np.ndarray) -> np.ndarray:
        """Cross term (b, m) from the frames of :meth:`_binary_patterns`."""

    def calibrate(self, acquire: Acquire) -> LinearCalibration:
        """Measure the dark level and the reference intensity (averaged over repeats)."""
        n_dev = self.device_features
        dark_p = np.zeros((self.dark_repeats, n_dev), dtype=bool)
        ref_p = np.repeat(self._reference_pattern()[None], self.reference_repeats, axis=0)
        y = np.asarray(acquire(np.concatenate([dark_p, ref_p])), dtype=np.float64)
        _warn_saturation(y, self.adc_max_dn)
        dark_frames, ref_frames = y[: self.dark_repeats], y[self.dark_repeats :]
        dark = dark_frames.mean(axis=0)
        ref = ref_frames.mean(axis=0) - dark
        lit = self._reference_lit_features()
        mean_ref = float(ref.mean())
        if mean_ref <= 0:
            raise OPUError(
                "the reference frame is no brighter than the dark frame: no light reaches the "
                "camera (check laser power, exposure, or the number of lit mirrors)"
            )
        # E[ref_i] = g a * lit  =>  g a = mean(ref) / lit ; A x = sqrt(2 / (g a)) cross/sqrt(ref)
        scale = math.sqrt(2.0 * lit / mean_ref)
        # Dark speckle grains give a reference near zero; dividing by its square root would blow
        # the noise up. Floor it at 4 standard errors of its own measurement (from the repeats,
        # plus the 1/12 DN^2 rounding noise that identical quantized repeats cannot reveal).
        q = 1.0 / 12.0 if self.adc_max_dn is not None else 0.0
        se = np.sqrt(
            (_var(ref_frames) + q) / ref_frames.shape[0] + (_var(dark_frames) + q) / dark_frames.shape[0]
        )
        floor = np.maximum(4.0 * se, 1e-6 * mean_ref)
        weak = ref < floor
        return LinearCalibration(dark, np.where(weak, floor, ref), scale, y.shape[0], weak)

    def _reference_lit_features(self) -> int:
        return int(self._reference_pattern().sum())

    def project_binary(
        self, acquire: Acquire, x: np.ndarray, cal: LinearCalibration, dtype: object = np.float64
    ) -> np.ndarray:
        """A x for binary x (b, n) bool: (b, m) float64 (or ``dtype``: float32 or float64)."""
        dt = projection_dtype(dtype)
        x = self._check(x)
        raw = np.asarray(acquire(self._binary_patterns(x)))
        _warn_saturation(raw, self.adc_max_dn)
        cross = self._binary_cross(raw.astype(dt), x.shape[0], cal.reference_dn.astype(dt))
        return self._normalize(cross, cal, x.sum(axis=1))

    def project_signed(
        self,
        acquire: Acquire,
        pos: np.ndarray,
        neg: np.ndarray,
        cal: LinearCalibration,
        share_repeats: bool = False,
        dtype: object = np.float64,
    ) -> np.ndarray:
        """A (pos - neg) for disjoint binary (b, n) pos/neg: (b, m) float64 (or ``dtype``).

        Every part is acquired (``frames_per_binary`` frames each, 4 a vector), so each vector
        gets its own noise. With ``share_repeats`` each distinct binary pattern among all the
        parts (the all-zero one included) is acquired once and its cross term reused: fewer
        frames when parts repeat (e.g. one-hot errors), at the price of one shared noise draw
        for the vectors that repeat a part.

        ``dtype`` (float32 or float64) is that of the arithmetic after the frames, not only of
        the result: the frames are integers and their differences exact in either, and float32
        halves the memory traffic of the optical DFA step's host work (issue 17).
        """
        dt = projection_dtype(dtype)
        pos, neg = self._check(pos), self._check(neg)
        if pos.shape != neg.shape:
            raise ShapeError(f"pos {pos.shape} and neg {neg.shape} differ")
        if (pos & neg).any():
            raise OPUError("pos and neg patterns must be disjoint (a value cannot be +1 and -1)")
        b = pos.shape[0]
        parts = np.concatenate([pos, neg])
        which = None
        if share_repeats:
            parts, which = _distinct_rows(parts)
        raw = np.asarray(acquire(self._binary_patterns(parts)))
        _warn_saturation(raw, self.adc_max_dn)  # on the frames' own dtype: one cheap pass
        y = raw.astype(dt)
        # the reference term cancels in the difference: pass zeros
        c = self._binary_cross(y, parts.shape[0], np.zeros(cal.reference_dn.shape, dtype=dt))
        if which is None:
            return self._normalize(c[:b] - c[b:], cal, pos.sum(axis=1) - neg.sum(axis=1))
        # sharing: normalise the k distinct parts, then take each vector's pos part minus its neg
        # part; the normalisation is affine in (cross, x_sum), so this equals normalising the
        # differences, on k rows instead of b
        cn = self._normalize(c, cal, parts.sum(axis=1))
        return cn[which[:b]] - cn[which[b:]]

    def _normalize(self, cross: np.ndarray, cal: LinearCalibration, x_sum: np.ndarray) -> np.ndarray:
        """Per-output normalisation to unit-variance A; ``x_sum`` (b,) = sum of each input.
        Computed in ``cross``'s dtype."""
        return cross * (cal.scale / np.sqrt(cal.reference_dn)).astype(cross.dtype)[None, :]

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ShapeError(f"expected binary patterns (b, {self.n_features}), got {x.shape}")
        if x.dtype != np.bool_:
            if ((x != 0) & (x != 1)).any():
                raise OPUError("project_binary expects 0/1 patterns; use linear_transform for real data")
            x = x.astype(bool)
        return x

    def frames_for(self, batch: int, signed: bool, planes: int = 1) -> int:
        """Frames needed to project ``batch`` vectors (excluding calibration); with
        ``share_repeats`` this is an upper bound (repeated parts are acquired once)."""
        per = self.frames_per_signed if signed else self.frames_per_binary
        return per * batch * planes


class AnchorScheme(LinearScheme):
    """Anchor (reference) pattern r on ``anchor_features`` spare features after the data.

    Device layout: features [0, n) carry x, features [n, n + anchor_features) carry r (all lit).
    Frames: |B(x + r)|^2 and |Bx|^2 per binary vector; dark and |Br|^2 once.
    """

    name = "anchor"
    frames_per_binary = 2
    frames_per_signed = 4

    def __init__(self, n_features: int, anchor_features: int | None = None, **kw) -> None:
        super().__init__(n_features, **kw)
        self.anchor_features = int(anchor_features if anchor_features is not None else n_features)
        if self.anchor_features < 1:
            raise OPUError(f"anchor_features must be >= 1, got {anchor_features}")

    @property
    def device_features(self) -> int:
        return self.n_features + self.anchor_features

    def _reference_pattern(self) -> np.ndarray:
        r = np.zeros(self.device_features, dtype=bool)
        r[self.n_features :] = True
        return r

    def _binary_patterns(self, x: np.ndarray) -> np.ndarray:
        b, n = x.shape
        p = np.zeros((2 * b, self.device_features), dtype=bool)
        p[:b, :n] = x
        p[:b, n:] = True  # x + r
        p[b:, :n] = x  # x alone
        return p

    def _binary_cross(self, y: np.ndarray, b: int, ref: np.ndarray) -> np.ndarray:
        return (y[:b] - y[b : 2 * b] - ref[None, :]) / 2.0


class ComplementScheme(LinearScheme):
    """Complement trick with the all-ones pattern on the data features (no spare mirrors).

    Frames: |Bx|^2 and |B(1 - x)|^2 per binary vector; dark and |B1|^2 once.
    """

    name = "complement"
    frames_per_binary = 2
    frames_per_signed = 4

    @property
    def device_features(self) -> int:
        return self.n_features

    def _reference_pattern(self) -> np.ndarray:
        return np.ones(self.n_features, dtype=bool)

    def _binary_patterns(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([x, ~x])

    def _binary_cross(self, y: np.ndarray, b: int, ref: np.ndarray) -> np.ndarray:
        return (y[:b] - y[b : 2 * b] + ref[None, :]) / 2.0

    def _normalize(self, cross: np.ndarray, cal: LinearCalibration, x_sum: np.ndarray) -> np.ndarray:
        # The reference phase is that of the row sum c_i = sum_j B_ij, so every row of the raw
        # effective matrix sums to exactly scale * sqrt(ref_i): a known rank-one term along the
        # all-ones direction. Removing it leaves A with zero-mean Gaussian rows summing to zero
        # (variance 1 - 1/n, correlation -1/(n-1) within a row).
        out = super()._normalize(cross, cal, x_sum)
        row_mean = (cal.scale * np.sqrt(cal.reference_dn) / self.n_features).astype(out.dtype)
        return out - np.asarray(x_sum, dtype=out.dtype)[:, None] * row_mean[None, :]


SCHEMES: dict[str, type[LinearScheme]] = {"anchor": AnchorScheme, "complement": ComplementScheme}


def make_scheme(name: str, n_features: int, **kw) -> LinearScheme:
    """Build a scheme by name ('anchor' or 'complement')."""
    try:
        cls = SCHEMES[name]
    except KeyError:
        raise OPUError(f"unknown linear scheme {name!r}; choose one of {sorted(SCHEMES)}") from None
    return cls(n_features, **kw)


def linear_transform(
    acquire: Acquire,
    x: object,
    scheme: LinearScheme,
    calibration: LinearCalibration,
    precision: int = 8,
    share_repeats: bool = False,
    dtype: object = np.float64,
) -> np.ndarray:
    """``A x`` for a real batch x (b, n) (or (n,)): (b, m) float64, or ``dtype`` (float32 or
    float64: the dtype of the arithmetic after the integer frames, see
    :meth:`LinearScheme.project_signed`).

    Ternary input (all values in {-1, 0, 1}) is projected exactly with 4 frames per vector;
    any other real input is bit-plane encoded with ``precision`` bits per sign
    (4 x precision frames per vector). Everything is acquired in one call to ``acquire``.
    ``share_repeats``: acquire each distinct binary part once (see
    :meth:`LinearScheme.project_signed`).
    """
    dt = projection_dtype(dtype)
    a = np.asarray(x)
    single = a.ndim == 1
    if single:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != scheme.n_features:
        raise ShapeError(f"x must be (n,) or (batch, n) with n = {scheme.n_features}, got {np.shape(x)}")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
        raise OPUError(f"x must be real, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise OPUError("x contains NaN or infinite values")
    if is_ternary(a):
        out = scheme.project_signed(acquire, a > 0, a < 0, calibration, share_repeats, dt)
    else:
        bp = BitPlanes.encode(a, precision)
        p, b, n = bp.planes.shape[1:]
        pos = bp.planes[0].reshape(p * b, n)
        neg = bp.planes[1].reshape(p * b, n)
        proj = scheme.project_signed(acquire, pos, neg, calibration, share_repeats, dt).reshape(p, b, -1)
        out = bp.decode(proj).astype(dt, copy=False)  # the planes' weights sum in float64
    return out[0] if single else out


def projection_dtype(dtype: object) -> np.dtype:
    """``dtype`` as a numpy dtype if it is float32 or float64 (the projections' two dtypes)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None  # not a dtype at all (numpy compares None equal to float64: test the type)
    if dtype is None or dt is None or dt.type not in (np.float32, np.float64):
        raise OPUError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def _distinct_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct rows of bool x (k, n), index (k,) of each row of x among them)."""
    packed = np.ascontiguousarray(np.packbits(x, axis=1))
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, which = np.unique(keys, return_index=True, return_inverse=True)
    return x[first], which.ravel()


def _var(frames: np.ndarray) -> np.ndarray:
    return frames.var(axis=0, ddof=1) if frames.shape[0] > 1 else np.zeros(frames.shape[1])


def _warn_saturation(y: np.ndarray, adc_max: float | None) -> None:
    if adc_max is None or not np.isfinite(adc_max):
        return
    frac = float((y >= adc_max).mean())
    if frac > 0:
        warnings.warn(
            f"{frac:.2%} of the pixels are saturated at {adc_max:.0f} DN: the projection is "
            "biased there; lower the exposure or the number of lit mirrors",
            SaturationWarning,
            stacklevel=3,
        )


class LinearProjector:
    """A scheme bound to a device: calibrates once (lazily), then projects real batches.

    >>> proj = LinearProjector(sim.acquire, AnchorScheme(64), adc_max_dn=255)   # doctest: +SKIP
    >>> y = proj.transform(x)                                                   # doctest: +SKIP

    Call :meth:`recalibrate` after the medium has drifted or the exposure changed.
    """

    def __init__(self, acquire: Acquire, scheme: LinearScheme, precision: int = 8) -> None:
        self.acquire = acquire
        self.scheme = scheme
        self.precision = precision
        self._calibration: LinearCalibration | None = None

    @property
    def calibration(self) -> LinearCalibration:
        if self._calibration is None:
            self._calibration = self.scheme.calibrate(self.acquire)
        return self._calibration

    def recalibrate(self) -> LinearCalibration:
        self._calibration = None
        return self.calibration

    def transform(self, x: object, share_repeats: bool = False, dtype: object = np.float64) -> np.ndarray:
        """A x for real x (b, n) or (n,): float64 (or ``dtype``) (b, m) or (m,).

        ``share_repeats``: acquire each distinct binary part of the batch once (fewer frames;
        vectors repeating a part share its noise draw). ``dtype``: float32 or float64."""
        return linear_transform(self.acquire, x, self.scheme, self.calibration, self.precision, share_repeats,
                                dtype)
