"""An independent interval back-end: python-flint arb balls through the one forward pass.

`ArbOps` implements the `Ops` protocol of verify/semantics/ops.py on numpy object
arrays of `flint.arb`, so `prefixproof.verify.semantics.forward.forward` runs unchanged in ball
arithmetic (proven error bounds, independent code). Balls are built from
interval endpoints (the union of the two endpoint balls), never from a float
midpoint, and converted back to floats with an outward step.

`cross_check` evaluates boxes of a lookup claim with it and compares them with
the structured certificate: each box's certified lower bound must not exceed
arb's upper bound of that box's minimum margin, nor any exactly evaluated
point of the box. A violation means one of the two evaluators is wrong: ERROR.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import scipy.sparse as sp

from prefixproof.constructions.model import LayerNorm, Model, materialize
from prefixproof.verify.certify.lookup_rows import LookupRows
from prefixproof.verify.semantics.forward import forward

PREC = 128  # bits


def _flint():
    import flint

    return flint


@contextmanager
def precision(bits: int = PREC) -> Iterator[None]:
    flint = _flint()
    old = flint.ctx.prec
    flint.ctx.prec = bits
    try:
        yield
    finally:
        flint.ctx.prec = old


def ball(lo: float, hi: float):
    arb = _flint().arb
    return arb(float(lo)) if lo == hi else arb(float(lo)).union(arb(float(hi)))


def to_arb(x: Any) -> np.ndarray:
    """Exact conversion of a float array (dense or CSR) to an object array of balls."""
    arb = _flint().arb
    x = x.toarray() if sp.issparse(x) else np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape, dtype=object)
    for idx, v in np.ndenumerate(x):
        out[idx] = arb(float(v))
    return out


def lower(a) -> float:
    """A float <= every point of the ball."""
    arb = _flint().arb
    v = float(a.lower().mid())
    while not arb(v) <= a:
        v = float(np.nextafter(v, -np.inf))
    return v


def upper(a) -> float:
    arb = _flint().arb
    v = float(a.upper().mid())
    while not arb(v) >= a:
        v = float(np.nextafter(v, np.inf))
    return v


class ArbOps:
    """Ball arithmetic for the forward pass (small models only: pure Python loops)."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Any, np.ndarray]] = {}

    def _w(self, W: Any) -> np.ndarray:
        hit = self._cache.get(id(W))
        if hit is None:
            hit = self._cache[id(W)] = (W, to_arb(W))
        return hit[1]

    def gather_rows(self, E, tokens):
        return self._w(E)[np.asarray(tokens)]

    def rows(self, P, start, stop):
        return self._w(P)[start:stop]

    def add(self, a, b):
        return a + b

    def concat(self, parts: Sequence[np.ndarray], axis: int):
        batched = [p for p in parts if p.ndim == 3]
        if batched and any(p.ndim == 2 for p in parts):
            B = batched[0].shape[0]
            parts = [p if p.ndim == 3 else np.broadcast_to(p, (B,) + p.shape) for p in parts]
        return np.concatenate(parts, axis=axis)

    def stack(self, parts, axis):
        return np.stack(parts, axis=axis)

    def linear(self, x, W):
        return x @ self._w(W).T

    def linears(self, x, Ws):
        return [self.linear(x, W) for W in Ws]

    def affine(self, x, W, b):
        return x @ self._w(W).T + self._w(b)

    def relu(self, x):
        zero = _flint().arb(0)
        return np.vectorize(lambda a: a.max(zero), otypes=[object])(x)

    def scores(self, q, k, scale):
        return (q @ np.swapaxes(k, -1, -2)) * _flint().arb(float(scale))

    def softmax(self, scores, visible):
        """Tight ball softmax: lower from e^{lo_j} against e^{hi_k}, upper the reverse."""
        arb = _flint().arb
        out = np.empty(scores.shape, dtype=object)
        for idx in np.ndindex(scores.shape[:-1]):
            s = scores[idx]
            vis = np.broadcast_to(visible, scores.shape)[idx]
            cols = np.flatnonzero(vis)
            los = {j: s[j].lower().exp() for j in cols}
            his = {j: s[j].upper().exp() for j in cols}
            for j in range(s.shape[0]):
                if not vis[j]:
                    out[idx + (j,)] = arb(0)
                    continue
                rest_hi = sum((his[k] for k in cols if k != j), arb(0))
                rest_lo = sum((los[k] for k in cols if k != j), arb(0))
                lo = los[j] / (los[j] + rest_hi)
                hi = his[j] / (his[j] + rest_lo)
                out[idx + (j,)] = lo.union(hi)
        return out

    def mix(self, A, v):
        return A @ v

    def layernorm(self, x, ln: LayerNorm):
        raise ValueError("the arb back-end does not evaluate LayerNorm (not needed by the lookup claims)")

    def extend(self, store, new):
        return new if store is None else self.concat([store, new], axis=1)

    def view(self, store):
        return store


