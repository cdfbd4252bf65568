"""Theorem 2 (Petrov, Torr & Bibi 2024, Sec. 3): conditional generation.

For any V >= 2, a one-layer transformer with context 2, two heads and a
three-layer ReLU MLP answers m(u) to every user token u, for any map
m: [V] -> [V], conditioned on the single virtual token with payload
(m(0), ..., m(V-1)) / V.

Position 0 holds the virtual token, position 1 the user token u; the output at
position 1 is the answer.

Residual stream:
  one          1 at both positions                      (from P)
  pos:0, pos:1 one-hot of the position                  (from P)
  map:k        m(k) / V, the payload                    (virtual token only)
  tok:k        one-hot of the user token, E[u] = tok:u  (token positions only)

Attention output (no residual connection):
  fetched:k    head "fetch": every query attends to position 0 (key pos:0)
               and copies map:k                        -> ~ m(k) / V
  here:k       head "pointer": every query attends to position 1 (key pos:1)
               and copies tok:k                        -> ~ e_u

MLP (constructions/lookup.py): select:k = ReLU(fetched:k + here:k - 1),
value = m(u) / V, logit_j = (2j/V) value - (j/V)^2.

At query 1 each head has one competing key: sigma = lookup_scale(V, 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from fractions import Fraction
from typing import Sequence

import numpy as np

from prefixproof.constructions.alphabet import PRINTABLE_ASCII
from prefixproof.constructions.basis import ExactArray, Space, one_hot_tokens, position_rows
from prefixproof.constructions.lookup import anchor_head, lookup_mlp
from prefixproof.constructions.model import Layer, Model, ParameterError, Vocab
from prefixproof.constructions.scales import lookup_margin_bound, lookup_scale

NAME = "theorem2"


@dataclass(frozen=True)
class Theorem2:
    """Parameters of the construction; `model()` builds it exactly."""

    V: int
    alphabet: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.V, int) or self.V < 2:
            raise ParameterError(f"vocabulary size V must be an integer >= 2, got {self.V!r}")
        if self.alphabet == PRINTABLE_ASCII and self.V != 95:
            raise ParameterError(f"the printable-ascii alphabet has V=95, not {self.V}")

    @property
    def scale(self) -> float:
        return lookup_scale(self.V, 1)

    @property
    def margin_bound(self) -> float:
        return lookup_margin_bound(self.V, 1, self.scale)

    @cached_property
    def stream(self) -> Space:
        return Space.of("stream", {"one": None, "pos": 2, "map": self.V, "tok": self.V})

    def model(self, scale: float | None = None) -> Model:
        """The exact construction; `scale` overrides the derived one (for negative controls only)."""
        V = self.V
        sigma = self.scale if scale is None else scale
        stream = self.stream
        attn_out = Space.of("attn", {"fetched": V, "here": V})

        # Head "fetch": query `one`, key `pos:0` -> read the virtual token's payload m/V.
        fetch = anchor_head("fetch", stream, attn_out, query="one", key="pos:0",
                            read="map", write="fetched", scale=sigma)
        # Head "pointer": query `one`, key `pos:1` -> read the user token's one-hot e_u.
        pointer = anchor_head("pointer", stream, attn_out, query="one", key="pos:1",
                              read="tok", write="here", scale=sigma)
        mlp, hidden, logits = lookup_mlp(attn_out, K=V, V=V)

        layer = Layer(heads=(fetch, pointer), mlp=mlp, attn_out=attn_out, hidden=hidden, out=logits, causal=True)
        # E[u] = tok:u.
        embed = one_hot_tokens(stream, "tok", V)
        # P[p] = one + pos:p.
        pos = position_rows(stream, 2)
        info = {
            "construction": NAME,
            "params": {"V": V},
            "scale": {"value": sigma, "derived": scale is None, "rule": "lookup_scale(V, 1) = ceil16(ln(8 V))"},
            "margin_bound": lookup_margin_bound(V, 1, sigma),
        }
        return Model(Vocab(V, self.alphabet), stream, embed, pos, (layer,), None, info)

    def check_map(self, mapping: Sequence[int]) -> list[int]:
        m = [int(t) for t in mapping]
        if len(m) != self.V:
            raise ParameterError(f"a map on V={self.V} tokens needs {self.V} values, got {len(m)}")
        bad = [t for t in m if not 0 <= t < self.V]
        if bad:
            raise ParameterError(f"map value {bad[0]} is outside the vocabulary 0..{self.V - 1}")
        return m

    def encode(self, mapping: Sequence[int]) -> ExactArray:
        """The virtual token for map m: map:k = m(k) / V, every other coordinate 0."""
        m = self.check_map(mapping)
        stream = self.stream
        return ExactArray((stream.dim,), {(stream.index(f"map:{k}"),): Fraction(y, self.V)
                                          for k, y in enumerate(m) if y})

    def encode_batch(self, maps: np.ndarray) -> np.ndarray:
        """Float64 virtual tokens for a (B, V) array of maps: shape (B, 1, d)."""
        maps = np.asarray(maps)
        if maps.ndim != 2 or maps.shape[1] != self.V:
            raise ParameterError(f"maps must have shape (B, {self.V}), got {maps.shape}")
        if maps.size and (maps.min() < 0 or maps.max() >= self.V):
            raise ParameterError(f"map values must lie in 0..{self.V - 1}")
        stream = self.stream
        out = np.zeros((maps.shape[0], 1, stream.dim))
        out[:, 0, stream.block("map")] = maps / self.V
        return out
