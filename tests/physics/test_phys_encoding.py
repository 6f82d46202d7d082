"""The encoders' contracts, value by value: input checks, single vectors, thresholds per sample, bit
planes by hand (found by mutation testing: each test kills mutants the broader suites let through)."""

from __future__ import annotations

import numpy as np
import pytest

import opu
from opu.encoding import BitPlanes, is_ternary, ternarize, thermometer_encode, threshold_encode


@pytest.mark.parametrize("fn", [lambda a: ternarize(a, 0.1), BitPlanes.encode, threshold_encode,
                                lambda a: thermometer_encode(a, np.array([0.0]))])
def test_inputs_are_checked(fn):
    with pytest.raises(opu.OPUError, match="real numeric"):
        fn(np.array([["a", "b"]]))
    with pytest.raises(opu.OPUError, match="real numeric"):
        fn(np.array([[1 + 2j, 0]]))
    with pytest.raises(opu.ShapeError, match=r"\(n,\) or \(batch, n\), got shape \(1, 2, 2\)"):
        fn(np.zeros((1, 2, 2)))
    with pytest.raises(opu.OPUError, match="NaN or infinite"):
        fn(np.array([[0.0, np.nan]]))
    with pytest.raises(opu.OPUError, match="NaN or infinite"):
        fn(np.array([[np.inf, 0.0]]))


def test_bool_input_is_accepted_and_single_vectors_stay_single():
    pos, neg = ternarize(np.array([True, False, True]), 0.5)
    assert pos.shape == (3,) and pos.tolist() == [True, False, True] and not neg.any()
    assert threshold_encode(np.array([0.2, 0.8]), 0.5).tolist() == [False, True]
    single = thermometer_encode(np.array([0.5, 1.5]), np.array([0.0, 1.0]))
    assert single.tolist() == [True, False, True, True]
    assert thermometer_encode(np.array([[0.5]]), np.array([0.0, 1.0])).shape == (1, 2)


def test_ternarize_thresholds_are_strict_and_per_sample():
    e = np.array([[0.1, -0.1, 0.2, -0.3], [0.5, -0.5, 0.05, 0.0]])
    pos, neg = ternarize(e, 0.1)  # |e| <= t maps to 0
    assert pos.tolist() == [[False, False, True, False], [True, False, False, False]]
    assert neg.tolist() == [[False, False, False, True], [False, True, False, False]]
    pos, neg = ternarize(e, np.array([0.25, 0.0]))  # one threshold per sample
    assert pos.tolist() == [[False, False, False, False], [True, False, True, False]]
    assert neg.tolist() == [[False, False, False, True], [False, True, False, False]]
    pos0, neg0 = ternarize(e, 0.0)
    assert (pos0 == (e > 0)).all() and (neg0 == (e < 0)).all()
    with pytest.raises(opu.ShapeError, match="per-sample threshold has 3 entries for 2 samples"):
        ternarize(e, np.array([0.1, 0.2, 0.3]))
    with pytest.raises(opu.OPUError, match="finite and >= 0"):
        ternarize(e, np.inf)
    with pytest.raises(opu.OPUError, match="finite and >= 0"):
        ternarize(e, np.array([0.1, -0.2]))


def test_is_ternary():
    assert is_ternary(np.array([[-1, 0, 1]]))
    assert is_ternary(np.array([1.0, -1.0]))
    assert not is_ternary(np.array([[-1, 0, 2]]))
    assert not is_ternary(np.array([0.5]))


