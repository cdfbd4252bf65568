"""One fuzz example: a random transformer, its inputs and its prefixes, described by a few numbers.

A `Case` holds the structure (dimensions, heads, lengths, flags, magnitudes,
dtype) and a seed; `build` turns it into weights and inputs with numpy's
seeded generator. Hypothesis draws and shrinks Cases (`verify/identities/strategies.py`),
seeded sampling draws them with `Case.random`, and a saved counterexample is
just a Case as JSON, so every failure can be rebuilt and replayed exactly.

Magnitudes are log10 factors:
  qk_log10      W_Q and W_K entries (with the head scale: tiny to logit-saturating scores)
  scale_log10   the heads' attention scale
  value_log10   W_V entries
  prefix_log10  prefix activations, or raw prefix keys and values
The MLPs keep unit-scale weights so activations stay finite across layers.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from prefixproof.constructions.model import Dense, Head, Layer, LayerNorm, Model, Vocab, map_weights
from prefixproof.verify.semantics.ops import DTYPES
from prefixproof.verify.semantics.forward import Prefix
from prefixproof.verify.numeric.probe import _space

V = 5  # vocabulary: token embedding rows and logits of the last layer
HIDDEN = 4  # MLP hidden width

RANGES: dict[str, tuple[Any, Any]] = {
    "layers": (1, 3), "heads": (1, 3), "d": (1, 8), "d_k": (1, 4), "d_v": (1, 6), "n": (1, 8),
    "batch": (1, 3), "prefix_len": (1, 4), "prefix_layers": (1, 7),
    "qk_log10": (-3.0, 1.0), "scale_log10": (-3.0, 2.0), "value_log10": (-3.0, 1.0), "prefix_log10": (-3.0, 2.0),
}


FLAG_DEFAULTS = {"raw": False, "prefix_batched": False, "causal": True, "layernorm": False, "residual": False,
                 "padding": False}  # the simplest value of each flag (what shrinking goes back to)
FLAGS = tuple(FLAG_DEFAULTS)


class CaseError(ValueError):
    """A fuzz case (or a saved one) is outside the ranges the harness draws from."""


@dataclass(frozen=True)
class Case:
    seed: int
    dtype: str = "float64"
    layers: int = 1
    heads: int = 1
    d: int = 4
    d_k: int = 2
    d_v: int = 2
    n: int = 3
    batch: int = 1
    prefix_len: int = 1
    prefix_layers: int = 1  # bit l set: a prefix at layer l (taken modulo the layer count)
    raw: bool = False  # raw per-head keys and values instead of activations
    prefix_batched: bool = False  # a separate prefix per sequence of the batch
    causal: bool = True
    layernorm: bool = False
    residual: bool = False
    padding: bool = False  # a random padding mask over content keys
    qk_log10: float = 0.0
    scale_log10: float = 0.0
    value_log10: float = 0.0
    prefix_log10: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**63):
            raise CaseError(f"seed must be an integer in [0, 2^63), got {self.seed!r}")
        if self.dtype not in DTYPES:
            raise CaseError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        for name, (lo, hi) in RANGES.items():
            value = getattr(self, name)
            integral = isinstance(lo, int)
            kind_ok = (isinstance(value, int) if integral else isinstance(value, int | float)) \
                and not isinstance(value, bool)
            if not (kind_ok and math.isfinite(value) and lo <= value <= hi):
                what = "an integer" if integral else "a number"
                raise CaseError(f"{name} must be {what} in [{lo}, {hi}], got {value!r}")
        for name in FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise CaseError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def prefixed(self) -> list[int]:
        """The layers that carry a prefix (at least one)."""
        mask = self.prefix_layers % (1 << self.layers) or 1
        return [l for l in range(self.layers) if mask >> l & 1]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> "Case":
        if not isinstance(data, dict):
            raise CaseError("a saved case must be a JSON object of Case fields")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CaseError(f"unknown case field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "seed" not in data:
            raise CaseError("a saved case needs a seed")
        return cls(**data)

    @classmethod
    def random(cls, rng: np.random.Generator, **limits: Any) -> "Case":
        """A case drawn by numpy's generator (seeded sampling without hypothesis).

        `limits` narrows a range (name=(lo, hi)) or fixes a value (name=value), as for the hypothesis strategy.
        """
        kw: dict[str, Any] = {}
        for name, (lo, hi) in RANGES.items():
            lim = limits.get(name)
            if lim is not None and not isinstance(lim, tuple):
                kw[name] = lim
                continue
            lo, hi = lim if lim is not None else (lo, hi)
            kw[name] = int(rng.integers(lo, hi + 1)) if isinstance(lo, int) else round(float(rng.uniform(lo, hi)), 2)
        for name in FLAGS:
            kw[name] = bool(limits[name]) if name in limits else bool(rng.integers(0, 2))
        dtype = limits.get("dtype") or str(rng.choice(list(DTYPES)))
        return cls(seed=int(rng.integers(0, 2**32)), dtype=dtype, **kw)


@dataclass(frozen=True)
class Built:
    """The weights and inputs of a case, in the case's dtype."""

    model: Model
    tokens: np.ndarray  # (B, n)
    key_mask: np.ndarray | None  # (B, n)
    prefixes: list[Prefix | None]  # one per layer
    soft: np.ndarray  # (B, prefix_len, d): a soft prompt of the same length as the prefix
    dtype: np.dtype