def box_margin(model: Model, claim: LookupRows, row: int, y: int, point: np.ndarray | None = None) -> tuple[float, float]:
    """(lower, upper) bounds of the minimum decode margin over box (row, y), in ball arithmetic.

    With `point`, every payload coordinate other than the row's own is fixed to those token values (one
    exact input); otherwise they range over the box. Free content tokens range over the hull of the
    embedding rows; fixed ones are the row's tokens.
    """
    model = materialize(model)
    arb = _flint().arb
    d = model.d_model
    n = int(claim.query_pos[row]) + 1
    E = model.embed.toarray() if sp.issparse(model.embed) else np.asarray(model.embed)
    lo, hi = E.min(axis=0), E.max(axis=0)
    K = len(claim.payload)
    with precision():
        soft = np.empty((1, n, d), dtype=object)
        for p in range(n):
            if p < claim.virtual:
                soft[0, p, :] = [arb(0)] * d
                for k, c in enumerate(claim.payload):
                    if p == claim.own_position[row] and k == claim.own[row]:
                        val = _value(claim, y)
                    elif point is not None:
                        val = _value(claim, int(point[p * K + k]))
                    else:
                        val = ball(claim.tau_lo.min(), claim.tau_hi.max())
                    soft[0, p, c] = val
            elif p in claim.fixed_pos:
                tok = claim.fixed_tok[row, claim.fixed_pos.index(p)]
                soft[0, p, :] = [arb(float(v)) for v in E[tok]]
            else:
                soft[0, p, :] = [ball(a, b) for a, b in zip(lo, hi)]
        logits = forward(model, None, soft, ops=ArbOps(), outputs_at=[n - 1]).logits[0, 0]
        diffs = [logits[y] - logits[j] for j in range(len(logits)) if j != y]
        return min(lower(dd) for dd in diffs), min(upper(dd) for dd in diffs)


def _value(claim: LookupRows, y: int):
    if claim.tau_exact:
        return _flint().arb(y) / claim.V  # the exact rational y/V
    return _flint().arb(float(claim.tau_lo[y]))


def cross_check(model: Model, claim: LookupRows, certified_lb: dict[tuple[int, int], float],
                points: int = 2, seed: int = 0) -> list[str]:
    """Compare certified per-box lower bounds with arb; returns the disagreements (empty when consistent)."""
    rng = np.random.default_rng(seed)
    problems = []
    K = len(claim.payload) * claim.virtual
    for (row, y), lb in certified_lb.items():
        box_lo, box_hi = box_margin(model, claim, row, y)
        if lb > box_hi:
            problems.append(f"box (row {row}, y {y}): certified lower bound {lb:.17g} exceeds arb's upper "
                            f"bound {box_hi:.17g} of the box minimum")
        for _ in range(points):
            pt = rng.integers(0, claim.V, size=K)
            p_lo, p_hi = box_margin(model, claim, row, y, point=pt)
            if lb > p_hi:
                problems.append(f"box (row {row}, y {y}): certified lower bound {lb:.17g} exceeds the exact "
                                f"margin {p_hi:.17g} of the input {pt.tolist()}")
    return problems
