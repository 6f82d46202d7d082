"""Fast unit tests of host/privacy against closed forms, brute force and hand-made devices (written from
mutation testing: the session, the certification's camera parameters, the audit run and the plan's text
were reached only by the slow end-to-end training tests).

The devices here are stand-ins with a known matrix and known (or zero) noise, so every expected value is
computed from the parameters the test chose, not from what the code returned."""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings
from types import SimpleNamespace

import dp_accounting
import jax
import numpy as np
import pytest
from scipy.stats import binom, chi2, norm

import opu
from host.privacy import accountant as acc
from host.privacy import audit as au
from host.privacy import audit_run
from host.privacy import certify as ce
from host.privacy import rdp_reference as ref
from host.privacy import session as se
from host.privacy.config import PrivacyConfig
from host.privacy.mechanism import (
    EpochNoise,
    NoiseShortfall,
    PrivateFeedback,
    encode_error,
    feedback_bound,
    sensitivity,
)
from host.privacy.plan import PlanRefused, make_plan
from host.train import FeedbackConfig
from host.train.data import Dataset
from host.train.feedback import DigitalFeedback
from host.train.models import mlp

DELTA = 1e-5


# ------------------------------------------------------------------------------------------------ helpers
def _brute_bound(a: np.ndarray, neighbouring: str) -> float:
    """max ||A (t - t')|| (replace-one) or max ||A t|| (add/remove) over the encoding's support, by hand."""
    c = a.shape[1]
    vals = [np.zeros(c)] + [np.eye(c)[j] - np.eye(c)[k] for j in range(c) for k in range(c) if j != k]
    if neighbouring == "add_remove":
        return max(float(np.linalg.norm(a @ s)) for s in vals)
    return max(float(np.linalg.norm(a @ (s - t))) for s, t in itertools.product(vals, vals))


_MU_GRID = np.linspace(0.0, 1.0, 41)[:-1]  # the offsets the floor minimises over


def _g_ref(v: float, mu_grid=_MU_GRID) -> float:
    """min over the offsets mu of Var(round(N(mu, v))), summed over +-80 bins (no truncation); above 4 DN^2
    the variance v itself (the conservative Sheppard floor, v + 1/12 less terms below 1e-30)."""
    if v > 4.0:
        return v
    s = math.sqrt(v)
    best = math.inf
    k = np.arange(-80, 81, dtype=np.float64)
    for mu in mu_grid:
        p = norm.cdf((k + 0.5 - mu) / s) - norm.cdf((k - 0.5 - mu) / s)
        m1 = float((p * k).sum())
        best = min(best, float((p * k * k).sum()) - m1 * m1)
    return best


class FakeDevice:
    """A device stand-in: ``linear_transform`` returns x A^T plus Gaussian noise of std ``noise`` (and,
    when asked, warnings); ``acquire`` returns ``dark`` frames; identity, settings and the simulator's
    camera configuration are what camera_noise reads."""

    def __init__(self, a=None, noise=0.0, *, camera=None, gain_db=0.0, simulated=True, n_features=12,
                 seed=0, saturation_warnings=0, other_warnings=0, offsets=None, dark=None):
        self.a = None if a is None else np.asarray(a, dtype=np.float64)
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.settings = SimpleNamespace(analog_gain_db=gain_db)
        self.identity = SimpleNamespace(is_simulated=simulated)
        self.camera = camera
        self.n_features = n_features
        self.saturation_warnings = saturation_warnings
        self.other_warnings = other_warnings
        self.offsets = offsets  # callable(x) -> added to x A^T (deterministic spread)
        self.dark = dark
        self.calls: list[dict] = []
        self.outputs: list[np.ndarray] = []
        self.acquired: list[np.ndarray] = []

    def sim_config(self):
        return SimpleNamespace(camera=self.camera)

    def linear_transform(self, x, scheme="anchor", precision=8, share_repeats=False, dtype=None):
        x = np.asarray(x, dtype=np.float64)
        self.calls.append({"x": x.copy(), "scheme": scheme, "precision": precision,
                           "share_repeats": share_repeats})
        for _ in range(self.saturation_warnings):
            warnings.warn("frame at the ADC maximum", opu.SaturationWarning, stacklevel=2)
        for _ in range(self.other_warnings):
            warnings.warn("something else", UserWarning, stacklevel=2)
        y = x @ self.a.T
        if self.noise:
            y = y + self.noise * self.rng.standard_normal(y.shape)
        if self.offsets is not None:
            y = y + self.offsets(x)
        self.outputs.append(y)
        return y

    def acquire(self, patterns):
        patterns = np.asarray(patterns)
        self.acquired.append(patterns.copy())
        return self.dark


def _optical_inner(dev, cal=None, fb_cfg=None):
    """What PrivateFeedback needs of an OpticalFeedback: device, cfg, begin_epoch, _projector()."""
    inner = SimpleNamespace(device=dev, cfg=fb_cfg or FeedbackConfig(), epochs=0)

    def begin_epoch():
        inner.epochs += 1

    inner.begin_epoch = begin_epoch
    inner._projector = lambda: SimpleNamespace(calibration=cal)
    return inner


def _closed_form_floor(cal, k, rn_dn, rho):
    """docs/privacy.md section 3: sqrt(sigma_r^2 + K rho ref / 4) scale / sqrt(ref), no shot term if weak."""
    ref_dn = np.asarray(cal.reference_dn, dtype=np.float64)
    shot = np.where(cal.weak_outputs, 0.0, k * rho * ref_dn / 4.0)
    return np.sqrt(rn_dn**2 + shot) * cal.scale / np.sqrt(ref_dn)


# ============================================================================================ accountant
def test_composition_rejects_bad_values_with_their_message():
    for z in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(acc.AccountingError,
                           match=r"^noise multiplier z must be positive and finite, got "):
            acc.Composition(z, 1.0, 1)
    for q in (0.0, -0.1, 1.0000001):
        with pytest.raises(acc.AccountingError, match=r"^sampling rate q must be in \(0, 1\], got "):
            acc.Composition(1.0, q, 1)
    with pytest.raises(acc.AccountingError, match=r"^number of compositions must be >= 0, got -1$"):
        acc.Composition(1.0, 1.0, -1)
    # the limits themselves are valid
    assert acc.Composition(1e-9, 1.0, 0).n == 0
    assert acc.Composition(1.0, 1e-9, 3).q == 1e-9


def test_composition_events_are_the_documented_dp_events():
    assert acc.Composition(1.5, 1.0, 7).event() == dp_accounting.SelfComposedDpEvent(
        dp_accounting.GaussianDpEvent(1.5), 7)
    assert acc.Composition(1.5, 0.01, 7).event() == dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.5)), 7)


def test_epsilon_rdp_single_order_is_the_closed_form_conversion():
    # one order alpha: eps = n alpha / (2 z^2) + log(1 - 1/alpha) - (log delta + log alpha) / (alpha - 1)
    for z, n, a in ((2.0, 5, 2.0), (3.0, 10, 8.0), (1.2, 1, 3.5)):
        want = n * a / (2 * z * z) + math.log1p(-1 / a) - (math.log(DELTA) + math.log(a)) / (a - 1)
        got = acc.epsilon(acc.Composition(z, 1.0, n), DELTA, "rdp", orders=(a,))
        assert got == pytest.approx(want, rel=1e-10)
    # the default grid: the reference conversion over the same orders
    z, n = 2.5, 4
    want = ref.epsilon_from_rdp(n * ref.gaussian_rdp(z, acc.RDP_ORDERS), acc.RDP_ORDERS, DELTA)[0]
    assert acc.epsilon(acc.Composition(z, 1.0, n), DELTA) == pytest.approx(want, rel=1e-10)


def _analytic_gaussian_eps(z: float, delta: float) -> float:
    """Balle & Wang 2018: the exact eps(delta) of one Gaussian mechanism, sensitivity 1, std z."""
    def d(eps):
        return norm.cdf(-eps * z + 0.5 / z) - math.exp(eps) * norm.cdf(-eps * z - 0.5 / z)
    lo, hi = 0.0, 100.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if d(mid) > delta else (lo, mid)
    return hi


def test_epsilon_pld_is_the_exact_gaussian_curve_within_the_discretisation():
    # n Gaussian(z) mechanisms compose into one Gaussian(z / sqrt(n)): PLD must give its exact eps (from
    # above, within the 1e-4 discretisation), and ask for the accountant by name
    z, n = 3.0, 4
    exact = _analytic_gaussian_eps(z / math.sqrt(n), DELTA)
    got = acc.epsilon(acc.Composition(z, 1.0, n), DELTA, "pld")
    assert exact - 1e-9 <= got <= exact + 2e-3
    with pytest.raises(acc.AccountingError, match=r"^accountant must be 'rdp' or 'pld', got 'RDP'$"):
        acc.epsilon(acc.Composition(z, 1.0, n), DELTA, "RDP")
    for d in (0.0, 1.0, -1e-5):
        with pytest.raises(acc.AccountingError, match=r"^delta must be in \(0, 1\), got "):
            acc.epsilon(acc.Composition(z, 1.0, n), d)
    assert acc.epsilon(acc.Composition(z, 1.0, 0), DELTA, "pld") == 0.0


def test_calibrate_z_is_the_smallest_z_within_rel_tol():
    # bisection on log z stops when hi - lo <= rel_tol: eps(z) <= target < eps(z e^-rel_tol)
    for target, q, n in ((2.0, 1.0, 3), (5.0, 0.02, 200)):
        z = acc.calibrate_z(target, DELTA, q, n)
        assert acc.epsilon(acc.Composition(z, q, n), DELTA) <= target
        assert acc.epsilon(acc.Composition(z * math.exp(-1e-4), q, n), DELTA) > target
        coarse = acc.calibrate_z(target, DELTA, q, n, rel_tol=0.05)
        assert z <= coarse <= z * math.exp(0.05)
        assert acc.epsilon(acc.Composition(coarse * math.exp(-0.05), q, n), DELTA) > target


