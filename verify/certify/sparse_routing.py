"""Sparse routing of free content positions into the first MLP layer (stage 1, verify/certify/attention.py).

In Theorem 1 a free position p (any token) reaches only the first-layer unit select:p, and only the row
that queries p attends to it with a large weight. So instead of every (row, unit) pair, the certificate
keeps the routing FX (free position x hidden unit) sparse, bounds the small attention weights row-uniformly,
and gives explicit pairs only where a row's weight on a free position is large.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from prefixproof.verify.certify import interval as I
from prefixproof.verify.certify.interval import Iv
from prefixproof.verify.certify.lookup_rows import LookupRows

SPARSE_FACTOR = 8  # routing of free positions kept sparse below this many non-zeros per row and column
LARGE_WEIGHT = 0.25  # attention weights above this fraction of their column's largest get explicit pairs


def sparse_pair(M: Iv):
    """An interval matrix as two CSC matrices with one pattern (entries not exactly [0, 0]), or None when it is
    not sparse (more than SPARSE_FACTOR non-zeros per row and column on average)."""
    mask = (M[0] != 0) | (M[1] != 0)
    nnz = int(np.count_nonzero(mask))
    if nnz > SPARSE_FACTOR * (M[0].shape[0] + M[0].shape[1]):
        return None
    i, j = np.nonzero(mask)
    order = sp.csc_array((np.arange(1, nnz + 1, dtype=np.float64), (i, j)), shape=M[0].shape)
    k = order.data.astype(np.int64) - 1  # position of each stored entry in (i, j)
    lo = sp.csc_array((M[0][i, j][k], order.indices, order.indptr), shape=M[0].shape)
    hi = sp.csc_array((M[1][i, j][k], order.indices.copy(), order.indptr.copy()), shape=M[0].shape)
    return lo, hi


def free_sparse(claim: LookupRows, pieces) -> bool:
    return bool(claim.free_pos) and all("FX_sparse" in pc for pc in pieces)


def free_candidates(claim: LookupRows, pieces, upper: np.ndarray):
    """Free positions with sparse routing: a row-uniform bound for the small attention weights, and explicit
    (row, unit) pairs where a row's weight on a free position is large (Theorem 1: the row's own position).

    For free position p and a row r whose weight A_hi[r, p] is at most tau_p (the largest weight not marked
    large), the contribution A[r, p] FX[p, u] is at most tau_p max(FX_hi[p, u], 0); a large weight makes every
    unit u with FX_hi[p, u] > 0 a candidate of that row. Units with FX_hi <= 0 only lose from any weight >= 0.
    """
    free = np.asarray(claim.free_pos)
    rows_out, units_out = [], []
    for pc in pieces:
        A_hi = _columns(pc["A"][1], free)  # (R, n_free), a view when the free positions are consecutive
        col_max = A_hi.max(axis=0) if A_hi.size else np.zeros(len(free))
        big = A_hi > LARGE_WEIGHT * np.maximum(col_max, 0.0)[None, :]
        # the largest weight not marked large (0 where every weight is large; weights' upper bounds are >= 0)
        tau = A_hi.max(axis=0, where=~big, initial=0.0) if A_hi.size else np.zeros(len(free))
        pos = pc["FX_sparse"][1].copy()
        pos.data = np.maximum(pos.data, 0.0)
        upper = I.up(upper + I.up(pos.T @ tau * (1 + 4 * I.gamma(max(len(free), 1)))))
        pos_csr = sp.csr_array(pos)
        pos_csr.eliminate_zeros()
        routed = np.flatnonzero(np.diff(pos_csr.indptr) > 0)  # free positions that can raise some unit
        rr, fi = np.nonzero(big[:, routed])  # a large weight on any other position gives no pair
        ff = routed[fi]
        counts = np.diff(pos_csr.indptr)[ff]
        starts = pos_csr.indptr[ff]
        k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(starts, counts)
        rows_out.append(np.repeat(rr, counts))
        units_out.append(pos_csr.indices[k])
    return upper, rows_out, units_out


def _columns(M: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """M[:, cols], as a view when cols is a run of consecutive columns."""
    if cols.size and np.array_equal(cols, np.arange(cols[0], cols[0] + cols.size)):
        return M[:, cols[0]:cols[0] + cols.size]
    return M[:, cols]


def sparse_free_terms(A: Iv, free: list[int], FX: tuple, rows: np.ndarray, units: np.ndarray) -> Iv:
    """Enclosure of sum over free positions f of A[r, free[f]] FX[f, u] for each pair (r, u), from the
    non-zeros of column u of FX only; the float64 sums are widened by gamma_k of their terms' magnitudes."""
    lo_m, hi_m = FX
    free = np.asarray(free)
    counts = np.diff(lo_m.indptr)[units]
    starts = lo_m.indptr[units]
    total = int(counts.sum())
    pair = np.repeat(np.arange(len(rows)), counts)
    k = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(starts, counts)
    f = lo_m.indices[k]
    r = rows[pair]
    prod = I.mul((A[0][r, free[f]], A[1][r, free[f]]), (lo_m.data[k], hi_m.data[k]))
    n = max(int(counts.max()) if counts.size else 1, 1)
    g = I.gamma(n)
    s_lo = np.bincount(pair, weights=prod[0], minlength=len(rows))
    s_hi = np.bincount(pair, weights=prod[1], minlength=len(rows))
    mag = np.bincount(pair, weights=I.mag(prod), minlength=len(rows))
    err = I.up(g * mag * (1 + 4 * g) + n * I.ETA)
    return I.down(s_lo - err), I.up(s_hi + err)
