"""Differentially private (optical) DFA: mechanism, certified noise floor, accounting, plan, audit.

docs/privacy.md states the mechanism and its assumptions. The trainer (host/train) reaches this
package only through :mod:`host.privacy.session` at a few marked seams.
"""

from .accountant import AccountingError, Composition, calibrate_z, epsilon
from .audit import AuditResult, Canaries, eps_lower_bound, make_canaries, p_value
from .certify import (
    CameraNoise,
    CertificationError,
    NoiseCheck,
    camera_noise,
    measure_noise,
    sigma_min_per_output,
)
from .config import PrivacyConfig
from .mechanism import PrivateFeedback, encode_error, feedback_bound, sensitivity, support
from .plan import PlanRefused, PrivacyPlan, make_plan
from .session import PrivacyConfigError, PrivacySession

__all__ = [
    "AccountingError", "AuditResult", "CameraNoise", "Canaries", "CertificationError", "Composition",
    "NoiseCheck", "PlanRefused", "PrivacyConfig", "PrivacyConfigError", "PrivacyPlan", "PrivacySession",
    "PrivateFeedback", "calibrate_z", "camera_noise", "encode_error", "eps_lower_bound",
    "epsilon", "feedback_bound", "make_canaries", "make_plan", "measure_noise", "p_value", "sensitivity",
    "sigma_min_per_output", "support",
]
