"""The privacy plan's arithmetic (host/privacy/plan.py) against its closed forms: compositions and
sampling rate, sigma = z Delta / sqrt(b_agg), the host top-up sqrt(sigma^2 - sigma_min^2), the device's
variance share, the refusals; z itself is checked against the accountant's epsilon (written from
mutation testing: the plan was exercised only by the slow training tests)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from host.privacy.accountant import Composition, epsilon
from host.privacy.config import PrivacyConfig
from host.privacy.plan import PlanRefused, make_plan

N, B, EPOCHS = 60_000, 128, 3


def _plan(cfg, smin, **kw):
    args = dict(n_train=N, batch_size=B, epochs=EPOCHS, delta_v=1.5, top_scale_c=0.5, sigma_min=smin,
                credit_device=True, optical=True, sensitivity=2.0)
    args.update(kw)
    return make_plan(cfg, **args)


@pytest.mark.parametrize(("composition", "aggregation", "neighbouring"), [
    ("epoch", "batch", "replace_one"), ("epoch", "sample", "replace_one"),
    ("poisson", "sample", "add_remove"),  # Poisson sampling: add/remove neighbours, per-sample noise
])
def test_plan_arithmetic(composition, aggregation, neighbouring):
    cfg = PrivacyConfig(epsilon=8.0, composition=composition, aggregation=aggregation,
                        neighbouring=neighbouring)
    smin = np.array([0.0, 0.01, 0.02, 1e3])  # one output whose floor already exceeds sigma
    p = _plan(cfg, smin)
    steps = N // B
    n, q = (EPOCHS, 1.0) if composition == "epoch" else (EPOCHS * steps, B / N)
    b_agg = B if aggregation == "batch" else 1
    assert (p.steps_per_epoch, p.compositions, p.q, p.b_agg) == (steps, n, q, b_agg)
    # z is the accountant's: the target (times its margin) holds, 2 % less noise would break it
    assert epsilon(Composition(p.z, q, n), cfg.delta, "rdp") <= 0.99 * 8.0 + 1e-9
    assert epsilon(Composition(0.98 * p.z, q, n), cfg.delta, "rdp") > 0.99 * 8.0
    sigma = p.z * 2.0 / math.sqrt(b_agg)
    assert p.sigma == pytest.approx(sigma, rel=1e-12)
    assert p.host_sigma_max == pytest.approx(sigma, rel=1e-12)  # the output with no device floor
    share = np.mean(np.minimum(smin, sigma) ** 2) / sigma**2
    assert p.device_variance_share == pytest.approx(share, rel=1e-12)
    assert (p.sigma_min_min, p.sigma_min_median, p.sigma_min_max) == (0.0, 0.015, 1e3)
    assert p.noise_source == "device (certified floor) + host Gaussian top-up"
    assert p.epsilon_after(EPOCHS) == pytest.approx(epsilon(Composition(p.z, q, n), cfg.delta, "rdp"))
    assert p.epsilon_after(1) < p.epsilon_after(EPOCHS)


def test_host_top_up_and_noise_sources():
    cfg = PrivacyConfig(epsilon=8.0)
    base = _plan(cfg, np.zeros(3))
    sigma = base.sigma
    assert base.noise_source == "host Gaussian only" and base.device_variance_share == 0.0
    part = _plan(cfg, np.array([0.6, 0.8, 0.7]) * sigma)
    assert part.host_sigma_max == pytest.approx(math.sqrt(sigma**2 - (0.6 * sigma) ** 2), rel=1e-9)
    full = _plan(cfg, np.full(3, 2.0) * sigma)
    assert full.host_sigma_max == 0.0 and full.noise_source == "device only"
    assert full.device_variance_share == pytest.approx(1.0)
    # a resumed run keeps its z
    kept = _plan(cfg, np.zeros(3), z_fixed=1.234)
    assert kept.z == 1.234 and kept.sigma == pytest.approx(1.234 * 2.0 / math.sqrt(B))


def test_refusals_say_what_to_change():
    with pytest.raises(PlanRefused, match=r"^delta = 0.0001 is not below 1/N = 1.67e-05"):
        _plan(PrivacyConfig(epsilon=8.0, delta=1e-4), np.zeros(2))
    no_host = PrivacyConfig(epsilon=8.0, host_noise=False)
    with pytest.raises(PlanRefused, match=r"certified noise .* is below the sigma"):
        _plan(no_host, np.zeros(2))
    assert _plan(no_host, np.full(2, 1e3)).noise_source == "device only"  # enough device noise
