"""Random model descriptions for property tests (not a construction)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from prefixproof.constructions.basis import Space
from prefixproof.constructions.model import Dense, Head, Layer, LayerNorm, Model, Vocab


def random_model(
    rng: np.random.Generator,
    *,
    V: int = 7,
    d: int = 6,
    n_ctx: int = 8,
    heads: int = 2,
    layers: int = 2,
    d_k: int = 3,
    d_v: int = 3,
    weight_scale: float = 1.0,
    causal: bool = True,
    residual: bool = False,
    layernorm: bool = False,
    sparse: bool = False,
) -> Model:
    """A random transformer in the project's semantics; the last MLP writes V logits."""

    def w(*shape: int):
        a = rng.normal(scale=weight_scale / np.sqrt(shape[-1]), size=shape)
        return sp.csr_array(a) if sparse and len(shape) == 2 else a

    stream = Space.anonymous("stream", d)
    built = []
    for l in range(layers):
        last = l == layers - 1
        out = Space.anonymous("logits", V) if last else stream
        hidden = Space.anonymous(f"h{l}", 5)
        hs = tuple(Head(f"h{h}", w(d_k, d), w(d_k, d), w(d_v, d), w(d, d_v), float(rng.uniform(0.5, 2.0)))
                   for h in range(heads))
        mlp = (Dense(w(5, d), rng.normal(size=5)), Dense(w(out.dim, 5), rng.normal(size=out.dim)))
        ln = LayerNorm(rng.uniform(0.5, 1.5, d), rng.normal(scale=0.1, size=d)) if layernorm else None
        built.append(Layer(hs, mlp, stream, (hidden,), out, causal=causal, attn_residual=residual,
                           mlp_residual=residual and not last, ln=ln))
    return Model(Vocab(V), stream, w(V, d), w(n_ctx, d), tuple(built))


def random_lookup_model(rng: np.random.Generator, *, V: int = 5, N: int = 3, hidden: int = 4,
                        weight_scale: float = 1.0) -> Model:
    """A random one-layer model with a labelled `target` payload block and a 3-layer MLP (not a construction)."""
    stream = Space.of("stream", {"one": None, "pos": N, "target": N})
    d = stream.dim
    attn = Space.anonymous("attn", 6)
    heads = tuple(Head(f"h{h}", rng.normal(scale=weight_scale, size=(3, d)), rng.normal(scale=weight_scale, size=(3, d)),
                       rng.normal(size=(4, d)), rng.normal(size=(6, 4)) / 2, float(rng.uniform(0.5, 3.0)))
                  for h in range(2))
    h1, h2 = Space.anonymous("h1", hidden), Space.anonymous("h2", 2)
    mlp = (Dense(rng.normal(size=(hidden, 6)), rng.normal(size=hidden)),
           Dense(rng.normal(size=(2, hidden)), rng.normal(size=2)),
           Dense(rng.normal(size=(V, 2)), rng.normal(size=V)))
    layer = Layer(heads, mlp, attn, (h1, h2), Space.anonymous("logits", V))
    E = rng.normal(scale=0.5, size=(V, d))
    E[:, stream.block("target")] = 0.0
    P = np.zeros((N, d))
    for p in range(N):
        P[p, stream.index("one")] = 1.0
        P[p, stream.index(f"pos:{p}")] = 1.0
    return Model(Vocab(V), stream, E, P, (layer,))
