"""What a transmission-matrix retrieval measures, and its frame count, decided before any frame.

Device layout (features in the device's raster order, so columns keep their mirrors):

* features ``[0, n)`` are the data features whose columns of B are recovered;
* features ``[n, n + n_a)`` are anchor features: anchor ``s`` (s = 1..S) lights the first
  ``k_s = round(s n_a / S)`` of them, so the anchors are nested and every difference
  ``a_j - a_i`` (j > i) is again a binary pattern. Anchor 0 is the empty pattern (the origin).
  With ``n_a = n`` (default) the largest anchor is exactly the reference pattern of the
  ``anchor`` linear scheme (:class:`opu.AnchorScheme`), which lets the recovered matrix answer
  ``linear_transform`` digitally (docs/tm_retrieval.md).

Frames (docs/tm_retrieval.md, "Frame budget")::

    F = dark_repeats + anchor_repeats * S (S + 1) / 2 + K (S + 1)

``S(S+1)/2`` anchor differences ``a_j - a_i`` (all pairs i < j of the S + 1 points, origin included,
measured ``anchor_repeats`` times, half before and half after the signals) and, for each of the K
calibration signals x_k (random binary on the data features), the S + 1 patterns ``x_k + a_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .errors import TMPlanError

#: frame period of a device running at 2 kHz, seconds (the issue's reference rate)
FRAME_S_AT_2KHZ = 500e-6


class TMPlan(BaseModel):
    """Sizes of one retrieval. Build it with :func:`make_plan` (which validates the combination)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    n_features: int = Field(ge=1, description="n: data features (columns of B) to recover")
    anchors: int = Field(ge=3, description="S: anchor patterns besides the origin")
    anchor_features: int = Field(ge=3, description="n_a: spare features the anchors light")
    signals: int = Field(ge=1, description="K: calibration signals (K >= n)")
    anchor_repeats: int = Field(2, ge=1, description="repeats of every anchor-difference frame")
    dark_repeats: int = Field(8, ge=2, description="dark frames (all mirrors off)")
    signal_density: float = Field(0.5, gt=0, lt=1, description="probability of a lit data feature")
    seed: int = Field(20190703, ge=0, lt=2**32, description="seed of the calibration signals")

    @property
    def device_features(self) -> int:
        """Features the device must expose: data + anchor features."""
        return self.n_features + self.anchor_features

    @property
    def anchor_pairs(self) -> int:
        """S (S + 1) / 2 anchor differences (pairs of the S + 1 points)."""
        return self.anchors * (self.anchors + 1) // 2

    @property
    def frames(self) -> int:
        """Total frames: dark + anchor_repeats * S(S+1)/2 + K (S + 1)."""
        return self.dark_repeats + self.anchor_repeats * self.anchor_pairs + self.signals * (self.anchors + 1)

    def device_seconds(self, frame_time_us: float) -> float:
        """Device time of the acquisition at ``frame_time_us`` per frame, seconds."""
        return self.frames * frame_time_us * 1e-6

    @property
    def anchor_sizes(self) -> np.ndarray:
        """k_s (S + 1,) int: anchor features lit by anchor s (k_0 = 0)."""
        s = np.arange(self.anchors + 1)
        return np.rint(s * self.anchor_features / self.anchors).astype(np.int64)

    def anchor_pair_index(self) -> np.ndarray:
        """(S(S+1)/2, 2) int: the pairs (i, j), i < j, in acquisition order."""
        i, j = np.triu_indices(self.anchors + 1, k=1)
        return np.stack([i, j], axis=1)

    def signal_matrix(self) -> np.ndarray:
        """X (K, n) bool: the calibration signals (seeded; rank n, no empty signal)."""
        return _signals(self.signals, self.n_features, self.signal_density, self.seed).copy()


