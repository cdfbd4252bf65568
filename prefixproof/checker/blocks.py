"""Steps 3 and 4: every block of values (row, ya..yb) through the rest of the MLP as affine forms in t, with
its ReLU decisions, then its decode inequality; and the coverage of every (row, value) by exactly one block.
"""
from __future__ import annotations

import numpy as np
from flint import fmpq

from prefixproof.checker import iv
from prefixproof.checker.files import Reject


def coverage(row, ya, yb, R: int, V: int) -> None:
    """The blocks, in order, partition [0, V-1] for every row 0..R-1."""
    K = len(row)
    if K == 0:
        raise Reject("coverage[row 0]", "no blocks")
    step = np.diff(row, prepend=-1)
    new, last = step != 0, np.append(step[1:] != 0, True)  # first and last block of a row
    start = np.where(new, 0, np.concatenate([[0], yb[:-1] + 1]))
    bad = (ya != start) | (ya > yb) | (last & (yb != V - 1)) | (yb > V - 1) | ~np.isin(step, (0, 1))
    if row[0] != 0 or row[-1] != R - 1 or bad.any():
        k = int(np.flatnonzero(bad)[0]) if bad.any() else 0
        raise Reject(f"coverage[row {row[k]}]", f"block {k} (values {ya[k]}..{yb[k]}) breaks the partition of "
                                                f"0..{V - 1} into consecutive blocks, rows 0..{R - 1} in order")


def _form_range(c, b, T):
    return iv.add(c, iv.mul(b, T))


def _relu(c, b, T, code, single, layer: int, blk):
    """Check the recorded decisions (0 off, 1 on, 2 enclosed on a single value) and apply them."""
    pre = _form_range(c, b, T)
    wrong = ((code == 1) & (pre[0] < 0)) | ((code == 0) & (pre[1] > 0)) | ((code == 2) & ~single[:, None]) | (code > 2)
    err = None  # raised by the caller after `seen` (the writer moves such single values to step perbox)
    if wrong.any():
        k, s = np.argwhere(wrong)[0]
        what = {0: "off", 1: "on", 2: "enclosed"}.get(int(code[k, s]), f"code {code[k, s]}")
        err = Reject(f"relu[{blk(k)}, layer {layer}, unit {s}]", f"decision {what} does not hold: pre-activation "
                                                                 f"in [{pre[0][k, s]!r}, {pre[1][k, s]!r}]")
    on, enc = code == 1, code == 2
    c = (np.where(on, c[0], np.where(enc, np.maximum(pre[0], 0), 0.0)),
         np.where(on, c[1], np.where(enc, np.maximum(pre[1], 0), 0.0)))
    return c, (np.where(on, b[0], 0.0), np.where(on, b[1], 0.0)), wrong.any(axis=1), err


def dense_error(Wb, live, xmag, bias, u: float, eta: float):
    """Bound of |executed W x + bias - exact| per (block, unit), any summation order, fused or not: Wb (K, out, in),
    live (K, in) the inputs not decided off (the others are exactly 0), |x| <= xmag (docs/certificate-format.md)."""
    n = np.einsum("koi,ki->ko", Wb != 0, live, dtype=np.int64)  # the products that may be non-zero
    size = np.einsum("koi,ki->ko", np.abs(Wb), xmag) + np.abs(bias)
    return iv.safe(iv.gamma(n + 1, u) * size + (n + 1) * eta, Wb.shape[-1])


def exact_max(values: np.ndarray, grid) -> float:
    """max_j |values_j - grid(j)| in exact rationals (grid(j) an fmpq), rounded up to a float."""
    worst = max(abs(fmpq(*float(x).as_integer_ratio()) - grid(j)) for j, x in enumerate(values))
    return float(iv.up(float(worst.p) / float(worst.q))) * (1 + 4 * iv.U64)


