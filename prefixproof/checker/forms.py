"""Step 2: the first MLP pre-activation of every (row, unit) pair as an affine form c + b t, from the
certificate's attention enclosures (composition), through the composed maps G^h = W1 W_O^h W_V^h; and the
proof that every pair the certificate leaves out is dead (pre-activation <= 0 over the whole input box).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from prefixproof.checker import iv
from prefixproof.checker.attention import Inputs, gather, rng
from prefixproof.checker.files import Reject


def composed(W1, WO, WV):
    """G = W1 WO WV as a centre and a radius covering the float products' rounding."""
    inner = WO @ WV
    Gc = W1 @ inner
    n = iv.row_len(W1) + iv.row_len(WO) + 1
    Ga = iv.absm(W1) @ (iv.absm(WO) @ iv.absm(WV))
    Gr = Ga * float(iv.safe(iv.gamma(n + 2), n)) if sp.issparse(Ga) else iv.safe(iv.gamma(n + 2) * Ga, n)
    return Gc, (sp.csr_array(Gr) if sp.issparse(Gr) else Gr)


def exec_error(heads, W1, b1, xmag, A_hi_sum, n_pos: int, u: float, eta: float) -> np.ndarray:
    """A per-unit bound on |executed pre-activation - real one| (docs/certificate-format.md, "forms")."""
    if u == 0:
        return np.zeros(W1.shape[0])
    out_err, out_mag = 0.0, 0.0
    for (WV, WO), asum in zip(heads, A_hi_sum):
        nV, nO = iv.row_len(WV), iv.row_len(WO)
        vmag = iv.safe(iv.absm(WV) @ xmag, nV)
        ev = iv.safe(iv.gamma(nV + 1, u) * vmag + (iv.absm(WV) @ np.full(len(xmag), eta)) + (nV + 1) * eta, nV)
        omag = iv.safe(asum * (vmag + ev), n_pos)
        eo = iv.safe(asum * ev + iv.gamma(n_pos, u) * omag + n_pos * eta, n_pos)
        wmag = iv.safe(iv.absm(WO) @ (omag + eo), nO)
        ew = iv.safe(iv.absm(WO) @ eo + iv.gamma(nO, u) * wmag + nO * eta, nO)
        out_err, out_mag = out_err + ew, out_mag + wmag + ew
    H = len(heads)
    out_err = iv.safe(out_err + iv.gamma(H - 1, u) * out_mag, H)
    n1 = iv.row_len(W1)
    pre_mag = iv.safe(iv.absm(W1) @ (out_mag + out_err) + np.abs(b1), n1)
    return iv.safe(iv.absm(W1) @ out_err + iv.gamma(n1 + 1, u) * pre_mag + (n1 + 1) * eta, n1)


