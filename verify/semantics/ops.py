"""Arithmetic back-ends for the one forward pass in `verify/semantics/forward.py`.

An `Ops` object supplies the dozen primitive operations the forward pass uses.
`NumpyOps` is plain floating point in a chosen dtype (float64 by default); other
evaluators (interval, exact) implement the same protocol, so the semantics
itself is written only once.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np
import scipy.sparse as sp

from prefixproof.constructions.model import LayerNorm, Model, Weight, map_weights, materialize

DTYPES = {"float64": np.float64, "float32": np.float32}


class Ops(Protocol):
    def gather_rows(self, E: Weight, tokens: np.ndarray) -> Any: ...
    def rows(self, P: Weight, start: int, stop: int) -> Any: ...
    def add(self, a: Any, b: Any) -> Any: ...
    def concat(self, parts: Sequence[Any], axis: int) -> Any: ...
    def stack(self, parts: Sequence[Any], axis: int) -> Any: ...
    def linear(self, x: Any, W: Weight) -> Any: ...
    def linears(self, x: Any, Ws: Sequence[Weight]) -> list[Any]: ...
    def affine(self, x: Any, W: Weight, b: Any) -> Any: ...
    def relu(self, x: Any) -> Any: ...
    def scores(self, q: Any, k: Any, scale: float) -> Any: ...
    def softmax(self, scores: Any, visible: np.ndarray) -> Any: ...
    def mix(self, A: Any, v: Any) -> Any: ...
    def layernorm(self, x: Any, ln: LayerNorm) -> Any: ...
    def extend(self, store: Any, new: Any) -> Any: ...
    def view(self, store: Any) -> Any: ...


def _batch_align(parts: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Give unbatched (n, d) parts the leading batch axis of the batched ones."""
    batched = [p for p in parts if p.ndim == 3]
    if not batched or all(p.ndim == 3 for p in parts):
        return list(parts)
    B = max(p.shape[0] for p in batched)
    return [p if p.ndim == 3 else np.broadcast_to(p, (B,) + p.shape) for p in parts]


class _Grow:
    """A key/value cache buffer with spare room along the position axis (amortised appends)."""

    __slots__ = ("data", "n")

    def __init__(self, data: np.ndarray, n: int) -> None:
        self.data, self.n = data, n

    def view(self) -> np.ndarray:
        return self.data[:, : self.n]


class NumpyOps:
    """Floating-point arithmetic in one numpy dtype; weights may be dense or CSR."""

    def __init__(self, dtype: Any = np.float64) -> None:
        self.dtype = np.dtype(dtype)
        self._stacked: dict[tuple[int, ...], tuple[tuple[Weight, ...], Weight]] = {}

    def _w(self, W: Weight) -> np.ndarray | sp.csr_array:
        return W if W.dtype == self.dtype else W.astype(self.dtype)

    def gather_rows(self, E: Weight, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens)
        E = self._w(E)
        if sp.issparse(E):
            flat = E[tokens.ravel()].toarray()
            return flat.reshape(tokens.shape + (E.shape[1],))
        return E[tokens]

    def rows(self, P: Weight, start: int, stop: int) -> np.ndarray:
        P = self._w(P)
        out = P[start:stop]
        return out.toarray() if sp.issparse(out) else out

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def concat(self, parts: Sequence[np.ndarray], axis: int) -> np.ndarray:
        return np.concatenate(_batch_align([np.asarray(p, dtype=self.dtype) for p in parts]), axis=axis)

    def stack(self, parts: Sequence[np.ndarray], axis: int) -> np.ndarray:
        return np.stack(parts, axis=axis)

    def linear(self, x: np.ndarray, W: Weight) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        W = self._w(W)
        if sp.issparse(W):
            flat = x.reshape(-1, x.shape[-1])
            return np.asarray(W @ flat.T).T.reshape(x.shape[:-1] + (W.shape[0],))
        return x @ W.T

    def linears(self, x: np.ndarray, Ws: Sequence[Weight]) -> list[np.ndarray]:
        """[x @ W.T for W in Ws] as one product with the stacked matrix (cached per tuple of weights)."""
        if len(Ws) == 1:
            return [self.linear(x, Ws[0])]
        key = tuple(id(W) for W in Ws)
        hit = self._stacked.get(key)
        if hit is None:
            if any(sp.issparse(W) for W in Ws):
                stacked = sp.vstack([sp.csr_array(self._w(W)) for W in Ws], format="csr")
            else:
                stacked = np.vstack([self._w(W) for W in Ws])
            hit = self._stacked[key] = (tuple(Ws), stacked)  # keeps the weights alive: ids stay unique
        y = self.linear(x, hit[1])
        cuts = np.cumsum([W.shape[0] for W in Ws])[:-1]
        return np.split(y, cuts, axis=-1)

    def affine(self, x: np.ndarray, W: Weight, b: np.ndarray) -> np.ndarray:
        return self.linear(x, W) + self._w(b)

    def relu(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, self.dtype.type(0))

    def scores(self, q: np.ndarray, k: np.ndarray, scale: float) -> np.ndarray:
        # s_ij = scale * <q_i, k_j>: the dot product first, then the scale.
        return (q @ np.swapaxes(k, -1, -2)) * self.dtype.type(scale)

    def softmax(self, scores: np.ndarray, visible: np.ndarray) -> np.ndarray:
        s = np.where(visible, scores, -np.inf)
        top = np.max(s, axis=-1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0)  # rows with no visible key
        e = np.exp(s - top)
        total = e.sum(axis=-1, keepdims=True)
        return e / np.where(total > 0, total, 1)

    def mix(self, A: np.ndarray, v: np.ndarray) -> np.ndarray:
        return A @ v

    def extend(self, store: Any, new: np.ndarray) -> _Grow:
        """Append positions (axis 1) to a cache; the same values as concat([old, new], axis=1)."""
        if isinstance(store, _Grow) and store.n + new.shape[1] <= store.data.shape[1] \
                and new.shape[0] == store.data.shape[0]:
            store.data[:, store.n: store.n + new.shape[1]] = new
            store.n += new.shape[1]
            return store
        parts = _batch_align([np.asarray(p, dtype=self.dtype) for p in ([] if store is None else [self.view(store)]) + [new]])
        n = sum(p.shape[1] for p in parts)
        room = n if store is None else max(2 * n, 16)  # a new cache fits exactly (a teacher-forced pass never grows it)
        data = np.empty((parts[-1].shape[0], room) + parts[-1].shape[2:], dtype=self.dtype)
        np.concatenate(parts, axis=1, out=data[:, :n])
        return _Grow(data, n)

    def view(self, store: Any) -> np.ndarray:
        return store.view() if isinstance(store, _Grow) else store

    def layernorm(self, x: np.ndarray, ln: LayerNorm) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.dtype.type(ln.eps)) * self._w(ln.gamma) + self._w(ln.beta)


def cast_model(model: Model, dtype: Any) -> Model:
    """Materialise exact weights and round every weight to `dtype` once."""
    model = materialize(model)
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return model
    return map_weights(model, lambda w: w.astype(dtype))