@lru_cache(maxsize=8)
def _signals(k: int, n: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    for _ in range(16):
        x = rng.random((k, n)) < density
        x[~x.any(axis=1), rng.integers(n)] = True
        if np.linalg.matrix_rank(x.astype(np.float64)) == n:
            return x
    raise TMPlanError(  # pragma: no cover - probability ~ 0 for K >= n + a few
        f"could not draw {k} binary signals of rank {n}; use more signals"
    )


@dataclass(frozen=True)
class PatternLayout:
    """Where each kind of frame sits in the acquisition order (indices into the frame array)."""

    dark: np.ndarray  # (dark_repeats,)
    anchor_first: np.ndarray  # (ceil(R/2), P): frames of pair p, first half of the repeats
    anchor_last: np.ndarray  # (floor(R/2), P): second half (after the signals)
    signal: np.ndarray  # (K, S + 1): frame of x_k + a_s


def build_patterns(plan: TMPlan) -> tuple[np.ndarray, PatternLayout]:
    """All patterns (F, n + n_a) bool in acquisition order, and the layout of their frames.

    Order: half the dark frames, the first half of the anchor repeats, the signals (the S + 1
    frames of one signal together), the other anchor repeats, the other dark frames. Splitting the
    anchor repeats around the signals measures the drift during the acquisition.
    """
    n, big_n = plan.n_features, plan.device_features
    k = plan.anchor_sizes
    pairs = plan.anchor_pair_index()
    anchor_p = np.zeros((pairs.shape[0], big_n), dtype=bool)
    for p, (i, j) in enumerate(pairs):
        anchor_p[p, n + k[i] : n + k[j]] = True
    x = plan.signal_matrix()
    s1 = plan.anchors + 1
    sig_p = np.zeros((plan.signals, s1, big_n), dtype=bool)
    sig_p[:, :, :n] = x[:, None, :]
    for s in range(s1):
        sig_p[:, s, n : n + k[s]] = True
    r1 = math.ceil(plan.anchor_repeats / 2)
    r2 = plan.anchor_repeats - r1
    d1 = plan.dark_repeats // 2
    d2 = plan.dark_repeats - d1
    dark_p = np.zeros((1, big_n), dtype=bool)
    blocks = [np.repeat(dark_p, d1, axis=0), np.tile(anchor_p, (r1, 1)), sig_p.reshape(-1, big_n),
              np.tile(anchor_p, (r2, 1)), np.repeat(dark_p, d2, axis=0)]
    patterns = np.concatenate(blocks)
    npair = pairs.shape[0]
    o1 = d1
    o2 = o1 + r1 * npair
    o3 = o2 + plan.signals * s1
    o4 = o3 + r2 * npair
    layout = PatternLayout(
        dark=np.concatenate([np.arange(d1), np.arange(o4, o4 + d2)]),
        anchor_first=(o1 + np.arange(r1 * npair)).reshape(r1, npair),
        anchor_last=(o3 + np.arange(r2 * npair)).reshape(r2, npair),
        signal=(o2 + np.arange(plan.signals * s1)).reshape(plan.signals, s1),
    )
    assert patterns.shape[0] == plan.frames
    return patterns, layout


def make_plan(
    n_features: int,
    anchors: int = 20,
    *,
    signals: int | None = None,
    anchor_features: int | None = None,
    anchor_repeats: int = 2,
    dark_repeats: int = 8,
    max_frames: int | None = None,
    max_device_features: int | None = None,
    seed: int = 20190703,
) -> TMPlan:
    """A validated plan; raises :class:`TMPlanError` (before any frame) when it cannot work.

    Defaults: ``signals = 2 n`` (an over-determined linear solve that averages the noise; the
    LightOn notebook uses 2 x 0.75 n per half), ``anchor_features = n`` (the largest anchor is then
    the anchor linear scheme's reference). ``max_device_features``: the device's feature capacity.
    """
    def _int(v: object, name: str, lo: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or int(v) < lo:
            raise TMPlanError(f"{name} must be an integer >= {lo}, got {v!r}")
        return int(v)

    n = _int(n_features, "features", 1)
    s = _int(anchors, "anchors", 3)
    k = _int(signals if signals is not None else 2 * n, "signals", 1)
    na = _int(anchor_features if anchor_features is not None else n, "anchor features", 1)
    if k < n:
        raise TMPlanError(f"{k} signals cannot determine {n} columns: the linear solve needs signals >= "
                          f"features (2 x features recommended)")
    if na < s:
        raise TMPlanError(f"{s} nested anchors need at least {s} anchor features (each anchor adds >= 1), "
                          f"got {na}; lower --anchors or raise --anchor-features")
    plan = TMPlan(n_features=n, anchors=s, anchor_features=na, signals=k,
                  anchor_repeats=_int(anchor_repeats, "anchor repeats", 1),
                  dark_repeats=_int(dark_repeats, "dark repeats", 2), seed=seed)
    if max_device_features is not None and plan.device_features > max_device_features:
        raise TMPlanError(f"the plan needs {plan.device_features} device features ({n} data + {na} anchor) "
                          f"but the device holds at most {max_device_features} at its macro-pixel size")
    if max_frames is not None:
        if max_frames < 1:
            raise TMPlanError(f"max frames must be >= 1, got {max_frames}")
        if plan.frames > max_frames:
            raise TMPlanError(
                f"the plan needs {plan.frames} frames ({plan.dark_repeats} dark + {plan.anchor_repeats} x "
                f"{plan.anchor_pairs} anchor + {k} signals x {s + 1}) but at most {max_frames} are allowed; "
                "raise --max-frames or lower --anchors / --signals"
            )
    return plan
