"""Theorem 1 (Petrov, Torr & Bibi 2024, Sec. 3): unconditional generation.

For any V >= 2 and N >= 1, a one-layer transformer with two heads and a
three-layer ReLU MLP generates any Y in [V]^N greedily from the single virtual
token whose payload coordinates are (Y_0, ..., Y_{N-1}) / V (tokens 0-based).

Positions 0..N-1: position 0 holds the virtual token, positions 1..N-1 the
tokens generated so far. The output at position i is the prediction of Y_i.

Residual stream (the input x_p = E[token_p] + P[p], or virtual + P[0]):
  one          1 at every position                      (from P)
  pos:i        one-hot of the position                  (from P)
  target:k     Y_k / V, the payload                     (virtual token only)
The token embedding E is zero: which coordinate to emit next depends on the
position alone, so the generated tokens never need to be read back.

Attention output (no residual connection; it feeds the MLP directly):
  fetched:k    head "fetch": every query attends to position 0 (key pos:0)
               and copies target:k                     -> ~ Y_k / V
  here:i       head "pointer": query i attends to itself (pos one-hot match)
               and copies its own one-hot pos          -> ~ e_i

MLP (constructions/lookup.py): select:k = ReLU(fetched:k + here:k - 1),
value = sum_k select:k = Y_i / V, logit_j = (2j/V) value - (j/V)^2.

Both heads share the scale sigma = lookup_scale(V, N-1): at query i there are i
<= N-1 competing keys, each scoring sigma below the intended one.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from fractions import Fraction
from typing import Sequence

import numpy as np

from prefixproof.constructions.alphabet import PRINTABLE_ASCII
from prefixproof.constructions.basis import ExactArray, Space, position_rows
from prefixproof.constructions.lookup import anchor_head, lookup_mlp, match_head
from prefixproof.constructions.model import Layer, Model, ParameterError, Vocab
from prefixproof.constructions.scales import lookup_margin_bound, lookup_scale

NAME = "theorem1"


@dataclass(frozen=True)
class Theorem1:
    """Parameters of the construction; `model()` builds it exactly."""

    V: int
    N: int
    alphabet: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.V, int) or self.V < 2:
            raise ParameterError(f"vocabulary size V must be an integer >= 2, got {self.V!r}")
        if not isinstance(self.N, int) or self.N < 1:
            raise ParameterError(f"length N must be an integer >= 1, got {self.N!r}")
        if self.alphabet == PRINTABLE_ASCII and self.V != 95:
            raise ParameterError(f"the printable-ascii alphabet has V=95, not {self.V}")

    @property
    def scale(self) -> float:
        return lookup_scale(self.V, self.N - 1)

    @property
    def margin_bound(self) -> float:
        """Guaranteed (and attained) minimum decode margin at this scale."""
        return lookup_margin_bound(self.V, self.N - 1, self.scale)

    @cached_property
    def stream(self) -> Space:
        return Space.of("stream", {"one": None, "pos": self.N, "target": self.N})

    def model(self, scale: float | None = None) -> Model:
        """The exact construction; `scale` overrides the derived one (for negative controls only)."""
        V, N = self.V, self.N
        sigma = self.scale if scale is None else scale
        stream = self.stream
        attn_out = Space.of("attn", {"fetched": N, "here": N})

        # Head "fetch": query `one`, key `pos:0` -> every position reads the virtual token's payload.
        fetch = anchor_head("fetch", stream, attn_out, query="one", key="pos:0",
                            read="target", write="fetched", scale=sigma)
        # Head "pointer": query pos:i matches key pos:i -> each position reads its own one-hot position.
        pointer = match_head("pointer", stream, attn_out, match="pos", read="pos", write="here", scale=sigma)
        mlp, hidden, logits = lookup_mlp(attn_out, K=N, V=V)

        layer = Layer(heads=(fetch, pointer), mlp=mlp, attn_out=attn_out, hidden=hidden, out=logits, causal=True)
        # E = 0: the construction ignores the tokens it has produced (see module docstring).
        embed = ExactArray.zeros(V, stream.dim)
        # P[p] = one + pos:p (the paper's positional encoding: a constant and a one-hot of the position).
        pos = position_rows(stream, N)
        info = {
            "construction": NAME,
            "params": {"V": V, "N": N},
            "scale": {"value": sigma, "derived": scale is None, "rule": "lookup_scale(V, N-1) = ceil16(ln(8 V (N-1)))"},
            "margin_bound": lookup_margin_bound(V, N - 1, sigma),
        }
        return Model(Vocab(V, self.alphabet), stream, embed, pos, (layer,), None, info)

    def encode(self, target: Sequence[int]) -> ExactArray:
        """The virtual token for target Y: target:k = Y_k / V, every other coordinate 0."""
        Y = self.check_target(target)
        stream = self.stream
        return ExactArray((stream.dim,), {(stream.index(f"target:{k}"),): Fraction(y, self.V)
                                          for k, y in enumerate(Y) if y})

    def encode_batch(self, targets: np.ndarray) -> np.ndarray:
        """Float64 virtual tokens for a (B, N) array of targets: shape (B, 1, d)."""
        targets = np.asarray(targets)
        if targets.ndim != 2 or targets.shape[1] != self.N:
            raise ParameterError(f"targets must have shape (B, {self.N}), got {targets.shape}")
        if targets.size and (targets.min() < 0 or targets.max() >= self.V):
            raise ParameterError(f"target tokens must lie in 0..{self.V - 1}")
        stream = self.stream
        out = np.zeros((targets.shape[0], 1, stream.dim))
        out[:, 0, stream.block("target")] = targets / self.V
        return out

    def check_target(self, target: Sequence[int]) -> list[int]:
        Y = [int(t) for t in target]
        if len(Y) != self.N:
            raise ParameterError(f"target has {len(Y)} tokens, the construction generates N={self.N}")
        bad = [t for t in Y if not 0 <= t < self.V]
        if bad:
            raise ParameterError(f"target token {bad[0]} is outside the vocabulary 0..{self.V - 1}")
        return Y
