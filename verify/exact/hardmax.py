"""Exact evaluation in the hardmax limit, through the one forward pass.

`HardmaxOps` implements the `Ops` protocol on *forms* [c_lo, c_hi] + b t with
exact rationals (Fractions): t is the row's own payload value Y_i/V, kept
symbolic; every other payload coordinate and free token ranges over its exact
interval. Attention is taken in the hardmax limit (scale -> infinity): uniform
weight on the visible keys with the top score, which must be exactly known.
A ReLU must be decided over the whole range of t (on, or off); otherwise the
evaluation stops with `Undecided`.

The per-instance proof of Theorems 1 and 2 then checks that every logit is
exactly the nearest-grid logit of t: logit_j = (2j/V) t - (j/V)^2 for all j
and every row, which with the decode lemma gives argmax = Y_i with margin
((Y_i - j)/V)^2. The evaluator also records, at every query, the gap between
the top score and the best other visible score and how many keys compete;
the leakage lemma turns those into the finite-scale bound.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from flint import fmpq

from prefixproof.constructions.basis import ExactArray
from prefixproof.constructions.model import LayerNorm

ZERO = fmpq(0)


def q(x: Fraction | int | float) -> fmpq:
    """Exact conversion to flint's C rationals (much faster than Fraction in object arrays)."""
    f = Fraction(x)
    return fmpq(int(f.numerator), int(f.denominator))


class Undecided(Exception):
    """The hardmax evaluation cannot proceed exactly (a score or a ReLU depends on the inputs)."""


@dataclass
class Form:
    lo: np.ndarray  # object arrays of Fraction
    hi: np.ndarray
    b: np.ndarray  # coefficient of t (exact)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.lo.shape

    @property
    def ndim(self) -> int:
        return self.lo.ndim

    def __getitem__(self, idx) -> "Form":
        return Form(self.lo[idx], self.hi[idx], self.b[idx])

    @classmethod
    def point(cls, values: np.ndarray) -> "Form":
        z = np.empty(values.shape, dtype=object)
        z[...] = ZERO
        return cls(values, values.copy(), z)


def _zeros(shape) -> np.ndarray:
    z = np.empty(shape, dtype=object)
    z[...] = ZERO
    return z


def _entries(W: Any) -> list[tuple[tuple[int, ...], fmpq]]:
    if isinstance(W, ExactArray):
        return [(k, q(v)) for k, v in W.entries.items()]
    if sp.issparse(W):
        c = sp.coo_array(W)
        return [((int(i), int(j)), q(float(v))) for i, j, v in zip(c.row, c.col, c.data)]
    arr = np.asarray(W, dtype=np.float64)
    return [(idx, q(float(v))) for idx, v in np.ndenumerate(arr) if v != 0]


def exact_dense(W: Any) -> np.ndarray:
    out = _zeros(W.shape)
    for idx, v in _entries(W):
        out[idx] = v
    return out


