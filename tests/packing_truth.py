"""Ground truth for the packing soundness tests: a plain numpy forward written from docs/semantics.md alone.

It shares no code with the certificate or with verify/semantics/forward.py: embedding plus positions, causal softmax
attention per head at the answer position, the ReLU MLP, argmax. Used to decide whether an edited model
is really broken (some map and input decodes wrongly) and what its true smallest margin is.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import product
from typing import Callable

import numpy as np

from prefixproof.constructions.model import Dense, Model, materialize


def _arr(w) -> np.ndarray:
    return np.asarray(w.toarray() if hasattr(w, "toarray") else w, dtype=np.float64)


def all_tables(V: int, L: int) -> np.ndarray:
    """Every map [V]^L -> [V] as a table of V^L entries (row-major over (u_1..u_L))."""
    K = V ** L
    return np.array(list(product(range(V), repeat=K)), dtype=np.int64)


def random_tables(V: int, L: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    K = V ** L
    extremes = np.stack([np.zeros(K, np.int64), np.full(K, V - 1), np.arange(K) % V, (np.arange(K) * 7 + 3) % V])
    return np.concatenate([extremes, rng.integers(0, V, size=(n, K))])


@dataclass(frozen=True)
class Truth:
    wrong: int  # (map, input) pairs whose argmax is not m(u), or ties
    total: int
    min_margin: float  # over all pairs: logit[m(u)] - largest other logit

    @property
    def broken(self) -> bool:
        return self.wrong > 0 or not self.min_margin > 0


def evaluate(model: Model, V: int, L: int, tables: np.ndarray, chunk: int = 4096, stop_at_wrong: bool = False) -> Truth:
    """Every table in `tables` times every input (u_1..u_L), answered at position L.

    With stop_at_wrong the tables are visited in a fixed shuffled order and the run stops after the first
    chunk with a wrong answer (enough to know the model is broken; min_margin then covers the visited part)."""
    if stop_at_wrong:
        tables = tables[np.random.default_rng(0).permutation(len(tables))]
    m = materialize(model)
    layer = m.layers[0]
    E, P = _arr(m.embed), _arr(m.pos)
    pay = np.array(m.stream.block("pay"))
    D = V ** (L - 1)
    inputs = np.array(list(product(range(V), repeat=L)), dtype=np.int64)  # (K, L)
    wrong, total, lowest = 0, 0, np.inf
    heads = [(_arr(h.W_Q), _arr(h.W_K), _arr(h.W_V), _arr(h.W_O), float(h.scale)) for h in layer.heads]
    mlp = [(_arr(d.W), np.asarray(d.b, dtype=np.float64)) for d in layer.mlp]
    for s in range(0, len(tables), chunk):
        tab = tables[s:s + chunk]  # (T, K)
        T = len(tab)
        digits = tab.reshape(T, V, D)
        num = np.zeros((T, V), dtype=np.int64)
        for i in range(D):
            num = num * V + digits[:, :, i]
        r = num / float(V ** D)  # correctly rounded: num < 2^53 in these tests
        soft = np.zeros((T, E.shape[1]))
        soft[:, pay] = r
        x = np.empty((T, len(inputs), L + 1, E.shape[1]))
        x[:, :, 0] = soft[:, None, :]
        x[:, :, 1:] = E[inputs][None]
        x = x + P[:L + 1]
        out = 0.0
        for WQ, WK, WV, WO, scale in heads:
            q = x[:, :, L] @ WQ.T
            k = x @ WK.T
            v = x @ WV.T
            sc = scale * np.einsum("tid,tipd->tip", q, k)
            sc = sc - sc.max(axis=-1, keepdims=True)
            a = np.exp(sc)
            a = a / a.sum(axis=-1, keepdims=True)
            out = out + np.einsum("tip,tipd->tid", a, v) @ WO.T
        z = out
        for n, (W, b) in enumerate(mlp):
            z = z @ W.T + b
            if n < len(mlp) - 1:
                z = np.maximum(z, 0.0)
        logits = z  # (T, K, V)
        idx = np.arange(len(inputs))
        want = tab[:, idx]  # m(u) for input index u (row-major matches the table order)
        top = np.take_along_axis(logits, want[..., None], axis=-1)[..., 0]
        other = np.where(np.arange(V)[None, None, :] == want[..., None], -np.inf, logits).max(axis=-1)
        margin = top - other
        wrong += int(np.count_nonzero(~(margin > 0)))
        total += margin.size
        lowest = min(lowest, float(np.nan_to_num(margin, nan=-np.inf).min()))
        if stop_at_wrong and wrong:
            break
    return Truth(wrong, total, lowest)


# ------------------------------------------------------------------ mutations by tensor name

def tensor_names(model: Model) -> list[str]:
    return [name for name, _ in materialize(model).tensors()]


def mutate(model: Model, name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Model:
    """The model with the tensor `name` (as in model.safetensors) replaced by fn(its float64 array)."""
    m = materialize(model)

    def f(w):
        out = np.asarray(fn(_arr(w).copy()), dtype=np.float64)
        assert out.shape == _arr(w).shape
        return out

    if name in ("embed", "pos"):
        return replace(m, **{name: f(getattr(m, name))})
    parts = name.split(".")
    layer = m.layers[int(parts[1])]
    if parts[2] == "heads":
        h, part = int(parts[3]), parts[4]
        heads = list(layer.heads)
        heads[h] = replace(heads[h], **{part: f(getattr(heads[h], part))})
        layer = replace(layer, heads=tuple(heads))
    else:
        k, part = int(parts[3]), parts[4]
        mlp = list(layer.mlp)
        mlp[k] = Dense(f(mlp[k].W), mlp[k].b) if part == "W" else Dense(mlp[k].W, f(mlp[k].b))
        layer = replace(layer, mlp=tuple(mlp))
    layers = list(m.layers)
    layers[int(parts[1])] = layer
    return replace(m, layers=tuple(layers))


def scale_head(model: Model, h: int, factor: float) -> Model:
    m = materialize(model)
    layer = m.layers[0]
    heads = list(layer.heads)
    heads[h] = replace(heads[h], scale=heads[h].scale * factor)
    return replace(m, layers=(replace(layer, heads=tuple(heads)),))


def _perturb(a: np.ndarray) -> np.ndarray:
    i = int(np.argmax(np.abs(a)))
    flat = a.reshape(-1)
    flat[i] = flat[i] + 0.01 * (1.0 + abs(flat[i]))
    return flat.reshape(a.shape)


EDITS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "zero": lambda a: a * 0.0,
    "negate": lambda a: -a,
    "x0.5": lambda a: a * 0.5,
    "x0.99": lambda a: a * 0.99,
    "roll rows": lambda a: np.roll(a, 1, axis=0),
    "perturb one entry": _perturb,
}
