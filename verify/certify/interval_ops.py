"""Intervals as an arithmetic of the one forward pass (`prefixproof.verify.semantics.forward`).

`IntervalOps` implements the `Ops` protocol on boxes [lo, hi] with outward rounding and an executed
arithmetic `Exec` (docs/certificates.md): every operation the forward pass performs is enclosed together
with its own rounding in that arithmetic. So an enclosure computed with these ops follows the same layer
loop, masks and residual flags as every other evaluator; nothing about the model is written twice.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from prefixproof.constructions.model import LayerNorm, Weight
from prefixproof.verify.certify import interval as iv
from prefixproof.verify.certify.interval import as_dense as iv_as_dense


class EnclosureUnsupported(ValueError):
    """The model uses a feature the interval arithmetic does not enclose."""


class Box(NamedTuple):
    """An interval array: every entry lies in [lo, hi]. Integer indexing gives lo (0) or hi (1), as for the
    (lo, hi) pairs of `interval.py`; any other index slices both ends."""

    lo: np.ndarray
    hi: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.lo.shape

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, int):
            return tuple.__getitem__(self, key)
        return Box(self.lo[key], self.hi[key])


def _box(x: Any) -> Box:
    if isinstance(x, tuple):
        return Box(np.asarray(x[0], dtype=np.float64), np.asarray(x[1], dtype=np.float64))
    return Box(*iv.point(np.asarray(x, dtype=np.float64)))


_dense = iv_as_dense  # one conversion for every certificate module (interval.as_dense)


class IntervalOps:
    """Enclose every execution allowed by `ex` of each operation of the forward pass."""

    def __init__(self, ex: iv.Exec = iv.REAL) -> None:
        self.ex = ex

    def gather_rows(self, E: Weight, tokens: np.ndarray) -> Box:
        return _box(_dense(E)[np.asarray(tokens)])

    def rows(self, P: Weight, start: int, stop: int) -> Box:
        return _box(_dense(P)[start:stop])

    def add(self, a: Any, b: Any) -> Box:
        a, b = _box(a), _box(b)
        return Box(*iv.exec_round(iv.add(a, b), self.ex))

    def concat(self, parts: Sequence[Any], axis: int) -> Box:
        boxes = [_box(p) for p in parts]
        B = max(p.shape[0] for p in boxes)
        grown = [Box(*(np.broadcast_to(e, (B,) + p.shape[1:]) for e in p)) for p in boxes]
        return Box(np.concatenate([p.lo for p in grown], axis=axis), np.concatenate([p.hi for p in grown], axis=axis))

    def stack(self, parts: Sequence[Any], axis: int) -> Box:
        boxes = [_box(p) for p in parts]
        return Box(np.stack([p.lo for p in boxes], axis=axis), np.stack([p.hi for p in boxes], axis=axis))

    def linear(self, x: Any, W: Weight) -> Box:
        return Box(*iv.linear(_box(x), W, self.ex))

    def linears(self, x: Any, Ws: Sequence[Weight]) -> list[Box]:
        return [self.linear(x, W) for W in Ws]

    def affine(self, x: Any, W: Weight, b: Any) -> Box:
        return self.add(self.linear(x, W), np.asarray(b, dtype=np.float64))

    def relu(self, x: Any) -> Box:
        return Box(*iv.relu(_box(x)))

    def scores(self, q: Any, k: Any, scale: float) -> Box:
        k = _box(k)
        kT = (np.swapaxes(k.lo, -1, -2), np.swapaxes(k.hi, -1, -2))
        return Box(*iv.exec_round(iv.scale(iv.matmul(_box(q), kT, self.ex), scale), self.ex))

    def softmax(self, scores: Any, visible: np.ndarray) -> Box:
        scores = _box(scores)
        return Box(*iv.softmax(scores, np.broadcast_to(visible, scores.shape), self.ex))

    def mix(self, A: Any, v: Any) -> Box:
        return Box(*iv.matmul(_box(A), _box(v), self.ex))

    def layernorm(self, x: Any, ln: LayerNorm) -> Box:
        raise EnclosureUnsupported("the interval arithmetic does not cover LayerNorm layers")

    def extend(self, store: Any, new: Any) -> Box:
        return _box(new) if store is None else self.concat([store, new], axis=-2)

    def view(self, store: Any) -> Box:
        return store
