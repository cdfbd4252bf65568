"""Interval products with mostly-zero factors (verify/certify/interval.py `linear` and `matmul` dispatch here).

The same midpoint-radius enclosures, with the products formed by scipy.sparse over the live entries only:
an entry [0, 0] contributes nothing, in exact and in executed arithmetic. At LLaMA sizes the stream of
Theorem 1 is (positions x 2N+1) with two live entries per row.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from prefixproof.verify.certify.interval import Exec, Iv, _abs, _enclose_products, _pattern, _row_len, mid_rad


def sparse_linear(x: Iv, live: np.ndarray, W: Any, ex: Exec, W_rad: Any) -> Iv:
    """`linear` for a mostly-zero 2-D input: the same enclosure, the products formed by scipy.sparse over the
    live entries only (an entry [0, 0] contributes nothing)."""
    i, j = np.nonzero(live)
    c, r = mid_rad((x[0][i, j], x[1][i, j]))
    shape = x[0].shape
    C = sp.csr_array((c, (i, j)), shape=shape)
    Rr = sp.csr_array((r, (i, j)), shape=shape)
    L = sp.csr_array((np.ones(len(i)), (i, j)), shape=shape)
    AC = abs(C)

    def right(M: Any, Wm: Any) -> np.ndarray:  # M @ Wm.T as a dense array
        out = M @ (Wm.T if sp.issparse(Wm) else np.asarray(Wm).T)
        return out.toarray() if sp.issparse(out) else np.asarray(out)

    absW = _abs(W)
    spread = right(Rr, absW)
    if W_rad is not None:
        spread = spread + right(AC + Rr, W_rad)
    out = _enclose_products(right(C, W), right(AC, absW), spread, max(_row_len(W), 1), ex)
    live_W = _pattern(W) if W_rad is None else _pattern(absW + _abs(W_rad))
    zero = right(L, live_W) == 0
    return np.where(zero, 0.0, out[0]), np.where(zero, 0.0, out[1])


def sparse_matmul(ac, ar, bc, br, live_a, ex: Exec) -> Iv:
    """matmul for mostly-zero 2-D factors: the same midpoint-radius enclosure, with the products formed by
    scipy.sparse (exact zeros contribute nothing) and n the most live entries in a row of A (an upper bound of
    the non-zero terms of every dot product)."""
    S = sp.csr_array
    sac, sar, sbc, sbr = S(ac), S(ar), S(bc), S(br)
    aac, abc = abs(sac), abs(sbc)
    centre = (sac @ sbc).toarray()
    size = (aac @ abc).toarray()
    spread = (aac @ sbr + sar @ (abc + sbr)).toarray()
    n = max(int(live_a.sum(axis=1).max()), 1)
    return _enclose_products(centre, size, spread, n, ex)
