"""The paper's single-virtual-token packing for L user tokens, with a genuine ReLU MLP (no host stand-ins).

The virtual token has V coordinates. Coordinate a packs the whole sub-table
for u_1 = a as base-V digits:

    r_a = sum_i m(a, tuple_i) V^-(i+1),   i = index(u_2, ..., u_L) in [D], D = V^(L-1)

so one number carries D log2 V bits: exactly the exponential precision the
paper's notebook runs out of. Positions: 0 virtual token, 1..L user tokens;
the answer is read at position L.

Attention (one layer, L+1 heads, no residual):
  fetched:a   head "fetch" attends to position 0 and copies the packed values
  here<l>:k   head "pointer<l>" attends to position l and copies its tok one-hot

MLP (2D + 5 Dense layers, ReLU between):
  select:a = fetched:a + here1:a - 1            (only a = u_1 survives: r_a < 1)
  x_0 = sum_a select:a = r_{u_1};   idx:i = sum_{l>=2} here<l>:i_l - (L-2)   (one-hot of the digit index)
  digit stage k = 0..D-1, with g_k = V^-(D-1-k) the spacing of V x_k:
      A_j = (2/g_k)(V x_k - j) + 3/2,  inv_j = ReLU(1 - A_j),  H_j = ReLU(1 - inv_j)   (j = 1..V-1)
      H_j is exactly 1 when V x_k >= j and exactly 0 when V x_k <= j - g_k, even after any error
      below g_k/4 (and in floating point: the two ReLUs saturate without cancellation);
      d_k = sum_j H_j,  x_{k+1} = V x_k - d_k,  sel_k = ReLU(d_k/V + idx:k - 1)
  value = sum_k sel_k = m(u)/V;  nearest-grid decoding.

Scale: the selected packed value must sit within V^-D / 4 of r_{u_1}; with
delta <= 2 m e^-sigma (m = L competing keys) that needs sigma >= ln(16 m V^D).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import math

import numpy as np

from prefixproof.constructions.basis import ExactArray, Space, Wiring, exact_vector, one_hot_tokens, position_rows
from prefixproof.constructions.lookup import anchor_head
from prefixproof.constructions.model import Dense, Layer, Model, ParameterError, Vocab
from prefixproof.constructions.scales import SCALE_GRID

NAME = "packing"
MAX_DIGITS = 4096  # D = V^(L-1) digit stages at most


@dataclass(frozen=True)
class Packing:
    V: int
    L: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.V, int) or self.V < 2:
            raise ParameterError(f"V must be an integer >= 2, got {self.V!r}")
        if not isinstance(self.L, int) or self.L < 2:
            raise ParameterError(f"L must be an integer >= 2 (L = 1 is Theorem 2), got {self.L!r}")
        if self.D > MAX_DIGITS:
            raise ParameterError(f"D = V^(L-1) = {self.D} digit stages exceed {MAX_DIGITS}")

    @property
    def D(self) -> int:
        return self.V ** (self.L - 1)

    @property
    def n_ctx(self) -> int:
        return self.L + 1

    @property
    def scale(self) -> float:
        # ln(16 m V^D) computed as logs so that V^D never overflows a float
        target = math.log(16 * self.L) + self.D * math.log(self.V)
        return math.ceil(target * SCALE_GRID) / SCALE_GRID

    @cached_property
    def stream(self) -> Space:
        return Space.of("stream", {"one": None, "pos": self.n_ctx, "pay": self.V, "tok": self.V})

    def sizes(self) -> dict[str, object]:
        return {"virtual_tokens": 1, "d_model": self.stream.dim, "heads": self.L + 1, "layers": 1,
                "mlp_dense_layers": 2 * self.D + 5, "mlp_width": max(self.L * self.V, self.V + self.D + 2),
                "bits_per_coordinate": round(self.D * math.log2(self.V), 1)}

    def model(self, scale: float | None = None) -> Model:
        V, L = self.V, self.L
        sigma = self.scale if scale is None else scale
        stream = self.stream
        here = [f"here{l}" for l in range(1, L + 1)]
        attn = Space.of("attn", {"fetched": V, **{h: V for h in here}})
        heads = [anchor_head("fetch", stream, attn, query="one", key="pos:0", read="pay", write="fetched",
                             scale=sigma)]
        heads += [anchor_head(f"pointer{l}", stream, attn, query="one", key=f"pos:{l}", read="tok",
                              write=f"here{l}", scale=sigma) for l in range(1, L + 1)]
        dense, spaces = self._mlp(attn)
        logits = spaces[-1]
        layer = Layer(tuple(heads), tuple(dense), attn, tuple(spaces[:-1]), logits, causal=True)
        # E[u] = tok:u (the user token's one-hot); P[p] = one + pos:p.
        embed = one_hot_tokens(stream, "tok", V)
        pos = position_rows(stream, self.n_ctx)
        info = {"construction": NAME, "params": {"V": V, "L": L},
                "scale": {"value": sigma, "derived": scale is None, "rule": "ceil16(ln(16 L V^D)), D = V^(L-1)"},
                "sizes": self.sizes()}
        return Model(Vocab(V), stream, embed, pos, (layer,), None, info)

    def _mlp(self, attn: Space) -> tuple[list[Dense], list[Space]]:
        """The MLP block by block (select, start, the D digit stages, the selection and the decoder), as in the
        module docstring. Longer than 60 lines on purpose: each block stays beside the one comment that
        justifies it."""
        V, L, D = self.V, self.L, self.D
        steps = V - 1
        dense: list[Dense] = []
        spaces: list[Space] = []

        def add(W: Wiring, bias: dict[str, Fraction | int]) -> None:
            dense.append(Dense(W.build(), exact_vector(W.dst, bias)))
            spaces.append(W.dst)

        # Select r_{u1}; carry the other pointers.
        h = Space.of("mlp.select", {"select": V, **{f"keep{l}": V for l in range(2, L + 1)}})
        W = Wiring(attn, h).copy_block("fetched", "select").copy_block("here1", "select")
        for l in range(2, L + 1):
            W.copy_block(f"here{l}", f"keep{l}")
        add(W, {f"select:{a}": -1 for a in range(V)})
        # x_0 = sum select; idx:i = sum_l keep_l:i_l - (L-2).
        h2 = Space.of("mlp.start", {"x": None, "idx": D})
        W = Wiring(h, h2).gather("select", "x")
        for i in range(D):
            rest = i
            for l in range(L, 1, -1):
                W.connect(f"keep{l}:{rest % V}", f"idx:{i}")
                rest //= V
        add(W, {f"idx:{i}": -(L - 2) for i in range(D)} if L > 2 else {})
        prev = h2
        for k in range(D):
            g_inv = V ** (D - 1 - k)  # 1 / g_k
            # inv_j = ReLU(1 - A_j) = ReLU(-2 g_inv (V x_k - j) - 1/2), with V x_k read from the previous layer.
            ha = Space.of(f"mlp.stage{k}a", {"inv": steps, "x": None, "idx": D, **({"sel": None} if k else {}),
                                             **({"acc": None} if k > 1 else {})})
            W = Wiring(prev, ha)
            bias: dict[str, Fraction | int] = {}
            for j in range(1, V):
                self._wire_vx(W, prev, f"inv:{j - 1}", -2 * g_inv, k)
                bias[f"inv:{j - 1}"] = 2 * g_inv * j - Fraction(1, 2)
            self._wire_vx(W, prev, "x", 1, k, scale_by_v=False)
            W.copy_block("idx", "idx")
            if k:  # sel_{k-1} = ReLU(d_{k-1}/V + idx:k-1 - 1)
                W.gather("H", "sel", Fraction(1, V)).connect(f"idx:{k - 1}", "sel")
                bias["sel"] = -1
            if k > 1:
                W.connect("acc", "acc")
            add(W, bias)
            # H_j = ReLU(1 - inv_j); carry x, idx and the accumulator (acc += sel).
            hb = Space.of(f"mlp.stage{k}b", {"H": steps, "x": None, "idx": D, **({"acc": None} if k else {})})
            W = Wiring(ha, hb)
            for j in range(steps):
                W.connect(f"inv:{j}", f"H:{j}", -1)
            W.connect("x", "x").copy_block("idx", "idx")
            if k:
                W.connect("sel", "acc")
                if k > 1:
                    W.connect("acc", "acc")
            add(W, {f"H:{j}": 1 for j in range(steps)})
            prev = hb
        # sel_{D-1}, then value = acc + sel_{D-1}.
        fa = Space.of("mlp.finala", {"sel": None, **({"acc": None} if D > 1 else {})})
        W = Wiring(prev, fa).gather("H", "sel", Fraction(1, V)).connect(f"idx:{D - 1}", "sel")
        if D > 1:
            W.connect("acc", "acc")
        add(W, {"sel": -1})
        fb = Space.of("mlp.value", {"value": None})
        W = Wiring(fa, fb).connect("sel", "value")
        if D > 1:
            W.connect("acc", "value")
        add(W, {})
        logits = Space.of("logits", {"logit": V})
        W = Wiring(fb, logits).spread("value", "logit", [Fraction(2 * j, V) for j in range(V)])
        dense.append(Dense(W.build(), ExactArray((V,), {(j,): -Fraction(j * j, V * V) for j in range(1, V)})))
        spaces.append(logits)
        return dense, spaces

    def _wire_vx(self, W: Wiring, prev: Space, dst: str, coef, k: int, scale_by_v: bool = True) -> None:
        """Add coef * (V x_k) (or coef * x_k) to `dst`, with x_k expressed in the previous layer's units.

        Stage 0 reads x_0 directly; stage k > 0 reads x_k = V x_{k-1} - sum_j H_{k-1, j}.
        """
        V = self.V
        f = Fraction(coef) * (V if scale_by_v else 1)
        if k == 0:
            W.connect("x", dst, f)
        else:
            W.connect("x", dst, f * V)
            W.gather("H", dst, -f)

    def pack(self, table: np.ndarray) -> list[Fraction]:
        """The exact packed values r_a for a table of shape (V^L,) (row-major over (u_1, ..., u_L))."""
        table = np.asarray(table)
        if table.shape != (self.V ** self.L,):
            raise ParameterError(f"a table for V={self.V}, L={self.L} has {self.V ** self.L} entries, got {table.shape}")
        if table.size and (table.min() < 0 or table.max() >= self.V):
            raise ParameterError(f"table entries must lie in 0..{self.V - 1}")
        D = self.D
        out = []
        for a in range(self.V):
            digits = table[a * D:(a + 1) * D]
            num = 0
            for d in digits:
                num = num * self.V + int(d)
            out.append(Fraction(num, self.V ** D))
        return out

    def encode(self, table: np.ndarray) -> np.ndarray:
        """The virtual token (1, d) in float64: pay:a = r_a rounded to float64 (where the digits get lost)."""
        out = np.zeros((1, self.stream.dim))
        out[0, self.stream.block("pay")] = [float(r) for r in self.pack(table)]
        return out
