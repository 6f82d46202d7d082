"""One-run privacy audit (Steinke, Nasr & Jagielski 2023, "Privacy auditing with one (1) training run").

m canaries (test-split images with a random wrong label) are each inserted into the training set
independently with probability 1/2. After training, a canary's score is minus its loss under the
canary label; the auditor guesses "in" for the k+ highest scores and "out" for the k- lowest (k+ and k-
fixed before training). With r guesses and v correct, an (eps, delta)-DP training satisfies
P[v >= V] <= P[Binomial(r, e^eps / (1 + e^eps)) >= V] + 2 m delta alpha_V (their Theorem 3.1 and
Algorithm 1), so every eps whose p-value is below 1 - confidence is rejected; ``eps_lower`` is the
largest rejected eps (a lower bound on the true eps at that confidence).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binom


@dataclass(frozen=True)
class Canaries:
    """Canary images x (m, d) float32, their labels y (m,), and which were inserted (m,) bool."""

    x: np.ndarray
    y: np.ndarray
    included: np.ndarray


def make_canaries(x_pool: np.ndarray, y_pool: np.ndarray, n_classes: int, m: int, seed: int) -> Canaries:
    """m canaries from the pool (the tail of the test split): random wrong labels, inclusion w.p. 1/2."""
    if m > x_pool.shape[0]:
        raise ValueError(f"{m} canaries requested but the pool holds only {x_pool.shape[0]} images")
    rng = np.random.default_rng([seed, 0xCA])
    idx = rng.permutation(x_pool.shape[0])[:m]
    y = (y_pool[idx] + rng.integers(1, n_classes, size=m)) % n_classes
    return Canaries(x_pool[idx].astype(np.float32), y.astype(y_pool.dtype), rng.random(m) < 0.5)


def p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """P-value of >= v correct guesses out of r, m canaries, under (eps, delta)-DP (Steinke et al.)."""
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, got v={v}, r={r}, m={m}")
    q = 1.0 / (1.0 + math.exp(-eps))
    beta = float(binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    alpha = 0.0
    if delta > 0 and v > 0:
        pmf = binom.pmf(np.arange(v - 1, -1, -1), r, q)  # pmf(v-1), pmf(v-2), ..., pmf(0)
        sums = np.cumsum(pmf) / np.arange(1, v + 1)
        alpha = float(sums.max())
    return min(beta + alpha * delta * 2 * m, 1.0)


def eps_lower_bound(m: int, r: int, v: int, delta: float, confidence: float = 0.95) -> float:
    """Largest eps rejected at ``confidence`` (0 when even eps = 0 is not rejected)."""
    p = 1.0 - confidence
    if p_value(m, r, v, 0.0, delta) >= p:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < p:
        lo, hi = hi, 2 * hi
        if hi > 200:
            return lo
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if p_value(m, r, v, mid, delta) < p:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class AuditResult:
    m: int
    k_pos: int
    k_neg: int
    guesses: int
    correct: int
    eps_lower: float
    confidence: float
    delta: float

    def as_dict(self) -> dict:
        return asdict(self)


def audit(scores: np.ndarray, included: np.ndarray, delta: float, k_pos: int, k_neg: int,
          confidence: float = 0.95) -> AuditResult:
    """Guess 'in' for the k_pos highest scores, 'out' for the k_neg lowest; bound eps from below."""
    scores = np.asarray(scores, dtype=np.float64)
    included = np.asarray(included, dtype=bool)
    m = scores.shape[0]
    if k_pos + k_neg > m:
        raise ValueError(f"k_pos + k_neg = {k_pos + k_neg} exceeds the {m} canaries")
    order = np.argsort(-scores, kind="stable")
    correct = int(included[order[:k_pos]].sum()) + int((~included[order[m - k_neg:]]).sum() if k_neg else 0)
    r = k_pos + k_neg
    return AuditResult(m, k_pos, k_neg, r, correct, eps_lower_bound(m, r, correct, delta, confidence),
                       confidence, delta)
