"""A medium known by its matrix (opu.RecoveredMedium, ExplicitTransmissionMatrix): what the simulator
takes from it, by pixel and mirror id, and what it refuses. Expected values are the given matrix's own
entries, selected here by hand (written from mutation testing: these paths had no test in the medium's
test list)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import opu
from opu.medium import ExplicitTransmissionMatrix, TransmissionMatrix

M, N = 5, 4
NOT_COMPLEX = r"^matrix must be a complex \(m, n\) array, got "


def _given(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(M, N)) + 1j * rng.normal(size=(M, N))
    pix = np.array([70, 11, 4100, 12, 9])  # any unique ids, in any order
    mir = np.array([300, 5, 77, 6])
    return b, pix, mir


def test_recovered_medium_keeps_its_matrix_and_ids():
    b, pix, mir = _given()
    med = opu.RecoveredMedium(b, pix.astype(np.uint32), mir.reshape(2, 2), mirrors_per_feature=4)
    assert med.matrix.dtype == np.complex64 and med.shape == (M, N)
    np.testing.assert_array_equal(med.matrix, b.astype(np.complex64))
    assert med.pixel_ids.dtype == np.int64 and med.pixel_ids.tolist() == pix.tolist()
    assert med.mirror_ids.dtype == np.int64 and med.mirror_ids.tolist() == mir.tolist()  # raveled
    assert med.mirrors_per_feature == 4 and isinstance(med.mirrors_per_feature, int)
    # by default one mirror per feature, here and in the matrices it hands out
    plain = opu.RecoveredMedium(b, pix, mir)
    assert plain.mirrors_per_feature == 1
    assert ExplicitTransmissionMatrix(0, b, pix, mir).col_scale == 1.0


@pytest.mark.parametrize(("matrix", "pix", "mir", "error", "message"), [
    (np.ones((M, N)), None, None, opu.ShapeError, NOT_COMPLEX + r"float64 \(5, 4\)$"),
    (np.ones(M, complex), None, None, opu.ShapeError, NOT_COMPLEX + r"complex128 \(5,\)$"),
    ("nan", None, None, opu.ConfigError, r"^matrix contains NaN or infinite entries$"),
    ("inf", None, None, opu.ConfigError, r"^matrix contains NaN or infinite entries$"),
    (None, np.arange(M - 1), None, opu.ShapeError,
     r"^matrix of shape \(5, 4\) needs 5 pixel ids and 4 mirror ids, got 4 and 4$"),
    (None, None, np.arange(N + 1), opu.ShapeError,
     r"^matrix of shape \(5, 4\) needs 5 pixel ids and 4 mirror ids, got 5 and 5$"),
    (None, np.array([1, 2, 3, 2, 5]), None, opu.ConfigError, r"^pixel_ids and mirror_ids must be unique$"),
    (None, None, np.array([1, 2, 1, 3]), opu.ConfigError, r"^pixel_ids and mirror_ids must be unique$"),
])
def test_recovered_medium_refuses_what_it_cannot_be(matrix, pix, mir, error, message):
    b, p0, m0 = _given()
    if isinstance(matrix, str):
        b = b.copy()
        b[2, 1] = complex(float(matrix), 0.0)
        matrix = b
    with pytest.raises(error, match=message):
        opu.RecoveredMedium(b if matrix is None else matrix, p0 if pix is None else pix,
                            m0 if mir is None else mir)


def test_transmission_matrix_takes_rows_and_columns_by_id():
    """Any subset of the ids, in any order, gives exactly those entries of the given matrix; its W rows
    are [Re B^T | Im B^T] of them."""
    b, pix, mir = _given()
    med = opu.RecoveredMedium(b, pix, mir, mirrors_per_feature=2)
    rows_ids, cols_ids = np.array([12, 70, 9]), np.array([6, 300])
    tm = med.transmission_matrix(seed=3, pixel_ids=rows_ids, mirror_ids=cols_ids, mirrors_per_feature=2)
    assert isinstance(tm, ExplicitTransmissionMatrix) and tm.shape == (3, 2)
    assert tm.col_scale == pytest.approx(np.sqrt(2))  # its drift innovations have the same law
    expected = b.astype(np.complex64)[np.ix_([3, 0, 4], [3, 0])]  # rows of ids 12, 70, 9; cols of 6, 300
    np.testing.assert_array_equal(tm.block(), expected)
    np.testing.assert_array_equal(tm.block(slice(1, 3), slice(0, 1)), expected[1:3, 0:1])
    w = np.concatenate([expected.T.real, expected.T.imag], axis=1).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(tm.w_dense()), w)
    np.testing.assert_array_equal(np.asarray(tm.w_rows(np.array([1, 0, 1]))), w[[1, 0, 1]])
    # a block is a copy: changing it leaves the matrix as it was
    blk = tm.block()
    blk[:] = 0
    np.testing.assert_array_equal(tm.block(), expected)


def test_transmission_matrix_refuses_pixels_features_and_macro_pixels_it_does_not_have():
    b, pix, mir = _given()
    med = opu.RecoveredMedium(b, pix, mir, mirrors_per_feature=2)
    with pytest.raises(opu.ConfigError, match=(
            r"^2 of the 3 camera pixels are outside the 5 pixels of the recovered medium: keep the camera "
            r"ROI inside the retrieval's ROI \(and no speckle grain\)$")):
        med.transmission_matrix(0, np.array([70, 1, 2]), mir, 2)
    with pytest.raises(opu.ConfigError, match=(
            r"^1 of the 4 features are outside the 4 recovered features: use at most that many "
            r"features, with the retrieval's input ROI$")):
        med.transmission_matrix(0, pix, np.array([300, 6, 77, 8]), 2)  # the first column is not missing
    with pytest.raises(opu.ConfigError, match=(
            r"^the recovered medium was measured with 2-mirror macro-pixels; a device with 3-mirror "
            r"macro-pixels has other columns$")):
        med.transmission_matrix(0, pix, mir, 3)
    # empty selections are no error (nothing is outside)
    assert med.transmission_matrix(0, np.array([], int), np.array([], int), 2).shape == (0, 0)


def test_explicit_matrix_checks_its_shape_and_drifts_with_the_generated_law():
    """With a key (a drift innovation) W comes from the counter-based generator of the seed, the same
    values a generated matrix of the same ids gives for that key; without one, the given matrix."""
    b, pix, mir = _given()
    message = r"^matrix of shape \(5, 4\) does not match 5 pixel ids x 3 mirror ids$"
    with pytest.raises(opu.ShapeError, match=message):
        ExplicitTransmissionMatrix(1, b, pix, mir[:3])
    tm = ExplicitTransmissionMatrix(1, b, pix, mir, mirrors_per_feature=4)
    key = jax.random.key_data(jax.random.PRNGKey(9)).astype(np.uint32)
    generated = TransmissionMatrix(1, pix, mir, mirrors_per_feature=4)
    np.testing.assert_array_equal(np.asarray(tm.w_dense(key=key)), np.asarray(generated.w_dense(key=key)))
    assert not np.allclose(np.asarray(tm.w_dense(key=key)), np.asarray(tm.w_dense()))