def test_bit_planes_by_hand():
    # 3 bits: levels 7; x = [7, -3.5, 0, 1] with max 7 -> q = [7, 4 (3.5 rounds to even 4), 0, 1]
    bp = BitPlanes.encode(np.array([[7.0, -3.5, 0.0, 1.0]]), 3)
    assert bp.precision == 3 and bp.scale.tolist() == [7.0]
    # planes[0] positive part, MSB first: 7 = 111, 1 = 001; planes[1] negative part: 4 = 100
    assert bp.planes[0, :, 0].astype(int).tolist() == [[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 1]]
    assert bp.planes[1, :, 0].astype(int).tolist() == [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    np.testing.assert_allclose(bp.weights, [4 / 7, 2 / 7, 1 / 7])
    assert bp.signed_planes().dtype == np.int8
    assert bp.signed_planes()[:, 0].tolist() == [[1, -1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 1]]
    np.testing.assert_allclose(bp.reconstruct(), [[7.0, -4.0, 0.0, 1.0]])


def test_bit_planes_zero_sample_and_precision_limits():
    bp = BitPlanes.encode(np.zeros((2, 3)), 4)
    assert bp.scale.tolist() == [1.0, 1.0] and not bp.planes.any()
    np.testing.assert_array_equal(bp.reconstruct(), np.zeros((2, 3)))
    assert BitPlanes.encode(np.ones((1, 2)), 16).planes.shape == (2, 16, 1, 2)
    assert BitPlanes.encode(np.ones((1, 2)), np.int64(1)).precision == 1
    for bad in (0, 17, 2.0, "8"):
        with pytest.raises(opu.OPUError, match=r"precision must be an integer in 1\.\.16"):
            BitPlanes.encode(np.ones((1, 2)), bad)


def test_bit_planes_decode_checks_its_input():
    bp = BitPlanes.encode(np.ones((2, 3)), 4)
    with pytest.raises(opu.ShapeError, match=r"expected projections of shape \(4, 2, m\), got \(3, 2, 5\)"):
        bp.decode(np.zeros((3, 2, 5)))
    with pytest.raises(opu.ShapeError):
        bp.decode(np.zeros((4, 1, 5)))
    with pytest.raises(opu.ShapeError):
        bp.decode(np.zeros((4, 2)))
    out = bp.decode(np.ones((4, 2, 5)))  # sum of the weights x scale: (15/15) x 1
    np.testing.assert_allclose(out, np.ones((2, 5)))


def test_threshold_encode_per_feature_and_thermometer_checks():
    x = np.array([[0.1, 0.5, 0.9], [1.0, 0.0, 0.5]])
    np.testing.assert_array_equal(threshold_encode(x, np.array([0.0, 0.5, 1.0])),
                                  [[True, False, False], [True, False, False]])
    np.testing.assert_array_equal(threshold_encode(x), x > 0)  # default threshold 0
    with pytest.raises(opu.OPUError, match="non-empty strictly increasing"):
        thermometer_encode(x, np.array([]))
    with pytest.raises(opu.OPUError, match="strictly increasing"):
        thermometer_encode(x, np.array([0.2, 0.2]))
    out = thermometer_encode(x, np.array([[0.2], [0.6]]))  # any shape, flattened
    assert out.shape == (2, 6)
    assert out[1].tolist() == [True, True, False, False, True, False]


def test_error_messages_name_the_argument():
    with pytest.raises(opu.OPUError, match=r"^x must be a real numeric array"):
        BitPlanes.encode(np.array([["a"]]))
    with pytest.raises(opu.OPUError, match=r"^x contains NaN"):
        BitPlanes.encode(np.array([[np.nan]]))
    with pytest.raises(opu.ShapeError, match=r"^x must be \(n,\)"):
        BitPlanes.encode(np.zeros((1, 1, 1)))
    with pytest.raises(opu.OPUError, match=r"^e must be a real numeric array"):
        ternarize(np.array([["a"]]), 0.1)
    with pytest.raises(opu.OPUError, match=r"^x must be a real numeric array"):
        threshold_encode(np.array([["a"]]))
    with pytest.raises(opu.OPUError, match=r"^x must be a real numeric array"):
        thermometer_encode(np.array([["a"]]), np.array([0.0]))


def test_bit_planes_default_precision_and_small_scales():
    assert BitPlanes.encode(np.ones((1, 2))).precision == 8  # documented default
    # a sample whose max |x| is below 1 keeps its own scale (full resolution of the planes)
    bp = BitPlanes.encode(np.array([[0.5, -0.25, 0.0]]), 2)  # levels 3: q = [3, 1.5 -> 2, 0]
    assert bp.scale.tolist() == [0.5]
    assert bp.planes[0, :, 0].astype(int).tolist() == [[1, 0, 0], [1, 0, 0]]
    assert bp.planes[1, :, 0].astype(int).tolist() == [[0, 1, 0], [0, 0, 0]]
    np.testing.assert_allclose(bp.reconstruct(), [[0.5, -0.5 * 2 / 3, 0.0]])


def test_integer_inputs_and_thresholds_at_the_boundary():
    # integer arrays are real numeric input like floats
    pos, neg = ternarize(np.array([[2, -3, 0, 1]]), 1)
    assert pos.tolist() == [[True, False, False, False]] and neg.tolist() == [[False, True, False, False]]
    assert BitPlanes.encode(np.array([[3, -1]]), 2).scale.tolist() == [3.0]
    assert threshold_encode(np.array([[1, 2]]), 1).tolist() == [[False, True]]
    # a value equal to a thermometer threshold is not above it
    at = thermometer_encode(np.array([[0.5, 1.0]]), np.array([0.5, 1.0]))
    assert at.tolist() == [[False, False, True, False]]
    with pytest.raises(opu.OPUError, match=r"^thresholds must be a non-empty strictly increasing array$"):
        thermometer_encode(np.array([[0.5]]), np.array([1.0, 0.0]))