@dataclass
class HardmaxOps:
    t_max: fmpq  # largest value of the own coordinate t (t >= 0)
    min_gap: fmpq | None = None  # smallest top-vs-second score gap seen (None: no query had competitors)
    max_competitors: int = 0  # most non-top visible keys at a query
    _cache: dict = field(default_factory=dict)

    def _w(self, W):
        key = id(W)
        if key not in self._cache:
            self._cache[key] = (W, exact_dense(W))
        return self._cache[key][1]

    def gather_rows(self, E, tokens):
        return Form.point(self._w(E)[np.asarray(tokens)])

    def rows(self, P, start, stop):
        return Form.point(self._w(P)[start:stop])

    def add(self, a: Form, b: Form) -> Form:
        return Form(a.lo + b.lo, a.hi + b.hi, a.b + b.b)

    def concat(self, parts: Sequence[Form], axis: int) -> Form:
        return Form(*(np.concatenate([getattr(p, f) for p in parts], axis=axis) for f in ("lo", "hi", "b")))

    def stack(self, parts: Sequence[Form], axis: int) -> Form:
        return Form(*(np.stack([getattr(p, f) for p in parts], axis=axis) for f in ("lo", "hi", "b")))

    def _ents(self, W) -> list[tuple[tuple[int, ...], Fraction]]:
        key = ("entries", id(W))
        if key not in self._cache:
            self._cache[key] = (W, _entries(W))
        return self._cache[key][1]

    def _plan(self, W) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """W's non-zero entries as arrays: output index, input index, exact value, value > 0."""
        key = ("plan", id(W))
        if key not in self._cache:
            ents = self._ents(W)
            o = np.array([e[0][0] for e in ents], dtype=np.int64)
            k = np.array([e[0][1] for e in ents], dtype=np.int64)
            w = np.empty(len(ents), dtype=object)
            w[:] = [e[1] for e in ents]
            pos = np.array([v > 0 for v in w], dtype=bool)
            self._cache[key] = (W, (o, k, w, pos))
        return self._cache[key][1]

    def linear(self, x: Form, W) -> Form:
        """x @ W.T over the non-zero entries of W (interval ends follow the sign of each entry).

        Vectorised over the entries: every product w * x_k at once, then summed into its output with
        np.add.at (exact rationals, so the order of the additions does not matter)."""
        shape = x.shape[:-1] + (W.shape[0],)
        o, k, w, pos = self._plan(W)
        d = x.shape[-1]
        flat = [f.reshape(-1, d) for f in (x.lo, x.hi, x.b)]
        out = []
        for src in (np.where(pos, flat[0][:, k], flat[1][:, k]), np.where(pos, flat[1][:, k], flat[0][:, k]),
                    flat[2][:, k]):
            acc = _zeros((src.shape[0], W.shape[0]))
            if len(o):
                np.add.at(acc, (slice(None), o), src * w)
            out.append(acc.reshape(shape))
        return Form(*out)

    def linears(self, x: Form, Ws) -> list[Form]:
        return [self.linear(x, W) for W in Ws]

    def affine(self, x: Form, W, b) -> Form:
        y = self.linear(x, W)
        bias = self._w(b)
        return Form(y.lo + bias, y.hi + bias, y.b)

    def relu(self, x: Form) -> Form:
        lo = x.lo + np.vectorize(lambda v: min(ZERO, v * self.t_max), otypes=[object])(x.b)
        hi = x.hi + np.vectorize(lambda v: max(ZERO, v * self.t_max), otypes=[object])(x.b)
        on = np.vectorize(lambda v: v >= 0, otypes=[bool])(lo)
        off = np.vectorize(lambda v: v <= 0, otypes=[bool])(hi)
        if np.any(~on & ~off):
            raise Undecided("a ReLU's sign depends on the inputs (neither always on nor always off)")
        z = _zeros(x.shape)
        return Form(np.where(on, x.lo, z), np.where(on, x.hi, z), np.where(on, x.b, z))

    def scores(self, qf: Form, kf: Form, scale: float) -> np.ndarray:
        for f in (qf, kf):
            if np.any(f.b != ZERO) or np.any(f.lo != f.hi):
                raise Undecided("attention scores depend on the inputs; the hardmax pattern is not determined")
        Q, K = qf.lo, np.broadcast_to(kf.lo, qf.shape[:-2] + kf.shape[-2:])
        out = _zeros(Q.shape[:-1] + (K.shape[-2],))
        sc = q(scale)
        for c in range(Q.shape[-1]):  # only the components where both sides are non-zero contribute
            qi = np.argwhere(Q[..., c] != ZERO)
            kj = {}
            for idx in np.argwhere(K[..., c] != ZERO):
                kj.setdefault(tuple(idx[:-1]), []).append(idx[-1])
            for idx in qi:
                b, i = tuple(idx[:-1]), idx[-1]
                for j in kj.get(b, []):
                    out[b + (i, j)] += Q[b + (i, c)] * K[b + (j, c)] * sc
        return out

    def softmax(self, scores: np.ndarray, visible: np.ndarray) -> np.ndarray:
        out = _zeros(scores.shape)
        vis = np.broadcast_to(visible, scores.shape)
        for idx in np.ndindex(scores.shape[:-1]):
            cols = np.flatnonzero(vis[idx])
            vals = [scores[idx + (j,)] for j in cols]
            top = max(vals)
            winners = [j for j, v in zip(cols, vals) if v == top]
            rest = [v for v in vals if v != top]
            if rest:
                gap = top - max(rest)
                self.min_gap = gap if self.min_gap is None else min(self.min_gap, gap)
                self.max_competitors = max(self.max_competitors, len(rest))
            for j in winners:
                out[idx + (j,)] = fmpq(1, len(winners))
        return out

    def mix(self, A: np.ndarray, v: Form) -> Form:
        """A @ v over the non-zero weights (hardmax rows are sparse); A >= 0 keeps interval ends in place."""
        shape = A.shape[:-1] + v.shape[-1:]
        lo, hi, b = _zeros(shape), _zeros(shape), _zeros(shape)
        vlo = np.broadcast_to(v.lo, A.shape[:-2] + v.shape[-2:])
        vhi = np.broadcast_to(v.hi, A.shape[:-2] + v.shape[-2:])
        vb = np.broadcast_to(v.b, A.shape[:-2] + v.shape[-2:])
        for idx in np.argwhere(A != ZERO):
            bi, j = tuple(idx[:-1]), idx[-1]
            w = A[tuple(idx)]
            lo[bi] += w * vlo[bi[:-1] + (j,)]
            hi[bi] += w * vhi[bi[:-1] + (j,)]
            b[bi] += w * vb[bi[:-1] + (j,)]
        return Form(lo, hi, b)

    def layernorm(self, x: Form, ln: LayerNorm) -> Form:
        raise Undecided("LayerNorm is not evaluated exactly")

    def extend(self, store, new: Form) -> Form:
        return new if store is None else self.concat([store, new], axis=1)

    def view(self, store):
        return store
