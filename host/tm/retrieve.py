"""Numerical interferometry: intensity frames -> distances -> anchor geometry (MDS) -> fields -> rows.

Pure numpy on frames already acquired (docs/tm_retrieval.md has the equations). Rows (camera pixels)
are independent, so they are processed in blocks of ``block_rows``: memory and time are linear in
the number of rows, and every step is vectorized over the rows of a block.

Per row, with p_s = -B a_s the "anchor points" (p_0 = 0):

1. distances: ``D_ij = |B(a_j - a_i)|^2 = |p_i - p_j|^2`` from the anchor-difference frames (dark
   subtracted, averaged over repeats);
2. classical MDS of D (double centring, two largest eigenpairs) gives the p_s in the complex plane,
   up to a rotation and a reflection: the per-row phase and conjugation no intensity can see;
3. lateration: frame ``x_k + a_s`` measures ``|z_k - p_s|^2`` with z_k = (B x_k)_i; expanding,
   ``-2 Re(p_s) u - 2 Im(p_s) v + w = d_ks^2 - |p_s|^2`` is linear in (u, v, w = |z|^2):
   least squares over the S + 1 anchors (saturated frames get weight 0);
4. linear solve: Z = B X^T over the K signals, ``B = Z pinv(X^T)`` (one pseudo-inverse shared by all
   rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from .plan import PatternLayout, TMPlan

#: default rows per block (memory per block ~ 8 K (S + 1) block_rows bytes a few times over)
BLOCK_ROWS = 256


@dataclass
class Retrieval:
    """Result of :func:`retrieve` (all arrays per camera pixel = row).

    Attributes
    ----------
    matrix:
        B (m, n) complex128 in sqrt(DN) units: ``|B x|^2`` is the expected frame above dark, DN.
    anchor_fields:
        (m, S) complex128: ``B a_s`` for s = 1..S in the same per-row frame as ``matrix`` (the last
        one is the anchor linear scheme's reference field ``B r``).
    dark_dn:
        (m,) mean dark frame, DN.
    diagnostics:
        Per-row fit diagnostics (see :func:`retrieve`) and scalar summaries.
    """

    matrix: np.ndarray
    anchor_fields: np.ndarray
    dark_dn: np.ndarray
    diagnostics: dict[str, np.ndarray | float | int] = field(default_factory=dict)


def mds_points(dist2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points in the plane from squared distances, per row: (r, P, P) -> complex (r, P), eig ratio (r,).

    Classical MDS: ``G = -1/2 J D J`` (J the centring matrix), coordinates from the two largest
    eigenpairs, then translated so that point 0 is at the origin. The result matches the true
    points up to a rotation and a reflection. The second output is ``lambda_3 / lambda_2`` (0 for
    exact planar distances; grows with the noise).
    """
    p = dist2.shape[-1]
    j = np.eye(p) - 1.0 / p
    g = -0.5 * j @ dist2 @ j
    w, v = np.linalg.eigh(g)  # ascending
    lam = np.clip(w[:, -2:], 0.0, None)
    xy = v[:, :, -2:] * np.sqrt(lam)[:, None, :]
    z = xy[:, :, 1] + 1j * xy[:, :, 0]
    z = z - z[:, :1]
    ratio = np.abs(w[:, -3]) / np.maximum(w[:, -2], 1e-300) if p > 2 else np.zeros(dist2.shape[0])
    return z, ratio


def laterate(points: np.ndarray, d2: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Fields z from squared distances to known points, per row and signal.

    points: (r, P) complex anchor points p_s; d2: (r, K, P) measured ``|z - p_s|^2``; valid: (r, K, P)
    bool (False = saturated, left out) or None. Returns z (r, K) complex, w = the |z|^2 estimate
    (r, K), the relative residual (r, K), and ok (r, K) bool (at least 3 valid equations).
    """
    design = np.stack([-2.0 * points.real, -2.0 * points.imag, np.ones(points.shape, dtype=np.float64)],
                      axis=-1)  # (r, P, 3)
    rhs = d2 - (np.abs(points) ** 2)[:, None, :]  # (r, K, P)
    pinv = np.linalg.pinv(design)  # (r, 3, P): one per row, shared by its signals
    sol = np.matmul(rhs, np.swapaxes(pinv, 1, 2))  # (r, K, 3)
    ok = np.ones(d2.shape[:2], dtype=bool)
    if valid is not None and not valid.all():
        bad_r, bad_k = np.nonzero(~valid.all(axis=2))
        wts = valid[bad_r, bad_k].astype(np.float64)  # (q, P)
        dsg = design[bad_r]  # (q, P, 3)
        gram = np.einsum("qs,qsa,qsb->qab", wts, dsg, dsg)
        b = np.einsum("qs,qsa,qs->qa", wts, dsg, rhs[bad_r, bad_k])
        enough = wts.sum(axis=1) >= 3
        gram[~enough] = np.eye(3)
        sol[bad_r, bad_k] = np.linalg.solve(gram, b[..., None])[..., 0]
        ok[bad_r[~enough], bad_k[~enough]] = False
    err = np.matmul(sol, np.swapaxes(design, 1, 2)) - rhs  # (r, K, P)
    if valid is not None:
        err = np.where(valid, err, 0.0)
        rhs = np.where(valid, rhs, 0.0)
    resid = np.sqrt((err**2).sum(-1) / np.maximum((rhs**2).sum(-1), 1e-300))
    return sol[..., 0] + 1j * sol[..., 1], sol[..., 2], resid, ok


def solve_rows(z: np.ndarray, x: np.ndarray, ok: np.ndarray | None = None,
               pinv_xt: np.ndarray | None = None) -> np.ndarray:
    """B (r, n) from Z (r, K) = B X^T with X (K, n) binary, least squares per row.

    Rows where some signals are not ``ok`` are solved from their valid signals only.
    """
    xf = x.astype(np.float64)
    if pinv_xt is None:
        pinv_xt = np.linalg.pinv(xf.T)  # (K, n)
    b = z @ pinv_xt
    if ok is not None and not ok.all():
        for r in np.flatnonzero(~ok.all(axis=1)):
            keep = ok[r]
            b[r] = np.linalg.lstsq(xf[keep], z[r, keep], rcond=None)[0]
    return b


def retrieve(
    frames: np.ndarray,
    plan: TMPlan,
    layout: PatternLayout,
    adc_max_dn: float | None = None,
    block_rows: int = BLOCK_ROWS,
    blas_threads: int | None = 1,
) -> Retrieval:
    """Recover the rows of B from the frames of :func:`host.tm.plan.build_patterns`.

    ``frames`` (F, m) numeric; ``adc_max_dn``: frames at or above it are saturated (left out of the
    lateration; None = no ADC). Per-row diagnostics: ``mds_eig_ratio`` (lambda_3/lambda_2 of the
    anchor Gram matrix), ``lateration_resid`` (median over signals of the relative residual),
    ``solve_resid`` (||Z - B X^T|| / ||Z||), ``modulus_consistency`` (median relative gap between
    the lateration's |z|^2 and |B x|^2 of the solved row), ``anchor_drift`` (relative change of the
    anchor distances between the first and second half of the repeats), ``saturated`` (frames of
    the row at the ADC maximum).

    ``blas_threads``: BLAS threads during the retrieval (None: leave as is). The per-row problems
    are tiny (S+1 points, 3 unknowns), so threads only add contention; 1 was 3x faster on a
    loaded 2-core machine (docs/tm_retrieval.md).
    """
    with threadpool_limits(limits=blas_threads):
        return _retrieve(frames, plan, layout, adc_max_dn, block_rows)


def _retrieve(frames: np.ndarray, plan: TMPlan, layout: PatternLayout, adc_max_dn: float | None,
              block_rows: int) -> Retrieval:
    y = np.asarray(frames)
    if y.ndim != 2 or y.shape[0] != plan.frames:
        raise ValueError(f"frames must be ({plan.frames}, m) for this plan, got {y.shape}")
    m = y.shape[1]
    x = plan.signal_matrix()
    u, sv, vt = np.linalg.svd(x.astype(np.float64), full_matrices=False)
    pinv_xt = (u / sv) @ vt  # pinv(X^T) = U S^-1 V^T for X = U S V^T, (K, n)
    pairs = plan.anchor_pair_index()
    s1 = plan.anchors + 1
    n = plan.n_features
    out_b = np.empty((m, n), dtype=np.complex128)
    out_a = np.empty((m, plan.anchors), dtype=np.complex128)
    dark = np.empty(m)
    diag = {k: np.empty(m) for k in ("mds_eig_ratio", "lateration_resid", "solve_resid",
                                     "modulus_consistency", "anchor_drift")}
    saturated = np.zeros(m, dtype=np.int64)
    for lo in range(0, m, max(1, int(block_rows))):
        hi = min(m, lo + max(1, int(block_rows)))
        yb = y[:, lo:hi].astype(np.float64)  # (F, r)
        d = yb[layout.dark].mean(axis=0)
        dark[lo:hi] = d
        a1 = yb[layout.anchor_first].mean(axis=0)  # (P, r)
        a_all = np.concatenate([yb[layout.anchor_first], yb[layout.anchor_last]]).mean(axis=0) - d
        if layout.anchor_last.shape[0]:
            a2 = yb[layout.anchor_last].mean(axis=0)
            diag["anchor_drift"][lo:hi] = np.linalg.norm(a2 - a1, axis=0) / np.maximum(
                np.linalg.norm(a_all, axis=0), 1e-300)
        else:
            diag["anchor_drift"][lo:hi] = np.nan
        dist = np.zeros((hi - lo, s1, s1))
        dist[:, pairs[:, 0], pairs[:, 1]] = np.clip(a_all, 0.0, None).T
        dist[:, pairs[:, 1], pairs[:, 0]] = dist[:, pairs[:, 0], pairs[:, 1]]
        pts, ratio = mds_points(dist)
        diag["mds_eig_ratio"][lo:hi] = ratio
        sig = yb[layout.signal]  # (K, S+1, r)
        valid = None
        if adc_max_dn is not None:
            valid = np.moveaxis(sig < adc_max_dn, 2, 0)
            saturated[lo:hi] = (yb >= adc_max_dn).sum(axis=0)
        d2 = np.moveaxis(sig, 2, 0) - d[:, None, None]  # (r, K, S+1)
        z, w, resid, ok = laterate(pts, d2, valid)
        b = solve_rows(z, x, ok, pinv_xt)
        zfit = b @ x.T
        diag["lateration_resid"][lo:hi] = np.median(resid, axis=1)
        diag["solve_resid"][lo:hi] = np.linalg.norm(z - zfit, axis=1) / np.maximum(np.linalg.norm(z, axis=1),
                                                                                  1e-300)
        mod = np.abs(zfit) ** 2
        diag["modulus_consistency"][lo:hi] = np.median(np.abs(w - mod) / np.maximum(mod.mean(axis=1,
                                                                                              keepdims=True),
                                                                                     1e-300), axis=1)
        out_b[lo:hi] = b
        out_a[lo:hi] = -pts[:, 1:]  # p_s = -B a_s
    summary: dict[str, np.ndarray | float | int] = dict(diag)
    summary["saturated"] = saturated
    for k in diag:
        summary[f"{k}_median"] = float(np.nanmedian(diag[k]))
    summary["saturated_frames_total"] = int(saturated.sum())
    summary["signal_condition_number"] = float(sv[0] / sv[-1])
    return Retrieval(out_b, out_a, dark, summary)
