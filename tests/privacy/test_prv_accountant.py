"""dp-accounting (RDP, PLD) against our independent RDP implementation and published reference values."""

import math

import pytest

from host.privacy import accountant as acc
from host.privacy import rdp_reference as ref

DELTA = 1e-5


@pytest.mark.parametrize("z,epochs", [(1.0, 1), (2.0, 10), (4.77, 10), (10.0, 100), (0.8, 3)])
def test_per_epoch_matches_closed_form(z, epochs):
    lib = acc.epsilon(acc.Composition(z, 1.0, epochs), DELTA, "rdp")
    mine = ref.epsilon_per_epoch(z, epochs, DELTA)
    assert abs(lib - mine) / mine <= 0.01


@pytest.mark.parametrize("q,z,steps", [(256 / 60000, 1.1, 14062), (0.01, 1.0, 10000), (0.05, 2.0, 200)])
def test_poisson_matches_integer_series(q, z, steps):
    lib = acc.epsilon(acc.Composition(z, q, steps), DELTA, "rdp", orders=ref.INTEGER_ORDERS)
    mine = ref.epsilon_poisson(q, z, steps, DELTA)
    assert abs(lib - mine) / mine <= 0.01


def test_reference_values_from_opacus_and_notes():
    # next-capabilities.md A.3 (dp-accounting 0.6.0 and Opacus RDP agree on 2.597; PLD 2.382)
    c = acc.Composition(1.1, 256 / 60000, 14062)
    assert acc.epsilon(c, DELTA, "rdp") == pytest.approx(2.597, abs=2e-3)
    assert acc.epsilon(c, DELTA, "pld") == pytest.approx(2.382, abs=2e-2)


def test_series_reduces_to_closed_form_at_q1():
    for a in (2, 5, 17):
        assert ref.sampled_gaussian_rdp_integer(1.0, 1.3, a) == pytest.approx(a / (2 * 1.3**2))
    # q -> small: the series' order-2 term is log(1 + q^2 (e^{1/z^2} - 1)) exactly
    q, z = 0.01, 1.5
    want = math.log1p(q * q * math.expm1(1 / z**2))
    assert ref.sampled_gaussian_rdp_integer(q, z, 2) == pytest.approx(want)


def test_pld_is_tighter_than_rdp():
    c = acc.Composition(4.0, 1.0, 10)
    assert acc.epsilon(c, DELTA, "pld") < acc.epsilon(c, DELTA, "rdp")


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_calibrate_z_meets_target_tightly(accountant):
    z = acc.calibrate_z(3.0, DELTA, 1.0, 10, accountant)
    assert acc.epsilon(acc.Composition(z, 1.0, 10), DELTA, accountant) <= 3.0
    assert acc.epsilon(acc.Composition(z * 0.98, 1.0, 10), DELTA, accountant) > 3.0


def test_bad_requests_are_named():
    with pytest.raises(acc.AccountingError, match="noise multiplier"):
        acc.Composition(0.0, 1.0, 1)
    with pytest.raises(acc.AccountingError, match="sampling rate"):
        acc.Composition(1.0, 1.5, 1)
    with pytest.raises(acc.AccountingError, match="delta"):
        acc.epsilon(acc.Composition(1.0, 1.0, 1), 1.0)
    assert acc.epsilon(acc.Composition(1.0, 1.0, 0), DELTA) == 0.0
