"""Observe what the one forward pass computes inside each head, without a second forward pass.

`ProbeOps` is `NumpyOps` that also records, for every head it evaluates (in
order: layer by layer, head by head), the queries and keys it scored, the
attention weights, the value rows they mixed (prefix values first), the head
output t = A v before W_O and the projected output W_O t. The forward pass in
`verify/semantics/forward.py` is unchanged; the probe only watches its arithmetic.

`layer_model` turns layer l of a model into a one-layer model that takes that
layer's input directly (zero positional table, inputs given as soft vectors),
so a layer can be re-run on a given input with or without a prefix: the
per-layer claims are comparisons "given the same input to that layer".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from prefixproof.constructions.basis import Space
from prefixproof.constructions.model import Model, Vocab
from prefixproof.verify.semantics.ops import NumpyOps


@dataclass
class HeadTrace:
    """One head at one layer: everything the forward pass computed for it."""

    q: np.ndarray | None = None  # (B, n_q, d_k)
    k: np.ndarray | None = None  # (B, n_keys, d_k), prefix keys first
    scale: float = 1.0
    A: np.ndarray | None = None  # (B, n_q, n_keys)
    v: np.ndarray | None = None  # (B, n_keys, d_v), prefix values first
    t: np.ndarray | None = None  # (B, n_q, d_v) = A v, the head output before W_O
    o: np.ndarray | None = None  # (B, n_q, d_out) = W_O t


class ProbeOps(NumpyOps):
    """Floating-point arithmetic that records a `HeadTrace` per evaluated head (see module docstring)."""

    def __init__(self, dtype: Any = np.float64) -> None:
        super().__init__(dtype)
        self.traces: list[HeadTrace] = []
        self._pending: HeadTrace | None = None
        self._mixed: np.ndarray | None = None

    def scores(self, q: np.ndarray, k: np.ndarray, scale: float) -> np.ndarray:
        self._pending = HeadTrace(q=q, k=k, scale=float(scale))
        return super().scores(q, k, scale)

    def softmax(self, scores: np.ndarray, visible: np.ndarray) -> np.ndarray:
        A = super().softmax(scores, visible)
        if self._pending is not None:
            self._pending.A = A
        return A

    def mix(self, A: np.ndarray, v: np.ndarray) -> np.ndarray:
        t = super().mix(A, v)
        trace = self._pending if self._pending is not None and self._pending.A is A else HeadTrace(A=A)
        trace.v, trace.t = v, t
        self.traces.append(trace)
        self._pending, self._mixed = None, t
        return t

    def linear(self, x: np.ndarray, W: Any) -> np.ndarray:
        y = super().linear(x, W)
        if self._mixed is not None and x is self._mixed:  # the W_O projection of the head just mixed
            self.traces[-1].o = y
            self._mixed = None
        return y

    def layer(self, l: int, heads: int) -> list[HeadTrace]:
        """The traces of layer l (of a forward pass with `heads` heads per layer)."""
        out = self.traces[l * heads:(l + 1) * heads]
        if len(out) != heads:
            raise ValueError(f"no traces for layer {l}: {len(self.traces)} heads were recorded")
        return out


_SPACES: dict[tuple[str, int], Space] = {}


def _space(name: str, dim: int) -> Space:
    key = (name, dim)
    if key not in _SPACES:
        _SPACES[key] = Space.anonymous(name, dim)
    return _SPACES[key]


def layer_model(model: Model, l: int, n: int) -> Model:
    """Layer l alone, reading its input as soft vectors: zero positional table of n rows, no token embedding use."""
    layer = model.layers[l]
    d, d_out = layer.d_in, layer.out.dim
    zeros = np.zeros((n, d), dtype=np.float64)
    return Model(Vocab(2), _space("layer_input", d), np.zeros((2, d)), zeros, (layer,),
                 unembed=np.zeros((2, d_out)))
