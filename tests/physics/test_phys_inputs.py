"""Bad input gets typed errors with clear messages; encoders round-trip."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

import opu
from opu.dmd import feature_mirror_ids, pack_patterns, unpack_patterns


@pytest.fixture(scope="module")
def sim() -> opu.Simulator:
    return opu.Simulator(opu.realistic(seed=0, n_outputs=64), n_features=16)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((2, 16), 0.5), "binary"),
        (np.full((2, 16), 2, dtype=np.int64), "binary"),
        (np.array([[np.nan] * 16]), "binary"),
        (-np.ones((1, 16)), "binary"),
        (np.array([["a"] * 16]), "dtype"),
    ],
)
def test_non_binary_patterns_are_refused(sim, bad, match):
    with pytest.raises(opu.PatternError, match=match):
        sim.acquire(bad)


def test_binary_patterns_in_any_numeric_dtype_are_accepted(sim):
    x = np.random.default_rng(0).integers(0, 2, size=(3, 16))
    ref = sim.intensity(x.astype(bool))
    for dtype in (np.uint8, np.int32, np.float32, np.float64):
        # equal up to float32 summation order (the W rows may be generated on demand or held)
        np.testing.assert_allclose(sim.intensity(x.astype(dtype)), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(15,), (2, 17), (2, 2, 16), ()])
def test_wrong_shapes_are_refused(sim, shape):
    with pytest.raises(opu.ShapeError, match=r"features|shape"):
        sim.acquire(np.zeros(shape, dtype=bool))


def test_single_pattern_gives_single_frame(sim):
    assert sim.acquire(np.ones(16, bool)).shape == (64,)


def test_more_features_than_mirrors_is_refused():
    with pytest.raises(opu.CapacityError, match="do not fit"):
        opu.Simulator(opu.realistic(n_outputs=64).replace(dmd={"macro_pixel_mirrors": 100}), n_features=200)
    with pytest.raises(opu.CapacityError):
        feature_mirror_ids(opu.DMDConfig(), 912 * 1140 + 1)


@pytest.mark.parametrize(
    "section, values, match",
    [
        ("camera", {"exposure_us": -1}, "exposure_us"),
        ("camera", {"exposure_us": 600.0, "frame_time_us": 500.0}, "frame_time_us"),
        ("camera", {"bit_depth": 9}, "bit_depth"),
        ("camera", {"roi": {"row": 1070, "col": 0, "height_px": 20, "width_px": 20}}, "camera ROI"),
        ("dmd", {"roi_row": 900, "roi_height_mirrors": 20}, "input ROI"),
        ("dmd", {"macro_pixel_mirrors": 0}, "macro_pixel_mirrors"),
        ("laser", {"power_fluctuation_rel": -0.1}, "power_fluctuation_rel"),
        ("medium", {"drift_time_constant_s": 0}, "drift_time_constant_s"),
    ],
)
def test_invalid_configs_name_the_field(section, values, match):
    with pytest.raises(pydantic.ValidationError, match=match):
        opu.realistic().replace(**{section: values})


def test_unknown_config_field_is_refused():
    with pytest.raises(pydantic.ValidationError, match="exposure_ms"):
        opu.realistic().replace(camera={"exposure_ms": 1})


def test_streaming_with_drift_is_refused_with_advice():
    with pytest.raises(opu.ConfigError, match="drift"):
        opu.Simulator(opu.realistic(n_outputs=64), n_features=16, tm_mode="streamed")


def test_outputs_roi_of_impossible_size():
    with pytest.raises(opu.CapacityError, match="sensor"):
        opu.centred_roi(1920 * 1080 + 1)
    with pytest.raises(opu.CapacityError, match="rectangle"):
        opu.centred_roi(2_000_003)  # prime: 1 x 2000003 does not fit


def test_pack_unpack_round_trip_and_corruption():
    x = np.random.default_rng(1).random((5, 21)) < 0.5
    packed = pack_patterns(x)
    assert packed.shape == (5, 3) and packed.dtype == np.uint8
    # MSB first: feature 0 is bit 7 of byte 0
    assert packed[0, 0] >> 7 == x[0, 0]
    np.testing.assert_array_equal(unpack_patterns(packed, 21), x)
    packed[0, -1] |= 1  # a padding bit
    with pytest.raises(opu.PatternError, match="padding"):
        unpack_patterns(packed, 21)


def test_ternarize_is_disjoint_and_exact():
    e = np.array([[0.3, -0.05, -0.2, 0.1, 0.0]])
    pos, neg = opu.ternarize(e, 0.1)
    np.testing.assert_array_equal(pos, [[True, False, False, False, False]])
    np.testing.assert_array_equal(neg, [[False, False, True, False, False]])
    with pytest.raises(opu.OPUError, match="threshold"):
        opu.ternarize(e, -1)


@pytest.mark.parametrize("precision", [1, 4, 8, 12])
def test_bit_planes_round_trip_within_half_a_step(precision):
    x = np.random.default_rng(precision).normal(size=(7, 33))
    bp = opu.BitPlanes.encode(x, precision)
    assert bp.planes.shape == (2, precision, 7, 33)
    assert not (bp.planes[0] & bp.planes[1]).any()
    step = np.abs(x).max(axis=1, keepdims=True) / (2**precision - 1)
    assert np.all(np.abs(bp.reconstruct() - x) <= step / 2 + 1e-12)


def test_bit_planes_decode_is_linear_in_projections():
    x = np.random.default_rng(3).normal(size=(4, 10))
    A = np.random.default_rng(4).normal(size=(6, 10))
    bp = opu.BitPlanes.encode(x, 10)
    projected = np.einsum("pbn,mn->pbm", bp.signed_planes().astype(float), A)
    np.testing.assert_allclose(bp.decode(projected), bp.reconstruct() @ A.T, atol=1e-9)
    assert np.abs(bp.decode(projected) - x @ A.T).max() < 0.01 * np.abs(x @ A.T).max()


def test_threshold_and_thermometer_encoders():
    x = np.array([[0.1, 0.5, 0.9]])
    np.testing.assert_array_equal(opu.threshold_encode(x, 0.4), [[False, True, True]])
    np.testing.assert_array_equal(
        opu.thermometer_encode(x, np.array([0.2, 0.6])), [[False, False, True, False, True, True]]
    )
    with pytest.raises(opu.OPUError, match="increasing"):
        opu.thermometer_encode(x, np.array([0.6, 0.2]))
