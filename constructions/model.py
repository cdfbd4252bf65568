"""The model description: pure data that every evaluator reads.

A model is an embedding, a stack of layers and an optional unembedding. Every
matrix acts on column vectors (``y = W x``). A construction builds its weights
exactly (`ExactArray`); `materialize` rounds them once to float64, dense or
`scipy.sparse.csr_array`, which is what files hold and evaluators run. The semantics that evaluates it lives in
``verify/semantics/forward.py`` and is documented in ``docs/semantics.md``.

Nothing here computes a forward pass. Constructors validate shapes, finiteness
and the residual-flag constraints, and raise `ModelError` with a message that
says what is wrong.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import scipy.sparse as sp

from prefixproof.constructions.basis import ExactArray, Space

# A weight is exact (a construction's mathematical values) or floating point
# (what files hold and what the numeric evaluators run).
Weight = ExactArray | np.ndarray | sp.csr_array


class ModelError(ValueError):
    """A model description is inconsistent (shapes, values or flags)."""


class ParameterError(ValueError):
    """A construction parameter (V, N, target, map) outside its allowed range."""


def _shape(w: Any, what: str) -> tuple[int, ...]:
    if isinstance(w, ExactArray):
        return tuple(w.shape)
    if isinstance(w, sp.sparray | sp.spmatrix):
        data = w.data
    elif isinstance(w, np.ndarray):
        data = w
    else:
        raise ModelError(f"{what} must be an ExactArray, numpy array or scipy CSR matrix, got {type(w).__name__}")
    if not np.issubdtype(data.dtype, np.floating):
        raise ModelError(f"{what} has dtype {data.dtype}; weights must be floating point")
    if data.size and not np.isfinite(data).all():
        raise ModelError(f"{what} contains NaN or infinity; every weight must be finite")
    return tuple(w.shape)


def _expect(w: Any, shape: tuple[int, ...], what: str) -> None:
    got = _shape(w, what)
    if got != shape:
        raise ModelError(f"{what} has shape {got}, expected {shape}")


@dataclass(frozen=True)
class Head:
    """One attention head: s_ij = scale * <W_Q x_i, W_K x_j>, output W_O sum_j A_ij W_V x_j."""

    name: str
    W_Q: Weight  # (d_k, d_in)
    W_K: Weight  # (d_k, d_in)
    W_V: Weight  # (d_v, d_in)
    W_O: Weight  # (d_out, d_v)
    scale: float

    def __post_init__(self) -> None:
        if not (isinstance(self.scale, int | float) and math.isfinite(self.scale)):
            raise ModelError(f"head {self.name!r}: scale must be a finite number, got {self.scale!r}")
        dk, d_in = _shape(self.W_Q, f"head {self.name!r} W_Q")
        _expect(self.W_K, (dk, d_in), f"head {self.name!r} W_K")
        dv, d_in_v = _shape(self.W_V, f"head {self.name!r} W_V")
        if d_in_v != d_in:
            raise ModelError(f"head {self.name!r}: W_V reads {d_in_v} dims but W_Q reads {d_in}")
        d_out, dv_o = _shape(self.W_O, f"head {self.name!r} W_O")
        if dv_o != dv:
            raise ModelError(f"head {self.name!r}: W_O reads {dv_o} dims but W_V writes {dv}")

    @property
    def d_in(self) -> int:
        return self.W_Q.shape[1]

    @property
    def d_k(self) -> int:
        return self.W_Q.shape[0]

    @property
    def d_v(self) -> int:
        return self.W_V.shape[0]

    @property
    def d_out(self) -> int:
        return self.W_O.shape[0]


@dataclass(frozen=True)
class Dense:
    """An affine map ``W x + b``; a ReLU follows every Dense of an MLP except the last."""

    W: Weight  # (d_out, d_in)
    b: np.ndarray  # (d_out,)

    def __post_init__(self) -> None:
        d_out, _ = _shape(self.W, "MLP weight")
        _expect(self.b, (d_out,), "MLP bias")


@dataclass(frozen=True)
class LayerNorm:
    """Pre-LayerNorm: gamma * (x - mean) / sqrt(var + eps) + beta (population variance)."""

    gamma: np.ndarray
    beta: np.ndarray
    eps: float = 1e-5

    def __post_init__(self) -> None:
        (d,) = _shape(self.gamma, "LayerNorm gamma")
        _expect(self.beta, (d,), "LayerNorm beta")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise ModelError(f"LayerNorm eps must be a positive finite number, got {self.eps}")


@dataclass(frozen=True)
class Layer:
    """Attention (sum of heads), then an MLP of Dense layers with ReLU between them."""

    heads: tuple[Head, ...]
    mlp: tuple[Dense, ...]
    attn_out: Space  # the space the heads write into
    hidden: tuple[Space, ...]  # one per ReLU layer of the MLP
    out: Space  # what the layer hands on (next layer's input, or logits)
    causal: bool = True
    attn_residual: bool = False
    mlp_residual: bool = False
    ln: LayerNorm | None = None

    def __post_init__(self) -> None:
        if not self.heads:
            raise ModelError("a layer needs at least one attention head")
        names = [h.name for h in self.heads]
        if len(set(names)) != len(names):
            raise ModelError(f"head names must be unique within a layer, got {names}")
        d_in = self.heads[0].d_in
        for h in self.heads:
            if h.d_in != d_in:
                raise ModelError(f"head {h.name!r} reads {h.d_in} dims, head {names[0]!r} reads {d_in}")
            if h.d_out != self.attn_out.dim:
                raise ModelError(
                    f"head {h.name!r} writes {h.d_out} dims but the attention output space "
                    f"{self.attn_out.name!r} has {self.attn_out.dim}"
                )
        if self.attn_residual and self.attn_out.dim != d_in:
            raise ModelError("attn_residual needs the attention output space to match the layer input")
        if self.ln is not None and self.ln.gamma.shape[0] != d_in:
            raise ModelError(f"LayerNorm has {self.ln.gamma.shape[0]} dims, the layer input has {d_in}")
        if len(self.hidden) != max(len(self.mlp) - 1, 0):
            raise ModelError(f"an MLP of {len(self.mlp)} Dense layers needs {max(len(self.mlp) - 1, 0)} hidden spaces")
        dims = [self.attn_out.dim] + [s.dim for s in self.hidden] + [self.out.dim]
        if not self.mlp:
            if self.out.dim != self.attn_out.dim:
                raise ModelError("a layer without MLP must output its attention space")
        for k, dense in enumerate(self.mlp):
            _expect(dense.W, (dims[k + 1], dims[k]), f"MLP layer {k} weight")
        if self.mlp_residual and self.out.dim != self.attn_out.dim:
            raise ModelError("mlp_residual needs the MLP output space to match the attention output space")

    @property
    def d_in(self) -> int:
        return self.heads[0].d_in


@dataclass(frozen=True)
class Vocab:
    """Token ids are 0..size-1; `alphabet` names a text codec (see constructions/alphabet.py) or is None."""

    size: int
    alphabet: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 2:
            raise ModelError(f"vocabulary size must be an integer >= 2, got {self.size!r}")


@dataclass(frozen=True)
class Model:
    """Embedding E (V x d), positions P (n_ctx x d), layers, optional unembedding U (V x d_last)."""

    vocab: Vocab
    stream: Space  # the input residual stream
    embed: Weight
    pos: Weight
    layers: tuple[Layer, ...]
    unembed: Weight | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        V, d = self.vocab.size, self.stream.dim
        _expect(self.embed, (V, d), "embedding E")
        n_ctx, d_p = _shape(self.pos, "positional embedding P")
        if d_p != d or n_ctx < 1:
            raise ModelError(f"positional embedding P has shape {(n_ctx, d_p)}, expected (n_ctx >= 1, {d})")
        if not self.layers:
            raise ModelError("a model needs at least one layer")
        d_cur = d
        for l, layer in enumerate(self.layers):
            if layer.d_in != d_cur:
                raise ModelError(f"layer {l} reads {layer.d_in} dims but receives {d_cur}")
            d_cur = layer.out.dim
        if self.unembed is None:
            if d_cur != V:
                raise ModelError(f"the last layer outputs {d_cur} dims; without an unembedding it must output V={V} logits")
        else:
            _expect(self.unembed, (V, d_cur), "unembedding U")

    @property
    def n_ctx(self) -> int:
        return self.pos.shape[0]

    @property
    def d_model(self) -> int:
        return self.stream.dim

    def tensors(self) -> Iterator[tuple[str, Weight]]:
        """Every weight under its canonical name (the names used in model.safetensors)."""
        yield "embed", self.embed
        yield "pos", self.pos
        for l, layer in enumerate(self.layers):
            for h, head in enumerate(layer.heads):
                for part in ("W_Q", "W_K", "W_V", "W_O"):
                    yield f"layers.{l}.heads.{h}.{part}", getattr(head, part)
            for k, dense in enumerate(layer.mlp):
                yield f"layers.{l}.mlp.{k}.W", dense.W
                yield f"layers.{l}.mlp.{k}.b", dense.b
            if layer.ln is not None:
                yield f"layers.{l}.ln.gamma", layer.ln.gamma
                yield f"layers.{l}.ln.beta", layer.ln.beta
        if self.unembed is not None:
            yield "unembed", self.unembed


def is_exact(model: Model) -> bool:
    """True when every weight is an ExactArray (a construction before materialisation)."""
    return all(isinstance(w, ExactArray) for _, w in model.tensors())


def map_weights(model: Model, fn: Callable[[Weight], Weight]) -> Model:
    """The same model with `fn` applied to every weight (shapes must be kept)."""
    layers = []
    for layer in model.layers:
        heads = tuple(replace(h, W_Q=fn(h.W_Q), W_K=fn(h.W_K), W_V=fn(h.W_V), W_O=fn(h.W_O)) for h in layer.heads)
        mlp = tuple(Dense(fn(d.W), fn(d.b)) for d in layer.mlp)
        ln = None if layer.ln is None else LayerNorm(fn(layer.ln.gamma), fn(layer.ln.beta), layer.ln.eps)
        layers.append(replace(layer, heads=heads, mlp=mlp, ln=ln))
    return replace(model, embed=fn(model.embed), pos=fn(model.pos), layers=tuple(layers),
                   unembed=None if model.unembed is None else fn(model.unembed))


def _float(w: Weight) -> Weight:
    return w.to_float() if isinstance(w, ExactArray) else w


def materialize(model: Model) -> Model:
    """The same model with every exact weight rounded once to float64 (float weights kept)."""
    return map_weights(model, _float)


def replace_layer_flags(model: Model, **flags: Any) -> Model:
    """The same model with layer flags changed on every layer (e.g. causal=False)."""
    return replace(model, layers=tuple(replace(layer, **flags) for layer in model.layers))
