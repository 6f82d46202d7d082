"""The privacy plan: shown and checked before training (docs/privacy.md sections 4-5, 7).

From the target (epsilon, delta), the composition unit, the batch and the epochs the plan finds the
smallest effective noise multiplier z that keeps epsilon <= target, turns it into the per-coordinate
noise std sigma = z Delta / sqrt(b_agg), and splits sigma into the device's certified share and host
noise. A plan that cannot meet the target raises :class:`PlanRefused` saying what to change.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .accountant import AccountingError, Composition, calibrate_z, epsilon
from .config import PrivacyConfig


class PlanRefused(ValueError):
    """The privacy target cannot be met with this configuration (the message says what to change)."""


@dataclass
class PrivacyPlan:
    epsilon_target: float
    delta: float
    composition: str
    aggregation: str
    neighbouring: str
    accountant: str
    n_train: int
    batch_size: int
    epochs: int
    steps_per_epoch: int
    compositions: int
    q: float
    z: float
    b_agg: int
    sensitivity: float
    delta_v: float
    top_scale_c: float
    sigma: float
    sigma_min_min: float
    sigma_min_median: float
    sigma_min_max: float
    host_sigma_max: float
    device_variance_share: float
    noise_source: str
    credit_device: bool
    eps_rdp: float
    eps_pld: float
    notes: list[str] = field(default_factory=list)

    def composition_for(self, n: int) -> Composition:
        return Composition(self.z, self.q, n)

    def epsilon_after(self, epochs_done: int, accountant: str | None = None) -> float:
        """epsilon after ``epochs_done`` epochs (all the steps of each epoch for Poisson)."""
        n = epochs_done if self.composition == "epoch" else epochs_done * self.steps_per_epoch
        return epsilon(self.composition_for(n), self.delta, accountant or self.accountant)

    def as_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        unit = ("per epoch, shuffled disjoint batches (no amplification)" if self.composition == "epoch"
                else f"per step, Poisson sampling q = {self.q:.4g}")
        agg = f"sqrt(b) = {math.sqrt(self.b_agg):.1f} credit" if self.b_agg > 1 else "no sqrt(b) credit"
        return "\n".join([
            f"privacy plan: target epsilon {self.epsilon_target:g} at delta {self.delta:g} "
            f"({self.neighbouring}, {self.accountant} accountant)",
            f"  composition: {unit}; {self.compositions} compositions over {self.epochs} epochs",
            f"  sensitivity Delta = {self.sensitivity:.4g} (feedback {self.delta_v:.4g}, top c = "
            f"{self.top_scale_c:.3g})",
            f"  noise std per coordinate sigma = {self.sigma:.4g}; device sigma_min per output "
            f"min/median/max {self.sigma_min_min:.3g}/{self.sigma_min_median:.3g}/{self.sigma_min_max:.3g}"
            f" ({'credited' if self.credit_device else 'not credited'}); host noise up to "
            f"{self.host_sigma_max:.4g}; device share of the variance {self.device_variance_share:.2e}",
            f"  noise source: {self.noise_source}",
            f"  effective noise multiplier z = {self.z:.4g} ({agg}), q = {self.q:.4g}",
            f"  predicted epsilon after {self.epochs} epochs: {self.eps_rdp:.4g} (RDP), "
            f"{self.eps_pld:.4g} (PLD)",
            *[f"  note: {n}" for n in self.notes],
        ])


def make_plan(cfg: PrivacyConfig, *, n_train: int, batch_size: int, epochs: int, delta_v: float,
              top_scale_c: float, sigma_min: np.ndarray, credit_device: bool, optical: bool,
              sensitivity: float, z_fixed: float | None = None) -> PrivacyPlan:
    """Build (or refuse) the plan. ``sigma_min`` (m,) is the credited device floor (zeros if none).

    ``z_fixed``: the noise multiplier of a resumed run (the epochs already trained used it); the plan
    then keeps it and the budget stop ends the run when the target would be exceeded.
    """
    if cfg.delta >= 1.0 / n_train:
        raise PlanRefused(f"delta = {cfg.delta:g} is not below 1/N = {1 / n_train:.3g}: such a delta allows "
                          "releasing a record outright; choose --dp-delta < 1/N (1e-5 is usual)")
    steps = n_train // batch_size
    if cfg.composition == "epoch":
        n, q = epochs, 1.0
    else:
        n, q = epochs * steps, batch_size / n_train
    b_agg = batch_size if cfg.aggregation == "batch" else 1
    notes: list[str] = []
    if z_fixed is not None:
        z = float(z_fixed)
        notes.append(f"resumed run: keeps the stored noise multiplier z = {z:.4g}")
    else:
        try:
            z = calibrate_z(cfg.target_margin * cfg.epsilon, cfg.delta, q, n, cfg.accountant)
        except AccountingError as err:
            raise PlanRefused(f"{err}; fewer epochs or a larger target help") from None
    sigma = z * sensitivity / math.sqrt(b_agg)
    smin = np.asarray(sigma_min, dtype=np.float64)
    host = np.sqrt(np.maximum(sigma**2 - smin**2, 0.0))
    if not cfg.host_noise and host.max() > 0:
        floor = float(smin.min())
        need = f"about {(sigma / floor) ** 2:.3g}x the batch" if floor > 0 else "no batch is enough"
        raise PlanRefused(
            f"the device's certified noise (sigma_min min {smin.min():.3g}, median {np.median(smin):.3g}) is "
            f"below the sigma = {sigma:.3g} this target needs (z = {z:.3g}, Delta = {sensitivity:.3g}). "
            f"Change one of: allow host noise (drop --dp-no-host-noise); a larger batch (sigma ~ 1/sqrt(b) "
            f"with aggregation 'batch': {need}); fewer epochs; a smaller "
            f"--dp-top-scale; "
            f"lower exposure/light to raise the relative shot noise; a larger epsilon target"
            + ("" if credit_device or not optical else "; --no-share-repeats (shared frames earn no credit)"))
    if optical and not credit_device:
        notes.append("device noise not credited (frames shared between samples, or no noise "
                     "calibration): the host supplies all of sigma")
    source = ("device only" if host.max() == 0 else
              "host Gaussian only" if smin.max() == 0 else "device (certified floor) + host Gaussian top-up")
    if cfg.aggregation == "batch":
        notes.append("aggregation 'batch' credits the per-sample noise summed over the batch (the paper's "
                     "convention; not airtight, docs/privacy.md section 4); 'sample' is the conservative one")
    comp = Composition(z, q, n)
    eps_r = epsilon(comp, cfg.delta, "rdp")
    eps_p = epsilon(comp, cfg.delta, "pld")
    return PrivacyPlan(
        epsilon_target=cfg.epsilon, delta=cfg.delta, composition=cfg.composition, aggregation=cfg.aggregation,
        neighbouring=cfg.neighbouring, accountant=cfg.accountant, n_train=n_train, batch_size=batch_size,
        epochs=epochs, steps_per_epoch=steps, compositions=n, q=q, z=z, b_agg=b_agg, sensitivity=sensitivity,
        delta_v=delta_v, top_scale_c=top_scale_c, sigma=sigma, sigma_min_min=float(smin.min()),
        sigma_min_median=float(np.median(smin)), sigma_min_max=float(smin.max()),
        host_sigma_max=float(host.max()), device_variance_share=float(np.mean(np.minimum(smin, sigma) ** 2)
                                                                      / sigma**2),
        noise_source=source, credit_device=credit_device, eps_rdp=eps_r, eps_pld=eps_p, notes=notes)