def blocks(slots, middle, final, tau, arrays, demanded: float, u: float, eta: float, seen=lambda *_: None) -> float:
    """Check every block's ReLU decisions and decode inequality; return the smallest verified margin."""
    U, C, B = slots
    row, ya, yb = arrays["blocks.row"], arrays["blocks.ya"], arrays["blocks.yb"]
    claimed = arrays["blocks.margin"]
    V, K = len(tau), len(row)

    def blk(k):
        return f"block[row {row[k]}, values {ya[k]}..{yb[k]}]"
    single = ya == yb
    T = (tau[ya][:, None], tau[yb][:, None])
    c, b = (C[0][row], C[1][row]), (B[0][row], B[1][row])
    pad = U[row] < 0  # padding slots of the listed forms must be off
    failed, first, code = np.zeros(K, dtype=bool), None, None
    for k in range(len(middle) + 1):
        if k:  # carry the forms through Dense layer k
            W, bias = middle[k - 1]
            Wb = np.transpose(W[:, np.maximum(U, 0)], (1, 0, 2))[row] if k == 1 else np.broadcast_to(W, (K,) + W.shape)
            xmag, pad = iv.up(iv.mag(c) + iv.mag(b) * T[1]), False
            c, b = iv.lin(Wb, c, bias), iv.lin(Wb, b)
            if u > 0:
                c = iv.widen(c, dense_error(Wb, code != 0, xmag, bias, u, eta))
        code = arrays[f"relu.{k}"]
        if code.shape != c[0].shape or np.any(pad & (code != 0)):
            raise Reject(f"relu[layer {k}]", f"decisions have shape {code.shape}, the layer needs {c[0].shape} "
                                             "(padding slots must be off)")
        c, b, wrong, err = _relu(c, b, T, code, single, k, blk)
        failed, first = failed | wrong, first or err
    w, cf = final
    if c[0].shape[1] != 1 or w.shape != (V, 1):
        raise Reject("decode", "the decoder is not a one-input layer of V logits (outside certificate version 1)")
    rho_w = exact_max(w[:, 0], lambda j: fmpq(2 * j, V))  # distance to the grid decoder 2j/V x - (j/V)^2
    rho_c = exact_max(cf, lambda j: -fmpq(j * j, V * V))
    c, b, T = (c[0][:, 0], c[1][:, 0]), (b[0][:, 0], b[1][:, 0]), (T[0][:, 0], T[1][:, 0])
    x = _form_range(c, b, T)
    st = exact_max(tau, lambda y: fmpq(y, V))  # max |tau(y) - y/V|
    e = iv.widen(iv.add(c, iv.mul((iv.dn(b[0] - 1), iv.up(b[1] - 1)), T)), st)  # x - y/V
    X = iv.mag(x)
    slack = iv.safe(2 * (rho_w * X + rho_c) + 2 * (iv.gamma(2, u) * (np.abs(w).max() * X + np.abs(cf).max())
                                                   + 2 * eta) if u > 0 else 2 * (rho_w * X + rho_c), 4)
    inv = iv.dn(1.0 / V)
    lim = iv.dn(1.5 * inv)
    low_in, up_in = iv.dn(inv + 2 * e[0]), iv.dn(inv - 2 * e[1])
    low = np.where((e[0] >= -lim) & (low_in >= 0), iv.dn(inv * low_in), -np.inf)
    upp = np.where((e[1] <= lim) & (up_in >= 0), iv.dn(inv * up_in), -np.inf)
    margin = np.minimum(np.where(yb >= 1, low, np.inf), np.where(ya <= V - 2, upp, np.inf))
    margin = iv.dn(margin - slack)
    i = np.flatnonzero(single)
    if i.size:  # single values: the neighbours with the model's own weights, the rest by the lemma
        y, xl, xh = ya[i], x[0][i], x[1][i]
        nb = np.full(len(i), np.inf)
        for side in (-1, 1):
            j = np.clip(y + side, 0, V - 1)
            dw = (iv.dn(w[y, 0] - w[j, 0]), iv.up(w[y, 0] - w[j, 0]))
            dc = (iv.dn(cf[y] - cf[j]), iv.up(cf[y] - cf[j]))
            d = iv.add(iv.mul(dw, (xl, xh)), dc)[0]
            if u > 0:  # each logit fl(fl(w x) + c) errs by <= u (1 + u) |w x| + u |w x + c| (+ eta)
                size = sum(np.abs(w[k, 0]) * X[i] + iv.mag(iv.add(iv.mul((w[k, 0], w[k, 0]), (xl, xh)), (cf[k], cf[k])))
                           for k in (y, j))
                d = iv.dn(d - iv.safe(u * (1 + 2 * u) * size + 4 * eta, 4))
            nb = np.where((y + side >= 0) & (y + side < V), np.minimum(nb, d), nb)
        a = iv.mag((e[0][i], e[1][i]))
        far = iv.dn(iv.dn(4 * inv * inv) - iv.up(4 * a / iv.dn(float(V))) - slack[i])
        far = np.where(a <= iv.dn(2.5 * inv), far, -np.inf)
        nb = np.where((y >= 2) | (y <= V - 3), np.minimum(nb, far), nb)
        margin[i] = np.maximum(margin[i], nb)
    margin[failed] = -np.inf
    seen("blocks.margin", margin)  # the writer may lower its claims to bounds this checker can confirm
    if first is not None:
        raise first
    bad = ~(np.isfinite(claimed) & (claimed > demanded) & (claimed > 0) & (margin >= claimed))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise Reject(f"decode[row {row[k]}, values {ya[k]}..{yb[k]}]",
                     f"claimed margin {claimed[k]!r}, checker's lower bound {margin[k]!r} "
                     f"(the claim must be > {demanded!r} and > 0, and at most the bound)")
    return float(claimed.min(initial=np.inf))
