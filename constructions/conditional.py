"""Conditional generation (Petrov, Torr & Bibi 2024, appendix): L user tokens -> a response of R tokens.

A precision-robust construction: the table of every response token is spread
over R virtual tokens with V^L coordinates each, so no coordinate ever holds
more than one token's worth of information (log2 V bits), unlike the paper's
packing of V^V values into one number (constructions/packing.py).

Positions: virtual tokens 0..R-1; user tokens R..R+L-1; generated tokens
R+L..2R+L-2. Output r (at position q_r = R+L-1+r) predicts response token r.

Residual stream:
  one                  1 at every position                          (from P)
  pos:p                one-hot of the position                      (from P)
  table:a              m_r(u)/V at virtual token r, a = index(u)     (virtual tokens)
  tok:k                one-hot of the token, E[k] = tok:k           (token positions)

Attention output (no residual):
  fetched:a   head "fetch": query at q_r matches key at position r (query pos:q_r -> match:r,
              key pos:r -> match:r) and copies the table of virtual token r
  here<l>:k   head "pointer<l>": every query attends to position R+l-1 and copies its tok one-hot

MLP (constructions/lookup.py): select:a = ReLU(fetched:a + sum_l here<l>:a_l - L), value = sum,
nearest-grid decoding. Scale: lookup_scale(V, m, L) with m = 2R+L-2 competing keys.

Sizes: d = V^L + V + (2R+L-1) + 1; heads L+1 (d_k 1 or R); MLP widths V^L, 1, V; R virtual tokens.
L=1, R=1 is Theorem 2's layout up to naming; L=1 is `long_response`, R=1 is `multi_token`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from prefixproof.constructions.alphabet import PRINTABLE_ASCII
from prefixproof.constructions.basis import Space, Wiring, one_hot_tokens, position_rows
from prefixproof.constructions.lookup import anchor_head, lookup_mlp
from prefixproof.constructions.model import Head, Layer, Model, ParameterError, Vocab
from prefixproof.constructions.scales import lookup_margin_bound, lookup_scale

NAME = "conditional"
MAX_TABLE = 1 << 22  # V^L coordinates per virtual token


@dataclass(frozen=True)
class Conditional:
    V: int
    L: int = 1
    R: int = 1
    alphabet: str | None = None

    def __post_init__(self) -> None:
        for name, value, low in (("V", self.V, 2), ("L", self.L, 1), ("R", self.R, 1)):
            if not isinstance(value, int) or value < low:
                raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.V ** self.L > MAX_TABLE:
            raise ParameterError(f"V^L = {self.V ** self.L} table coordinates exceed {MAX_TABLE}; lower V or L")
        if self.alphabet == PRINTABLE_ASCII and self.V != 95:
            raise ParameterError(f"the printable-ascii alphabet has V=95, not {self.V}")

    @property
    def K(self) -> int:
        return self.V ** self.L

    @property
    def n_ctx(self) -> int:
        return 2 * self.R + self.L - 1

    @property
    def competitors(self) -> int:
        return self.n_ctx - 1

    @property
    def scale(self) -> float:
        return lookup_scale(self.V, self.competitors, self.L)

    @property
    def margin_bound(self) -> float:
        return lookup_margin_bound(self.V, self.competitors, self.scale, self.L)

    def sizes(self) -> dict[str, int]:
        return {"virtual_tokens": self.R, "d_model": self.stream.dim, "heads": self.L + 1, "layers": 1,
                "mlp_widths": [self.K, 1, self.V], "context": self.n_ctx}

    @cached_property
    def stream(self) -> Space:
        return Space.of("stream", {"one": None, "pos": self.n_ctx, "table": self.K, "tok": self.V})

    def output_position(self, r: int) -> int:
        return self.R + self.L - 1 + r

    def model(self, scale: float | None = None) -> Model:
        V, L, R = self.V, self.L, self.R
        sigma = self.scale if scale is None else scale
        stream = self.stream
        pointers = tuple(f"here{l}" for l in range(1, L + 1))
        attn_out = Space.of("attn", {"fetched": self.K, **{p: V for p in pointers}})

        # Head "fetch": output r's query matches virtual token r's key (position-relative one-hot match).
        qk = Space.of("fetch.qk", {"match": R})
        v = Space.of("fetch.v", {"carry": self.K})
        W_Q, W_K = Wiring(stream, qk), Wiring(stream, qk)
        for r in range(R):
            W_Q.connect(f"pos:{self.output_position(r)}", f"match:{r}")
            W_K.connect(f"pos:{r}", f"match:{r}")
        fetch = Head("fetch", W_Q.build(), W_K.build(), Wiring(stream, v).copy_block("table", "carry").build(),
                     Wiring(v, attn_out).copy_block("carry", "fetched").build(), sigma)
        # Heads "pointer<l>": every query attends to user token l (position R+l-1) and copies its one-hot.
        heads = [fetch] + [anchor_head(f"pointer{l}", stream, attn_out, query="one", key=f"pos:{R + l - 1}",
                                       read="tok", write=f"here{l}", scale=sigma) for l in range(1, L + 1)]
        mlp, hidden, logits = lookup_mlp(attn_out, K=self.K, V=V, pointers=pointers)
        layer = Layer(heads=tuple(heads), mlp=mlp, attn_out=attn_out, hidden=hidden, out=logits, causal=True)
        # E[u] = tok:u (the user token's one-hot); P[p] = one + pos:p.
        embed = one_hot_tokens(stream, "tok", V)
        pos = position_rows(stream, self.n_ctx)
        info = {
            "construction": NAME,
            "params": {"V": V, "L": L, "R": R},
            "scale": {"value": sigma, "derived": scale is None,
                      "rule": "lookup_scale(V, 2R+L-2, L) = ceil16(ln(4 V (L+1) (2R+L-2)))"},
            "margin_bound": lookup_margin_bound(V, self.competitors, sigma, L),
            "sizes": self.sizes(),
        }
        return Model(Vocab(V, self.alphabet), stream, embed, pos, (layer,), None, info)

    def index(self, inputs: Sequence[int]) -> int:
        """Row-major table index of an input tuple (u_1, ..., u_L)."""
        a = 0
        for u in inputs:
            a = a * self.V + int(u)
        return a

    def check_table(self, table: np.ndarray) -> np.ndarray:
        """table[a, r] = response token r for input index a: shape (V^L, R), values in 0..V-1."""
        table = np.asarray(table)
        if table.shape != (self.K, self.R):
            raise ParameterError(f"a table for V={self.V}, L={self.L}, R={self.R} has shape ({self.K}, {self.R}), "
                                 f"got {table.shape}")
        if table.size and (table.min() < 0 or table.max() >= self.V):
            raise ParameterError(f"response tokens must lie in 0..{self.V - 1}")
        return table

    def encode(self, table: np.ndarray) -> np.ndarray:
        """The R virtual tokens (R, d) in float64: table:a = table[a, r] / V at virtual token r."""
        table = self.check_table(table)
        out = np.zeros((self.R, self.stream.dim))
        out[:, self.stream.block("table")] = table.T / self.V
        return out
