"""Per-operation monotone rounding: tight enclosures of every execution of a low-precision format F.

The global model of `interval.py` charges every operation a relative error u of its magnitude and every
dot product gamma_n. Here each operation of the one forward pass is enclosed *as F executes it*
(docs/certificates.md, "Per-operation rounding"): an operation's result is an element of F, obtained by
rounding to nearest, and rounding to nearest is monotone. So for an operation whose exact result lies in
[s_lo, s_hi], every execution of the class returns a value of F in

    [RN_F(s_lo - w(s_lo)), RN_F(s_hi + w(s_hi))],      w(s) = u^2 |s| + eta,

where w covers an intermediate rounding to a wider format (float32 accumulators for float16 and bfloat16,
float64 for float32: unit roundoff <= u^2) before the final rounding to F. RN_F is computed here exactly,
in float64 (`Grid`), with ties to even. Nothing is stepped outward by a whole ulp of F.

Sums with any order. A dot product (plus its bias) of n non-zero terms, in any summation tree and
blocking, fused or separate multiply-add, with F or wider accumulators:
- each product is exact (fused, or exact in the wider format), or rounded to the wider format, to F, or both;
- each of the at most n - 2 internal nodes below the root is rounded to F and/or the wider format, an error
  of at most ulp_F(S)/2 + u^2 S + eta, where S bounds the magnitude of every partial sum (the larger of the
  terms' positive and negative parts, times 1 + 2 n u plus n eta for the roundings below a node);
- the root is rounded to F (monotone, exact here).
With n <= 2 there is no internal node below the root, so the enclosure is exact up to the root's rounding.
Terms that are exactly zero add no rounding (x + 0 = x), so only non-zero terms count.

Sums of heads are formed one addition at a time by the forward pass, which fixes their order; this
evaluator is therefore used only for layers of at most two heads (one addition, no order).

exp is trusted to its measured bound (EXP_BOUND_U u + eta, `exp_check.py`); its result is a value of F, so
the enclosure is snapped inward to F's grid. The softmax keeps the dependency between A_j's numerator and
the denominator that contains it (A_j = e_j / (e_j + others) is increasing in e_j).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from prefixproof.constructions.model import LayerNorm, Weight
from prefixproof.verify.certify import interval as I
from prefixproof.verify.certify.interval_ops import Box, EnclosureUnsupported, IntervalOps, _box

_EXP64 = I.EXP_ULPS * 2.0**-52  # the certificate's own np.exp (float64), trusted to 4 ulp (checked at start-up)
DENSE_TERMS = 60_000_000  # products a single dot-product enclosure may form at once


class Grid:
    """The values of a binary format F (precision `bits`, smallest subnormal `eta`) inside float64."""

    def __init__(self, bits: int, eta: float, largest: float) -> None:
        if bits >= 53:
            raise ValueError("per-operation rounding needs a format narrower than float64")
        self.bits, self.eta, self.largest = bits, eta, largest
        self.u = 2.0**-bits
        self.u2 = self.u * self.u  # unit roundoff of any wider accumulator the class allows
        self.emin = int(round(np.log2(eta))) + bits - 1  # exponent of the smallest normal number

    def quantum(self, x: np.ndarray) -> np.ndarray:
        """The spacing of F at x (the ulp of x's binade, eta below the normal range)."""
        _, e = np.frexp(x)
        return np.ldexp(1.0, np.maximum(e - 1, self.emin) - self.bits + 1)

    def _snap(self, x: Any, how: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        q = self.quantum(x)
        with np.errstate(invalid="ignore", over="ignore"):
            r = how(x / q) * q  # x / q and the product are exact: q is a power of two
        return np.where(np.abs(r) > self.largest, np.copysign(np.inf, r), r)

    def rn(self, x: Any) -> np.ndarray:
        """Round to nearest, ties to even (beyond the largest finite value: infinity, i.e. overflow)."""
        return self._snap(x, np.rint)

    def rd(self, x: Any) -> np.ndarray:
        return self._snap(x, np.floor)

    def ru(self, x: Any) -> np.ndarray:
        return self._snap(x, np.ceil)

    def half_ulp(self, s: np.ndarray) -> np.ndarray:
        """Largest rounding error of RN_F at any |v| <= s."""
        return 0.5 * self.quantum(np.maximum(np.abs(s), self.eta))

    def wide_lo(self, s: Any) -> np.ndarray:
        """Lower bound of s after an optional rounding to a wider format (unit roundoff <= u^2)."""
        s = np.asarray(s, dtype=np.float64)
        return I.down(s - I.up(self.u2 * np.abs(s) + self.eta))

    def wide_hi(self, s: Any) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        return I.up(s + I.up(self.u2 * np.abs(s) + self.eta))

    def out(self, lo: Any, hi: Any) -> Box:
        """The enclosure of an operation's F result whose exact value lies in [lo, hi]."""
        return Box(self.rn(self.wide_lo(lo)), self.rn(self.wide_hi(hi)))

    def ordinal(self, x: Any) -> np.ndarray:
        """The rank of each value of F (consecutive values of F have consecutive ranks; 0 has rank 0)."""
        x = np.asarray(x, dtype=np.float64)
        a, per = np.abs(x), 2.0**(self.bits - 1)
        _, e = np.frexp(a)
        k = np.maximum(e - 1, self.emin)  # binade [2^k, 2^(k+1)); below 2^emin the subnormals, spacing eta
        normal = a >= 2.0**self.emin
        rank = np.where(normal, per * (1 + k - self.emin) + (a - np.ldexp(1.0, k)) / np.ldexp(1.0, k - self.bits + 1),
                        a / self.eta)
        return np.sign(x) * rank

    def from_ordinal(self, r: Any) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        a, per = np.abs(r), 2.0**(self.bits - 1)
        normal = a >= per
        k = (self.emin + np.floor(np.maximum(a - per, 0.0) / per)).astype(np.int64)
        off = a - per * (1 + k - self.emin)
        val = np.where(normal, np.ldexp(1.0, k) + off * np.ldexp(1.0, k - self.bits + 1), a * self.eta)
        return np.sign(r) * val


def grid_for(dtype: str) -> Grid:
    from prefixproof.verify.semantics.formats import format_of

    fmt = format_of(dtype)
    return Grid(fmt.bits, fmt.eta, fmt.largest)


def _dense(W: Any) -> np.ndarray:
    return I.as_dense(W)


def _products(al: np.ndarray, ah: np.ndarray, bl: np.ndarray, bh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outward float64 enclosure of the products of [al, ah] and [bl, bh]; exactly 0 where a factor is exactly 0
    (such a term adds no rounding to a sum)."""
    corners = [al * bl, al * bh, ah * bl, ah * bh]
    zero = ((al == 0) & (ah == 0)) | ((bl == 0) & (bh == 0))
    return (np.where(zero, 0.0, I.down(np.minimum.reduce(corners))),
            np.where(zero, 0.0, I.up(np.maximum.reduce(corners))))


_COLUMNS: dict[int, tuple[Any, np.ndarray, np.ndarray]] = {}  # id(W) -> (W, column indices, weights)


def _columns(W: Weight) -> tuple[np.ndarray, np.ndarray]:
    """Each row's non-zero columns of W, first K of them (K the largest count), padded with columns whose weight
    is exactly 0: indices (m, K) and the weights there. Cached per weight object (kept alive in the cache)."""
    hit = _COLUMNS.get(id(W))
    if hit is None or hit[0] is not W:
        Wd = _dense(W)
        nz = Wd != 0
        K = max(int(nz.sum(axis=1).max(initial=0)), 1)
        idx = np.argsort(~nz, axis=1, kind="stable")[:, :K]
        if len(_COLUMNS) > 32:
            _COLUMNS.clear()
        hit = _COLUMNS[id(W)] = (W, idx, np.take_along_axis(Wd, idx, 1))
    return hit[1], hit[2]


class DirectedOps(IntervalOps):
    """Enclose every execution of format F (docs/certificates.md, "Execution classes") of each operation of the
    forward pass, one monotone rounding per operation (module docstring).

    `nearest=True` is the deliberately unsound variant the tests must catch: the float64 result of each
    operation rounded to nearest in F, with no allowance for the summation order, wider accumulators or the
    rounding of products.
    """

    def __init__(self, ex: I.Exec, grid: Grid, *, nearest: bool = False, capture: Any = None,
                 hull: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        super().__init__(ex)
        self.g, self.nearest = grid, nearest
        self.capture, self.captured = capture, None  # the decoder weight whose input is kept
        self.hull = hull  # column hull of the embedding: the row of a free token (-1)

    # ---------------------------------------------------------------- single operations

    def _out(self, lo: Any, hi: Any) -> Box:
        if self.nearest:
            return Box(self.g.rn(lo), self.g.rn(hi))
        return self.g.out(I.down(lo), I.up(hi))

    def gather_rows(self, E: Weight, tokens: np.ndarray) -> Box:
        tokens = np.asarray(tokens)
        E = _dense(E)
        lo, hi = E[np.maximum(tokens, 0)], E[np.maximum(tokens, 0)].copy()
        free = tokens < 0
        if free.any():
            if self.hull is None:
                raise ValueError("free tokens need the embedding's column hull")
            lo = np.where(free[..., None], self.hull[0], lo)
            hi = np.where(free[..., None], self.hull[1], hi)
        return Box(lo, hi)

    def add(self, a: Any, b: Any) -> Box:
        a, b = _box(a), _box(b)
        return self._out(a.lo + b.lo, a.hi + b.hi)

    def relu(self, x: Any) -> Box:
        x = _box(x)
        return Box(np.maximum(x.lo, 0.0), np.maximum(x.hi, 0.0))

    def layernorm(self, x: Any, ln: LayerNorm) -> Box:
        raise EnclosureUnsupported("per-operation rounding does not cover LayerNorm layers")

    # ---------------------------------------------------------------- sums of products, any order

    def _sum(self, t_lo: np.ndarray, t_hi: np.ndarray, p_lo: np.ndarray, p_hi: np.ndarray) -> Box:
        """Enclosure of the F result of summing the terms on the last axis in any order.

        p: the exact products (enclosed in float64); t: each product after its own optional rounding.
        """
        nz = ~((p_lo == 0) & (p_hi == 0))
        n = nz.sum(axis=-1)
        n_max = int(n.max()) if n.size else 0
        g = I.gamma(max(n_max, 1))  # float64 rounding of our own sums
        if self.nearest:
            return Box(self.g.rn(p_lo.sum(axis=-1)), self.g.rn(p_hi.sum(axis=-1)))
        mag_t = np.maximum(np.abs(t_lo), np.abs(t_hi)).sum(axis=-1)
        own = I.up(g * mag_t * (1 + 4 * g) + n_max * I.ETA)
        s_lo = I.down(np.where(nz, t_lo, 0.0).sum(axis=-1) - own)
        s_hi = I.up(np.where(nz, t_hi, 0.0).sum(axis=-1) + own)
        S = I.up(np.maximum(np.where(nz, np.maximum(t_hi, 0.0), 0.0).sum(axis=-1),
                            np.where(nz, np.maximum(-t_lo, 0.0), 0.0).sum(axis=-1)) * (1 + 4 * g))
        inner = np.maximum(n - 2, 0)
        # every partial sum is at most S plus the roundings below it: <= S (1 + u)^n + n eta <= S (1 + 2 n u) + n eta
        S = I.up(S * (1 + 2 * n * self.g.u) + n * self.g.eta)
        E = I.up(inner * I.up(self.g.half_ulp(S) + self.g.u2 * S + self.g.eta))
        single = n == 1  # one term: its (optionally wide) rounding, then F's
        p_one_lo = np.where(nz, p_lo, 0.0).sum(axis=-1)
        p_one_hi = np.where(nz, p_hi, 0.0).sum(axis=-1)
        lo = np.where(single, p_one_lo, I.down(s_lo - E))
        hi = np.where(single, p_one_hi, I.up(s_hi + E))
        out = self.g.out(lo, hi)
        return Box(np.where(n == 0, 0.0, out.lo), np.where(n == 0, 0.0, out.hi))

    def _terms(self, p_lo: np.ndarray, p_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A product after its optional rounding: exact, to the wider format, to F, or both."""
        wl, wh = self.g.wide_lo(p_lo), self.g.wide_hi(p_hi)
        return np.minimum(self.g.rn(wl), wl), np.maximum(self.g.rn(wh), wh)

    def _dot(self, x: Box, W: Weight, bias: np.ndarray | None = None) -> Box:
        """x (..., n) times W (m, n) transposed, as intervals, plus an optional bias (a term of the sum).

        Only each row's non-zero columns are multiplied (the padding columns carry a weight exactly 0, which
        adds no term), so a box costs O(non-zero weights), not O(m n)."""
        idx, Wk = _columns(W)
        lead, (m, K) = x.lo.shape[:-1], idx.shape
        if int(np.prod(lead, dtype=np.int64)) * m * K > DENSE_TERMS:
            raise EnclosureUnsupported(f"per-operation rounding of a {lead} x {x.lo.shape[-1]} by {m} x {K} (non-zero) "
                                       f"product exceeds its budget ({DENSE_TERMS} terms)")
        p_lo, p_hi = _products(x.lo[..., idx], x.hi[..., idx], Wk, Wk)
        if bias is not None:
            b = np.broadcast_to(np.asarray(bias, dtype=np.float64), lead + (m,))[..., None]
            p_lo, p_hi = np.concatenate([p_lo, b], axis=-1), np.concatenate([p_hi, b], axis=-1)
        t_lo, t_hi = self._terms(p_lo, p_hi)
        if bias is not None:  # the bias is a stored value of F: no rounding of its own
            t_lo[..., -1], t_hi[..., -1] = p_lo[..., -1], p_hi[..., -1]
        return self._sum(t_lo, t_hi, p_lo, p_hi)

    def linear(self, x: Any, W: Weight) -> Box:
        x = _box(x)
        if W is self.capture:
            self.captured = x
        return self._dot(x, W)

    def affine(self, x: Any, W: Weight, b: Any) -> Box:
        x = _box(x)
        if W is self.capture:
            self.captured = x
        return self._dot(x, W, np.asarray(b, dtype=np.float64))

    def scores(self, q: Any, k: Any, scale: float) -> Box:
        q, k = _box(q), _box(k)
        # (B, nq, d) x (B, nk, d): per query, the keys are the rows of the product
        dots = self._pairwise(q, k)  # (..., n_queries, n_keys)
        outs = []
        for s in (float(scale), float(self.g.rn(scale))):  # the scale kept exact, or rounded to F
            lo = np.minimum(dots.lo * s, dots.hi * s)
            hi = np.maximum(dots.lo * s, dots.hi * s)
            outs.append(self._out(lo, hi))
        return Box(np.minimum(outs[0].lo, outs[1].lo), np.maximum(outs[0].hi, outs[1].hi))

    def _pairwise(self, a: Box, b: Box) -> Box:
        """Sum over the last axis of a[..., i, None, :] * b[..., None, j, :]: (..., na, nb)."""
        p_lo, p_hi = _products(a.lo[..., :, None, :], a.hi[..., :, None, :], b.lo[..., None, :, :], b.hi[..., None, :, :])
        t_lo, t_hi = self._terms(p_lo, p_hi)
        return self._sum(t_lo, t_hi, p_lo, p_hi)

    def mix(self, A: Any, v: Any) -> Box:
        A, v = _box(A), _box(v)
        vT = Box(np.swapaxes(v.lo, -1, -2), np.swapaxes(v.hi, -1, -2))
        return self._pairwise(A, vT)

    # ---------------------------------------------------------------- softmax

    def softmax(self, scores: Any, visible: np.ndarray) -> Box:
        s = _box(scores)
        vis = np.broadcast_to(visible, s.lo.shape)
        g = self.g
        lo = np.where(vis, s.lo, -np.inf)
        hi = np.where(vis, s.hi, -np.inf)
        m_lo, m_hi = lo.max(axis=-1, keepdims=True), hi.max(axis=-1, keepdims=True)
        with np.errstate(invalid="ignore"):
            d = self._out(np.where(vis, lo - m_hi, 0.0), np.where(vis, hi - m_lo, 0.0))
        d_hi = np.minimum(d.hi, 0.0)  # s_j - m <= 0: m is the largest executed score
        k = self.ex.exp_ulps * self.ex.u
        with np.errstate(over="ignore", under="ignore"):
            x_lo, x_hi = np.exp(d.lo), np.exp(d_hi)
        if self.nearest:
            e_lo, e_hi = g.rn(x_lo), g.rn(x_hi)
        else:
            e_lo = np.maximum(g.ru(I.down(x_lo * (1 - _EXP64) * (1 - k) - g.eta)), 0.0)
            e_hi = g.rd(I.up(x_hi * (1 + _EXP64) * (1 + k) + g.eta))
        e_lo, e_hi = np.where(vis, e_lo, 0.0), np.where(vis, e_hi, 0.0)
        n = np.sum(vis & (e_hi > 0), axis=-1, keepdims=True)
        gm = I.gamma(max(int(vis.shape[-1]), 1))
        tot_hi = I.up(e_hi.sum(axis=-1, keepdims=True) * (1 + 4 * gm))
        tot_lo = I.down(e_lo.sum(axis=-1, keepdims=True) * (1 - 4 * gm))
        o_hi = np.maximum(I.up(tot_hi - e_hi), 0.0)  # >= the sum of the others
        o_lo = np.maximum(I.down(tot_lo - e_lo), 0.0)
        if self.nearest:
            A_lo = g.rn(e_lo / np.maximum(e_lo + o_hi, 1e-300))
            A_hi = g.rn(e_hi / np.maximum(e_hi + o_lo, 1e-300))
            return Box(np.where(vis, A_lo, 0.0), np.where(vis, np.minimum(A_hi, 1.0), 0.0))
        S = I.up(tot_hi * (1 + 2 * n * g.u) + n * g.eta)  # partial sums with the roundings below them
        E = I.up(np.maximum(n - 2, 0) * I.up(g.half_ulp(S) + g.u2 * S + g.eta))
        u, u2, eta = g.u, g.u2, g.eta
        # Z = RN_F(wide(inner)) with inner within E of e_j + others: Z <= ((e_j + o_hi + E)(1 + u2) + eta)(1 + u) + eta
        z_hi = I.up(I.up(I.up(I.up(e_lo + o_hi + E) * (1 + u2)) + eta) * (1 + u) + eta)
        with np.errstate(divide="ignore", invalid="ignore"):
            r_lo = np.where(e_lo > 0, I.down(e_lo / z_hi), 0.0)
        A_lo = g.rn(g.wide_lo(r_lo))

        def z_lo(e: np.ndarray) -> np.ndarray:
            return I.down(I.down(I.down(I.down(e + o_lo - E) * (1 - u2)) - eta) * (1 - u) - eta)

        with np.errstate(divide="ignore", invalid="ignore"):
            cands = [np.where(z_lo(e) > 0, I.up(e / z_lo(e)), 1.0) for e in (e_lo, e_hi)]
        r_hi = np.where(e_hi > 0, np.maximum(cands[0], cands[1]), 0.0)  # e / Z_lo(e) is monotone in e
        A_hi = np.minimum(g.rn(g.wide_hi(r_hi)), 1.0)  # Z >= e_j, so A_j <= 1
        return Box(np.where(vis, A_lo, 0.0), np.where(vis, A_hi, 0.0))