def test_calibrate_z_pld_is_bracketed_by_rdp(monkeypatch):
    # PLD calls are the slow ones: the RDP solution brackets the PLD one from above, within a factor 2,
    # and the bisection stops at 1e-3: about log2(log(2) / 1e-3) = 10 PLD calls, plus the two ends
    calls = []
    real = acc.pld.PLDAccountant

    def counting(*a, **kw):
        calls.append(kw)
        return real(*a, **kw)

    monkeypatch.setattr(acc.pld, "PLDAccountant", counting)
    target, n = 3.0, 10
    z = acc.calibrate_z(target, DELTA, 1.0, n, "pld")
    assert len(calls) <= 12
    assert calls[0] == {"value_discretization_interval": 1e-4}
    z_rdp = acc.calibrate_z(target, DELTA, 1.0, n, "rdp")
    assert 0.5 * z_rdp <= z <= z_rdp
    assert acc.epsilon(acc.Composition(z, 1.0, n), DELTA, "pld") <= target
    assert acc.epsilon(acc.Composition(z * math.exp(-1e-3), 1.0, n), DELTA, "pld") > target
    # the RDP bracket honours the caller's range
    with pytest.raises(acc.AccountingError, match=r"^even z = 5 gives epsilon "):
        acc.calibrate_z(0.5, DELTA, 1.0, 10, "pld", z_hi=5.0)


def test_calibrate_z_limits_and_refusals():
    # a target every z in the range meets: the lower end itself
    assert acc.calibrate_z(1e4, DELTA, 1.0, 1) == 0.05
    assert acc.calibrate_z(1e4, DELTA, 1.0, 1, z_lo=0.3) == 0.3
    with pytest.raises(acc.AccountingError, match=r"^even z = 10000 gives epsilon .* > 1e-06: the target is "
                       r"unreachable \(raise delta or the target\)$"):
        acc.calibrate_z(1e-6, DELTA, 1.0, 1000)
    with pytest.raises(acc.AccountingError, match=r"^even z = 5 gives epsilon "):
        acc.calibrate_z(0.5, DELTA, 1.0, 10, z_hi=5.0)
    with pytest.raises(acc.AccountingError, match=r"^target epsilon must be positive, got 0$"):
        acc.calibrate_z(0, DELTA, 1.0, 3)
    with pytest.raises(acc.AccountingError, match=r"^need at least one composition, got 0$"):
        acc.calibrate_z(1.0, DELTA, 1.0, 0)


# ============================================================================================== mechanism
def test_encoding_of_deterministic_errors():
    # p_y = 1: never fires (t = 0); p_y = 0 with all mass on class j: always 1_j - 1_y
    rng = np.random.default_rng(5)
    c = 4
    y = np.array([0, 1, 2, 3, 0])
    p = np.eye(c)[y].copy()
    p[4] = np.eye(c)[2]  # sample 4: all mass on the wrong class 2
    t = encode_error(p - np.eye(c)[y], y, rng)
    want = np.zeros((5, c))
    want[4, 2], want[4, 0] = 1.0, -1.0
    np.testing.assert_array_equal(t, want)


def test_encoding_draws_each_wrong_class_in_proportion():
    # p = (0.1, 0.2, 0.3, 0.4), y = 0: fires w.p. 0.9, picks j w.p. p_j (E[t] = e)
    rng = np.random.default_rng(11)
    n, c = 40_000, 4
    p = np.tile([0.1, 0.2, 0.3, 0.4], (n, 1))
    y = np.zeros(n, int)
    t = encode_error(p - np.eye(c)[y], y, rng)
    fired = t[:, 0] == -1.0
    for j, pj in ((1, 0.2), (2, 0.3), (3, 0.4)):
        frac = float((t[:, j] == 1.0).mean())
        assert abs(frac - pj) < 5 * math.sqrt(pj * (1 - pj) / n)
    assert abs(fired.mean() - 0.9) < 5 * math.sqrt(0.09 / n)
    assert (np.abs(t).sum(1)[fired] == 2).all() and (t[~fired] == 0).all()


def test_feedback_bound_adds_the_column_error_by_the_l1_norm():
    a = np.random.default_rng(2).standard_normal((7, 3))
    for neighbouring, l1 in (("replace_one", 4.0), ("add_remove", 2.0)):
        want = _brute_bound(a, neighbouring) + l1 * 0.25
        assert feedback_bound(a, neighbouring, 0.25) == pytest.approx(want, rel=1e-12)
    assert sensitivity(3.0, 2.0, "add_remove") == pytest.approx(math.sqrt(9 + 2 * 4))
    assert sensitivity(3.0, 2.0, "replace_one") == pytest.approx(math.sqrt(9 + 8 * 4))


