"""The one forward semantics (docs/semantics.md), written once.

Every evaluator runs a model description through `run_layers`; they differ
only in the arithmetic object `ops` (numpy floats here, intervals and exact
numbers in their own modules). The same code serves the teacher-forced pass
(all positions at once, empty cache) and incremental greedy generation (one
position at a time, keys and values cached), so the two cannot disagree about
what the model computes.

Shapes: B sequences, n positions, d model width. Matrices act on column vectors
(y = W x), so a batch of row vectors goes through as x @ W.T.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from prefixproof.constructions.model import Layer, Model
from prefixproof.verify.semantics.ops import NumpyOps, Ops


@dataclass(frozen=True)
class Prefix:
    """Extra key/value positions before the content of one layer, seen by every query.

    Either `activations` (P, d_in) or (B, P, d_in): keys and values are
    W_K s_p and W_V s_p of each head (after the layer's pre-LayerNorm, like the
    content); or raw per-head `keys[h]` (P, d_k) and `values[h]` (P, d_v), each
    optionally with a leading batch axis, as frameworks inject them.
    """

    activations: Any = None
    keys: tuple[Any, ...] | None = None
    values: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        raw = self.keys is not None or self.values is not None
        if (self.activations is None) == (not raw):
            raise ValueError("a Prefix takes either activations or raw keys and values, not both or neither")
        if raw and (self.keys is None or self.values is None or len(self.keys) != len(self.values)):
            raise ValueError("a raw Prefix needs one key array and one value array per head")

    @property
    def length(self) -> int:
        arr = self.activations if self.activations is not None else self.keys[0]
        return arr.shape[-2]


@dataclass
class LayerCache:
    """Per-head keys and values of the positions already processed (prefix first).

    Entries are stores managed by the arithmetic (`ops.extend` appends,
    `ops.view` reads); for floats they are buffers with room to grow.
    """

    keys: list[Any] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    n_prefix: int = 0
    n_content: int = 0


def embed(model: Model, tokens: Any, soft: Any, start: int, ops: Ops) -> Any:
    """x_p = E[token_p] + P[p]; virtual tokens replace E[token] at positions 0..k-1."""
    parts = []
    if soft is not None:
        parts.append(soft)
    if tokens is not None and tokens.shape[-1]:
        parts.append(ops.gather_rows(model.embed, tokens))
    if not parts:
        raise ValueError("nothing to embed: give tokens, soft prompt vectors, or both")
    x = ops.concat(parts, axis=1) if len(parts) > 1 else parts[0]
    n = x.shape[1]
    if start + n > model.n_ctx:
        raise ValueError(f"sequence of {start + n} positions exceeds the model's context of {model.n_ctx}")
    return ops.add(x, ops.rows(model.pos, start, start + n))


def _prefix_kv(layer: Layer, prefix: Prefix, ops: Ops) -> tuple[list[Any], list[Any]]:
    if prefix.activations is not None:
        s = prefix.activations
        if layer.ln is not None:
            s = ops.layernorm(s, layer.ln)
        return [ops.linear(s, h.W_K) for h in layer.heads], [ops.linear(s, h.W_V) for h in layer.heads]
    if len(prefix.keys) != len(layer.heads):
        raise ValueError(f"raw prefix has {len(prefix.keys)} heads, the layer has {len(layer.heads)}")
    return list(prefix.keys), list(prefix.values)


def run_layer(
    layer: Layer,
    x: Any,
    cache: LayerCache,
    ops: Ops,
    key_mask: Any = None,
    attn_out: list | None = None,
    rows: np.ndarray | None = None,
) -> Any:
    """Process the new positions `x` (B, n_new, d_in) of one layer, extending `cache`.

    key_mask (B, n_content_total) marks visible content keys (padding masks);
    prefix keys are always visible. With `attn_out` a list, the attention
    weights (B, heads, n_new, n_prefix + n_content) are appended to it.
    `rows` (indices into the new positions) limits the outputs computed to those
    queries; every new position still contributes its key and value.
    """
    start = cache.n_content
    n_new = x.shape[1]
    h_in = ops.layernorm(x, layer.ln) if layer.ln is not None else x
    h_q = h_in if rows is None else h_in[:, rows]
    total = None
    weights = []
    qs = ops.linears(h_q, [h.W_Q for h in layer.heads])
    kvs = ops.linears(h_in, [W for h in layer.heads for W in (h.W_K, h.W_V)])
    for hi, head in enumerate(layer.heads):
        q, k_new, v_new = qs[hi], kvs[2 * hi], kvs[2 * hi + 1]
        if len(cache.keys) <= hi:
            cache.keys.append(None)
            cache.values.append(None)
        cache.keys[hi] = ops.extend(cache.keys[hi], k_new)
        cache.values[hi] = ops.extend(cache.values[hi], v_new)
        scores = ops.scores(q, ops.view(cache.keys[hi]), head.scale)
        visible = _visible(cache.n_prefix, start, n_new, layer.causal, key_mask)
        if rows is not None:
            visible = visible[:, rows]
        A = ops.softmax(scores, visible)
        out = ops.linear(ops.mix(A, ops.view(cache.values[hi])), head.W_O)
        total = out if total is None else ops.add(total, out)
        weights.append(A)
    cache.n_content = start + n_new
    if attn_out is not None:
        attn_out.append(ops.stack(weights, axis=1))
    if layer.attn_residual:
        total = ops.add(total, x if rows is None else x[:, rows])
    z = total
    for k, dense in enumerate(layer.mlp):
        z = ops.affine(z, dense.W, dense.b)
        if k < len(layer.mlp) - 1:
            z = ops.relu(z)
    if layer.mlp_residual:
        z = ops.add(z, total)
    return z


def _visible(n_prefix: int, start: int, n_new: int, causal: bool, key_mask: Any) -> np.ndarray:
    """Boolean (B or 1, n_new, n_prefix + start + n_new): which keys each new query sees."""
    n_keys = start + n_new
    qpos = np.arange(start, start + n_new)[:, None]
    kpos = np.arange(n_keys)[None, :]
    content = kpos <= qpos if causal else np.ones((n_new, n_keys), dtype=bool)
    content = content[None]
    if key_mask is not None:
        content = content & np.asarray(key_mask, dtype=bool)[:, None, :n_keys]
    pre = np.ones(content.shape[:-1] + (n_prefix,), dtype=bool)
    return np.concatenate([pre, content], axis=-1)


def new_caches(model: Model, prefixes: Sequence[Prefix | None] | None, ops: Ops) -> list[LayerCache]:
    """Empty caches, seeded with each layer's prefix keys and values."""
    if prefixes is not None and len(prefixes) != len(model.layers):
        raise ValueError(f"give one prefix (or None) per layer: {len(model.layers)} layers, {len(prefixes)} prefixes")
    caches = []
    for l, layer in enumerate(model.layers):
        prefix = None if prefixes is None else prefixes[l]
        if prefix is None:
            caches.append(LayerCache())
        else:
            keys, values = _prefix_kv(layer, prefix, ops)
            caches.append(LayerCache(keys, values, n_prefix=prefix.length))
    return caches


