"""A naive reference in the style of the paper's companion notebook.

Greedy generation that recomputes the full attention over the whole sequence
at every step, with explicit Python loops over query and key positions (the
notebook's `attention_head`), on the same model description and semantics
(causal mask, explicit scale, no residual). It exists only to be timed against.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from prefixproof.constructions.model import Model, materialize


def _dense(w):
    return w.toarray() if sp.issparse(w) else np.asarray(w)


def naive_generate(model: Model, soft: np.ndarray, steps: int) -> list[int]:
    """soft: (k, d) virtual tokens; returns `steps` greedy tokens."""
    model = materialize(model)
    E, P = _dense(model.embed), _dense(model.pos)
    layer = model.layers[0]
    heads = [(_dense(h.W_Q), _dense(h.W_K), _dense(h.W_V), _dense(h.W_O), h.scale) for h in layer.heads]
    mlp = [(_dense(d.W), _dense(d.b)) for d in layer.mlp]
    out: list[int] = []
    for step in range(steps):
        xs = [soft[p] + P[p] for p in range(len(soft))] + [E[t] + P[len(soft) + i] for i, t in enumerate(out)]
        n = len(xs)
        h = [np.zeros(layer.attn_out.dim) for _ in range(n)]
        for WQ, WK, WV, WO, scale in heads:
            A = np.zeros((n, n))
            for i in range(n):
                for j in range(n):
                    A[i, j] = scale * np.dot(WQ @ xs[i], WK @ xs[j]) if j <= i else -np.inf
            for i in range(n):
                w = np.exp(A[i] - A[i].max())
                w /= w.sum()
                h[i] = h[i] + WO @ sum(w[j] * (WV @ xs[j]) for j in range(n))
        z = h[-1]
        for k, (W, b) in enumerate(mlp):
            z = W @ z + b
            if k < len(mlp) - 1:
                z = np.maximum(z, 0)
        out.append(int(np.argmax(z)))
    return out
