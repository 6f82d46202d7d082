"""Comparing a recovered matrix with a truth: per-row phase and conjugation alignment.

No intensity measurement sees a row's global phase or whether the row is conjugated
(|e^{i phi} b . x|^2 = |conj(b) . x|^2 = |b . x|^2 for real x), so before measuring an error each
recovered row b_hat is aligned with its true row b: for c in {b_hat, conj(b_hat)}, the best phase
is ``phi = arg <c, b>`` (``<c, b> = sum_j conj(c_j) b_j``), and the candidate with the smaller
``||e^{i phi} c - b||`` is kept (docs/tm_retrieval.md, "Alignment").
"""

from __future__ import annotations

import numpy as np


def align_rows(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``estimate`` (m, n) complex with each row rotated (and conjugated if better) onto ``truth``."""
    est = np.asarray(estimate, dtype=np.complex128)
    tru = np.asarray(truth, dtype=np.complex128)
    if est.shape != tru.shape:
        raise ValueError(f"estimate {est.shape} and truth {tru.shape} differ in shape")
    best = None
    best_err = None
    for cand in (est, np.conj(est)):
        inner = np.sum(np.conj(cand) * tru, axis=1)
        phase = np.exp(1j * np.angle(inner))
        rot = cand * phase[:, None]
        err = np.linalg.norm(rot - tru, axis=1)
        if best is None:
            best, best_err = rot, err
        else:
            take = err < best_err
            best = np.where(take[:, None], rot, best)
            best_err = np.where(take, err, best_err)
    assert best is not None
    return best


def rel_frobenius_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """``||align(estimate) - truth||_F / ||truth||_F`` after per-row phase/conjugation alignment."""
    tru = np.asarray(truth, dtype=np.complex128)
    return float(np.linalg.norm(align_rows(estimate, tru) - tru) / np.linalg.norm(tru))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays (flattened)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    return float((a @ b) / np.sqrt((a @ a) * (b @ b)))
