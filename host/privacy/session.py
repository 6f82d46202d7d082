"""The privacy side of one training run: what the trainer calls at its few marked seams.

``prepare_data`` (canaries of an audit), ``PrivacySession`` (wraps the feedback, measures Delta and
sigma_min, makes and prints the plan, answers the budget question before each epoch, and gives the
epoch's epsilon for the metrics), ``poisson_batches`` (really Poisson-sampled batches).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .audit import Canaries, make_canaries
from .certify import camera_noise
from .config import PrivacyConfig
from .mechanism import PrivateFeedback
from .plan import PrivacyPlan, make_plan

PLAN_FILE = "privacy_plan.json"
_POISSON_STREAM = 0x504F


class PrivacyConfigError(ValueError):
    """A training configuration private training cannot run with (the message says what to change)."""


def check_train_config(mode: str, activation: str, model: str = "mlp") -> None:
    """Refuse what the private mechanism does not cover: the sensitivity bound and the two-part release
    (feedback of the hidden layers, noisy error of the output layer) are stated for the MLP's DFA."""
    if model != "mlp":
        raise PrivacyConfigError(f"--dp-* works with --model mlp (the mechanism's sensitivity and the "
                                 f"noisy output-layer error are derived for the MLP), not {model!r}")
    if mode not in ("dfa", "optical-dfa"):
        raise PrivacyConfigError(f"--dp-* works with --mode dfa or optical-dfa (the feedback is the "
                                 f"mechanism), not {mode!r}")
    if activation != "tanh":
        raise PrivacyConfigError("private DFA needs bounded activations and |f'| <= 1: use --activation "
                                 f"tanh (got {activation!r})")


def prepare_data(data, privacy: PrivacyConfig):
    """(dataset with the included canaries appended to the training set and removed from the test set,
    the canaries or None)."""
    if not privacy.audit_canaries:
        return data, None
    m = privacy.audit_canaries
    pool = m * 2 if data.x_test.shape[0] > 2 * m + 100 else m
    if data.x_test.shape[0] <= pool:
        raise PrivacyConfigError(f"{m} canaries need more than {pool} test images ({data.x_test.shape[0]})")
    xp, yp = data.x_test[-pool:], data.y_test[-pool:]
    can = make_canaries(xp, yp, data.n_classes, m, privacy.audit_seed)
    x_tr = np.concatenate([data.x_train, can.x[can.included]])
    y_tr = np.concatenate([data.y_train, can.y[can.included]])
    new = dataclasses.replace(data, x_train=x_tr, y_train=y_tr, x_test=data.x_test[:-pool],
                              y_test=data.y_test[:-pool])
    return new, can


def stored_plan(out_dir) -> dict | None:
    """The plan stored by an earlier run in ``out_dir`` (None if there is none)."""
    p = Path(out_dir) / PLAN_FILE
    return json.loads(p.read_text()) if p.is_file() else None


def poisson_batches(seed: int, epoch: int, n_train: int, q: float, steps: int):
    """Index arrays of ``steps`` batches, each record included independently with probability q."""
    for s in range(steps):
        rng = np.random.default_rng([seed, epoch, s, _POISSON_STREAM])
        yield np.flatnonzero(rng.random(n_train) < q)


class PrivacySession:
    """Builds the mechanism and the plan for one run (see the module docstring)."""

    def __init__(self, privacy: PrivacyConfig, inner_feedback, *, n_outputs: int, n_classes: int,
                 n_train: int, batch_size: int, epochs: int, optical: bool, device=None,
                 share_repeats: bool = True, say: Callable[[str], None] | None = None,
                 stored_plan: dict | None = None) -> None:
        self.cfg = privacy
        say = say or (lambda s: None)
        cam = None
        credit = False
        if optical:
            cam = camera_noise(device, privacy.calibration_path)
            credit = not share_repeats
        self.feedback = PrivateFeedback(inner_feedback, privacy, n_outputs, n_classes, camera=cam,
                                        credit_device=credit)
        dv, smin = self.feedback.measure()
        from .mechanism import sensitivity

        delta = sensitivity(dv, self.feedback.c, privacy.neighbouring)
        self.plan: PrivacyPlan = make_plan(
            privacy, n_train=n_train, batch_size=batch_size, epochs=epochs, delta_v=dv,
            top_scale_c=self.feedback.c, sigma_min=smin, credit_device=self.feedback.credit_device,
            optical=optical, sensitivity=delta, z_fixed=stored_plan["z"] if stored_plan else None)
        if self.plan.eps_rdp > privacy.epsilon and stored_plan:
            self.plan.notes.append(f"{epochs} epochs would exceed the target: the budget stop ends the run")
        self.feedback.set_noise_multiplier(self.plan.z, self.plan.b_agg)
        if cam is not None:
            self.plan.notes.append(f"camera noise from the {cam.source}: K = {cam.gain_dn_per_e:.4g} DN/e-, "
                                   f"read noise {cam.read_noise_e:.3g} e-")
        say(self.plan.text())

    def write_plan(self, out_dir: Path) -> None:
        (Path(out_dir) / PLAN_FILE).write_text(json.dumps(self.plan.as_dict(), indent=2))

    def may_run_epoch(self, epochs_done: int) -> tuple[bool, float]:
        """(whether one more epoch stays within the target, epsilon after it)."""
        eps = self.plan.epsilon_after(epochs_done + 1)
        return eps <= self.cfg.epsilon, eps

    def epoch_record(self, epochs_done: int) -> dict:
        n = self.feedback.noise
        rec = {
            "epsilon": self.plan.epsilon_after(epochs_done),
            "epsilon_rdp": self.plan.epsilon_after(epochs_done, "rdp"),
            "epsilon_pld": self.plan.epsilon_after(epochs_done, "pld"),
            "delta": self.cfg.delta, "z": self.plan.z, "q": self.plan.q,
            "compositions": epochs_done if self.plan.composition == "epoch"
            else epochs_done * self.plan.steps_per_epoch,
        }
        if n is not None:
            rec.update({"sigma": n.sigma, "sensitivity": n.sensitivity,
                        "sigma_min_median": float(np.median(n.sigma_min)),
                        "device_variance_share": n.device_variance_share})
        return rec


__all__ = ["Canaries", "PrivacySession", "check_train_config", "poisson_batches", "prepare_data"]
