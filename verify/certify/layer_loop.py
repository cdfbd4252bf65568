"""A sound enclosure of the logits of every float64 execution of the semantics on given inputs.

This is the derived tolerance of the PyTorch cross-check of the constructions
(docs/crosscheck.md). Two float64 implementations of docs/semantics.md (numpy
here, torch's matmul and `scaled_dot_product_attention` there) round
differently: different summation orders and blockings, FMA, q and k scaled by
sqrt(scale) before the product, a softmax normalised before or after the
mixing, a different `exp`. Instead of a bare atol, we enclose every execution
in which

    each elementary operation has relative error <= u' = 4 u   (u = 2^-53),
    each length-n dot product has error <= gamma_n(u') * sum |a_i b_i|   (any order, blocking or FMA),
    exp has relative error <= exp_ulps * u' = 16 u                    (8 ulp),

plus 4 * 2^-1074 absolute per operation for underflow. The factor 4 covers
the extra roundings of the variants above (the sqrt(scale) pre-scaling adds
two per product term; normalising after mixing adds one per output). The
interval evaluation itself is outward-rounded (verify/certify/interval.py), so the
enclosure [lo, hi] of each logit contains the exact real value and every such
execution. The cross-check requires both implementations' logits to lie in it;
hence |torch - numpy| <= hi - lo, the tolerance that is reported.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from prefixproof.constructions.model import Model, materialize
from prefixproof.verify.certify import interval as iv

TORCH_FLOAT64 = iv.Exec("float64 with 4x unit roundoff (any float64 implementation)", 4 * 2.0**-53,
                        4 * 2.0**-1074, 4.0, float(np.finfo(np.float64).max))


class EnclosureUnsupported(ValueError):
    """The model uses a feature the enclosure does not cover."""


def _visible(n: int, causal: bool) -> np.ndarray:
    q = np.arange(n)[:, None]
    k = np.arange(n)[None, :]
    return (k <= q) if causal else np.ones((n, n), dtype=bool)


def logits_enclosure(model: Model, tokens: np.ndarray | None, soft: np.ndarray | None,
                     ex: iv.Exec = TORCH_FLOAT64) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (B, n, V): encloses the logits of every execution allowed by `ex`.

    tokens (B, n_tok) and soft (B, k, d) or (k, d): the same inputs as `prefixproof.verify.semantics.forward.forward`.
    """
    model = materialize(model)
    if any(layer.ln is not None for layer in model.layers):
        raise EnclosureUnsupported("the logit enclosure does not cover LayerNorm layers")
    parts = []
    if soft is not None:
        soft = np.asarray(soft, dtype=np.float64)
        parts.append(soft if soft.ndim == 3 else soft[None])
    if tokens is not None and np.asarray(tokens).shape[-1]:
        E = model.embed
        rows = np.asarray(tokens)
        gathered = E[rows.ravel()].toarray() if hasattr(E, "toarray") else np.asarray(E)[rows.ravel()]
        parts.append(gathered.reshape(rows.shape + (model.d_model,)))
    B = max(p.shape[0] for p in parts)
    x0 = np.concatenate([np.broadcast_to(p, (B,) + p.shape[1:]) for p in parts], axis=1)
    n = x0.shape[1]
    P = model.pos
    pos = P[:n].toarray() if hasattr(P, "toarray") else np.asarray(P)[:n]
    x = iv.exec_round(iv.add(iv.point(x0), iv.point(np.broadcast_to(pos, x0.shape))), ex)
    for layer in model.layers:
        visible = _visible(n, layer.causal)
        total = None
        for head in layer.heads:
            q = iv.linear(x, head.W_Q, ex)
            k = iv.linear(x, head.W_K, ex)
            v = iv.linear(x, head.W_V, ex)
            kT = (np.swapaxes(k[0], -1, -2), np.swapaxes(k[1], -1, -2))
            scores = iv.exec_round(iv.scale(iv.matmul(q, kT, ex), head.scale), ex)
            A = iv.softmax(scores, np.broadcast_to(visible, scores[0].shape), ex)
            out = iv.linear(iv.matmul(A, v, ex), head.W_O, ex)
            total = out if total is None else iv.exec_round(iv.add(total, out), ex)
        if layer.attn_residual:
            total = iv.exec_round(iv.add(total, x), ex)
        z = total
        for j, dense in enumerate(layer.mlp):
            z = iv.exec_round(iv.add(iv.linear(z, dense.W, ex), iv.point(np.asarray(dense.b))), ex)
            if j < len(layer.mlp) - 1:
                z = iv.relu(z)
        if layer.mlp_residual:
            z = iv.exec_round(iv.add(z, total), ex)
        x = z
    if model.unembed is not None:
        x = iv.linear(x, model.unembed, ex)
    return x


def inside(values: Any, lo: np.ndarray, hi: np.ndarray) -> bool:
    values = np.asarray(values, dtype=np.float64)
    return bool(np.all((lo <= values) & (values <= hi)))
