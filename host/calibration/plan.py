"""What a calibration will measure, and its frame budget, decided before any frame is taken.

:func:`make_plan` picks the frame counts for ``quick`` or full mode and checks a requested precision
of the system gain against ``max_frames`` (a :class:`PlanError` before measuring if it cannot be met).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from .errors import PlanError
from .report import Budget

#: frame period of a real device running at 2 kHz, seconds
REAL_FRAME_S = 500e-6


#: noise check (noise_check.py): repeats of each of a few fixed patterns and of the dark frame; with
#: any read or shot noise of >= 0.3 DN rms, all R values of a pixel rounding alike is rare, and there
#: are thousands of pixels
NOISE_CHECK_PATTERNS = 4
NOISE_CHECK_REPEATS = 8

class CalibrationPlan(BaseModel):
    """Frame counts and levels of every stage (levels are fractions of the saturation signal)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    quick: bool
    roi_side_px: int = Field(ge=4, le=256, description="calibration uses a centred square camera ROI")
    ptc_features: int = Field(256, ge=16)
    ptc_patterns: int = Field(ge=1)
    ptc_repeats: int = Field(ge=4)
    ptc_dark_repeats: int = Field(4, ge=2)
    ptc_levels: tuple[float, ...]
    dark_repeats: int = Field(ge=4)
    dark_exposures_us: tuple[float, ...] = (10_000.0, 50_000.0)
    boost_gain_db: float = Field(24.0, ge=0, le=24)
    prnu_patterns: int = Field(ge=16)
    prnu_features_per_pattern: int = Field(4, ge=1)
    prnu_macro_pixel_mirrors: int = Field(16, ge=1)
    prnu_level: float = 0.15
    stability_patterns: int = Field(16, ge=2)
    wait_ratio: float = Field(1.4142135623730951, gt=1, description="cumulative waits grow by this factor")
    stability_level: float = 0.06
    first_wait_s: float = Field(1.0, gt=0)
    max_wait_s: float = Field(ge=0)
    linear_features: int = Field(64, ge=2)
    linear_vectors: int = Field(8, ge=2)
    linear_repeats: int = Field(ge=3)
    linear_levels: tuple[float, ...]
    gain_precision_rel: float | None = None
    max_frames: int | None = None

    @property
    def n_waits(self) -> int:
        if self.max_wait_s <= 0:
            return 0
        ratio = max(self.max_wait_s / self.first_wait_s, 1.0)
        return max(1, math.ceil(math.log(ratio) / math.log(self.wait_ratio))) + 1

    def predicted_gain_precision(self) -> float:
        """Relative standard error of K expected from this plan (docs/calibration.md, "Budget")."""
        r = self.ptc_repeats
        v_rel = (3 * r - 4) / (r - 1) ** 2  # variance of the successive-difference estimator / sigma^4
        points = 0.35 * self.ptc_patterns * self.roi_side_px**2 * len(self.ptc_levels)
        return 2.0 * math.sqrt(v_rel / points)

    def budget(self) -> Budget:
        ptc = len(self.ptc_levels) * (self.ptc_patterns * self.ptc_repeats + self.ptc_dark_repeats)
        dark_exp = 2 + len(self.dark_exposures_us)
        frames = {
            "probe": 40,
            "noise_check": NOISE_CHECK_PATTERNS * NOISE_CHECK_REPEATS + NOISE_CHECK_REPEATS,
            "dark": 2 * dark_exp * self.dark_repeats,
            "photon_transfer": ptc,
            "prnu": self.prnu_patterns + self.dark_repeats,
            "linear_snr": 2 * (len(self.linear_levels) + 1)
            * (16 + 4 * self.linear_vectors * self.linear_repeats),
            "stability": self.stability_patterns * (2 + self.n_waits) + 4,
        }
        total = sum(frames.values())
        long_exposures = 2 * self.dark_repeats * sum(max(t * 1e-6 - REAL_FRAME_S, 0.0)
                                                      for t in self.dark_exposures_us)
        return Budget(frames_by_stage=frames, frames_total=total, max_wait_s=self.max_wait_s,
                      seconds_at_2khz=total * REAL_FRAME_S + long_exposures + self.max_wait_s,
                      predicted_gain_rel_precision=self.predicted_gain_precision())


def make_plan(quick: bool = False, *, gain_precision_rel: float | None = None,
              max_frames: int | None = None, max_wait_s: float | None = None,
              roi_side_px: int | None = None) -> CalibrationPlan:
    """The plan for ``quick`` or full mode, grown to reach ``gain_precision_rel`` if asked.

    Raises :class:`PlanError` when the frames needed exceed ``max_frames`` or the precision is
    outside (0, 1).
    """
    if gain_precision_rel is not None and not 0 < gain_precision_rel < 1:
        raise PlanError(f"gain precision must be a relative error in (0, 1), got {gain_precision_rel}")
    if max_frames is not None and max_frames < 1:
        raise PlanError(f"max_frames must be >= 1, got {max_frames}")
    if quick:
        kw = dict(roi_side_px=32, ptc_patterns=4, ptc_repeats=12,
                  ptc_levels=(0.03, 0.1, 0.25, 0.5, 1.0, 2.2), dark_repeats=8, prnu_patterns=256,
                  max_wait_s=900.0, linear_repeats=6, linear_levels=(0.05, 0.15, 0.35))
    else:
        kw = dict(roi_side_px=64, ptc_patterns=8, ptc_repeats=24,
                  ptc_levels=(0.02, 0.05, 0.1, 0.18, 0.3, 0.45, 0.6, 0.8, 1.2, 2.5), dark_repeats=16,
                  prnu_patterns=1024, max_wait_s=7200.0, linear_repeats=12,
                  linear_levels=(0.03, 0.08, 0.15, 0.25, 0.4), dark_exposures_us=(10_000.0, 50_000.0,
                                                                                  100_000.0))
    if roi_side_px is not None:
        kw["roi_side_px"] = roi_side_px
    if max_wait_s is not None:
        if max_wait_s < 0:
            raise PlanError(f"max wait must be >= 0 s, got {max_wait_s}")
        kw["max_wait_s"] = max_wait_s
    plan = CalibrationPlan(quick=quick, gain_precision_rel=gain_precision_rel, max_frames=max_frames, **kw)
    if gain_precision_rel is not None and plan.predicted_gain_precision() > gain_precision_rel:
        # variance of K ~ 1/patterns: grow the number of patterns
        factor = (plan.predicted_gain_precision() / gain_precision_rel) ** 2
        plan = plan.model_copy(update={"ptc_patterns": math.ceil(plan.ptc_patterns * factor)})
    total = plan.budget().frames_total
    if max_frames is not None and total > max_frames:
        need = (f"a gain precision of {gain_precision_rel:.2%} " if gain_precision_rel else "this plan ")
        raise PlanError(
            f"too few frames: {need}needs {total} frames ({plan.budget().frames_by_stage}) but at most "
            f"{max_frames} are allowed; raise --max-frames, relax --gain-precision, or use --quick"
        )
    return plan
