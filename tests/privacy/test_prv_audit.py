"""The one-run audit bound (Steinke, Nasr & Jagielski 2023) against direct binomial computations."""

import math

import numpy as np
import pytest
from scipy.stats import binom

from host.privacy import audit as au


def test_p_value_without_delta_is_the_binomial_tail():
    m, r, v, eps = 1000, 200, 130, 0.5
    q = math.exp(eps) / (1 + math.exp(eps))
    assert au.p_value(m, r, v, eps, 0.0) == pytest.approx(sum(binom.pmf(k, r, q) for k in range(v, r + 1)))


def test_delta_only_loosens():
    assert au.p_value(1000, 200, 130, 0.5, 1e-5) >= au.p_value(1000, 200, 130, 0.5, 0.0)


def test_eps_lower_is_the_rejection_boundary():
    m, r, v = 1000, 200, 150
    e = au.eps_lower_bound(m, r, v, 1e-5)
    assert e > 0
    assert au.p_value(m, r, v, e, 1e-5) < 0.05 <= au.p_value(m, r, v, e + 0.01, 1e-5)


def test_perfect_guesses_give_a_large_bound_and_chance_gives_none():
    assert au.eps_lower_bound(1000, 200, 200, 0.0) > 3.0  # 200/200 correct: (1/(1+e^-eps))^200 < 0.05
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    res = au.audit(rng.standard_normal(1000), included, 1e-5, 100, 100)
    assert res.eps_lower == 0.0


def test_audit_counts_correct_guesses():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    inc = np.array([True, True, False, False, True, False])
    res = au.audit(scores, inc, 0.0, 2, 2)
    assert (res.guesses, res.correct) == (4, 3)  # top 2 both in; bottom 2: one in (wrong), one out
    with pytest.raises(ValueError, match="exceeds"):
        au.audit(scores, inc, 0.0, 4, 4)


def test_canaries_have_wrong_labels_and_half_inclusion():
    x = np.zeros((5000, 3), np.float32)
    y = np.arange(5000) % 10
    c = au.make_canaries(x, y, 10, 2000, seed=1)
    assert c.x.shape == (2000, 3)
    assert abs(c.included.mean() - 0.5) < 4 * 0.5 / math.sqrt(2000)
