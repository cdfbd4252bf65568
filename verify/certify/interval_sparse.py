"""Interval products with mostly-zero factors (verify/certify/interval.py `linear` and `matmul` dispatch here).

The same midpoint-radius enclosures, with the products formed by scipy.sparse over the live entries only:
an entry [0, 0] contributes nothing, in exact and in executed arithmetic. At LLaMA sizes the stream of
Theorem 1 is (positions x 2N+1) with two live entries per row.

The enclosure (`_enclose_products`) is evaluated elementwise, so it is evaluated only where some product term
is live (the pattern of the live factors' product) and once for the empty sum; the dense result is filled with
the latter and the former scattered in. The values are the ones the dense evaluation gives, element by element,
without the dense temporaries (at N = 4,096 each is a 134 MB array).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from prefixproof.verify.certify.interval import Exec, Iv, _abs, _enclose_products, _pattern, _row_len, mid_rad


def _at(M: Any, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Entries (i, j) of a sparse product (0 where it stores none)."""
    if len(i) == 0:  # scipy answers an empty fancy index with a sparse array
        return np.zeros(0)
    return np.asarray(sp.csr_array(M)[i, j], dtype=np.float64).ravel()


def _scatter(shape: tuple[int, int], i: np.ndarray, j: np.ndarray, live: Iv, empty: Iv) -> Iv:
    """Dense (lo, hi) of `shape`: `empty` (the enclosure of a sum with no live term) everywhere, `live` at (i, j)."""
    out = []
    for k in (0, 1):
        a = np.full(shape, float(empty[k]))
        a[i, j] = live[k]
        out.append(a)
    return out[0], out[1]


def _enclose_on(pattern: Any, products: tuple[Any, Any, Any], n: int, ex: Exec, shape: tuple[int, int],
                empty: Iv | None) -> Iv:
    """`_enclose_products` of the sparse (centre, size, spread) at the entries of `pattern`; elsewhere `empty`
    (None: exactly 0, an output none of whose terms is live)."""
    P = sp.coo_array(pattern)
    keep = P.data != 0
    i, j = P.row[keep], P.col[keep]
    live = _enclose_products(*(_at(M, i, j) for M in products), n, ex)
    if empty is None:
        empty = (0.0, 0.0)
    return _scatter(shape, i, j, live, empty)


def sparse_linear(x: Iv, live: np.ndarray, W: Any, ex: Exec, W_rad: Any) -> Iv:
    """`linear` for a mostly-zero 2-D input: the same enclosure, the products formed by scipy.sparse over the
    live entries only (an entry [0, 0] contributes nothing; an output with no live term is exactly 0)."""
    i, j = np.nonzero(live)
    c, r = mid_rad((x[0][i, j], x[1][i, j]))
    shape = x[0].shape
    C = sp.csr_array((c, (i, j)), shape=shape)
    Rr = sp.csr_array((r, (i, j)), shape=shape)
    L = sp.csr_array((np.ones(len(i)), (i, j)), shape=shape)
    AC = abs(C)

    def right(M: Any, Wm: Any) -> Any:  # M @ Wm.T, sparse
        return M @ (sp.csr_array(Wm).T if sp.issparse(Wm) else sp.csr_array(np.asarray(Wm)).T)

    absW = _abs(W)
    spread = right(Rr, absW)
    if W_rad is not None:
        spread = spread + right(AC + Rr, W_rad)
    live_W = _pattern(W) if W_rad is None else _pattern(absW + _abs(W_rad))
    return _enclose_on(right(L, live_W), (right(C, W), right(AC, absW), spread), max(_row_len(W), 1), ex,
                       (shape[0], W.shape[0]), None)


def sparse_matmul(ac, ar, bc, br, live_a, ex: Exec) -> Iv:
    """matmul for mostly-zero 2-D factors: the same midpoint-radius enclosure, with the products formed by
    scipy.sparse (exact zeros contribute nothing) and n the most live entries in a row of A (an upper bound of
    the non-zero terms of every dot product). An entry with no live term gets the enclosure of an empty sum,
    as the dense evaluation gives it."""
    S = sp.csr_array
    sac, sar, sbc, sbr = S(ac), S(ar), S(bc), S(br)
    aac, abc = abs(sac), abs(sbc)
    n = max(int(live_a.sum(axis=1).max()), 1)
    pattern = _pattern(S(live_a.astype(np.float64))) @ _pattern(abc + sbr)
    zero = np.zeros(1)
    empty = _enclose_products(zero, zero, zero, n, ex)
    return _enclose_on(pattern, (sac @ sbc, aac @ abc, aac @ sbr + sar @ (abc + sbr)), n, ex,
                       (ac.shape[0], bc.shape[1]), (float(empty[0][0]), float(empty[1][0])))