CONFIRM_DTYPE = np.longdouble  # the second evaluation of a failure: the same weights, in extended precision


def build(case: Case, evaluate_in: Any = None) -> Built:
    """Weights and inputs drawn and rounded in the case's dtype; with `evaluate_in`, then cast (exactly) to that
    wider dtype for a confirming evaluation of the same model."""
    rng = np.random.default_rng(case.seed)
    dtype = np.dtype(DTYPES[case.dtype])
    d, H = case.d, case.heads
    qk, value = 10.0 ** case.qk_log10, 10.0 ** case.value_log10

    def w(scale: float, *shape: int) -> np.ndarray:
        return rng.normal(scale=scale / np.sqrt(shape[-1]), size=shape).astype(dtype)  # weights in the case's dtype

    stream = _space("stream", d)
    layers = []
    for l in range(case.layers):
        last = l == case.layers - 1
        out = _space("logits", V) if last else stream
        heads = tuple(Head(f"h{h}", w(qk, case.d_k, d), w(qk, case.d_k, d), w(value, case.d_v, d),
                           w(1.0, d, case.d_v), float(10.0 ** case.scale_log10 * rng.uniform(0.5, 2.0)))
                      for h in range(H))
        mlp = (Dense(w(1.0, HIDDEN, d), w(1.0, HIDDEN, 1)[:, 0]), Dense(w(1.0, out.dim, HIDDEN), w(1.0, out.dim, 1)[:, 0]))
        ln = LayerNorm(rng.uniform(0.5, 1.5, d).astype(dtype), w(0.1, d, 1)[:, 0]) if case.layernorm else None
        layers.append(Layer(heads, mlp, stream, (_space("hidden", HIDDEN),), out, causal=case.causal,
                            attn_residual=case.residual, mlp_residual=case.residual and not last, ln=ln))
    n_ctx = case.n + case.prefix_len
    model = Model(Vocab(V), stream, rng.normal(size=(V, d)).astype(dtype),
                  rng.normal(size=(n_ctx, d)).astype(dtype), tuple(layers))
    B, P = case.batch, case.prefix_len
    tokens = rng.integers(0, V, size=(B, case.n))
    key_mask = rng.random((B, case.n)) < 0.7 if case.padding else None
    lead = (B,) if case.prefix_batched else ()
    mag = 10.0 ** case.prefix_log10
    prefixes: list[Prefix | None] = [None] * case.layers
    for l in case.prefixed:
        if case.raw:
            keys = tuple(rng.normal(scale=mag, size=lead + (P, case.d_k)).astype(dtype) for _ in range(H))
            values = tuple(rng.normal(scale=mag, size=lead + (P, case.d_v)).astype(dtype) for _ in range(H))
            prefixes[l] = Prefix(keys=keys, values=values)
        else:
            prefixes[l] = Prefix(activations=rng.normal(scale=mag, size=lead + (P, d)).astype(dtype))
    soft = rng.normal(scale=mag, size=(B, P, d)).astype(dtype)
    if evaluate_in is not None and np.dtype(evaluate_in) != dtype:
        return _widen(Built(model, tokens, key_mask, prefixes, soft, dtype), np.dtype(evaluate_in))
    return Built(model, tokens, key_mask, prefixes, soft, dtype)


def _widen(b: Built, dtype: np.dtype) -> Built:
    def up(a):
        return None if a is None else np.asarray(a).astype(dtype)

    prefixes = [None if p is None else Prefix(up(p.activations)) if p.activations is not None else
                Prefix(keys=tuple(map(up, p.keys)), values=tuple(map(up, p.values))) for p in b.prefixes]
    return Built(map_weights(b.model, up), b.tokens, b.key_mask, prefixes, up(b.soft), dtype)