def forms(inp: Inputs, rows, A, heads_G, b1, err1, tmin: float, tmax: float, listed, seen=lambda *_: None):
    """Check the listed forms (each must contain this checker's form) and that every other pair is dead.

    A: the certificate's attention enclosures (lo, hi), each (H, R, n). heads_G: [(Gc, Gr)] per head.
    listed: (row, unit, c_lo, c_hi, b_lo, b_hi) arrays. Returns nothing; raises Reject naming the pair.
    """
    R, hidden = len(rows.own), len(b1)

    def token_part(p, GE, r, u):  # G^h E[tok]^T at the row's token of fixed position p: centre, radius
        tok = rows.fixed_tok[r, rows.fixed_pos.index(p)]
        return gather(GE[0], u, tok), iv.safe(gather(GE[1], u, tok))
    # Row-uniform upper bound of every unit over the whole box; row-specific terms (the own payload column and
    # fixed tokens) are added per pair below, so a pair outside `touched` with upper <= 0 is dead.
    upper = iv.up(b1 + err1)
    touched_r, touched_u = [], []
    vals = []
    for h, (Gc, Gr) in enumerate(heads_G):
        v = {p: rng(Gc, Gr, *inp.x[p]) for p in inp.shared}
        for j, p in enumerate(rows.fixed_pos):
            v[p] = rng(Gc, Gr, inp.P[p], inp.P[p])
        for p in v:
            upper = iv.up(upper + float(A[1][h, :, p].max()) * np.maximum(v[p][1], 0.0))
        S = iv.absm(Gc) + Gr
        GE = (Gc @ inp.E.T, Gr @ iv.absm(inp.E).T + iv.gamma(iv.row_len(Gc) + 2) * (iv.absm(Gc) @ iv.absm(inp.E).T))
        for M, cols in [(S[:, rows.payload], rows.own)] + [(GE[1], rows.fixed_tok[:, j])
                                                           for j in range(len(rows.fixed_pos))]:
            nz = sp.csc_array(M)[:, cols].nonzero() if sp.issparse(M) else np.nonzero(np.asarray(M)[:, cols])
            touched_u.append(nz[0])
            touched_r.append(nz[1])
        vals.append((v, GE))
    alive = np.flatnonzero(upper > 0)
    lkey = listed[0].astype(np.int64) * hidden + listed[1]
    if rows.free_pos:  # a free token may touch any unit: every pair
        key = np.arange(R * hidden, dtype=np.int64)
    else:
        key = np.sort(np.concatenate([np.repeat(np.arange(R), len(alive)) * hidden + np.tile(alive, R), lkey]
                                     + [r.astype(np.int64) * hidden + u for r, u in zip(touched_r, touched_u)]))
        key = key[np.concatenate([[True], key[1:] != key[:-1]])]  # distinct (np.unique hashes, far slower)
    idx = np.searchsorted(key, lkey)
    # A cheap upper bound of every pair's pre-activation first (docs/certificate-format.md, "forms"); the
    # listed pairs and the pairs it cannot show dead get the interval forms below.
    r, u = key // hidden, key % hidden
    Alo, Ahi = np.clip(A[0], 0, 1), np.clip(A[1], 0, 1)  # softmax weights lie in [0, 1]
    S, M, n_t = b1[u] + err1[u], np.abs(b1[u]) + err1[u], 2
    for h, (v, GE) in enumerate(vals):
        for p in v:
            w = v[p][1][u]
            if p in rows.fixed_pos:
                e_c, e_r = token_part(p, GE, r, u)
                w = iv.up(iv.up(w + e_c) + e_r)
            t = np.maximum(Alo[h, r, p] * w, Ahi[h, r, p] * w)
            S, M, n_t = S + t, M + np.abs(t), n_t + 1
    cheap = iv.up(S + iv.safe(iv.gamma(n_t + 1) * iv.safe(M, n_t) + n_t * iv.ETA, 2))
    pick = ~(cheap <= 0)  # NaN counts as live
    pick[idx] = True
    key = key[pick]
    r, u = key // hidden, key % hidden
    idx = np.searchsorted(key, lkey)
    c = (iv.dn(b1[u] - err1[u]), iv.up(b1[u] + err1[u]))
    b = (np.zeros(len(r)), np.zeros(len(r)))
    own, opos = rows.own[r], rows.own_pos[r]
    for h, ((Gc, Gr), (v, GE)) in enumerate(zip(heads_G, vals)):
        col = rows.payload[own]
        gc, gr = gather(Gc, u, col), gather(Gr, u, col)
        g = (iv.dn(gc - gr), iv.up(gc + gr))
        for p in v:
            a = (A[0][h, r, p], A[1][h, r, p])
            if p < rows.virtual:
                lo_c, hi_c = inp.x[p][0][col], inp.x[p][1][col]
                # this column's share of rng's sum, as rng forms it (so the real subtraction is exact)
                m = np.maximum(np.abs(lo_c), np.abs(hi_c))
                sh_lo = iv.up(iv.up(np.minimum(gc * lo_c, gc * hi_c)) - iv.dn(gr * m))
                sh_hi = iv.dn(iv.dn(np.maximum(gc * lo_c, gc * hi_c)) + iv.dn(gr * m))
                mine = opos == p
                val = (np.where(mine, iv.dn(v[p][0][u] - sh_lo), v[p][0][u]),
                       np.where(mine, iv.up(v[p][1][u] - sh_hi), v[p][1][u]))
                pc = inp.P[p][col]  # the own column's fixed part P[p][col]; its t part goes to b
                val = iv.add(val, (np.where(mine, iv.dn(np.minimum(g[0] * pc, g[1] * pc)), 0.0),
                                   np.where(mine, iv.up(np.maximum(g[0] * pc, g[1] * pc)), 0.0)))
                b = iv.add(b, iv.mul(a, (np.where(mine, g[0], 0.0), np.where(mine, g[1], 0.0))))
            elif p in rows.fixed_pos:
                e_c, e_r = token_part(p, GE, r, u)
                val = iv.add((v[p][0][u], v[p][1][u]), iv.widen((e_c, e_c), e_r))
            else:
                val = (v[p][0][u], v[p][1][u])
            c = iv.add(c, iv.mul(a, val))
    T = (np.full(len(r), tmin), np.full(len(r), tmax))
    top = iv.add(c, iv.mul(b, T))[1]
    seen("forms", (c[0][idx], c[1][idx], b[0][idx], b[1][idx]))  # the writer may widen its claims to these
    for name, mine, theirs, side in (("c", c[0][idx], listed[2], -1), ("c", c[1][idx], listed[3], 1),
                                     ("b", b[0][idx], listed[4], -1), ("b", b[1][idx], listed[5], 1)):
        bad = np.flatnonzero(~(mine >= theirs) if side < 0 else ~(mine <= theirs))
        if bad.size:
            i = bad[0]
            raise Reject(f"form[row {listed[0][i]}, unit {listed[1][i]}]",
                         f"{name} {'lower' if side < 0 else 'upper'} end {theirs[i]!r} does not contain the "
                         f"checker's {mine[i]!r}")
    live = np.flatnonzero(np.isin(np.arange(len(key)), idx, invert=True) & ~(top <= 0))
    if live.size:
        i = live[0]
        raise Reject(f"form[row {r[i]}, unit {u[i]}]", f"the certificate drops this pair, but its pre-activation "
                     f"may be positive (upper bound {top[i]!r})")
