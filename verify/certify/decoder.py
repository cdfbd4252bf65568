"""The decoder step of a certificate: from an enclosure of the decoder input to a decode margin.

Grid lemma (proved symbolically in verify/symbolic/lemmas.py, parametric in V): for
the nearest-grid decoder logit_j(x) = (2j/V) x - (j/V)^2 and e = x - y/V with
|e| <= 3/(2V),

    min_{j != y} (logit_y - logit_j) = (1/V) * min(1/V + 2e [if y >= 1], 1/V - 2e [if y <= V-2]).

A model's actual last layer (w_j, c_j) is compared with the grid exactly (in
rationals, or bounded above a few ulp from it): with rho_w = max |w_j - 2j/V| and rho_c = max |c_j + (j/V)^2| every
logit difference moves by at most 2 (rho_w |x| + rho_c). Decoders far from the
grid, or with a hidden width above 1, are handled by comparing all logit
differences directly (`brute_margins`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prefixproof.verify.certify import interval as I
from prefixproof.verify.certify.interval import Exec, Iv


@dataclass(frozen=True)
class GridFit:
    V: int
    rho_w: float  # upper bound of max_j |w_j - 2j/V|
    rho_c: float  # upper bound of max_j |c_j + (j/V)^2|
    w_max: float
    c_max: float

    def slack(self, x_mag: np.ndarray, ex: Exec) -> np.ndarray:
        """Upper bound of how far the model's logit differences can sit from the grid's."""
        s = 2 * (self.rho_w * x_mag + self.rho_c)
        if not ex.exact:  # executed logits fl(w x + c): gamma_2 each, for two logits
            s = s + 2 * (ex.dot(2) * (self.w_max * x_mag + self.c_max) + 2 * ex.eta)
        return I.up(s * (1 + 8 * I.U))


def grid_fit(W: np.ndarray, b: np.ndarray) -> GridFit | None:
    """Compare a 1-input decoder (W: (V, 1), b: (V,)) with the nearest-grid decoder, exactly."""
    W = np.asarray(W.toarray() if hasattr(W, "toarray") else W, dtype=np.float64)
    if W.ndim != 2 or W.shape[1] != 1:
        return None
    V = W.shape[0]
    j = np.arange(V, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    # upper bounds of the exact distances (interval.ratio_distance: a few ulp above the rational value)
    rho_w = float(I.ratio_distance(W[:, 0], 2 * j, np.full(V, float(V))).max())
    rho_c = float(I.ratio_distance(-b, j * j, np.full(V, float(V) * V)).max())
    return GridFit(V, rho_w, rho_c, float(np.abs(W).max()), float(np.abs(b).max()))


def grid_margins(e: Iv, ya: np.ndarray, yb: np.ndarray, V: int) -> np.ndarray:
    """Lower bound of the grid decoder's margin for every y in [ya, yb], given e = x - y/V in [e_lo, e_hi].

    Returns -inf where |e| may exceed 3/(2V) (outside the lemma's range).
    """
    e_lo, e_hi = e
    inv_lo = I.down(1.0 / V)  # a lower bound of 1/V
    lower_side = I.down(inv_lo * I.down(inv_lo + 2 * e_lo))  # (1/V)(1/V + 2e): neighbour y-1
    upper_side = I.down(inv_lo * I.down(inv_lo - 2 * e_hi))  # (1/V)(1/V - 2e): neighbour y+1
    lower_side = np.where(ya >= 1, lower_side, np.inf)
    upper_side = np.where(yb <= V - 2, upper_side, np.inf)
    m = np.minimum(lower_side, upper_side)
    # The lemma needs |e| <= 3/(2V) on every side that has a neighbour.
    bound = I.down(1.5 * inv_lo)
    ok = np.where(ya >= 1, e_lo >= -bound, True) & np.where(yb <= V - 2, e_hi <= bound, True)
    return np.where(ok, m, -np.inf)


def singleton_margins(x: Iv, e: Iv, y: np.ndarray, W: np.ndarray, b: np.ndarray, fit: GridFit, ex: Exec) -> np.ndarray:
    """Margin lower bound for single values y of a 1-input decoder, neighbours evaluated exactly.

    For j = y +- 1 the difference (w_y - w_j) x + (c_y - c_j) uses the actual weights (affine in x, so its
    minimum over the enclosure is at an end). For |j - y| >= 2 the grid lemma with perturbation applies:
    it is at least 4/V^2 - 4|e|/V - slack when |e| <= 5/(2V) (proved in verify/symbolic/lemmas.py).
    """
    w, c = W[:, 0], b
    V = len(w)
    xl, xh = x
    x_mag = np.maximum(np.abs(xl), np.abs(xh))
    out = np.full(len(y), np.inf)
    for side in (-1, 1):
        j = y + side
        valid = (j >= 0) & (j < V)
        jj = np.clip(j, 0, V - 1)
        dw = (I.down(w[y] - w[jj]), I.up(w[y] - w[jj]))
        dc = (I.down(c[y] - c[jj]), I.up(c[y] - c[jj]))
        d = I.add(I.mul(dw, (xl, xh)), dc)[0]
        if not ex.exact:
            def size(k):
                val = I.add(I.mul(I.point(w[k]), (xl, xh)), I.point(c[k]))
                return np.abs(w[k]) * x_mag + I.mag(val)
            d = I.down(d - I.up(ex.u * (1 + 2 * ex.u) * (size(y) + size(jj)) + 4 * ex.eta))
        out = np.where(valid, np.minimum(out, d), out)
    far_exists = (y >= 2) | (y <= V - 3)
    a = I.mag(e)
    inv_lo = I.down(1.0 / V)
    far = I.down(I.down(4 * inv_lo * inv_lo) - I.up(4 * a / V) - fit.slack(x_mag, ex))
    far = np.where(a <= I.down(2.5 * inv_lo), far, -np.inf)
    return np.where(far_exists, np.minimum(out, far), out)


def brute_margins(x: Iv, y: np.ndarray, W: np.ndarray, b: np.ndarray, ex: Exec) -> np.ndarray:
    """Lower bound of logit_y - max_{j != y} logit_j for x in the box, per row: x (B, h), y (B,).

    Each difference is one matvec with the row W_y - W_j (enclosed), so the
    dependency between the two logits is kept.
    """
    B, h = x[0].shape
    V = W.shape[0]
    out = np.empty(B)
    for i in range(B):
        dW = (I.down(W[y[i]] - W), I.up(W[y[i]] - W))  # (V, h)
        db = (I.down(b[y[i]] - b), I.up(b[y[i]] - b))
        xi = (np.broadcast_to(x[0][i], (V, h)), np.broadcast_to(x[1][i], (V, h)))
        prod = I.mul(dW, xi)
        d = I.add(I.sum_last(prod), db)
        if not ex.exact:
            mag = np.abs(W).max() * I.mag((x[0][i], x[1][i])).sum() + np.abs(b).max()
            d = I.widen(d, I.up(2 * ex.dot(h + 1) * mag + 4 * ex.eta))
        lo = np.delete(d[0], y[i])
        out[i] = lo.min() if lo.size else np.inf
    return out
