"""Steps 1 and 2: the attention enclosures, and the first pre-activations as affine forms in the own value t.

Inputs (docs/certificate-format.md): a virtual position p holds P[p] plus a payload box (every payload
coordinate in [tau(0), tau(V-1)], every other coordinate 0); a free content position holds any token,
E[tok] + P[p] in the column hull of E; a fixed position holds the row's own token. Executed inputs carry one
rounding of the sum E + P.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from prefixproof.checker import iv
from prefixproof.checker.files import Reject


def dense(M):
    return M.toarray() if sp.issparse(M) else np.asarray(M)


def gather(M, i, j):
    return np.asarray(M[i, j]).ravel() if sp.issparse(M) else M[i, j]


def rng(Gc, Gr, lo, hi):
    """Range of g . x over g in [Gc - Gr, Gc + Gr] (rows) and independent x_k in [lo_k, hi_k] (columns)."""
    P, N = (sp.csr_array(Gc).maximum(0), sp.csr_array(Gc).minimum(0)) if sp.issparse(Gc) else \
        (np.maximum(Gc, 0), np.minimum(Gc, 0))
    m = iv.mag((lo, hi))
    n = iv.row_len(Gc) + iv.row_len(Gr)
    L = np.asarray(P @ lo) + np.asarray(N @ hi)
    H = np.asarray(P @ hi) + np.asarray(N @ lo)
    rad = iv.safe(np.asarray(Gr @ m) + iv.gamma(n + 2) * np.asarray(iv.absm(Gc) @ m), n)
    return iv.dn(L - rad), iv.up(H + rad)


class Inputs:
    """The input boxes of the claim, exact (x) and executed (xe: one more rounding of E + P)."""

    def __init__(self, E, Pos, rows, tmin: float, tmax: float, u: float, eta: float) -> None:
        d = Pos.shape[1]
        self.E, self.P, self.rows, self.u, self.eta = E, Pos, rows, u, eta
        box = (np.zeros(d), np.zeros(d))
        box[0][rows.payload], box[1][rows.payload] = tmin, tmax
        elo, ehi = dense(E.min(axis=0)).ravel(), dense(E.max(axis=0)).ravel()
        self.shared = list(range(rows.virtual)) + rows.free_pos
        self.x = {p: (iv.dn(Pos[p] + (box[0] if p < rows.virtual else elo)),
                      iv.up(Pos[p] + (box[1] if p < rows.virtual else ehi))) for p in self.shared}
        self.xe = {p: iv.widen(x, iv.up(u * iv.mag(x) + eta)) for p, x in self.x.items()}
        self.emag = np.maximum(np.abs(elo), np.abs(ehi))

    def project(self, M, toks: np.ndarray, p: int, u: float):
        """Enclosure of the executed fl(M fl(E[tok] + P[p])) for each token: shape (out, len(toks))."""
        ME = M @ self.E.T
        y = dense(ME[:, toks]) + np.asarray(M @ self.P[p])[:, None]
        A = iv.absm(M)
        S = dense((A @ iv.absm(self.E).T)[:, toks]) + np.asarray(A @ np.abs(self.P[p]))[:, None]
        n = iv.row_len(M)
        rad = iv.safe(S * (2 * iv.gamma(n + 2) + iv.gamma(n + 1, u)) + (n + 1) * self.eta
                      * (1 + np.asarray(A.sum(axis=1)).ravel()[:, None]), n)
        return iv.dn(y - rad), iv.up(y + rad)


def exec_lin(M, x, u: float, eta: float):
    """fl(M x) for x in an interval (columns): the real product, widened by gamma_n(u) |M| |x| + n eta."""
    n = iv.row_len(M)
    out = iv.lin(M, x)
    return iv.widen(out, iv.safe(iv.gamma(n, u) * np.asarray(iv.absm(M) @ iv.mag(x)) + n * eta, n))


def scores(head, inp: Inputs, rows, u: float, eta: float):
    """Executed scores fl(fl(q . k) fl(scale)) of every row and position: intervals of shape (R, n)."""
    WQ, WK, scale = head
    R, n, dk = len(rows.own), rows.n_positions, WQ.shape[0]
    q, k = (np.empty((R, dk)), np.empty((R, dk))), (np.empty((R, n, dk)), np.empty((R, n, dk)))

    def enc(M, p, sel):  # (rows of sel, out): shared positions alike for all rows, fixed ones per token
        if p in inp.xe:
            return exec_lin(M, inp.xe[p], u, eta)
        return tuple(x.T for x in inp.project(M, rows.fixed_tok[sel, rows.fixed_pos.index(p)], p, u))
    for p in inp.shared + list(rows.fixed_pos):
        k[0][:, p], k[1][:, p] = enc(WK, p, slice(None))
        sel = rows.query_pos == p
        if sel.any():
            q[0][sel], q[1][sel] = enc(WQ, p, sel)
    prod = iv.mul((q[0][:, None, :], q[1][:, None, :]), k)
    s = iv.widen(iv.isum(prod), iv.safe(iv.gamma(dk, u) * np.sum(iv.mag(prod), axis=-1) + dk * eta, dk))
    s = iv.mul(s, (iv.dn(scale * (1 - u)), iv.up(scale * (1 + u))))
    return iv.widen(s, iv.up(u * iv.mag(s) + eta))


def _exp_dn(x):
    return np.maximum(iv.dn(np.exp(iv.dn(x)) * (1 - 8 * iv.U64)), 0.0)


def _exp_up(x):
    return iv.up(np.exp(iv.up(x)) * (1 + 8 * iv.U64))


def softmax(s, visible, u: float, eta: float, exp_u: float):
    """Enclosure of every executed softmax weight, key by key (docs/certificate-format.md, "Softmax")."""
    lo, hi = np.where(visible, s[0], -np.inf), np.where(visible, s[1], -np.inf)
    M, n = np.max(hi, axis=1, keepdims=True), int(visible.sum(axis=1).max())
    with np.errstate(invalid="ignore"):  # D_j >= u |s_j - m|, the executed shift m in [max lo, max hi]
        D = np.where(visible, iv.up(u * iv.up(np.maximum(np.abs(lo - M), np.abs(hi - lo.max(1, keepdims=True))))), 0)
        e_lo = np.maximum(iv.dn(_exp_dn(iv.dn(iv.dn(lo - M) - D)) * (1 - exp_u * u) - eta), 0.0)
        e_hi = np.where(visible, iv.up(_exp_up(iv.up(iv.up(hi - M) + D)) * (1 + exp_u * u) + eta), 0.0)
    tot_hi = iv.safe(e_hi.sum(axis=1, keepdims=True), n)
    tot_lo = np.maximum(iv.dn(e_lo.sum(axis=1, keepdims=True) * (1 - 2 * iv.gamma(n + 2))), 0.0)
    oth_hi, oth_lo = iv.up(tot_hi - e_hi), np.maximum(iv.dn(tot_lo - e_lo), 0.0)  # the other keys' sums
    a_lo = np.where(e_lo > 0, iv.dn(e_lo / iv.up(e_lo + oth_hi)), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a_hi = np.where(iv.dn(e_hi + oth_lo) > 0, iv.up(e_hi / iv.dn(e_hi + oth_lo)), 1.0)
    if u > 0:  # the executed sum (gamma_n) and division (u, eta)
        g = iv.gamma(n, u)
        a_lo = iv.dn(a_lo * iv.dn(iv.dn(1 - u) / iv.up(1 + g)) - eta)
        a_hi = iv.up(a_hi * iv.up(iv.up(1 + u) / iv.dn(1 - g)) + eta)
    return (np.where(visible, np.clip(a_lo, 0, 1), 0.0), np.where(visible, np.clip(a_hi, 0, 1), 0.0))
