"""The privacy configuration of a training run (``TrainConfig.privacy``); docs/privacy.md."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PrivacyConfig(BaseModel):
    """What the user asks for and how the mechanism is built (docs/privacy.md, sections 1-5).

    epsilon, delta:
        the (epsilon, delta) target for the whole run; delta must be below 1/N (checked by the plan).
    composition:
        ``"epoch"``: shuffled disjoint batches, one Gaussian mechanism per epoch, no amplification;
        ``"poisson"``: every record joins each step with probability q = b/N (the trainer really
        samples so), one subsampled Gaussian per step, always with ``aggregation="sample"``.
    aggregation:
        ``"batch"``: effective noise multiplier z = sigma sqrt(b) / Delta (per-sample noise summed over
        the batch, the paper's convention); ``"sample"``: z = sigma / Delta (no sqrt(b) credit, the
        conservative reading; section 4).
    neighbouring:
        ``"replace_one"`` or ``"add_remove"`` (sets the sensitivity Delta; Poisson needs add/remove).
    accountant:
        ``"rdp"`` or ``"pld"`` (dp-accounting); the one that decides the plan and the budget stop. Both
        are reported.
    top_scale:
        the top-layer error is released as c e with c = top_scale sqrt(m) (m feedback outputs): its
        share of the sensitivity and, inversely, the noise on the output layer's error (sigma / c).
    hidden_lr_scale:
        factor on the hidden layers' optimizer updates (after Adam/SGD). The private feedback of a wide
        layer is noise-dominated (its noise grows with sqrt(m), section 4) and Adam turns pure noise into
        full-size steps that scramble the features; a factor < 1 slows that random walk. 0 trains the
        output layer only (the private "shallow" baseline).
    host_noise:
        allow host Gaussian noise to top the device's certified noise up to the needed sigma; when
        False the plan is refused unless the device alone is noisy enough.
    sensitivity_repeats, sensitivity_margin:
        optical-dfa: projections per unit vector to estimate the effective matrix, and the relative
        margin added to the sensitivity bound for drift within an epoch.
    reference_safety:
        factor rho <= 1 on the reference level in the shot-noise floor (drift within an epoch).
    calibration_path:
        a calibration report (``opu calibrate``) giving K and the read noise; simulated devices
        default to their own configuration.
    target_margin:
        the plan aims at target_margin x epsilon (bisection slack stays inside the target).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    epsilon: float = Field(..., gt=0, le=100)
    delta: float = Field(1e-5, gt=0, lt=1)
    composition: Literal["epoch", "poisson"] = "epoch"
    aggregation: Literal["batch", "sample"] = "batch"
    neighbouring: Literal["replace_one", "add_remove"] = "replace_one"
    accountant: Literal["rdp", "pld"] = "rdp"
    top_scale: float = Field(0.5, gt=0, le=100)
    hidden_lr_scale: float = Field(1.0, ge=0, le=1)
    host_noise: bool = True
    sensitivity_repeats: int = Field(8, ge=2, le=256)
    sensitivity_margin: float = Field(0.05, ge=0, le=1)
    reference_safety: float = Field(0.5, gt=0, le=1)
    calibration_path: str | None = None
    target_margin: float = Field(0.99, gt=0.5, le=1)
    audit_canaries: int = Field(0, ge=0, description="one-run audit: canaries inserted w.p. 1/2 (0: none)")
    audit_seed: int = Field(12345, ge=0)

    @model_validator(mode="after")
    def _poisson_rules(self) -> PrivacyConfig:
        if self.composition == "poisson":
            if self.neighbouring != "add_remove":
                raise ValueError("composition='poisson' needs neighbouring='add_remove' (Poisson "
                                 "amplification is stated for adding/removing one record)")
            if self.aggregation != "sample":
                raise ValueError("composition='poisson' needs aggregation='sample': the Poisson batch size "
                                 "is random, so per-sample noise earns no sqrt(batch) credit")
        return self
