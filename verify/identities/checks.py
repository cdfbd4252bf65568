"""The prefix identities measured on the one forward pass, per layer and per head.

A run with prefixes and a run without are compared *given the same input to
the layer*: the prefixed model's layer inputs come from `forward(...,
return_inputs=True)`, and the prefix-free side re-runs that layer alone on
exactly those inputs (`prefixproof.verify.numeric.probe.layer_model`). `prefixproof.verify.numeric.probe.ProbeOps`
reads the attention weights, values and head outputs off both runs.

Each check returns `Measure`s: an error and the tolerance that floating-point
evaluation can explain (`prefixproof.verify.identities.residuals.tolerance`, documented in
docs/identities.md). A measure passes when error <= tol; a NaN error fails.

`control` switches on a deliberately wrong identity (a negative control that
the harness must flag): see `verify/identities/properties.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from prefixproof.constructions.model import Layer, Model
from prefixproof.verify.semantics.ops import NumpyOps
from prefixproof.verify.semantics.forward import Prefix, embed, forward
from prefixproof.verify.identities.cases import Case, build
from prefixproof.verify.identities.residuals import prefix_mass, tolerance
from prefixproof.verify.numeric.probe import HeadTrace, ProbeOps, layer_model


@dataclass(frozen=True)
class Measure:
    name: str
    error: float
    tol: float

    @property
    def ratio(self) -> float:
        """error / tol; infinite for a NaN or infinite error."""
        if not np.isfinite(self.error):
            return float("inf")
        return self.error / self.tol

    @property
    def ok(self) -> bool:
        return self.ratio <= 1.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "error": self.error if np.isfinite(self.error) else str(self.error),
                "tol": self.tol, "ratio": self.ratio if np.isfinite(self.ratio) else str(self.ratio)}


def _f64(a: Any) -> np.ndarray:
    """At least float64 (extended-precision arrays stay extended): the precision residuals are computed in."""
    a = np.asarray(a)
    return a.astype(np.result_type(a.dtype, np.float64), copy=False)


def _normed(layer: Layer, x: np.ndarray) -> np.ndarray:
    """What the heads read (the layer's LayerNorm applied), in float64: for magnitudes only."""
    x = _f64(x)
    return NumpyOps(np.float64).layernorm(x, layer.ln) if layer.ln is not None else x


@dataclass(frozen=True)
class Magnitudes:
    S: float  # score magnitude
    M: float  # value magnitude
    D: int  # longest inner product


def magnitudes(layer: Layer, x: np.ndarray, prefix: Prefix | None) -> list[Magnitudes]:
    """The magnitudes of docs/identities.md for every head, on content inputs x (B, n, d) and a prefix."""
    h = np.abs(_normed(layer, x))
    hp = None if prefix is None or prefix.activations is None else np.abs(_normed(layer, prefix.activations))
    out = []
    for hi, head in enumerate(layer.heads):
        aq, ak, av = np.abs(_f64(head.W_Q)), np.abs(_f64(head.W_K)), np.abs(_f64(head.W_V))
        Hq, Hk, Hv = h @ aq.T, h @ ak.T, h @ av.T
        if prefix is not None:
            if hp is not None:
                Kp, Vp = hp @ ak.T, hp @ av.T
            else:
                Kp, Vp = np.abs(_f64(prefix.keys[hi])), np.abs(_f64(prefix.values[hi]))
            B = x.shape[0]
            Hk = np.concatenate([np.broadcast_to(Kp, (B,) + Kp.shape[-2:]), Hk], axis=1)
            Hv = np.concatenate([np.broadcast_to(Vp, (B,) + Vp.shape[-2:]), Hv], axis=1)
        S = abs(head.scale) * float((Hq @ np.swapaxes(Hk, -1, -2)).max(initial=0.0))
        out.append(Magnitudes(S, float(Hv.max(initial=0.0)), max(head.d_in, head.d_k, head.d_v)))
    return out


def compare_head(name: str, pre: HeadTrace, base: HeadTrace, P: int, mag: Magnitudes, dtype: np.dtype,
                 W_O: Any, control: str | None = None, swap_values: np.ndarray | None = None,
                 bias: bool = True) -> list[Measure]:
    """prefix_rescale, argmax and (with `bias`) prefix_bias before and after W_O, for one head at one layer."""
    A_pt, A = _f64(pre.A), _f64(base.A)
    n_keys = A_pt.shape[-1]
    alpha = prefix_mass(A_pt, P)
    keep = (1.0 - alpha)[..., None]
    tol_w = tolerance(dtype, n_keys, 1.0, depth=mag.D, score_scale=mag.S)
    predicted = A if control == "drop_alpha" else keep * A
    out = [Measure(f"{name} rescale", float(np.abs(A_pt[..., P:] - predicted).max(initial=0.0)), tol_w)]
    rows = A.sum(axis=-1) > 0
    a, a_pt = A.argmax(axis=-1), A_pt[..., P:].argmax(axis=-1)
    gap = keep[..., 0] * (np.take_along_axis(A, a[..., None], -1) - np.take_along_axis(A, a_pt[..., None], -1))[..., 0]
    out.append(Measure(f"{name} argmax", float(np.where(rows, gap, 0.0).max(initial=0.0)), 2 * tol_w))
    if not bias:
        return out
    v_p = _f64(pre.v)[:, :P] if swap_values is None else _f64(swap_values)
    mixed = A_pt[..., :P] @ v_p
    predicted_t = keep * _f64(base.t) + mixed
    tol_t = tolerance(dtype, n_keys, mag.M, depth=mag.D, score_scale=mag.S)
    out.append(Measure(f"{name} bias", float(np.abs(_f64(pre.t) - predicted_t).max(initial=0.0)), tol_t))
    Wo = _f64(W_O)
    row1 = float(np.abs(Wo).sum(axis=1).max(initial=0.0))
    predicted_o = keep * _f64(base.o) + mixed @ Wo.T
    tol_o = tolerance(dtype, n_keys, mag.M * row1, depth=max(mag.D, Wo.shape[1]), score_scale=mag.S)
    out.append(Measure(f"{name} bias W_O", float(np.abs(_f64(pre.o) - predicted_o).max(initial=0.0)), tol_o))
    return out


def range_measure(name: str, W_V: Any, v_p: np.ndarray, h_scale: float, dtype: np.dtype) -> Measure | None:
    """Distance of prefix values from range(W_V) (None when W_V is onto: nothing to check)."""
    W = np.asarray(W_V, dtype=np.float64)
    U, s, _ = np.linalg.svd(W, full_matrices=True)
    cut = s.max(initial=0.0) * 1e-12
    rank = int((s > cut).sum())
    if rank >= W.shape[0]:
        return None
    Q = U[:, :rank]
    v = np.asarray(v_p, dtype=np.float64).reshape(-1, W.shape[0])
    rest = v - (v @ Q) @ Q.T
    err = float(np.linalg.norm(rest, axis=-1).max(initial=0.0))
    mag = float(np.abs(W).sum(axis=1).max()) * h_scale
    eps64 = float(np.finfo(np.float64).eps)  # the projection is computed in float64
    tol = tolerance(dtype, 0, mag * np.sqrt(W.shape[0]), depth=W.shape[1]) + \
        8 * eps64 * (float(np.abs(v).max(initial=0.0)) + cut * h_scale) * W.shape[0]
    return Measure(f"{name} in range(W_V)", err, tol)


def prefix_measures(case: Case, control: str | None = None, bias: bool = True, evaluate_in: Any = None) -> list[Measure]:
    """The prefix identities at every prefixed layer of the case, given the same layer input.

    Always prefix_rescale and the argmax; with `bias` also prefix_bias (before and after W_O) and, for
    activation prefixes, range(W_V). `evaluate_in` evaluates the same weights in a wider dtype.
    """
    b = build(case, evaluate_in)
    model, H = b.model, case.heads
    ops = ProbeOps(b.dtype)
    run = forward(model, b.tokens, prefixes=b.prefixes, key_mask=b.key_mask, ops=ops, return_inputs=True)
    if control == "other_layer_input":  # the prefix-free model's own layer inputs: not the same input
        plain = forward(model, b.tokens, key_mask=b.key_mask, ops=NumpyOps(b.dtype), return_inputs=True)
    out: list[Measure] = []
    for l in case.prefixed:
        layer, prefix = model.layers[l], b.prefixes[l]
        x = (plain if control == "other_layer_input" else run).layer_inputs[l]
        base_ops = ProbeOps(b.dtype)
        forward(layer_model(model, l, case.n), None, x, key_mask=b.key_mask, ops=base_ops)
        pre_traces, base_traces = ops.layer(l, H), base_ops.layer(0, H)
        mags = magnitudes(layer, run.layer_inputs[l], prefix)
        for hi, mag in enumerate(mags):
            swap = _f64(pre_traces[(hi + 1) % H].v)[:, :case.prefix_len] if control == "swap_heads" else None
            out += compare_head(f"L{l} h{hi}", pre_traces[hi], base_traces[hi], case.prefix_len, mag, b.dtype,
                                layer.heads[hi].W_O, control, swap, bias)
            if bias and (prefix.activations is not None or control == "raw_values_in_range"):
                m = range_measure(f"L{l} h{hi}", layer.heads[hi].W_V, _f64(pre_traces[hi].v)[:, :case.prefix_len],
                                  _prefix_h_scale(layer, prefix), b.dtype)
                if m is not None:
                    out.append(m)
    return out


def _prefix_h_scale(layer: Layer, prefix: Prefix) -> float:
    if prefix.activations is None:
        return 0.0
    return float(np.abs(_normed(layer, prefix.activations)).max(initial=0.0))


def soft_prefix_measures(case: Case, control: str | None = None, evaluate_in: Any = None) -> list[Measure]:
    """A soft prompt equals the prefix of its own layer activations, on a model whose positions shift by k."""
    b = build(case, evaluate_in)
    model, H, k, n = b.model, case.heads, case.prefix_len, case.n
    mask = None if b.key_mask is None else np.concatenate([np.ones((case.batch, k), dtype=bool), b.key_mask], axis=1)
    ops = ProbeOps(b.dtype)
    run = forward(model, b.tokens, b.soft, key_mask=mask, ops=ops, return_inputs=True)
    out: list[Measure] = []
    shifted = _shift_positions(model, 0 if control == "unshifted_positions" else k, n)
    x0 = embed(shifted, b.tokens, None, 0, NumpyOps(b.dtype))  # the prefix-side model's content inputs
    x_soft = _f64(run.layer_inputs[0][:, k:])
    out.append(Measure("content inputs (positions shifted by k)", float(np.abs(_f64(x0) - x_soft).max(initial=0.0)),
                       tolerance(b.dtype, 0, float(np.abs(x_soft).max(initial=0.0)))))
    if case.causal or control == "noncausal_fixed_prefix":
        out += _fixed_prefix(case, b, mask, run.layer_inputs)
    for l, layer in enumerate(model.layers):
        x = run.layer_inputs[l]
        prefix = Prefix(activations=x[:, :k])
        pops = ProbeOps(b.dtype)
        forward(layer_model(model, l, n), None, x[:, k:], prefixes=[prefix], key_mask=b.key_mask, ops=pops)
        mags = magnitudes(layer, x[:, k:], prefix)
        for hi, (soft_t, pre_t) in enumerate(zip(ops.layer(l, H), pops.layer(0, H))):
            mag = mags[hi]
            tol_w = tolerance(b.dtype, k + n, 1.0, depth=mag.D, score_scale=mag.S)
            out.append(Measure(f"L{l} h{hi} attention", float(np.abs(_f64(soft_t.A)[:, k:] - _f64(pre_t.A)).max()),
                               tol_w))
            tol_t = tolerance(b.dtype, k + n, mag.M, depth=mag.D, score_scale=mag.S)
            out.append(Measure(f"L{l} h{hi} head output", float(np.abs(_f64(soft_t.t)[:, k:] - _f64(pre_t.t)).max()),
                               tol_t))
    return out


def _fixed_prefix(case: Case, b: Any, mask: np.ndarray | None, inputs: list[np.ndarray]) -> list[Measure]:
    """With causal attention the prefixes do not depend on the content: a second content gives the same ones."""
    k = case.prefix_len
    other = forward(b.model, (b.tokens + 1) % b.model.vocab.size, b.soft, key_mask=mask, ops=NumpyOps(b.dtype),
                    return_inputs=True).layer_inputs
    out = []
    for l in range(1, case.layers):
        mine, theirs = _f64(inputs[l][:, :k]), _f64(other[l][:, :k])
        D = max(max(h.d_in, h.d_k, h.d_v) for h in b.model.layers[l - 1].heads)
        out.append(Measure(f"L{l} prefix independent of the content", float(np.abs(mine - theirs).max(initial=0.0)),
                           tolerance(b.dtype, k + case.n, float(np.abs(mine).max(initial=0.0)), depth=D)))
    return out


def _shift_positions(model: Model, k: int, n: int) -> Model:
    """The model whose content position j uses P[k + j]: what a soft prompt of k positions leaves to the content."""
    return replace(model, pos=model.pos[k:k + n])
