"""The DMD: binary-pattern validation, the feature -> mirror mapping, and bit-packing for transport.

Patterns are batches ``(b, n)`` (or one pattern ``(n,)``) of 0/1 values. Accepted dtypes: bool,
any integer, any float, as long as every value is exactly 0 or 1; anything else raises
:class:`~opu.errors.PatternError` - never a silent cast (lightonml's simulator silently truncates
floats, see docs/physics.md).

Packing: each pattern's n bits are packed MSB-first into ``ceil(n / 8)`` bytes (``numpy.packbits``
default bit order), the last byte zero-padded. This is the wire format of ``docs/protocol.md``.
"""

from __future__ import annotations

import numpy as np

from .config import DMD_MAX_WIDTH_MIRRORS, DMDConfig
from .errors import CapacityError, PatternError, ShapeError


def as_pattern_batch(patterns: object, n_features: int) -> tuple[np.ndarray, bool]:
    """Validate ``patterns`` and return ``(batch, was_single)``.

    ``batch`` is a C-contiguous bool array (b, n_features); ``was_single`` tells that a 1-D pattern
    was given (callers then return 1-D results).
    """
    if not isinstance(patterns, np.ndarray):
        try:
            patterns = np.asarray(patterns)
        except Exception as exc:  # ragged lists and the like
            raise PatternError(f"patterns must be an array of 0/1 values: {exc}") from exc
    x = patterns
    if x.dtype == object or not (
        x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    ):
        raise PatternError(
            f"patterns must have a bool, integer or float dtype holding 0/1, got dtype {x.dtype}"
        )
    single = x.ndim == 1
    if single:
        x = x[None, :]
    if x.ndim != 2:
        raise ShapeError(f"patterns must be (n_features,) or (batch, n_features), got shape {patterns.shape}")
    if x.shape[1] != n_features:
        raise ShapeError(f"patterns have {x.shape[1]} features but the device is set up for {n_features}")
    if x.dtype != np.bool_:
        bad = (x != 0) & (x != 1)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise PatternError(
                f"DMD patterns must be binary (0 or 1); found {x[r, c]!r} at pattern {r}, "
                f"feature {c} ({int(bad.sum())} non-binary values). Encode real data first "
                "(opu.encoding: ternarize, bit planes, thresholds)."
            )
        x = x.astype(np.bool_)
    return np.ascontiguousarray(x), single


def pack_patterns(patterns: np.ndarray) -> np.ndarray:
    """Bit-pack validated patterns (b, n) -> uint8 (b, ceil(n/8)), MSB first."""
    x = np.asarray(patterns)
    if x.ndim != 2:
        raise ShapeError(f"pack_patterns expects (batch, n_features), got shape {x.shape}")
    return np.packbits(x.astype(np.bool_), axis=1)


def unpack_patterns(packed: np.ndarray, n_features: int) -> np.ndarray:
    """Inverse of :func:`pack_patterns`: uint8 (b, ceil(n/8)) -> bool (b, n_features).

    Padding bits beyond ``n_features`` must be zero (a corrupted transfer is refused).
    """
    p = np.asarray(packed)
    if p.dtype != np.uint8 or p.ndim != 2:
        raise ShapeError(f"packed patterns must be uint8 (batch, bytes), got {p.dtype} {p.shape}")
    need = (n_features + 7) // 8
    if p.shape[1] != need:
        raise ShapeError(f"{n_features} features need {need} bytes per pattern, got {p.shape[1]}")
    bits = np.unpackbits(p, axis=1)
    if bits[:, n_features:].any():
        raise PatternError("non-zero padding bits after the last feature: corrupted pattern data")
    return bits[:, :n_features].astype(np.bool_)


def feature_mirror_ids(dmd: DMDConfig, n_features: int) -> np.ndarray:
    """Absolute id (row * 1140 + col) of the top-left mirror of each feature's macro-pixel, (n,).

    Raises :class:`CapacityError` when the ROI holds fewer macro-pixels than ``n_features``.
    """
    if n_features < 1:
        raise CapacityError(f"n_features must be >= 1, got {n_features}")
    if n_features > dmd.max_features:
        h, w = dmd.roi_shape_mirrors
        raise CapacityError(
            f"{n_features} features do not fit the {h}x{w}-mirror input ROI with "
            f"{dmd.macro_pixel_mirrors}x{dmd.macro_pixel_mirrors} macro-pixels (at most "
            f"{dmd.max_features}); use smaller macro-pixels or a larger ROI"
        )
    _, grid_cols = dmd.grid_shape
    k = np.arange(n_features)
    gr, gc = np.divmod(k, grid_cols)
    rows = dmd.roi_row + gr * dmd.macro_pixel_mirrors
    cols = dmd.roi_col + gc * dmd.macro_pixel_mirrors
    return (rows * DMD_MAX_WIDTH_MIRRORS + cols).astype(np.uint32)
