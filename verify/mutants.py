"""Mutants of the constructions: broken models the verifier must never pass.

Each mutant names one concrete defect (a zeroed or perturbed block, swapped
heads, a lowered scale, a shifted decode grid, positions off by one, an
encoding the weights misread, a downcast to float16, ...) applied to the
float64 weights of a construction at a size where the defect really breaks
the claim. `prefixproof selftest` runs the decode obligation on every mutant
and requires FALSIFIED or UNKNOWN, never CERTIFIED or CHECKED.

Mutants that cannot break the claim (doubling the scale, swapping heads with
equal scales) are deliberately absent: a verifier must certify those.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import scipy.sparse as sp

from constructions.model import Dense, Model, materialize, replace_layer_flags
from constructions.theorem1 import Theorem1
from constructions.theorem2 import Theorem2
from verify.dtypes import round_model


@dataclass(frozen=True)
class Mutant:
    claim: str  # theorem1 | theorem2
    name: str
    params: dict[str, int]
    build: Callable[[], Model]


def _dense(w):
    return w.toarray() if sp.issparse(w) else np.array(w, dtype=np.float64)


def _head(model: Model, h: int, **parts) -> Model:
    layer = model.layers[0]
    heads = list(layer.heads)
    heads[h] = replace(heads[h], **parts)
    return replace(model, layers=(replace(layer, heads=tuple(heads)),))


def _mlp(model: Model, k: int, W=None, b=None) -> Model:
    layer = model.layers[0]
    mlp = list(layer.mlp)
    mlp[k] = Dense(mlp[k].W if W is None else W, mlp[k].b if b is None else b)
    return replace(model, layers=(replace(layer, mlp=tuple(mlp)),))


def _zero(w):
    return np.zeros(w.shape)


def _swap_heads(model: Model, *parts: str) -> Model:
    a, b = model.layers[0].heads
    return _head(_head(model, 0, **{p: getattr(b, p) for p in parts}), 1, **{p: getattr(a, p) for p in parts})


def _head_ops(model_fn: Callable[[], Model]) -> list[tuple[str, Callable[[], Model]]]:
    ops = []
    for h, label in ((0, "fetch"), (1, "pointer")):
        for part in ("W_Q", "W_K", "W_V", "W_O"):
            ops.append((f"{label} {part} zeroed",
                        lambda h=h, part=part: _head(model_fn(), h, **{part: _zero(getattr(model_fn().layers[0].heads[h], part))})))
    ops.append(("heads swap W_V", lambda: _swap_heads(model_fn(), "W_V")))
    ops.append(("heads swap queries and keys", lambda: _swap_heads(model_fn(), "W_Q", "W_K")))
    return ops


def _mlp_ops(model_fn: Callable[[], Model], V: int) -> list[tuple[str, Callable[[], Model]]]:
    def layer(k):
        return model_fn().layers[0].mlp[k]

    j = np.arange(V)
    return [
        ("MLP layer 1 zeroed", lambda: _mlp(model_fn(), 0, W=_zero(layer(0).W))),
        ("MLP layer 1 bias zeroed (every coordinate passes)", lambda: _mlp(model_fn(), 0, b=_zero(layer(0).b))),
        ("MLP layer 1 bias -1/2", lambda: _mlp(model_fn(), 0, b=np.full(layer(0).b.shape, -0.5))),
        ("MLP layer 2 negated", lambda: _mlp(model_fn(), 1, W=-_dense(layer(1).W))),
        ("MLP layer 2 doubled", lambda: _mlp(model_fn(), 1, W=2 * _dense(layer(1).W))),
        ("decoder zeroed", lambda: _mlp(model_fn(), 2, W=_zero(layer(2).W), b=_zero(layer(2).b))),
        ("decode grid shifted by half a step", lambda: _mlp(model_fn(), 2, b=_dense(layer(2).b) + (2 * j / V) * (0.5 / V))),
        ("decode grid scaled by 2", lambda: _mlp(model_fn(), 2, W=2 * _dense(layer(2).W))),
        ("logit rows 0 and 1 swapped", lambda: _mlp(model_fn(), 2, W=_dense(layer(2).W)[np.r_[1, 0, 2:V]],
                                                    b=_dense(layer(2).b)[np.r_[1, 0, 2:V]])),
        ("decoder bias sign flipped", lambda: _mlp(model_fn(), 2, b=-_dense(layer(2).b))),
    ]


def _scale_ops(model_fn: Callable[[], Model], low: float) -> list[tuple[str, Callable[[], Model]]]:
    def rescale(f):
        m = model_fn()
        return _head(_head(m, 0, scale=f(m.layers[0].heads[0].scale)), 1, scale=f(m.layers[0].heads[1].scale))

    return [
        (f"attention scale lowered to {low}", lambda: rescale(lambda s: low)),
        ("attention scale negated", lambda: rescale(lambda s: -s)),
        ("causal mask removed", lambda: replace_layer_flags(model_fn(), causal=False)),
    ]


def _rows(w, perm):
    return _dense(w)[perm]


def theorem1_mutants() -> list[Mutant]:
    V, N = 7, 5
    c = Theorem1(V, N)

    def base() -> Model:
        return materialize(c.model())

    ops = _head_ops(base) + _mlp_ops(base, V) + _scale_ops(base, 2.0)
    stream = c.stream
    tgt = np.array(stream.block("target"))
    pos = np.array(stream.block("pos"))

    def reversed_payload() -> Model:  # the weights read Y_k from where the encoder writes Y_{N-1-k}
        m = base()
        W_V = _dense(m.layers[0].heads[0].W_V)
        W_V[:, tgt] = W_V[:, tgt[::-1]]
        return _head(m, 0, W_V=W_V)

    def encoding_over_v_minus_1() -> Model:  # as if payloads were Y/(V-1): the top value reaches 1
        m = base()
        return _head(m, 0, W_V=_dense(m.layers[0].heads[0].W_V) * V / (V - 1))

    def positions_off_by_one() -> Model:
        m = base()
        return replace(m, pos=_rows(m.pos, np.r_[1:N, 0]))

    def tokens_look_like_position_0() -> Model:
        m = base()
        E = _dense(m.embed)
        E[:, stream.index("pos:0")] = 1.0
        return replace(m, embed=E)

    def pointer_permuted() -> Model:
        m = base()
        W_K = _dense(m.layers[0].heads[1].W_K)
        W_K[:, pos] = W_K[:, np.r_[pos[1:], pos[0]]]
        return _head(m, 1, W_K=W_K)

    ops += [("payload read in reverse order", reversed_payload),
            ("encoding read as Y/(V-1)", encoding_over_v_minus_1),
            ("positions off by one", positions_off_by_one),
            ("token embedding writes pos:0", tokens_look_like_position_0),
            ("pointer keys permuted", pointer_permuted)]
    out = [Mutant("theorem1", name, {"V": V, "N": N}, fn) for name, fn in ops]
    big = Theorem1(95, 8)
    out += [
        Mutant("theorem1", "weights downcast to float16", {"V": 95, "N": 8},
               lambda: round_model(big.model(), "float16")),
        Mutant("theorem1", "MLP weights perturbed by 1e-3", {"V": 95, "N": 8}, lambda: _perturb(big.model(), 1e-3)),
    ]
    return out


def theorem2_mutants() -> list[Mutant]:
    V = 6
    c = Theorem2(V)

    def base() -> Model:
        return materialize(c.model())

    ops = _head_ops(base) + _mlp_ops(base, V) + _scale_ops(base, 1.0)
    stream = c.stream
    tok = np.array(stream.block("tok"))

    def embedding_permuted() -> Model:
        m = base()
        return replace(m, embed=_rows(m.embed, np.r_[1:V, 0]))

    def map_read_reversed() -> Model:
        m = base()
        mp = np.array(stream.block("map"))
        W_V = _dense(m.layers[0].heads[0].W_V)
        W_V[:, mp] = W_V[:, mp[::-1]]
        return _head(m, 0, W_V=W_V)

    def positions_swapped() -> Model:
        m = base()
        return replace(m, pos=_rows(m.pos, [1, 0]))

    def encoding_over_v_minus_1() -> Model:
        m = base()
        return _head(m, 0, W_V=_dense(m.layers[0].heads[0].W_V) * V / (V - 1))

    def user_token_doubled() -> Model:
        m = base()
        E = _dense(m.embed)
        E[:, tok] *= 2
        return replace(m, embed=E)

    ops += [("token embedding permuted", embedding_permuted), ("map read in reverse order", map_read_reversed),
            ("positions swapped", positions_swapped), ("encoding read as m/(V-1)", encoding_over_v_minus_1),
            ("user token embedding doubled", user_token_doubled)]
    out = [Mutant("theorem2", name, {"V": V}, fn) for name, fn in ops]
    big = Theorem2(95)
    out += [
        Mutant("theorem2", "weights downcast to float16", {"V": 95}, lambda: round_model(big.model(), "float16")),
        Mutant("theorem2", "MLP weights perturbed by 1e-3", {"V": 95}, lambda: _perturb(big.model(), 1e-3)),
    ]
    return out


def _perturb(model: Model, size: float) -> Model:
    rng = np.random.default_rng(0)
    m = materialize(model)
    layer = m.layers[0]
    mlp = tuple(Dense(_dense(d.W) + rng.normal(scale=size, size=d.W.shape), _dense(d.b)) for d in layer.mlp)
    return replace(m, layers=(replace(layer, mlp=mlp),))


def all_mutants() -> list[Mutant]:
    return theorem1_mutants() + theorem2_mutants()

