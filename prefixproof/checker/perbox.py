"""Step 5 (certificate version 2): single boxes (row r, value y) re-evaluated through the forward pass with one
directed rounding per operation of the format F (docs/certificate-format.md, "Step 5: perbox").

Everything is recomputed from the weights; the certificate names only the boxes and their claimed margins.
An operation whose exact result lies in [lo, hi] for every input of the box returns, in every execution of
the class, a value of F in [RN(lo - w(lo)), RN(hi + w(hi))], w(s) = u^2 |s| + eta (one optional rounding to a
wider format first); RN is computed exactly on F's grid in float64.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from prefixproof.checker import iv
from prefixproof.checker.attention import _exp_dn, _exp_up, dense
from prefixproof.checker.files import Reject

PIECES, BATCH = 64, 4_000_000  # runs of decoder inputs per box; interval products formed at once


class Grid:
    """The values of F inside float64 (precision bits = -log2 u, smallest subnormal eta)."""

    def __init__(self, fmt: str, u: float, eta: float) -> None:
        self.dt = ml_dtypes.bfloat16 if fmt == "bfloat16" else np.dtype(fmt)
        self.bits, self.u, self.u2, self.eta = round(-np.log2(u)), u, u * u, eta
        self.emin, self.big = round(np.log2(eta)) + self.bits - 1, float(ml_dtypes.finfo(self.dt).max)
        self.uint = np.uint16 if np.dtype(self.dt).itemsize == 2 else np.uint32

    def q(self, x):  # the spacing of F at x
        return np.ldexp(1.0, np.maximum(np.frexp(x)[1] - 1, self.emin) - self.bits + 1)

    def rn(self, x, how=np.rint):  # to nearest (ties to even), or floor/ceil; beyond the largest value: inf
        with np.errstate(invalid="ignore", over="ignore"):
            r = how(x / self.q(x)) * self.q(x)
        return np.where(np.abs(r) > self.big, np.copysign(np.inf, r), r)

    def wide(self, s, d: int):  # bound of s after an optional rounding with unit roundoff u^2, in direction d
        w = iv.up(self.u2 * np.abs(s) + self.eta)
        return iv.up(s + w) if d > 0 else iv.dn(s - w)

    def out(self, lo, hi):  # the F result of an operation whose exact value lies in [lo, hi]
        return self.rn(self.wide(iv.dn(lo), -1)), self.rn(self.wide(iv.up(hi), 1))

    def err(self, t, n):
        """Rounding of the n - 2 internal nodes of any summation tree of terms t: (S, E) with S >= |partial sums|."""
        S = iv.safe(np.maximum(np.maximum(t[1], 0).sum(-1), np.maximum(-t[0], 0).sum(-1)), t[0].shape[-1])
        S = iv.up(iv.up(S + n * self.eta) * iv.up(np.exp(2 * n * self.u) * (1 + 8 * iv.U64)))
        return S, iv.up(np.maximum(n - 2, 0) * iv.up(iv.up(0.5 * self.q(S) + self.u2 * S) + self.eta))

    def dot(self, p, bias=None):
        """F result of the sum, in any order, of the products p = (lo, hi) (..., n) (exactly 0 where a factor
        is 0), each exact or rounded to the wider format and/or F, plus a bias (a value of F, not rounded)."""
        wl, wh = self.wide(p[0], -1), self.wide(p[1], 1)
        t = np.minimum(self.rn(wl), wl), np.maximum(self.rn(wh), wh)
        if bias is not None:
            b = np.broadcast_to(bias, p[0].shape[:-1])[..., None]
            p, t = [tuple(np.concatenate([x, b], axis=-1) for x in pair) for pair in (p, t)]
        nz = (p[0] != 0) | (p[1] != 0)
        t, n = (np.where(nz, t[0], 0.0), np.where(nz, t[1], 0.0)), nz.sum(-1)
        s, E = iv.isum(t), self.err(t, n)[1]
        one = n == 1  # a single term: its own rounding (inside `out`)
        lo = np.where(one, np.where(nz, p[0], 0).sum(-1), iv.dn(s[0] - E))
        hi = np.where(one, np.where(nz, p[1], 0).sum(-1), iv.up(s[1] + E))
        lo, hi = self.out(lo, hi)
        return np.where(n == 0, 0.0, lo), np.where(n == 0, 0.0, hi)

    def matvec(self, x, W, bias=None):  # x (..., d) times W (m, d) transposed, over each row's non-zero columns
        idx, Wk = W
        return self.dot(prod((x[0][..., idx], x[1][..., idx]), (Wk, Wk)), bias)

    def softmax(self, s, exp_u: float):
        """Executed softmax over the last axis (every key visible)."""
        m_lo, m_hi = s[0].max(-1, keepdims=True), s[1].max(-1, keepdims=True)
        d_lo, d_hi = self.out(s[0] - m_hi, s[1] - m_lo)  # s_j - m, m one of the executed scores
        k = exp_u * self.u
        e_lo = np.maximum(self.rn(iv.dn(_exp_dn(d_lo) * (1 - k) - self.eta), np.ceil), 0.0)
        e_hi = self.rn(iv.up(_exp_up(np.minimum(d_hi, 0.0)) * (1 + k) + self.eta), np.floor)
        N, n = s[0].shape[-1], (e_hi > 0).sum(-1, keepdims=True)
        tot_hi = iv.safe(e_hi.sum(-1, keepdims=True), N)
        tot_lo = iv.dn(e_lo.sum(-1, keepdims=True) * (1 - 2 * iv.gamma(N + 2)))
        o_hi, o_lo = np.maximum(iv.up(tot_hi - e_hi), 0.0), np.maximum(iv.dn(tot_lo - e_lo), 0.0)  # the others
        E = self.err((np.zeros_like(tot_hi)[..., None], tot_hi[..., None]), n)[1]
        u, u2, eta, up, dn = self.u, self.u2, self.eta, iv.up, iv.dn
        z_hi = up(up(up(up(e_lo + o_hi + E) * (1 + u2)) + eta) * (1 + u) + eta)  # Z, e_j at its lower end

        def z_lo(e):
            return dn(dn(dn(dn(e + o_lo - E) * (1 - u2)) - eta) * (1 - u) - eta)
        with np.errstate(divide="ignore", invalid="ignore"):
            r_lo = np.where(e_lo > 0, dn(e_lo / z_hi), 0.0)  # e / Z is increasing in e
            r_hi = np.maximum(*[np.where(z_lo(e) > 0, up(e / z_lo(e)), 1.0) for e in (e_lo, e_hi)])
        return self.rn(self.wide(r_lo, -1)), np.where(e_hi > 0, np.minimum(self.rn(self.wide(r_hi, 1)), 1.0), 0.0)

    def runs(self, z):
        """The one-wide box [z_lo, z_hi] (values of F) as at most PIECES runs of consecutive values of F."""
        def rank(x):
            f = np.abs(x).astype(self.dt)
            if not np.array_equal(f.astype(np.float64), np.abs(x)):
                raise Reject("perbox", "a decoder input is not a value of the format")
            return np.sign(x) * f.view(self.uint).astype(np.float64)
        r_lo, r_hi = rank(z[0][:, 0]), rank(z[1][:, 0])
        count = r_hi - r_lo + 1
        k = int(min(PIECES, count.max()))
        for i in range(k):
            a = np.minimum(r_lo + np.floor(count * i / k), r_hi)
            b = np.minimum(np.maximum(r_lo + np.floor(count * (i + 1) / k) - 1, a), r_hi)
            yield tuple((np.sign(r) * np.abs(r).astype(self.uint).view(self.dt).astype(np.float64))[:, None]
                        for r in (a, b))


def cols(W):
    """W's rows as (column indices, weights) of each row's non-zero entries, padded with weight exactly 0."""
    K = max(int((W != 0).sum(1).max(initial=0)), 1)
    idx = np.argsort(W == 0, axis=1, kind="stable")[:, :K]
    return idx, np.take_along_axis(W, idx, 1)


def prod(a, b):
    """Outward enclosure of the products, exactly 0 where a factor is exactly 0."""
    lo, hi = iv.mul(a, b)
    z = ((a[0] == 0) & (a[1] == 0)) | ((b[0] == 0) & (b[1] == 0))
    return np.where(z, 0.0, lo), np.where(z, 0.0, hi)


def margins(g: Grid, net, rows, r, y, tau, exp_u: float):
    """Lower bounds of the decode margin on boxes (r[i], y[i]), all with the same query position."""
    E, P, heads, mlp, dec = net
    B, qp, d = len(r), int(rows.query_pos[r[0]]), P.shape[1]
    lo, hi = np.zeros((B, qp + 1, d)), np.zeros((B, qp + 1, d))
    for p in range(qp + 1):
        if p < rows.virtual:  # payload coordinates in [tau(0), tau(V-1)], the row's own fixed to tau(y)
            lo[:, p, rows.payload], hi[:, p, rows.payload] = tau[0], tau[-1]
        elif p in rows.fixed_pos:
            lo[:, p] = hi[:, p] = E[rows.fixed_tok[r, rows.fixed_pos.index(p)]]
        else:  # a free position: any token
            lo[:, p], hi[:, p] = E.min(axis=0), E.max(axis=0)
    own = rows.own_pos[r] <= qp
    lo[own.nonzero()[0], rows.own_pos[r][own], rows.payload[rows.own[r]][own]] = tau[y][own]
    hi[own.nonzero()[0], rows.own_pos[r][own], rows.payload[rows.own[r]][own]] = tau[y][own]
    x = g.out(lo + P[: qp + 1], hi + P[: qp + 1])
    total = None
    for WQ, WK, WV, WO, scale in heads:
        q = g.matvec((x[0][:, qp], x[1][:, qp]), WQ)
        k, v = g.matvec(x, WK), g.matvec(x, WV)
        s = g.dot(prod((q[0][:, None], q[1][:, None]), k))
        c = [s[i] * f for i in (0, 1) for f in (scale, float(g.rn(scale)))]  # the scale exact or rounded to F
        A = g.softmax(g.out(np.minimum.reduce(c), np.maximum.reduce(c)), exp_u)
        o = g.matvec(g.dot(prod((A[0][:, None], A[1][:, None]), (v[0].swapaxes(1, 2), v[1].swapaxes(1, 2)))), WO)
        total = o if total is None else g.out(total[0] + o[0], total[1] + o[1])
    z = total
    for k, (W, b) in enumerate(mlp):  # ReLU after every Dense layer but the model's last
        z = g.matvec(z, W, b)
        z = (np.maximum(z[0], 0.0), np.maximum(z[1], 0.0)) if k < len(mlp) - 1 or dec[1] is not None else z
    if not (np.isfinite(z[0]).all() and np.isfinite(z[1]).all()):
        return np.full(B, -np.inf)  # overflow: outside the execution class
    worst = np.full(B, np.inf)
    for piece in (g.runs(z) if z[0].shape[1] == 1 else [z]):
        L = g.matvec(piece, *dec)
        others = L[1].copy()
        others[np.arange(B), y] = -np.inf
        m = iv.dn(L[0][np.arange(B), y] - others.max(axis=1))
        worst = np.minimum(worst, np.where(np.isfinite(m), m, -np.inf))
    return worst


def merged(arrays, V: int):
    """Blocks and per-box entries, each in file order sorted by (row, value), merged for the coverage step."""
    r, a, b = (np.concatenate([arrays[f"blocks.{k}"], arrays["perbox.row" if k == "row" else "perbox.y"]])
               for k in ("row", "ya", "yb"))
    for name, key in (("blocks", arrays["blocks.row"] * V + arrays["blocks.ya"]),
                      ("perbox", arrays["perbox.row"] * V + arrays["perbox.y"])):
        if np.any(np.diff(key) <= 0):
            raise Reject(f"coverage[{name}]", "entries must be sorted by row then value, without repeats")
    o = np.lexsort((a, r))
    return r[o], a[o], b[o]


def network(t, cfg):
    """(embedding, positions, heads, hidden Dense layers, decoder) of the one layer, as dense float64 values of F."""
    layer = cfg["layers"][0]
    heads = [tuple(cols(dense(t(f"layers.0.heads.{h}.{w}"))) for w in ("W_Q", "W_K", "W_V", "W_O"))
             + (float(hd["scale"]),) for h, hd in enumerate(layer["heads"])]
    mlp = [(cols(dense(t(f"layers.0.mlp.{k}.W"))), dense(t(f"layers.0.mlp.{k}.b")).ravel())
           for k in range(layer["mlp_layers"])]
    dec, mlp = ((cols(dense(t("unembed"))), None), mlp) if cfg["unembed"] else (mlp[-1], mlp[:-1])  # None: unembed
    return dense(t("embed")), dense(t("pos")), heads, mlp, dec


def bounds(g: Grid, net, rows, r, y, tau, exp_u: float):
    """The per-operation margin lower bound of every box (r[i], y[i]), in batches of at most BATCH products."""
    mine = np.full(len(r), -np.inf)
    mats = [W for h in net[2] for W in h[:4]] + [W for W, _ in net[3]]
    width = sum(W[1].size for W in mats) + PIECES * net[4][0][1].size
    for qp in np.unique(rows.query_pos[r]):
        idx = np.flatnonzero(rows.query_pos[r] == qp)
        step = max(1, BATCH // ((int(qp) + 1) * width))
        for s in range(0, len(idx), step):
            mine[idx[s:s + step]] = margins(g, net, rows, r[idx[s:s + step]], y[idx[s:s + step]], tau, exp_u)
    return mine


def check(arrays, t, rows, cfg, fmt: str, tau, demanded: float, say, seen=lambda *_: None) -> float:
    """Re-evaluate every per-box entry; return the smallest claimed margin (each confirmed)."""
    if fmt == "float64" or len(cfg["layers"][0]["heads"]) > 2:
        raise Reject("perbox", "per-operation rounding covers formats narrower than float64 and at most two heads "
                               "(the order of the head sum)")
    u, eta, exp_u = iv.FORMATS[fmt]
    r, y, claimed = arrays["perbox.row"], arrays["perbox.y"], arrays["perbox.margin"]
    mine = bounds(Grid(fmt, u, eta), network(t, cfg), rows, r, y, tau, exp_u)
    seen("perbox.margin", mine)
    bad = ~(np.isfinite(claimed) & (claimed > demanded) & (claimed > 0) & (mine >= claimed))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise Reject(f"perbox[row {r[k]}, value {y[k]}]", f"claimed margin {claimed[k]!r}, checker's per-operation "
                     f"lower bound {mine[k]!r} (the claim must be > {demanded!r} and > 0, and at most the bound)")
    say(f"  perbox: {len(r)} single boxes re-evaluated with one directed rounding per operation of {fmt}")
    return float(claimed.min(initial=np.inf))