def test_epoch_noise_device_variance_share():
    smin = np.array([1.0, 3.0])
    assert EpochNoise(1.0, 1.0, 2.0, smin, np.zeros(2)).device_variance_share == pytest.approx(10 / 2 / 4)
    assert EpochNoise(1.0, 1.0, 0.5, np.array([0.5]), np.zeros(1)).device_variance_share == pytest.approx(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0
        assert EpochNoise(1.0, 1.0, 0.0, np.zeros(2), np.zeros(2)).device_variance_share == 0.0


def test_private_feedback_wiring_and_credit():
    cfg = PrivacyConfig(epsilon=3.0, top_scale=1.5)
    digital = DigitalFeedback(jax.random.PRNGKey(0), 9, 3)
    cam = ce.CameraNoise(0.5, 2.0, "test", quantised=False)
    pf = PrivateFeedback(digital, cfg, 9, 3, camera=cam, credit_device=True)
    assert not pf.optical and not pf.credit_device  # nothing to credit on the host
    assert pf.c == pytest.approx(1.5 * 3.0) and pf.m == 9 and pf.n_classes == 3
    assert pf.z is None and pf.b_agg == 1 and pf.noise is None and pf.history == []
    assert pf.saturation_warnings == 0 and pf.camera is cam and pf.inner is digital and pf.cfg is cfg
    dev = FakeDevice(np.ones((9, 3)))
    assert not PrivateFeedback(_optical_inner(dev), cfg, 9, 3, camera=None, credit_device=True).credit_device
    assert not PrivateFeedback(_optical_inner(dev), cfg, 9, 3, camera=cam).credit_device
    opt = PrivateFeedback(_optical_inner(dev), cfg, 9, 3, camera=cam, credit_device=True)
    assert opt.optical and opt.credit_device is True
    with pytest.raises(RuntimeError, match=r"^PrivateFeedback needs the plan's noise multiplier "
                       r"\(set_noise_multiplier\)$"):
        pf.begin_epoch()
    with pytest.raises(RuntimeError, match=r"^call begin_epoch\(\) before project\(\)$"):
        pf.project(np.zeros((1, 3)), np.zeros(1, int), np.random.default_rng(0))


def test_digital_epoch_noise_is_z_delta_over_sqrt_b():
    m, c = 5, 3
    inner = DigitalFeedback(jax.random.PRNGKey(4), m, c)
    a = np.asarray(inner.matrix, np.float64)
    for neighbouring in ("replace_one", "add_remove"):
        cfg = PrivacyConfig(epsilon=3.0, neighbouring=neighbouring, top_scale=0.7)
        pf = PrivateFeedback(inner, cfg, m, c)
        dv, smin = pf.measure()
        assert dv == pytest.approx(_brute_bound(a, neighbouring), rel=1e-6)
        np.testing.assert_array_equal(smin, np.zeros(m))
        pf.set_noise_multiplier(1.7, 25)
        assert (pf.z, pf.b_agg) == (1.7, 25)
        n1 = pf.begin_epoch()
        n2 = pf.begin_epoch()
        c_top = 0.7 * math.sqrt(m)
        e_part = 2 * math.sqrt(2) if neighbouring == "replace_one" else math.sqrt(2)
        delta = math.sqrt(dv**2 + (c_top * e_part) ** 2)
        assert n1.delta_v == dv and n1.sensitivity == pytest.approx(delta, rel=1e-12)
        assert n1.sigma == pytest.approx(1.7 * delta / 5.0, rel=1e-12)
        np.testing.assert_allclose(n1.host_sigma, np.full(m, n1.sigma), rtol=1e-12)
        assert pf.history == [n1, n2] and pf.noise is n2


def test_digital_epoch_without_host_noise_falls_short():
    m, c = 4, 3
    inner = DigitalFeedback(jax.random.PRNGKey(1), m, c)
    pf = PrivateFeedback(inner, PrivacyConfig(epsilon=3.0, host_noise=False), m, c)
    pf.set_noise_multiplier(2.0, 1)
    dv = _brute_bound(np.asarray(inner.matrix, np.float64), "replace_one")
    sigma = 2.0 * math.sqrt(dv**2 + 8 * (0.5 * 2.0) ** 2)
    msg = (f"host noise is off and the device's certified noise (min sigma_min 0) is below the needed sigma "
           f"{sigma:.3g} this epoch")
    with pytest.raises(NoiseShortfall, match="^" + re.escape(msg) + "$"):
        pf.begin_epoch()


def _spread(r, c, m, scale):
    """A deterministic repeat-to-repeat spread: repeat i of unit vector j gets +-scale (k+1) alternately."""
    def offsets(x):
        n = x.shape[0]
        sign = np.where((np.arange(n) // c) % 2 == 0, 1.0, -1.0)[:, None]
        return sign * scale * (np.arange(m) + 1.0)[None, :]
    return offsets


@pytest.mark.parametrize("neighbouring", ["replace_one", "add_remove"])
def test_optical_measure_estimates_the_matrix_and_its_error(neighbouring):
    m, c, r = 6, 3, 4
    a = np.random.default_rng(7).standard_normal((m, c)) * 3
    dev = FakeDevice(a, offsets=_spread(r, c, m, 0.01))
    fbc = FeedbackConfig(scheme="complement", precision=5, share_repeats=True)
    cfg = PrivacyConfig(epsilon=3.0, neighbouring=neighbouring, sensitivity_repeats=r, sensitivity_margin=0.1)
    pf = PrivateFeedback(_optical_inner(dev, fb_cfg=fbc), cfg, m, c)
    dv, smin = pf.measure()
    call = dev.calls[-1]
    np.testing.assert_array_equal(call["x"], np.tile(np.eye(c), (r, 1)))
    assert (call["scheme"], call["precision"], call["share_repeats"]) == ("complement", 5, False)
    # repeats alternate +-0.01 (k+1) around A: the mean is A, the sample variance of output k is
    # 0.01^2 (k+1)^2 r / (r - 1), the standard error of column j the norm of those over k over sqrt(r)
    se_norm = math.sqrt(sum((0.01 * (k + 1)) ** 2 * r / (r - 1) / r for k in range(m)))
    l1 = 4.0 if neighbouring == "replace_one" else 2.0
    want = (_brute_bound(a, neighbouring) + l1 * 3.0 * se_norm) * 1.1
    assert dv == pytest.approx(want, rel=1e-9)
    np.testing.assert_array_equal(smin, np.zeros(m))  # not credited


def test_optical_measure_credits_the_certified_floor():
    m, c = 5, 3
    cal = opu.LinearCalibration(np.full(m, 40.0), np.array([10.0, 20.0, 40.0, 80.0, 160.0]), 1.3, 16,
                                np.array([False, False, True, False, False]))
    cam = ce.CameraNoise(0.5, 3.0, "test", quantised=False)  # read noise 1.5 DN
    dev = FakeDevice(np.ones((m, c)))
    cfg = PrivacyConfig(epsilon=3.0, reference_safety=0.8)
    pf = PrivateFeedback(_optical_inner(dev, cal), cfg, m, c, camera=cam, credit_device=True)
    _, smin = pf.measure()
    np.testing.assert_allclose(smin, _closed_form_floor(cal, 0.5, 1.5, 0.8), rtol=1e-12)
    # host noise tops the floor up to sigma, output by output
    pf.set_noise_multiplier(1.0, 1)
    noise = pf.begin_epoch()
    assert pf.inner.epochs == 1
    sigma = math.sqrt(8) * 0.5 * math.sqrt(m)  # the columns of A are equal: Delta_v = 0
    assert noise.sigma == pytest.approx(sigma, rel=1e-12) and sigma > smin.max()
    np.testing.assert_allclose(noise.host_sigma, [math.sqrt(sigma**2 - s**2) for s in smin], rtol=1e-12)
    np.testing.assert_allclose(noise.sigma_min, smin, rtol=1e-12)
    assert noise.device_variance_share == pytest.approx(np.mean(smin**2) / sigma**2, rel=1e-12)
    pf.set_noise_multiplier(1e-3, 1)
    noise = pf.begin_epoch()
    assert noise.sigma < smin.min()  # tiny z: the device alone is enough
    np.testing.assert_array_equal(noise.host_sigma, np.zeros(m))
    # so host noise may be off
    off = PrivateFeedback(_optical_inner(dev, cal), PrivacyConfig(epsilon=3.0, host_noise=False,
                          reference_safety=0.8), m, c, camera=cam, credit_device=True)
    off.set_noise_multiplier(1e-3, 1)
    assert off.begin_epoch().host_sigma.max() == 0.0


def test_optical_project_sends_the_encoding_and_adds_host_noise():
    m, c, b = 4, 3, 6000
    a = np.arange(m * c, dtype=np.float64).reshape(m, c) / 5.0
    dev = FakeDevice(a, saturation_warnings=2, other_warnings=1)
    fbc = FeedbackConfig(scheme="complement", precision=3, share_repeats=True)  # the feedback's own setting
    pf = PrivateFeedback(_optical_inner(dev, fb_cfg=fbc), PrivacyConfig(epsilon=3.0), m, c)
    host = np.array([0.0, 0.5, 1.0, 2.0])
    pf.noise = EpochNoise(1.0, 2.0, 3.0, np.zeros(m), host)
    y = np.zeros(b, int)
    e = np.tile(np.eye(c)[2] - np.eye(c)[0], (b, 1))  # p = onehot(2), y = 0: t = 1_2 - 1_0 every time
    fb, top = pf.project(e, y, np.random.default_rng(3))
    call = dev.calls[-1]
    np.testing.assert_array_equal(call["x"], e)
    assert (call["scheme"], call["precision"], call["share_repeats"]) == ("complement", 3, True)
    assert pf.saturation_warnings == 2  # the other warning is not a saturation
    pf.project(e[:2], y[:2], np.random.default_rng(4))
    assert pf.saturation_warnings == 4
    assert fb.dtype == np.float32 and top.dtype == np.float32 and fb.shape == (b, m) and top.shape == (b, c)
    signal = a[:, 2] - a[:, 0]
    np.testing.assert_allclose(fb[:, 0], np.full(b, signal[0], np.float32))  # no host noise there
    resid = fb.astype(np.float64) - signal[None, :]
    for k in range(1, m):
        assert abs(resid[:, k].mean()) < 5 * host[k] / math.sqrt(b)
        assert resid[:, k].std() == pytest.approx(host[k], rel=5 / math.sqrt(2 * b))
    # the output layer's error: e plus noise of std sigma / c, c = 0.5 sqrt(m) = 1
    d = top.astype(np.float64) - e
    assert abs(d.mean()) < 5 * 3.0 / math.sqrt(b * c)
    assert d.std() == pytest.approx(3.0 / (0.5 * math.sqrt(m)), rel=5 / math.sqrt(2 * b * c))


def test_digital_project_is_the_matrix_product_plus_noise():
    m, c, b = 3, 3, 4000
    inner = DigitalFeedback(jax.random.PRNGKey(2), m, c)
    a = np.asarray(inner.matrix, np.float64)
    pf = PrivateFeedback(inner, PrivacyConfig(epsilon=3.0, top_scale=2.0), m, c)
    pf.noise = EpochNoise(1.0, 1.0, 0.8, np.zeros(m), np.array([0.0, 0.0, 0.3]))
    y = np.full(b, 1)
    e = np.tile(np.eye(c)[0] - np.eye(c)[1], (b, 1))
    fb, top = pf.project(e, y, np.random.default_rng(9))
    np.testing.assert_allclose(fb[:, :2], np.tile((a[:, 0] - a[:, 1])[:2], (b, 1)), rtol=1e-6)
    assert (fb[:, 2] - (a[2, 0] - a[2, 1])).std() == pytest.approx(0.3, rel=5 / math.sqrt(2 * b))
    assert (top - e).std() == pytest.approx(0.8 / (2.0 * math.sqrt(3)), rel=5 / math.sqrt(2 * b * c))


# ================================================================================================ certify
def _report(tmp_path, k=0.05, k_u=0.004, rn=3.0, rn_u=0.25, gain_db=0.0, drop=None):
    rep = {"photon_transfer": {"system_gain_dn_per_e": {"value": k, "uncertainty": k_u}},
           "dark": {"read_noise_e": {"value": rn, "uncertainty": rn_u}},
           "settings": {"analog_gain_db": gain_db}}
    if drop == "photon_transfer":
        rep[drop] = None
    elif drop:
        del rep[drop]
    p = tmp_path / "calibration.json"
    p.write_text(json.dumps(rep))
    return str(p)


def test_camera_noise_from_a_report_takes_the_lower_two_sigma_end(tmp_path):
    path = _report(tmp_path, gain_db=2.0)
    cam = ce.camera_noise(FakeDevice(gain_db=8.0, simulated=False), path)
    # K rescaled from the report's 2 dB to the device's 8 dB: x 10^(6/20)
    assert cam.gain_dn_per_e == pytest.approx((0.05 - 0.008) * 10 ** (6 / 20), rel=1e-12)
    assert cam.read_noise_e == pytest.approx(2.5, rel=1e-12)
    assert cam.read_noise_dn == pytest.approx(2.5 * (0.05 - 0.008) * 10 ** 0.3, rel=1e-12)
    assert cam.source == f"calibration report {path}" and cam.quantised is True
    # no uncertainty given: the value itself; a lower end below 0 is 0
    cam = ce.camera_noise(FakeDevice(), _report(tmp_path, k_u=None, rn_u=None))
    assert (cam.gain_dn_per_e, cam.read_noise_e) == (0.05, 3.0)
    cam = ce.camera_noise(FakeDevice(), _report(tmp_path, k=0.01, k_u=0.1, rn=1.0, rn_u=2.0))
    assert (cam.gain_dn_per_e, cam.read_noise_e) == (0.0, 0.0)


def test_camera_noise_report_errors_name_what_is_missing(tmp_path):
    dev = FakeDevice()
    for drop, err in (("dark", "'dark'"), ("settings", "'settings'"),
                      ("photon_transfer", "'NoneType' object is not subscriptable")):
        path = _report(tmp_path, drop=drop)
        msg = f"{path} lacks {err} (needs the dark and photon-transfer stages of opu calibrate)"
        with pytest.raises(ce.CertificationError, match="^" + re.escape(msg) + "$"):
            ce.camera_noise(dev, path)
    for kw in (dict(k=None), dict(rn=None)):
        path = _report(tmp_path, **kw)
        msg = f"{path}: K or the read noise was not measured"
        with pytest.raises(ce.CertificationError, match="^" + re.escape(msg) + "$"):
            ce.camera_noise(dev, path)


def test_camera_noise_of_a_simulator_and_of_hardware():
    cam_cfg = opu.CameraConfig(gain_dn_per_e=0.04, analog_gain_db=6.0, read_noise_e=3.0, bit_depth=10)
    cam = ce.camera_noise(FakeDevice(camera=cam_cfg, gain_db=6.0))
    assert cam == ce.CameraNoise(0.04 * 10 ** 0.3, 3.0, "simulator configuration", True)
    ideal = opu.CameraConfig(read_noise_e=2.0, bit_depth=None)
    assert ce.camera_noise(FakeDevice(camera=ideal)) == ce.CameraNoise(0.025, 2.0, "simulator configuration",
                                                                       False)
    quiet = opu.CameraConfig(shot_noise=False, read_noise_e=0.7)
    assert ce.camera_noise(FakeDevice(camera=quiet)) == ce.CameraNoise(
        0.025, 0.7, "simulator configuration (shot noise off)", True)
    silent = opu.CameraConfig(shot_noise=False, read_noise_e=0.0, bit_depth=None)
    assert ce.camera_noise(FakeDevice(camera=silent)) == ce.CameraNoise(
        0.025, 0.0, "simulator configuration (shot noise off)", False)
    with pytest.raises(ce.CertificationError, match=r"^real hardware needs a calibration report for the "
                       r"noise floor: run `opu calibrate` and pass --dp-calibration calibration.json$"):
        ce.camera_noise(FakeDevice(camera=cam_cfg, simulated=False))


def test_quantised_variance_floor_is_its_definition():
    vs = np.array([0.0, 0.019, 0.05, 0.2, 0.5, 1.0, 2.0, 3.5, 4.0])
    got = ce.quantised_variance_floor(vs)
    assert got[0] == 0.0
    for v, g in zip(vs[1:], got[1:], strict=True):
        assert g == pytest.approx(_g_ref(v), abs=3e-7)
    assert got[1] > 1e-4  # ~3e-4 DN^2: credited
    assert got[-1] > 4.05  # at v = 4 the minimum over offsets is still computed (about v + 1/12)
    # above 4 DN^2 the variance itself (Sheppard: v + 1/12 less periodic terms below 1e-30)
    np.testing.assert_array_equal(ce.quantised_variance_floor(np.array([4.5, 9.0, 1e4])), [4.5, 9.0, 1e4])
    # below (0.01 DN)^2: not credited at all
    assert _g_ref(0.012) < 1e-4 and ce.quantised_variance_floor(np.array([0.012]))[0] == 0.0
    # shape is kept
    assert ce.quantised_variance_floor(np.full((2, 3), 0.5)).shape == (2, 3)


def test_sigma_min_defaults_and_the_clip_at_zero():
    ref_dn = np.array([10.0, 40.0, 90.0, 30.0])
    cal = opu.LinearCalibration(np.array([100.0, 8.5, 8.49, 60.0]), ref_dn, 2.0, 16, np.zeros(4, bool))
    cam = ce.CameraNoise(0.25, 8.0, "test", quantised=False)  # read noise 2 DN: credit needs dark >= 8.5
    got = ce.sigma_min_per_output(cal, cam)  # reference_safety 0.5 by default
    want = _closed_form_floor(cal, 0.25, 2.0, 0.5)
    want[2] = 0.0
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[1] > 0


def test_sigma_min_quantised_matches_the_unquantised_floor_above_4_dn2():
    cal = opu.LinearCalibration(np.full(3, 200.0), np.array([16.0, 50.0, 120.0]), 0.9, 16,
                                np.array([False, True, False]))
    rn_e, k = 11.0, 0.25  # 2.75 DN read noise: every frame variance is above 4 DN^2
    q = ce.sigma_min_per_output(cal, ce.CameraNoise(k, rn_e, "test", quantised=True), reference_safety=0.7)
    np.testing.assert_allclose(q, _closed_form_floor(cal, k, rn_e * k, 0.7), rtol=1e-12)


def test_sigma_min_quantised_minimises_over_the_split_of_the_pair_signal():
    ref_dn = np.array([20.0, 80.0])
    cal = opu.LinearCalibration(np.full(2, 50.0), ref_dn, 1.0, 16, np.zeros(2, bool))
    k, rn_dn = 0.1, 0.5
    got = ce.sigma_min_per_output(cal, ce.CameraNoise(k, rn_dn / k, "test"), reference_safety=1.0)
    for i, r in enumerate(ref_dn):
        s = r / 2.0
        pair = min(_g_ref(rn_dn**2 + k * s * f) + _g_ref(rn_dn**2 + k * s * (1 - f))
                   for f in np.linspace(0.0, 0.5, 21))
        assert got[i] == pytest.approx(math.sqrt(pair / 2.0) / math.sqrt(r), rel=1e-6)


def test_noise_check_counts_violations_against_the_allowed_ratio():
    smin = np.array([1.0, 2.0, 0.0, 4.0])
    stds = {"all_off": np.array([0.5, 1.0, 0.1, 1.99]), "all_on": np.array([0.49, 5.0, 0.0, 2.0])}
    chk = ce.NoiseCheck(stds, smin, 32, 0.5, np.array([0.3, 0.2, 0.6]), 0.5)
    # at exactly ratio x floor it is not a violation; all_off: 1.99 < 2.0; all_on: 0.49 < 0.5; dark 0.2 < 0.25
    assert chk.violations == 3
    assert chk.as_dict() == {
        "repeats": 32, "allowed_ratio": 0.5, "credited_outputs": 3, "outputs": 4,
        "sigma_min_median": 1.5, "sigma_min_min": 0.0, "sigma_min_max": 4.0,
        "dark_floor_dn": 0.5, "dark_std_median_dn": 0.3,
        "inputs": {"all_off": {"median_std": pytest.approx(0.75), "min_ratio_to_sigma_min": 0.4975},
                   "all_on": {"median_std": pytest.approx(1.245), "min_ratio_to_sigma_min": 0.49}},
        "violations": 3}
    none = ce.NoiseCheck({"x": np.array([1.0, 2.0])}, np.zeros(2), 8, 0.9, np.array([1.0]), 0.0)
    assert none.violations == 0
    assert none.as_dict()["inputs"] == {"x": {"median_std": 1.5, "min_ratio_to_sigma_min": None}}
    assert none.as_dict()["credited_outputs"] == 0


def test_allowed_ratio_is_the_bonferroni_chi2_quantile():
    for repeats, n_tests, level in ((32, 100, 1e-3), (8, 3, 0.05), (200, 7680, 1e-3)):
        r = ce.allowed_ratio(repeats, n_tests, level)
        dof = repeats - 1
        # P[s / sigma < r] = P[chi2_dof < r^2 dof] for the sample std of `repeats` Gaussians
        assert chi2.cdf(r * r * dof, dof) == pytest.approx(level / n_tests, rel=1e-8)
    assert ce.allowed_ratio(32, 100) == ce.allowed_ratio(32, 100, 1e-3)


def _alternating(n, scale):
    """(n, len(scale)) rows +scale, -scale, ... (n even): sample std (ddof 1) = scale sqrt(n / (n - 1))."""
    return np.where((np.arange(n) % 2 == 0)[:, None], 1.0, -1.0) * np.asarray(scale)[None, :]


def test_measure_noise_projects_the_quiet_inputs_and_reads_dark_frames():
    m, c, n = 3, 4, 16
    a = np.random.default_rng(0).standard_normal((m, c))
    spread = np.array([0.1, 0.2, 0.4])

    def offsets(x):
        return _alternating(x.shape[0], spread) * (1.0 + x.sum(1, keepdims=True) / c)  # all_on: twice as wide

    dark = (100 + _alternating(n, np.array([1.0, 2.0, 3.0, 1.0, 1.0]))).astype(np.uint8)
    dev = FakeDevice(a, offsets=offsets, dark=dark, n_features=5)
    cam = ce.CameraNoise(0.5, 1.0, "test", quantised=True)  # read noise 0.5 DN
    smin = np.array([0.05, 2.0, 0.1])
    chk = ce.measure_noise(dev, c, smin, cam, scheme="complement", precision=4, repeats=n)
    sent = [(k["scheme"], k["precision"], k["share_repeats"]) for k in dev.calls]
    assert sent == [("complement", 4, False)] * 2
    np.testing.assert_array_equal(dev.calls[0]["x"], np.zeros((n, c)))
    np.testing.assert_array_equal(dev.calls[1]["x"], np.ones((n, c)))
    assert dev.acquired[0].dtype == bool and dev.acquired[0].shape == (n, 5) and not dev.acquired[0].any()
    f = math.sqrt(n / (n - 1))
    assert list(chk.inputs) == ["all_off", "all_on"]
    np.testing.assert_allclose(chk.inputs["all_off"], spread * f, rtol=1e-9)
    np.testing.assert_allclose(chk.inputs["all_on"], 2 * spread * f, rtol=1e-9)
    np.testing.assert_allclose(chk.dark_std_dn, np.array([1.0, 2.0, 3.0, 1.0, 1.0]) * f, rtol=1e-12)
    assert chk.sigma_min is smin and chk.repeats == n
    assert chk.dark_floor_dn == pytest.approx(math.sqrt(_g_ref(0.25)), abs=1e-6)
    assert chi2.cdf(chk.allowed_ratio**2 * (n - 1), n - 1) == pytest.approx(1e-3 / (3 * m), rel=1e-8)
    assert 0.3 < chk.allowed_ratio < 0.9
    assert chk.violations == 2  # output 1 of both inputs: 0.2 f and 0.4 f against 2.0
    # an unquantised camera: the dark floor is the read noise itself; the defaults are anchor, 6, 64
    dark64 = (100 + _alternating(64, np.ones(5))).astype(np.uint8)
    dev = FakeDevice(a, offsets=offsets, dark=dark64, n_features=5)
    chk = ce.measure_noise(dev, c, smin, ce.CameraNoise(0.5, 1.0, "test", quantised=False))
    assert chk.dark_floor_dn == 0.5 and chk.repeats == 64
    assert [(k["scheme"], k["precision"], k["x"].shape) for k in dev.calls] == [("anchor", 6, (64, c))] * 2
    with pytest.raises(ce.CertificationError, match=r"^repeats must be >= 8 for a meaningful std, got 7$"):
        ce.measure_noise(dev, c, smin, cam, repeats=7)
    dark8 = (100 + _alternating(8, np.ones(5))).astype(np.uint8)
    assert ce.measure_noise(FakeDevice(a, offsets=offsets, dark=dark8, n_features=5), c, smin, cam,
                            repeats=8).repeats == 8


# ================================================================================================== audit
def _p_value_ref(m, r, v, eps, delta):
    """Steinke, Nasr & Jagielski 2023, Algorithm 1, summed term by term."""
    q = math.exp(eps) / (1 + math.exp(eps))
    pmf = [float(binom.pmf(k, r, q)) for k in range(r + 1)]
    beta = sum(pmf[v:])
    alpha = 0.0
    for i in range(1, v + 1):
        alpha = max(alpha, sum(pmf[v - i:v]) / i)  # P[v - i <= W < v] / i
    return min(1.0, beta + 2 * m * delta * alpha)


def test_p_value_with_delta_is_algorithm_1():
    for m, r, v, eps, delta in ((1000, 200, 130, 0.5, 1e-5), (100, 20, 17, 1.0, 1e-3),
                                (50, 10, 10, 2.0, 1e-4), (10, 10, 1, 0.0, 1e-2)):
        assert au.p_value(m, r, v, eps, delta) == pytest.approx(_p_value_ref(m, r, v, eps, delta), rel=1e-9)
    assert au.p_value(100, 20, 17, 1.0, 0.5) == 1.0  # capped
    assert au.p_value(100, 20, 0, 1.0, 1e-3) == 1.0  # no correct guess: nothing to reject
    assert au.p_value(20, 20, 20, 0.0, 0.0) == pytest.approx(0.5**20)  # v = r = m is allowed
    for m, r, v in ((10, 5, 6), (10, 11, 3), (10, 5, -1)):
        with pytest.raises(ValueError, match=rf"^need 0 <= v <= r <= m, got v={v}, r={r}, m={m}$"):
            au.p_value(m, r, v, 1.0, 1e-5)


def test_eps_lower_bound_boundary_and_confidence():
    m, r, v = 500, 100, 80
    for conf in (0.95, 0.99):
        e = au.eps_lower_bound(m, r, v, 1e-5, conf)
        assert 0 < e < 2.0
        assert au.p_value(m, r, v, e, 1e-5) < 1 - conf <= au.p_value(m, r, v, e + 1e-6, 1e-5)
    assert au.eps_lower_bound(m, r, v, 1e-5, 0.99) < au.eps_lower_bound(m, r, v, 1e-5)
    e = au.eps_lower_bound(1000, 300, 300, 0.0)  # above 2: the bracket doubles twice
    assert e > 4.0 and au.p_value(1000, 300, 300, e, 0.0) < 0.05 <= au.p_value(1000, 300, 300, e + 1e-6, 0.0)
    assert au.eps_lower_bound(m, r, 50, 1e-5) == 0.0


def test_audit_orders_scores_and_counts_both_ends():
    inc = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=np.int64)  # ints, not bools
    scores = np.array([3, 200, 7, 250, 0, 1, 9, 2], dtype=np.uint8)  # unsigned: no wrap-around in the order
    res = au.audit(scores, inc, 1e-5, 3, 2)
    # top 3 scores: 250 (in), 200 (out), 9 (in) -> 2; bottom 2: 0 (out), 1 (out) -> 2
    assert (res.m, res.k_pos, res.k_neg, res.guesses, res.correct) == (8, 3, 2, 5, 4)
    assert res.eps_lower == au.eps_lower_bound(8, 5, 4, 1e-5, 0.95)
    assert (res.confidence, res.delta) == (0.95, 1e-5)
    assert au.audit(scores, inc, 1e-5, 3, 0).correct == 2
    assert au.audit(scores, inc, 1e-5, 0, 2).correct == 2
    assert au.audit(scores, inc, 1e-5, 4, 4, confidence=0.9).confidence == 0.9  # k+ + k- = m is allowed
    with pytest.raises(ValueError, match=r"^k_pos \+ k_neg = 9 exceeds the 8 canaries$"):
        au.audit(scores, inc, 1e-5, 5, 4)
    assert res.as_dict() == {"m": 8, "k_pos": 3, "k_neg": 2, "guesses": 5, "correct": 4,
                             "eps_lower": res.eps_lower, "confidence": 0.95, "delta": 1e-5}


def test_audit_breaks_ties_by_position():
    # all scores equal: the stable order guesses "in" for the first k+ canaries, "out" for the last k-
    n = 600
    inc = np.zeros(n, bool)
    inc[:100] = True
    res = au.audit(np.zeros(n), inc, 0.0, 100, 100)
    assert res.correct == 200
    assert res.eps_lower > 3.0
    # the confidence and delta of the call are the bound's
    strict = au.audit(np.zeros(n), inc, 1e-5, 100, 100, confidence=0.99)
    assert strict.eps_lower == au.eps_lower_bound(n, 200, 200, 1e-5, 0.99)
    assert 0 < strict.eps_lower < au.eps_lower_bound(n, 200, 200, 1e-5, 0.95) < res.eps_lower


def test_make_canaries_relabels_and_includes():
    n_pool, m, c = 400, 300, 3
    x = np.random.default_rng(0).standard_normal((n_pool, 5))
    y = (np.arange(n_pool) % c).astype(np.int32)
    can = au.make_canaries(x, y, c, m, seed=4)
    assert can.x.dtype == np.float32 and can.y.dtype == np.int32 and can.included.dtype == bool
    # each canary is a pool image (no repeats) with a wrong label; both wrong labels occur
    rows = [int(np.flatnonzero((x.astype(np.float32) == xi).all(1))[0]) for xi in can.x]
    assert len(set(rows)) == m
    orig = y[rows]
    assert (can.y != orig).all() and ((can.y >= 0) & (can.y < c)).all()
    shift = (can.y - orig) % c
    assert set(shift.tolist()) == {1, 2}
    assert abs(can.included.mean() - 0.5) < 5 * 0.5 / math.sqrt(m)
    again = au.make_canaries(x, y, c, m, seed=4)
    np.testing.assert_array_equal(again.x, can.x)
    np.testing.assert_array_equal(again.included, can.included)
    assert not np.array_equal(au.make_canaries(x, y, c, m, seed=5).included, can.included)
    assert au.make_canaries(x, y, c, n_pool, seed=1).x.shape == (n_pool, 5)  # the whole pool
    with pytest.raises(ValueError, match=r"^401 canaries requested but the pool holds only 400 images$"):
        au.make_canaries(x, y, c, n_pool + 1, seed=1)


def test_make_canaries_draws_from_its_own_stream():
    # the audit's seed alone fixes the canaries (a resumed audit run draws them again): permutation of the
    # pool, then the label offsets in 1..C-1, then the inclusion coins, from default_rng([seed, 0xCA])
    x = np.arange(40, dtype=np.float64)[:, None] * np.ones((1, 2))
    y = np.arange(40) % 5
    can = au.make_canaries(x, y, 5, 25, seed=77)
    rng = np.random.default_rng([77, 0xCA])
    idx = rng.permutation(40)[:25]
    offset = rng.integers(1, 5, size=25)
    included = rng.random(25) < 0.5
    np.testing.assert_array_equal(can.x[:, 0], idx.astype(np.float32))
    np.testing.assert_array_equal(can.y, (y[idx] + offset) % 5)
    np.testing.assert_array_equal(can.included, included)


# ============================================================================================== audit run
def _fake_train(monkeypatch, final, *, m=30, c=4, d=6, hidden=(5, 7), act="tanh"):
    rng = np.random.default_rng(1)
    pool_x, pool_y = rng.standard_normal((60, d)).astype(np.float32), rng.integers(0, c, 60)
    can = au.make_canaries(pool_x, pool_y, c, m, seed=2)
    params = mlp(hidden, c, act).init(jax.random.PRNGKey(3), d)
    seen = {}

    def train(cfg, out_dir, **kw):
        seen.update(cfg=cfg, out_dir=out_dir, kw=kw)
        return SimpleNamespace(canaries=can, params=params, final=final)

    monkeypatch.setattr("host.train.train", train)
    return can, params, seen


def _scores_by_hand(params, x, y, act="tanh"):
    f = np.tanh if act == "tanh" else (lambda u: np.maximum(u, 0.0))
    h = np.asarray(x, np.float64)
    for layer in params[:-1]:
        h = f(h @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64))
    logits = h @ np.asarray(params[-1]["w"], np.float64) + np.asarray(params[-1]["b"], np.float64)
    mx = logits.max(1, keepdims=True)
    lse = (mx + np.log(np.exp(logits - mx).sum(1, keepdims=True)))[:, 0]
    return -(lse - logits[np.arange(len(y)), y])


def test_run_audit_scores_guesses_and_writes_the_report(monkeypatch, tmp_path):
    final = {"privacy": {"epsilon": 2.5, "epsilon_pld": 2.1}, "test_accuracy": 0.61, "epoch": 3}
    can, params, seen = _fake_train(monkeypatch, final, act="relu")
    cfg = SimpleNamespace(privacy=PrivacyConfig(epsilon=3.0, delta=1e-4, audit_canaries=30), hidden=(5, 7),
                          act="relu", mode="dfa")
    logs = []
    out = audit_run.run_audit(cfg, tmp_path, guess_fraction=0.2, confidence=0.9, log=logs.append, seed_kw=7)
    assert seen["cfg"] is cfg and seen["out_dir"] == tmp_path
    assert seen["kw"] == {"progress": False, "log": logs.append, "seed_kw": 7}
    scores = _scores_by_hand(params, can.x, can.y, "relu")
    got = audit_run.canary_scores(mlp((5, 7), 4, "relu"), params, can)
    assert got.dtype == np.float64 and got.shape == (30,)
    np.testing.assert_allclose(got, scores, rtol=1e-5, atol=1e-6)
    k = 6  # 0.2 x 30 guesses each way
    order = np.argsort(-scores)
    correct = int(can.included[order[:k]].sum() + (~can.included[order[-k:]]).sum())
    assert out["audit"] == {"m": 30, "k_pos": k, "k_neg": k, "guesses": 2 * k, "correct": correct,
                            "eps_lower": au.eps_lower_bound(30, 2 * k, correct, 1e-4, 0.9), "confidence": 0.9,
                            "delta": 1e-4}
    assert out["eps_lower"] == out["audit"]["eps_lower"]
    assert (out["eps"], out["eps_pld"], out["delta"]) == (2.5, 2.1, 1e-4)
    assert (out["test_accuracy"], out["epochs"], out["mode"]) == (0.61, 3, "dfa")
    gap = scores[can.included].mean() - scores[~can.included].mean()
    assert out["score_gap"] == pytest.approx(gap, rel=1e-5, abs=1e-6)
    assert list(out) == ["eps_lower", "eps", "eps_pld", "delta", "audit", "test_accuracy", "epochs", "mode",
                         "score_gap"]
    text = (tmp_path / "audit.json").read_text()
    assert json.loads(text) == out and text.startswith('{\n  "eps_lower": ')


def test_run_audit_defaults_and_refusals(monkeypatch, tmp_path):
    _, _, seen = _fake_train(monkeypatch, {"test_accuracy": 0.5, "epoch": 1}, m=12)
    cfg = SimpleNamespace(privacy=PrivacyConfig(epsilon=3.0, audit_canaries=12), hidden=(5, 7), act="tanh",
                          mode="optical-dfa")
    out = audit_run.run_audit(cfg, tmp_path)
    assert seen["kw"] == {"progress": False, "log": None}
    assert out["audit"]["k_pos"] == out["audit"]["k_neg"] == 1  # round(0.1 x 12) = 1
    assert out["audit"]["confidence"] == 0.95
    assert out["eps"] is None and out["eps_pld"] is None and out["mode"] == "optical-dfa"
    out = audit_run.run_audit(cfg, tmp_path, guess_fraction=0.01)
    assert out["audit"]["guesses"] == 2  # at least one guess each way
    msg = r"^an audit needs canaries: PrivacyConfig\(audit_canaries=m > 0\)$"
    for privacy in (None, PrivacyConfig(epsilon=3.0)):
        bad = SimpleNamespace(privacy=privacy, hidden=(5,), act="tanh", mode="dfa")
        with pytest.raises(ValueError, match=msg):
            audit_run.run_audit(bad, tmp_path)


# ================================================================================================ session
def test_check_train_config_accepts_the_covered_runs_and_names_the_rest():
    se.check_train_config("dfa", "tanh")
    se.check_train_config("optical-dfa", "tanh", "mlp")
    with pytest.raises(se.PrivacyConfigError, match="^" + re.escape(
            "--dp-* works with --model mlp (the mechanism's sensitivity and the noisy output-layer error are "
            "derived for the MLP), not 'cnn'") + "$"):
        se.check_train_config("dfa", "tanh", "cnn")
    for mode in ("bp", "pfa", "DFA"):
        msg = f"--dp-* works with --mode dfa or optical-dfa (the feedback is the mechanism), not {mode!r}"
        with pytest.raises(se.PrivacyConfigError, match="^" + re.escape(msg) + "$"):
            se.check_train_config(mode, "tanh")
    with pytest.raises(se.PrivacyConfigError, match="^" + re.escape(
            "private DFA needs bounded activations and |f'| <= 1: use --activation tanh (got 'relu')") + "$"):
        se.check_train_config("dfa", "relu")


def _dataset(n_train=50, n_test=300, d=4, c=3):
    rng = np.random.default_rng(0)
    x_test = np.arange(n_test * d, dtype=np.float32).reshape(n_test, d)  # row i starts with d i
    return Dataset("toy", rng.standard_normal((n_train, d)).astype(np.float32), rng.integers(0, c, n_train),
                   x_test, np.arange(n_test) % c, c, "test")


def test_prepare_data_without_canaries_is_the_identity():
    data = _dataset()
    new, can = se.prepare_data(data, PrivacyConfig(epsilon=3.0))
    assert new is data and can is None


@pytest.mark.parametrize(("n_test", "pool"), [(301, 200), (300, 100), (101, 100)])
def test_prepare_data_moves_the_included_canaries_from_the_test_tail(n_test, pool):
    m = 100
    data = _dataset(n_test=n_test)
    new, can = se.prepare_data(data, PrivacyConfig(epsilon=3.0, audit_canaries=m, audit_seed=9))
    # the pool is the test tail: 2m images when the test split has more than 2m + 100, else m
    want = au.make_canaries(data.x_test[-pool:], data.y_test[-pool:], 3, m, 9)
    np.testing.assert_array_equal(can.x, want.x)
    np.testing.assert_array_equal(can.y, want.y)
    np.testing.assert_array_equal(can.included, want.included)
    rows = (can.x[:, 0] / 4).astype(int)  # x_test row i starts with 4 i
    assert (rows >= n_test - pool).all()
    np.testing.assert_array_equal(new.x_test, data.x_test[:-pool])
    np.testing.assert_array_equal(new.y_test, data.y_test[:-pool])
    k = int(can.included.sum())
    assert new.x_train.shape == (50 + k, 4) and new.y_train.shape == (50 + k,)
    np.testing.assert_array_equal(new.x_train[:50], data.x_train)
    np.testing.assert_array_equal(new.x_train[50:], can.x[can.included])
    np.testing.assert_array_equal(new.y_train[50:], can.y[can.included])
    assert new.n_classes == 3 and new.name == "toy"


def test_prepare_data_refuses_a_small_test_split():
    with pytest.raises(se.PrivacyConfigError, match=r"^100 canaries need more than 100 test images \(100\)$"):
        se.prepare_data(_dataset(n_test=100), PrivacyConfig(epsilon=3.0, audit_canaries=100))


def test_stored_plan_reads_the_plan_file(tmp_path):
    assert se.stored_plan(tmp_path) is None
    (tmp_path / "privacy_plan.json").mkdir()
    assert se.stored_plan(tmp_path) is None  # not a file
    other = tmp_path / "run"
    other.mkdir()
    (other / "privacy_plan.json").write_text('{"z": 1.25, "q": 1.0}')
    assert se.stored_plan(str(other)) == {"z": 1.25, "q": 1.0}


def test_poisson_batches_sample_each_record_independently():
    n, q, steps = 4000, 0.05, 6
    batches = list(se.poisson_batches(3, 2, n, q, steps))
    assert len(batches) == steps
    for b in batches:
        assert b.dtype.kind == "i" and (np.diff(b) > 0).all() and b.min() >= 0 and b.max() < n
        assert abs(len(b) - n * q) < 5 * math.sqrt(n * q * (1 - q))
    assert not np.array_equal(batches[0], batches[1])
    again = list(se.poisson_batches(3, 2, n, q, steps))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    assert not np.array_equal(next(se.poisson_batches(3, 3, n, q, 1)), batches[0])  # another epoch
    assert not np.array_equal(next(se.poisson_batches(4, 2, n, q, 1)), batches[0])  # another seed
    assert len(next(se.poisson_batches(0, 0, n, 1.0, 1))) == n


M, C, N_TRAIN, BATCH = 6, 3, 2000, 100


def _digital_session(cfg, *, epochs=2, stored=None, say=None):
    inner = DigitalFeedback(jax.random.PRNGKey(0), M, C)
    kw = {} if say is None else {"say": say}
    s = se.PrivacySession(cfg, inner, n_outputs=M, n_classes=C, n_train=N_TRAIN, batch_size=BATCH,
                          epochs=epochs, optical=False, stored_plan=stored, **kw)
    return s, np.asarray(inner.matrix, np.float64)


def test_session_plans_from_the_measured_sensitivity():
    cfg = PrivacyConfig(epsilon=4.0, top_scale=0.8)
    said = []
    s, a = _digital_session(cfg, say=said.append)
    p = s.plan
    dv = _brute_bound(a, "replace_one")
    c_top = 0.8 * math.sqrt(M)
    assert p.delta_v == pytest.approx(dv, rel=1e-6) and p.top_scale_c == pytest.approx(c_top)
    assert p.sensitivity == pytest.approx(math.sqrt(dv**2 + 8 * c_top**2), rel=1e-6)
    got = (p.n_train, p.batch_size, p.epochs, p.compositions, p.q, p.b_agg)
    assert got == (N_TRAIN, BATCH, 2, 2, 1.0, BATCH)
    assert acc.epsilon(acc.Composition(p.z, 1.0, 2), DELTA) <= 0.99 * 4.0
    assert acc.epsilon(acc.Composition(p.z * math.exp(-1e-4), 1.0, 2), DELTA) > 0.99 * 4.0
    assert not p.credit_device and p.sigma_min_max == 0.0
    assert s.feedback.z == p.z and s.feedback.b_agg == BATCH
    assert said == [p.text()]
    assert p.notes == ["aggregation 'batch' credits the per-sample noise summed over the batch (the "
                       "paper's convention; not airtight, docs/privacy.md section 4); 'sample' is the "
                       "conservative one"]
    _digital_session(cfg)  # no say: silent


def test_session_resumed_with_a_stored_z():
    cfg = PrivacyConfig(epsilon=4.0, aggregation="sample")
    s, _ = _digital_session(cfg, stored={"z": 0.4})
    assert s.plan.z == 0.4 and s.feedback.z == 0.4 and s.feedback.b_agg == 1
    assert s.plan.eps_rdp > 4.0
    assert s.plan.notes == ["resumed run: keeps the stored noise multiplier z = 0.4",
                            "2 epochs would exceed the target: the budget stop ends the run"]
    s, _ = _digital_session(cfg, stored={"z": 50.0})
    assert s.plan.notes == ["resumed run: keeps the stored noise multiplier z = 50"]


def test_session_budget_question_and_epoch_records():
    z = 2.0
    target = acc.epsilon(acc.Composition(z, 1.0, 3), DELTA, "rdp")  # epsilon after exactly 3 epochs
    cfg = PrivacyConfig(epsilon=target)
    s, a = _digital_session(cfg, epochs=5, stored={"z": z})
    ok, eps = s.may_run_epoch(2)
    assert ok and eps == target  # reaching the target exactly is allowed
    ok, eps = s.may_run_epoch(3)
    assert not ok and eps == pytest.approx(acc.epsilon(acc.Composition(z, 1.0, 4), DELTA))
    rec = s.epoch_record(2)
    assert rec == {"epsilon": acc.epsilon(acc.Composition(z, 1.0, 2), DELTA, "rdp"),
                   "epsilon_rdp": acc.epsilon(acc.Composition(z, 1.0, 2), DELTA, "rdp"),
                   "epsilon_pld": acc.epsilon(acc.Composition(z, 1.0, 2), DELTA, "pld"),
                   "delta": DELTA, "z": z, "q": 1.0, "compositions": 2}
    s.feedback.begin_epoch()
    rec = s.epoch_record(1)
    dv = _brute_bound(a, "replace_one")
    delta = math.sqrt(dv**2 + 8 * (0.5 * math.sqrt(M)) ** 2)
    assert set(rec) == {"epsilon", "epsilon_rdp", "epsilon_pld", "delta", "z", "q", "compositions", "sigma",
                        "sensitivity", "sigma_min_median", "device_variance_share"}
    assert rec["compositions"] == 1
    assert rec["sigma"] == pytest.approx(z * delta / math.sqrt(BATCH), rel=1e-6)
    assert rec["sensitivity"] == pytest.approx(delta, rel=1e-6)
    assert rec["sigma_min_median"] == 0.0 and rec["device_variance_share"] == 0.0


def test_session_poisson_records_count_steps_and_use_the_chosen_accountant():
    cfg = PrivacyConfig(epsilon=6.0, composition="poisson", aggregation="sample", neighbouring="add_remove",
                        accountant="pld")
    s, _ = _digital_session(cfg, epochs=1, stored={"z": 1.5})
    steps = N_TRAIN // BATCH
    q = BATCH / N_TRAIN
    rec = s.epoch_record(1)
    comp = acc.Composition(1.5, q, steps)
    assert rec["compositions"] == steps and rec["q"] == q and rec["z"] == 1.5
    assert rec["epsilon"] == rec["epsilon_pld"] == acc.epsilon(comp, DELTA, "pld")
    assert rec["epsilon_rdp"] == acc.epsilon(comp, DELTA, "rdp")
    assert rec["epsilon_pld"] < rec["epsilon_rdp"]
    assert s.may_run_epoch(0) == (rec["epsilon"] <= 6.0, rec["epsilon"])


def test_session_writes_its_plan(tmp_path):
    s, _ = _digital_session(PrivacyConfig(epsilon=4.0))
    s.write_plan(tmp_path)
    text = (tmp_path / "privacy_plan.json").read_text()
    assert json.loads(text) == json.loads(json.dumps(s.plan.as_dict()))
    assert text.startswith('{\n  "epsilon_target": 4.0,\n  "delta": 1e-05,')
    assert se.stored_plan(tmp_path)["z"] == s.plan.z


def _optical_session(share_repeats, *, cfg=None, say=None):
    m, c = 5, 3
    a = np.random.default_rng(3).standard_normal((m, c)) * 4
    cal = opu.LinearCalibration(np.full(m, 80.0), np.array([30.0, 60.0, 90.0, 120.0, 150.0]), 1.7, 16,
                                np.array([False, False, False, True, False]))
    cam_cfg = opu.CameraConfig(gain_dn_per_e=0.5, read_noise_e=6.0, bit_depth=None)  # 3 DN read noise
    dev = FakeDevice(a, camera=cam_cfg, offsets=_spread(8, c, m, 0.02))
    cfg = cfg or PrivacyConfig(epsilon=4.0, reference_safety=0.8)
    s = se.PrivacySession(cfg, _optical_inner(dev, cal), n_outputs=m, n_classes=c, n_train=N_TRAIN,
                          batch_size=BATCH, epochs=2, optical=True, device=dev, share_repeats=share_repeats,
                          say=say)
    return s, cal, a


def test_optical_session_credits_the_device_only_with_separate_frames():
    s, cal, a = _optical_session(False)
    p = s.plan
    smin = _closed_form_floor(cal, 0.5, 3.0, 0.8)
    assert p.credit_device and s.feedback.credit_device
    assert p.sigma_min_min == pytest.approx(smin.min(), rel=1e-12)
    assert p.sigma_min_median == pytest.approx(np.median(smin), rel=1e-12)
    assert p.sigma_min_max == pytest.approx(smin.max(), rel=1e-12)
    cam_note = "camera noise from the simulator configuration: K = 0.5 DN/e-, read noise 6 e-"
    assert p.notes[-1] == cam_note and len(p.notes) == 2
    se_norm = math.sqrt(sum((0.02 * (k + 1)) ** 2 / 7 for k in range(5)))
    dv = (_brute_bound(a, "replace_one") + 4 * 3 * se_norm) * 1.05
    assert p.delta_v == pytest.approx(dv, rel=1e-9)
    shared, _, _ = _optical_session(True)
    q = shared.plan
    assert not q.credit_device and not shared.feedback.credit_device and q.sigma_min_max == 0.0
    assert q.notes[-1] == cam_note
    assert "device noise not credited (frames shared between samples, or no noise calibration): the host " \
           "supplies all of sigma" in q.notes


def test_optical_session_takes_the_camera_from_the_calibration_report(tmp_path):
    path = _report(tmp_path, k=0.3, k_u=0.05, rn=12.0, rn_u=0.5)
    s, cal, _ = _optical_session(False, cfg=PrivacyConfig(epsilon=4.0, calibration_path=path))
    k, rn_e = 0.2, 11.0  # the lower 2-sigma ends; the report's gain is the device's (0 dB)
    assert s.plan.notes[-1] == (f"camera noise from the calibration report {path}: K = 0.2 DN/e-, "
                                "read noise 11 e-")
    smin = _closed_form_floor(cal, k, rn_e * k, 0.5)  # quantised, but every frame variance is above 4 DN^2
    assert s.plan.sigma_min_median == pytest.approx(np.median(smin), rel=1e-12)


# =================================================================================================== plan
def _plan(cfg, **kw):
    args = dict(n_train=60_000, batch_size=128, epochs=3, delta_v=1.5, top_scale_c=0.5, sigma_min=np.zeros(3),
                credit_device=False, optical=False, sensitivity=2.0)
    args.update(kw)
    return make_plan(cfg, **args)


def test_plan_text_states_the_units_and_the_sources():
    p = _plan(PrivacyConfig(epsilon=8.0), z_fixed=1.5)
    lines = p.text().split("\n")
    assert lines[0] == "privacy plan: target epsilon 8 at delta 1e-05 (replace_one, rdp accountant)"
    assert lines[1] == ("  composition: per epoch, shuffled disjoint batches (no amplification); "
                        "3 compositions over 3 epochs")
    assert lines[2] == "  sensitivity Delta = 2 (feedback 1.5, top c = 0.5)"
    sigma = 1.5 * 2.0 / math.sqrt(128)
    assert lines[3] == (f"  noise std per coordinate sigma = {sigma:.4g}; device sigma_min per output "
                        f"min/median/max 0/0/0 (not credited); host noise up to {sigma:.4g}; device share "
                        "of the variance 0.00e+00")
    assert lines[4] == "  noise source: host Gaussian only"
    assert lines[5] == "  effective noise multiplier z = 1.5 (sqrt(b) = 11.3 credit), q = 1"
    assert lines[6] == f"  predicted epsilon after 3 epochs: {p.eps_rdp:.4g} (RDP), {p.eps_pld:.4g} (PLD)"
    assert lines[7:] == [f"  note: {n}" for n in p.notes] and len(p.notes) == 2
    cfg = PrivacyConfig(epsilon=8.0, composition="poisson", aggregation="sample", neighbouring="add_remove")
    p = _plan(cfg, z_fixed=1.5, epochs=1, sigma_min=np.full(3, 0.5), credit_device=True, optical=True)
    lines = p.text().split("\n")
    assert lines[1] == ("  composition: per step, Poisson sampling q = 0.002133; 468 compositions over "
                        "1 epochs")
    assert lines[3].endswith("(credited); host noise up to 2.958; device share of the variance 2.78e-02")
    assert lines[5] == "  effective noise multiplier z = 1.5 (no sqrt(b) credit), q = 0.002133"
    assert lines[7:] == ["  note: resumed run: keeps the stored noise multiplier z = 1.5"]


def test_plan_notes_and_the_refusal_text():
    p = _plan(PrivacyConfig(epsilon=8.0, aggregation="sample"), optical=True, credit_device=False)
    assert p.notes == ["device noise not credited (frames shared between samples, or no noise calibration): "
                       "the host supplies all of sigma"]
    credited = _plan(PrivacyConfig(epsilon=8.0, aggregation="sample"), optical=True, credit_device=True)
    assert credited.notes == []
    no_host = PrivacyConfig(epsilon=8.0, host_noise=False, aggregation="sample")
    floor = np.array([0.5, 1.0, 2.0])
    with pytest.raises(PlanRefused) as err:
        _plan(no_host, z_fixed=2.0, sigma_min=floor, credit_device=True, optical=True)
    sigma = 4.0
    want = ("the device's certified noise (sigma_min min 0.5, median 1) is below the sigma = 4 this target "
            "needs (z = 2, Delta = 2). Change one of: allow host noise (drop --dp-no-host-noise); a larger "
            f"batch (sigma ~ 1/sqrt(b) with aggregation 'batch': about {(sigma / 0.5) ** 2:.3g}x the batch); "
            "fewer epochs; a smaller --dp-top-scale; lower exposure/light to raise the relative shot noise; "
            "a larger epsilon target")
    assert str(err.value) == want
    with pytest.raises(PlanRefused) as err:
        _plan(no_host, z_fixed=2.0, sigma_min=np.zeros(3), credit_device=False, optical=True)
    assert "aggregation 'batch': no batch is enough); fewer epochs" in str(err.value)
    assert str(err.value).endswith("a larger epsilon target; --no-share-repeats (shared frames earn no "
                                   "credit)")
    with pytest.raises(PlanRefused) as err:
        _plan(no_host, z_fixed=2.0, sigma_min=np.zeros(3), credit_device=False, optical=False)
    assert str(err.value).endswith("a larger epsilon target")
    with pytest.raises(PlanRefused) as err:
        _plan(PrivacyConfig(epsilon=0.001), epochs=1000)
    assert str(err.value).endswith("; fewer epochs or a larger target help")
    assert str(err.value).startswith("even z = 10000 gives epsilon")


# ================================================================================================= config
def test_poisson_composition_needs_add_remove_and_per_sample_noise():
    import pydantic

    with pytest.raises(pydantic.ValidationError) as err:
        PrivacyConfig(epsilon=3.0, composition="poisson", aggregation="sample")
    assert err.value.errors()[0]["msg"] == (
        "Value error, composition='poisson' needs neighbouring='add_remove' (Poisson amplification is stated "
        "for adding/removing one record)")
    with pytest.raises(pydantic.ValidationError) as err:
        PrivacyConfig(epsilon=3.0, composition="poisson", neighbouring="add_remove")
    assert err.value.errors()[0]["msg"] == (
        "Value error, composition='poisson' needs aggregation='sample': the Poisson batch size is random, so "
        "per-sample noise earns no sqrt(batch) credit")
    ok = PrivacyConfig(epsilon=3.0, composition="poisson", neighbouring="add_remove", aggregation="sample")
    assert ok.composition == "poisson"
    # the epoch composition takes any neighbouring relation and aggregation
    assert PrivacyConfig(epsilon=3.0, neighbouring="add_remove").aggregation == "batch"


# ========================================================================================== rdp reference
def test_reference_series_term_by_term():
    for q, z, a in ((0.01, 1.1, 2), (0.05, 0.8, 5), (0.3, 2.0, 9), (0.5, 1.0, 3)):
        total = sum(math.comb(a, k) * (1 - q) ** (a - k) * q**k * math.exp((k * k - k) / (2 * z * z))
                    for k in range(a + 1))
        want = math.log(total) / (a - 1)
        assert ref.sampled_gaussian_rdp_integer(q, z, a) == pytest.approx(want, rel=1e-12)
    assert ref.sampled_gaussian_rdp_integer(1.0, 2.0, 4) == 4 / 8
    np.testing.assert_allclose(ref.gaussian_rdp(2.0, [2, 3.5, 10]), [2 / 8, 3.5 / 8, 10 / 8], rtol=1e-15)
    for bad in (1, 2.5, 0):
        with pytest.raises(ValueError, match=rf"^integer order >= 2 required, got {bad}$"):
            ref.sampled_gaussian_rdp_integer(0.1, 1.0, bad)


def test_reference_conversion_and_its_optimal_order():
    orders = [1.0, 2.0, 4.0, 8.0]  # order 1 is skipped (no conversion there)
    rdp = [0.0, 0.5, 1.0, 2.0]
    want = [r + math.log1p(-1 / a) - (math.log(DELTA) + math.log(a)) / (a - 1)
            for a, r in zip(orders[1:], rdp[1:], strict=True)]
    eps, best = ref.epsilon_from_rdp(rdp, orders, DELTA)
    assert eps == pytest.approx(min(want), rel=1e-12) and best == orders[1 + int(np.argmin(want))]
    assert ref.epsilon_from_rdp([0.0, 0.0], [2.0, 3.0], 0.5)[0] == 0.0  # a negative bound is 0
    # a larger delta moves the optimum to the smallest order
    eps, best = ref.epsilon_from_rdp([0.0, 1.0, 2.0, 4.0], orders, 0.5)
    assert best == 2.0
    assert eps == pytest.approx(1.0 + math.log(0.5) - (math.log(0.5) + math.log(2.0)), rel=1e-12)
    eps, best = ref.epsilon_from_rdp([], [], DELTA)
    assert eps == math.inf and math.isnan(best)


@pytest.mark.parametrize(("q", "z", "n"), [(1.0, 2.0, 7), (0.02, 1.2, 300), (0.1, 3.0, 40)])
def test_reference_matches_the_library_on_the_same_orders(q, z, n):
    lib = acc.epsilon(acc.Composition(z, q, n), DELTA, "rdp", orders=ref.INTEGER_ORDERS)
    mine = ref.epsilon_per_epoch(z, n, DELTA) if q == 1.0 else ref.epsilon_poisson(q, z, n, DELTA)
    assert mine == pytest.approx(lib, rel=1e-9)


def test_plan_fields_are_the_inputs_and_their_consequences():
    cfg = PrivacyConfig(epsilon=8.0, delta=2e-6, neighbouring="add_remove", top_scale=0.9)
    smin = np.array([0.01, 0.03, 0.02])
    p = _plan(cfg, z_fixed=1.25, n_train=50_000, batch_size=100, epochs=4, delta_v=1.5, top_scale_c=0.7,
              sigma_min=smin, credit_device=True, optical=True, sensitivity=2.5)
    sigma = 1.25 * 2.5 / 10.0
    comp = acc.Composition(1.25, 1.0, 4)
    assert p.as_dict() == {
        "epsilon_target": 8.0, "delta": 2e-6, "composition": "epoch", "aggregation": "batch",
        "neighbouring": "add_remove", "accountant": "rdp", "n_train": 50_000, "batch_size": 100, "epochs": 4,
        "steps_per_epoch": 500, "compositions": 4, "q": 1.0, "z": 1.25, "b_agg": 100, "sensitivity": 2.5,
        "delta_v": 1.5, "top_scale_c": 0.7, "sigma": pytest.approx(sigma, rel=1e-12), "sigma_min_min": 0.01,
        "sigma_min_median": 0.02, "sigma_min_max": 0.03,
        "host_sigma_max": pytest.approx(math.sqrt(sigma**2 - 0.01**2), rel=1e-12),
        "device_variance_share": pytest.approx(np.mean(smin**2) / sigma**2, rel=1e-12),
        "noise_source": "device (certified floor) + host Gaussian top-up", "credit_device": True,
        "eps_rdp": acc.epsilon(comp, 2e-6, "rdp"), "eps_pld": acc.epsilon(comp, 2e-6, "pld"),
        "notes": ["resumed run: keeps the stored noise multiplier z = 1.25",
                  "aggregation 'batch' credits the per-sample noise summed over the batch (the paper's "
                  "convention; not airtight, docs/privacy.md section 4); 'sample' is the conservative one"]}
    assert p.composition_for(7) == acc.Composition(1.25, 1.0, 7)
    assert p.epsilon_after(2, "pld") == acc.epsilon(acc.Composition(1.25, 1.0, 2), 2e-6, "pld")
    assert not _plan(cfg, z_fixed=1.25, credit_device=False).credit_device


def test_plan_delta_must_be_below_one_over_n():
    want = ("delta = 1e-05 is not below 1/N = 1e-05: such a delta allows releasing a record outright; choose "
            "--dp-delta < 1/N (1e-5 is usual)")
    with pytest.raises(PlanRefused) as err:
        _plan(PrivacyConfig(epsilon=8.0), n_train=100_000)  # delta = 1/N exactly
    assert str(err.value) == want
    assert _plan(PrivacyConfig(epsilon=8.0), n_train=99_999, z_fixed=1.0).n_train == 99_999


def test_plan_calibrates_with_the_chosen_accountant():
    p = _plan(PrivacyConfig(epsilon=8.0, accountant="pld"))
    comp = acc.Composition(p.z, 1.0, 3)
    assert p.eps_pld == acc.epsilon(comp, DELTA, "pld") <= 0.99 * 8.0
    assert acc.epsilon(acc.Composition(p.z * math.exp(-1e-3), 1.0, 3), DELTA, "pld") > 0.99 * 8.0
    assert p.eps_rdp == acc.epsilon(comp, DELTA, "rdp") > p.eps_pld
    assert p.epsilon_after(3) == p.eps_pld  # the plan's own accountant by default


def test_plan_text_credits_sqrt_b_from_a_batch_of_two():
    p = _plan(PrivacyConfig(epsilon=8.0), z_fixed=1.5, batch_size=2)
    assert p.b_agg == 2
    assert p.text().split("\n")[5] == "  effective noise multiplier z = 1.5 (sqrt(b) = 1.4 credit), q = 1"


def test_calibrate_z_accepts_a_target_met_exactly_at_the_upper_bracket():
    # epsilon(z_hi) == target: z_hi qualifies (the search is for epsilon <= target), nothing is refused
    q, n = 0.01, 50
    target = acc.epsilon(acc.Composition(2.0, q, n), 1e-5, "rdp")
    z = acc.calibrate_z(target, 1e-5, q, n, "rdp", z_hi=2.0)
    assert z <= 2.0 and acc.epsilon(acc.Composition(z, q, n), 1e-5, "rdp") <= target
    assert z >= 2.0 * math.exp(-2e-4)  # epsilon decreases in z: nothing much below z_hi meets it


def test_encode_error_takes_labels_stored_as_floats():
    # labels read from a float array (e.g. a dataset column) index the classes as integers
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    c = 4
    p = np.full((3, c), 0.25)
    y = np.array([0, 2, 3])
    e = p - np.eye(c)[y]
    np.testing.assert_array_equal(encode_error(e, y.astype(np.float64), rng_a), encode_error(e, y, rng_b))
    t = encode_error(e, y.astype(np.float64), np.random.default_rng(4))
    # each row: 0, or +1 on a wrong class and -1 on the label
    for row, label in zip(t, y, strict=True):
        assert row.sum() == 0 and (row[label] in (0.0, -1.0)) and np.abs(row).sum() in (0.0, 2.0)


def test_reference_conversion_refuses_curves_of_another_length():
    with pytest.raises(ValueError):
        ref.epsilon_from_rdp([0.1, 0.2], [2.0, 3.0, 4.0], 1e-5)


def test_session_resumed_exactly_at_the_target_is_not_over_budget():
    # the stored z reaches the target exactly after the planned epochs: no "would exceed" note
    z = 1.7
    target = acc.epsilon(acc.Composition(z, 1.0, 2), DELTA, "rdp")
    s, _ = _digital_session(PrivacyConfig(epsilon=target, aggregation="sample"), stored={"z": z})
    assert s.plan.eps_rdp == target
    assert s.plan.notes == ["resumed run: keeps the stored noise multiplier z = 1.7"]
