"""Privacy accounting with Google's dp-accounting (RDP and PLD) for the two composition units.

One *composition* is one Gaussian mechanism with effective noise multiplier z (noise std over
sensitivity): per epoch (shuffled disjoint batches, q = 1) or per step (Poisson sampling at rate q).
The events are ``SelfComposedDpEvent(GaussianDpEvent(z), n)`` and
``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(z)), n)``. z is already normalised by
the sensitivity of the chosen neighbouring relation (docs/privacy.md section 1), so the accountant
sees a sensitivity-1 Gaussian under add/remove - the relation-free closed form alpha / (2 z^2) for
q = 1, and the standard Poisson amplification for q < 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import dp_accounting
from dp_accounting import pld, rdp

AccountantName = Literal["rdp", "pld"]
#: RDP orders (dp-accounting's usual grid, extended to 256)
RDP_ORDERS: tuple[float, ...] = (1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5,
                                 *[float(a) for a in range(5, 64)], 80.0, 96.0, 128.0, 160.0, 192.0, 256.0)
#: PLD discretisation (epsilon is an upper bound; finer = tighter and slower)
PLD_DISCRETIZATION = 1e-4


class AccountingError(ValueError):
    """An accounting request that makes no sense (the message says which value and why)."""


@dataclass(frozen=True)
class Composition:
    """n compositions of a Gaussian(z) mechanism, Poisson-sampled at rate q (q = 1: no sampling)."""

    z: float
    q: float
    n: int

    def __post_init__(self) -> None:
        if not (self.z > 0 and math.isfinite(self.z)):
            raise AccountingError(f"noise multiplier z must be positive and finite, got {self.z}")
        if not 0 < self.q <= 1:
            raise AccountingError(f"sampling rate q must be in (0, 1], got {self.q}")
        if self.n < 0:
            raise AccountingError(f"number of compositions must be >= 0, got {self.n}")

    def event(self) -> dp_accounting.DpEvent:
        g = dp_accounting.GaussianDpEvent(self.z)
        one = g if self.q == 1.0 else dp_accounting.PoissonSampledDpEvent(self.q, g)
        return dp_accounting.SelfComposedDpEvent(one, self.n)


def epsilon(comp: Composition, delta: float, accountant: AccountantName = "rdp",
            orders: tuple[float, ...] = RDP_ORDERS) -> float:
    """epsilon(delta) of ``comp`` with dp-accounting's RDP or PLD accountant (0 for n = 0).

    ``orders``: the RDP orders (the cross-checks use the integer orders of the reference series)."""
    if not 0 < delta < 1:
        raise AccountingError(f"delta must be in (0, 1), got {delta}")
    if comp.n == 0:
        return 0.0
    if accountant == "rdp":
        acc = rdp.RdpAccountant(list(orders))
    elif accountant == "pld":
        acc = pld.PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    else:
        raise AccountingError(f"accountant must be 'rdp' or 'pld', got {accountant!r}")
    acc.compose(comp.event())
    return float(acc.get_epsilon(delta))


def calibrate_z(target_epsilon: float, delta: float, q: float, n: int, accountant: AccountantName = "rdp",
                *, z_lo: float = 0.05, z_hi: float = 1e4, rel_tol: float = 1e-4) -> float:
    """Smallest z (within ``rel_tol``) with epsilon(z, q, n) <= target_epsilon, by bisection on log z."""
    if target_epsilon <= 0:
        raise AccountingError(f"target epsilon must be positive, got {target_epsilon}")
    if n < 1:
        raise AccountingError(f"need at least one composition, got {n}")
    f = lambda z: epsilon(Composition(z, q, n), delta, accountant)  # noqa: E731
    if accountant == "pld":
        # PLD is tighter than RDP: the RDP solution brackets it from above; PLD calls are the slow ones
        z_hi = calibrate_z(target_epsilon, delta, q, n, "rdp", z_lo=z_lo, z_hi=z_hi, rel_tol=rel_tol)
        z_lo = max(z_lo, 0.5 * z_hi)
        rel_tol = max(rel_tol, 1e-3)
    if f(z_hi) > target_epsilon:
        raise AccountingError(f"even z = {z_hi:g} gives epsilon {f(z_hi):.3g} > {target_epsilon:g}: "
                              "the target is unreachable (raise delta or the target)")
    if f(z_lo) <= target_epsilon:
        return z_lo
    lo, hi = math.log(z_lo), math.log(z_hi)
    while hi - lo > rel_tol:
        mid = 0.5 * (lo + hi)
        if f(math.exp(mid)) <= target_epsilon:
            hi = mid
        else:
            lo = mid
    return math.exp(hi)
