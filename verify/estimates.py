"""Memory estimates: "this step will allocate about X bytes for these sizes", computed before allocating.

Every estimate is an upper bound on the bytes numpy (or python-flint) allocates for that step; the tests
(`tests/test_budget.py`) measure the real allocation with tracemalloc at small sizes and hold each estimate
to be at least the measured peak and at most `SLACK` times it.

- `shape_of(model)`: the dimensions of a built model; `construction_shape(name, params)`: the same from the
  construction's formulas alone (docs/constructions.md), so a size can be refused before anything is built.
- `build_bytes`: the exact construction plus its float64 copy (what `build` and the obligations hold).
- `forward_bytes`: one sequence through the teacher-forced float pass (the numeric checker).
- `generation_bytes`: one sequence through incremental greedy generation (the build self-check, `generate`).
- `hardmax_bytes`: one row of the exact hardmax evaluation (object arrays of flint rationals).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from prefixproof.constructions.basis import DENSE_LIMIT, ExactArray
from prefixproof.constructions.model import Model

SLACK = 4.0  # estimates are at most this many times the measured peak (tests/test_budget.py)
EXACT_ENTRY = 400  # bytes per entry of an exact matrix: dict slot, index tuple, Fraction
LABEL = 220  # bytes per residual-stream label: the string, its list slot and its index entry
OBJECT_ENTRY = 8 + 64  # one object-array slot and the flint rational it points to
HARDMAX_COPIES = 3  # lo, hi and b of a form (the temporaries between two forms mostly share the one zero)


@dataclass(frozen=True)
class Matrix:
    """One weight: rows x cols with `nnz` non-zero entries (a vector has cols = 1)."""

    rows: int
    cols: int
    nnz: int
    entry_bytes: int = EXACT_ENTRY  # per exact entry (more when the rationals have long numerators)

    @property
    def float_bytes(self) -> int:
        """float64 storage as `ExactArray.to_float` chooses it: dense while small or well filled, else CSR."""
        cells = self.rows * self.cols
        if self.cols > 1 and cells > DENSE_LIMIT and self.nnz * 8 < cells:
            return 12 * self.nnz + 8 * (self.rows + 1)
        return 8 * cells

    @property
    def exact_bytes(self) -> int:
        return self.entry_bytes * self.nnz + 64


@dataclass(frozen=True)
class LayerShape:
    d_in: int
    heads: tuple[tuple[int, int], ...]  # (d_k, d_v) per head
    attn_out: int
    hidden: tuple[int, ...]
    out: int

    @property
    def widths(self) -> int:
        """Floats one position holds through the layer (input, q/k/v, head outputs, MLP layers, output)."""
        return (3 * self.d_in + 2 * sum(2 * k + v for k, v in self.heads) + (len(self.heads) + 2) * self.attn_out
                + 3 * sum(self.hidden) + 3 * self.out)


@dataclass(frozen=True)
class ModelShape:
    vocab: int
    d_model: int
    n_ctx: int
    layers: tuple[LayerShape, ...]
    matrices: tuple[Matrix, ...]
    labels: int  # residual-stream labels across every space

    @property
    def weight_bytes(self) -> int:
        """The float64 model (plus the stacked q/k/v copies the numpy arithmetic caches)."""
        return 2 * sum(m.float_bytes for m in self.matrices) + LABEL * self.labels

    @property
    def exact_bytes(self) -> int:
        return sum(m.exact_bytes for m in self.matrices) + LABEL * self.labels


def build_bytes(shape: ModelShape) -> int:
    """Building: the exact construction and its float64 copy, both alive while `materialize` runs."""
    return shape.exact_bytes + shape.weight_bytes


def forward_bytes(shape: ModelShape, positions: int, itemsize: int = 8) -> int:
    """One sequence of `positions` through the teacher-forced pass and the decode margins."""
    n = max(1, positions)
    per = 3 * n * shape.d_model
    for layer in shape.layers:
        per += n * layer.widths + 6 * len(layer.heads) * n * n
    per += 3 * n * shape.vocab  # logits cast to float64 and the copy the margins mask
    return itemsize * per


def generation_bytes(shape: ModelShape, start: int, steps: int, itemsize: int = 8) -> int:
    """One sequence through incremental generation: the first pass over `start` positions, one more pass per
    further step, and the key/value caches (a new cache fits exactly; one that grows keeps room for twice its
    length, and the old and the new buffer are both alive while it is copied)."""
    total = start + steps
    cache = sum(sum(k + v for k, v in layer.heads) for layer in shape.layers)
    more = steps > 1
    room = 2 * max(2 * total, 16) if more else start
    return (forward_bytes(shape, start, itemsize) + (forward_bytes(shape, 1, itemsize) if more else 0)
            + itemsize * room * cache + 16 * steps)


def hardmax_bytes(shape: ModelShape, positions: int, queries: int = 1) -> int:
    """One row of the exact hardmax evaluation: forms over `positions` positions up to the attention, then
    `queries` positions through the MLP and the V logits (object arrays of flint rationals)."""
    per = 0
    for layer in shape.layers:
        per += positions * (layer.d_in + sum(2 * k + v for k, v in layer.heads)) + queries * layer.attn_out
        per += len(layer.heads) * positions * positions
        per += queries * (sum(layer.hidden) + layer.out)
    return HARDMAX_COPIES * OBJECT_ENTRY * per


def hardmax_fixed_bytes(shape: ModelShape) -> int:
    """What the exact evaluator holds whatever the batch: every weight as exact entries, E and P as dense
    object arrays, the embedding hull."""
    dense = (shape.vocab + shape.n_ctx) * shape.d_model * 8
    return dense + sum(m.nnz for m in shape.matrices) * (OBJECT_ENTRY + 64) + OBJECT_ENTRY * 2 * shape.d_model


def _matrix(w: Any) -> Matrix:
    if isinstance(w, ExactArray):
        return Matrix(w.shape[0], w.shape[1] if len(w.shape) > 1 else 1, len(w.entries))
    if sp.issparse(w):
        return Matrix(w.shape[0], w.shape[1], int(w.nnz))
    arr = np.asarray(w)
    return Matrix(arr.shape[0], arr.shape[1] if arr.ndim > 1 else 1, int(np.count_nonzero(arr)))


def shape_of(model: Model) -> ModelShape:
    """The dimensions of a built model (exact or float)."""
    layers = tuple(LayerShape(layer.d_in, tuple((h.d_k, h.d_v) for h in layer.heads), layer.attn_out.dim,
                              tuple(s.dim for s in layer.hidden), layer.out.dim) for layer in model.layers)
    labels = model.stream.dim + sum(l.attn_out + sum(l.hidden) + l.out for l in layers)
    return ModelShape(model.vocab.size, model.d_model, model.n_ctx, layers,
                      tuple(_matrix(w) for _, w in model.tensors()), labels)


def _lookup(V: int, d: int, n_ctx: int, heads: list[tuple[int, int, int, int]], attn: int, K: int, L: int,
            embed_nnz: int) -> ModelShape:
    """A lookup construction (docs/constructions.md): heads as (d_k, d_v, nnz of W_Q and W_K, nnz of W_V)."""
    mats = [Matrix(V, d, embed_nnz), Matrix(n_ctx, d, 2 * n_ctx)]
    for dk, dv, nqk, nv in heads:
        mats += [Matrix(dk, d, nqk), Matrix(dk, d, nqk), Matrix(dv, d, nv), Matrix(attn, dv, nv)]
    mats += [Matrix(K, attn, K * (1 + L)), Matrix(K, 1, K), Matrix(1, K, K), Matrix(1, 1, 0), Matrix(V, 1, V),
             Matrix(V, 1, V)]
    layer = LayerShape(d, tuple((dk, dv) for dk, dv, _, _ in heads), attn, (K, 1), V)
    return ModelShape(V, d, n_ctx, (layer,), tuple(mats), d + attn + K + 1 + V + sum(dk + dv for dk, dv, _, _ in heads))


def construction_shape(name: str, params: dict[str, int]) -> ModelShape:
    """The dimensions of a construction from its parameters alone (nothing is built).

    name: theorem1 (V, N), theorem2 (V), long_response (V, R), multi_token (V, L), conditional (V, L, R),
    multi_token_packing (V, L)."""
    V = int(params["V"])
    if name == "theorem1":
        N = int(params["N"])
        return _lookup(V, 2 * N + 1, N, [(1, N, 1, N), (N, N, N, N)], 2 * N, N, 1, 0)
    if name == "theorem2":
        return _lookup(V, 2 * V + 3, 2, [(1, V, 1, V), (1, V, 1, V)], 2 * V, V, 1, V)
    if name in ("long_response", "multi_token", "conditional"):
        L = 1 if name == "long_response" else int(params.get("L", 2))
        R = 1 if name == "multi_token" else int(params.get("R", 1))
        K, n = V ** L, 2 * R + L - 1
        heads = [(R, K, R, K)] + [(1, V, 1, V)] * L
        return _lookup(V, 1 + n + K + V, n, heads, K + L * V, K, L, V)
    if name == "multi_token_packing":
        L = int(params.get("L", 2))
        D, d, n = V ** (L - 1), 2 * V + L + 2, L + 1
        width = max(L * V, V + D + 2)
        depth = 2 * D + 5
        mats = [Matrix(V, d, V), Matrix(n, d, 2 * n)]
        mats += [Matrix(1, d, 1), Matrix(1, d, 1), Matrix(V, d, V), Matrix((L + 1) * V, V, V)] * (L + 1)
        digits = EXACT_ENTRY + int(D * math.log2(V)) // 8  # the digit stages' rationals reach V^D
        mats += [Matrix(width, width, 3 * width, digits), Matrix(width, 1, width, digits)] * depth
        layer = LayerShape(d, ((1, V),) * (L + 1), (L + 1) * V, (width,) * (depth - 1), V)
        return ModelShape(V, d, n, (layer,), tuple(mats), d + (L + 1) * V + width * depth)
    raise ValueError(f"no size formula for construction {name!r}")