def run_layers(
    model: Model,
    x: Any,
    caches: list[LayerCache],
    ops: Ops,
    key_mask: Any = None,
    attn: list | None = None,
    layer_inputs: list | None = None,
    outputs_at: np.ndarray | None = None,
) -> Any:
    """All layers on new positions `x`; returns logits (B, n_new, V), or (B, len(outputs_at), V)."""
    last = len(model.layers) - 1
    for l, layer in enumerate(model.layers):
        if layer_inputs is not None:
            layer_inputs.append(x)
        x = run_layer(layer, x, caches[l], ops, key_mask, attn, outputs_at if l == last else None)
    if model.unembed is not None:
        x = ops.linear(x, model.unembed)
    return x


@dataclass(frozen=True)
class ForwardOut:
    logits: Any  # (B, n, V)
    attention: list[Any] | None  # per layer (B, heads, n, P + n)
    layer_inputs: list[Any] | None  # per layer (B, n, d_in)


def forward(
    model: Model,
    tokens: Any = None,
    soft: Any = None,
    *,
    prefixes: Sequence[Prefix | None] | None = None,
    key_mask: Any = None,
    ops: Ops | None = None,
    return_attention: bool = False,
    return_inputs: bool = False,
    outputs_at: Sequence[int] | None = None,
) -> ForwardOut:
    """The teacher-forced pass over the whole sequence (virtual tokens first).

    `outputs_at` restricts the logits (and the last layer's queries) to those
    positions; the values computed there are the same as in the full pass.
    """
    ops = ops or NumpyOps()
    tokens = None if tokens is None else np.asarray(tokens)
    x = embed(model, tokens, soft, 0, ops)
    caches = new_caches(model, prefixes, ops)
    attn = [] if return_attention else None
    inputs = [] if return_inputs else None
    rows = None if outputs_at is None else np.asarray(outputs_at, dtype=np.int64)
    logits = run_layers(model, x, caches, ops, key_mask, attn, inputs, rows)
    return ForwardOut(logits, attn, inputs)
