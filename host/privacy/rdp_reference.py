"""An independent RDP accountant for the two mechanisms we use (cross-checks dp-accounting in tests).

Written from the formulas, not from dp-accounting's code:

* Gaussian mechanism with noise multiplier z (sensitivity 1, noise std z): RDP of order alpha is
  alpha / (2 z^2) (Mironov 2017, Prop. 7); E self-compositions add: E alpha / (2 z^2).
* Poisson-subsampled Gaussian (rate q), integer orders alpha >= 2 (Mironov, Talwar & Zhang 2019,
  "Renyi Differential Privacy of the Sampled Gaussian Mechanism", Sec. 3.3)::

      A_alpha = sum_{k=0}^{alpha} C(alpha, k) (1 - q)^(alpha - k) q^k exp((k^2 - k) / (2 z^2))
      RDP(alpha) = log(A_alpha) / (alpha - 1)                 (T steps: T times that)

  summed in log space (log-sum-exp) so that large alpha and small z do not overflow.
* RDP -> (epsilon, delta): Canonne, Kamath & Steinke 2020 (Prop. 12 of "The Discrete Gaussian for
  Differential Privacy"): epsilon = RDP(alpha) + log((alpha - 1) / alpha) - (log delta + log alpha) /
  (alpha - 1), minimised over the orders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import gammaln, logsumexp

#: integer orders of the reference (2..256, denser at small orders)
INTEGER_ORDERS: tuple[int, ...] = (*range(2, 65), 80, 96, 128, 160, 192, 256)


def gaussian_rdp(z: float, orders: Sequence[float]) -> np.ndarray:
    """RDP alpha / (2 z^2) of one Gaussian mechanism with noise multiplier z, per order."""
    a = np.asarray(orders, dtype=np.float64)
    return a / (2.0 * z * z)


def sampled_gaussian_rdp_integer(q: float, z: float, alpha: int) -> float:
    """RDP of order ``alpha`` (integer >= 2) of one Poisson-subsampled Gaussian step."""
    if alpha < 2 or int(alpha) != alpha:
        raise ValueError(f"integer order >= 2 required, got {alpha}")
    if q == 1.0:
        return alpha / (2.0 * z * z)
    k = np.arange(alpha + 1, dtype=np.float64)
    log_binom = gammaln(alpha + 1) - gammaln(k + 1) - gammaln(alpha - k + 1)
    terms = log_binom + (alpha - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2.0 * z * z)
    return float(logsumexp(terms)) / (alpha - 1)


def epsilon_from_rdp(rdp: Sequence[float], orders: Sequence[float], delta: float) -> tuple[float, float]:
    """(epsilon, optimal order) from an RDP curve (Canonne-Kamath-Steinke conversion)."""
    best, best_a = math.inf, float("nan")
    for a, r in zip(orders, rdp, strict=True):
        if a <= 1:
            continue
        eps = r + math.log1p(-1.0 / a) - (math.log(delta) + math.log(a)) / (a - 1)
        if eps < best:
            best, best_a = eps, a
    return max(0.0, best), best_a


def epsilon_per_epoch(z: float, epochs: int, delta: float) -> float:
    """epsilon after ``epochs`` Gaussian(z) mechanisms, composed by hand over the integer orders."""
    rdp = epochs * gaussian_rdp(z, INTEGER_ORDERS)
    return epsilon_from_rdp(rdp, INTEGER_ORDERS, delta)[0]


def epsilon_poisson(q: float, z: float, steps: int, delta: float) -> float:
    """epsilon after ``steps`` Poisson-subsampled Gaussian(q, z) steps (integer-order series)."""
    rdp = [steps * sampled_gaussian_rdp_integer(q, z, a) for a in INTEGER_ORDERS]
    return epsilon_from_rdp(rdp, INTEGER_ORDERS, delta)[0]
