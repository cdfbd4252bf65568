"""How each lookup claim stores its payload in a directory's virtual tokens, and what it then answers.

A layout works on the claim's *table*, the thing config.json records:

  theorem1              (N,)    the target Y               payload target:k = Y_k / V, one virtual token
  theorem2              (V,)    the map m                  payload map:u = m(u) / V, one virtual token
  long_response,        (K, R)  table m(a)_r, K = V^L      payload table:a of virtual token r = m(a)_r / V
  multi_token, conditional
  multi_token_packing   (K,)    table m(a), K = V^L        payload pay:a = sum_i m(a*D + i) V^-(i+1), one token

Values on the grid are what the construction's float64 encoder writes, cast to the stored format
(y/V correctly rounded, then rounded to the format; the packed fraction likewise). `answers` gives, for
every user input (as the directory's `generate` runs it), the tokens the table prescribes.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from prefixproof.constructions.packing import Packing
from prefixproof.theorems.obligations.encoding import LookupEncoding

RECORD_KEY = {"theorem1": "target_tokens", "theorem2": "map_tokens", "long_response": "table_tokens",
              "multi_token": "table_tokens", "conditional": "table_tokens", "multi_token_packing": "table_tokens"}
BLOCK = {"theorem1": "target", "theorem2": "map", "long_response": "table", "multi_token": "table",
         "conditional": "table", "multi_token_packing": "pay"}


def _cast(values: np.ndarray, stored: np.dtype) -> np.ndarray:
    """float64 values rounded to the stored format, returned as float64 (exact)."""
    return np.asarray(values, dtype=np.float64).astype(stored).astype(np.float64)


@dataclass(frozen=True)
class Layout:
    claim: str
    enc: LookupEncoding
    V: int
    L: int  # user tokens per input (0: theorem1 generates from the virtual token alone)
    R: int  # tokens answered per input
    virtual: int  # virtual tokens the claim uses

    @classmethod
    def of(cls, claim: str, model: Any) -> "Layout":
        enc = LookupEncoding.of(model, BLOCK[claim])
        V = enc.V
        if claim == "theorem1":
            return cls(claim, enc, V, 0, enc.K, 1)
        if claim == "theorem2":
            return cls(claim, enc, V, 1, 1, 1)
        if claim == "multi_token_packing":
            return cls(claim, enc, V, model.n_ctx - 1, 1, 1)
        from prefixproof.theorems.conditional import shape_of

        _, L, R = shape_of(enc)
        return cls(claim, enc, V, L, R, R)

    @property
    def K(self) -> int:
        """Number of user inputs (1 for theorem1)."""
        return 1 if self.L == 0 else self.V ** self.L

    @property
    def table_shape(self) -> tuple[int, ...]:
        if self.claim == "theorem1":
            return (self.R,)
        if self.claim in ("theorem2", "multi_token_packing"):
            return (self.K,)
        return (self.K, self.R)

    @property
    def digits(self) -> int:
        """Base-V digits per payload coordinate (packing: V^(L-1); else 1)."""
        return self.V ** (self.L - 1) if self.claim == "multi_token_packing" else 1

    def label(self, r: int, a: int) -> str:
        return f"virtual token {r}, {BLOCK[self.claim]}:{a}"

    def prompts(self) -> np.ndarray | None:
        """(K, L) user inputs in index order (row-major digits), or None for theorem1."""
        if self.L == 0:
            return None
        a = np.arange(self.K)
        return np.stack([(a // self.V ** (self.L - 1 - l)) % self.V for l in range(self.L)], axis=1)

    def answers(self, table: np.ndarray) -> np.ndarray:
        """(K, R) tokens each input must generate."""
        t = np.asarray(table, dtype=np.int64)
        if self.claim == "theorem1":
            return t[None, :]
        return t.reshape(self.K, self.R)

    def recorded(self, info: dict[str, Any]) -> np.ndarray | None:
        """The table config.json records, checked against the claim's shape; None when it records none."""
        key = RECORD_KEY[self.claim]
        if key not in info:
            return None
        try:
            t = np.asarray(info[key], dtype=np.int64)
        except (TypeError, ValueError):
            raise ValueError(f"config.json prompt.{key} is not a list of integer tokens") from None
        if self.claim == "multi_token_packing" and t.shape == (self.K, 1):
            t = t[:, 0]
        if t.shape != self.table_shape:
            raise ValueError(f"config.json prompt.{key} has shape {t.shape}; the weights' claim needs "
                             f"{self.table_shape}")
        if t.size and (t.min() < 0 or t.max() >= self.V):
            raise ValueError(f"config.json prompt.{key} has tokens outside 0..{self.V - 1}")
        return t

    def encode(self, table: np.ndarray, stored: np.dtype) -> np.ndarray:
        """(virtual, payload width) values the construction's encoder writes for `table`, in the stored format."""
        t = np.asarray(table, dtype=np.int64)
        if self.claim == "multi_token_packing":  # the construction's own packing, rounded once to float64
            return _cast(np.array([[float(r) for r in Packing(self.V, self.L).pack(t.reshape(-1))]]), stored)
        if self.claim in ("theorem1", "theorem2"):
            return _cast(t[None, :] / self.V, stored)
        return _cast(t.T / self.V, stored)

    def decode(self, payload: np.ndarray, stored: np.dtype) -> tuple[np.ndarray | None, list[str]]:
        """The table whose encoding is exactly `payload`, and the coordinates that sit off the grid."""
        V = self.V
        off: list[str] = []
        if self.claim == "multi_token_packing":
            D = self.digits
            table = np.zeros(V * D, dtype=np.int64)
            for a, x in enumerate(payload[0]):
                num = round(Fraction(float(x)) * V ** D)
                num = min(max(num, 0), V ** D - 1)
                if _cast(np.array([float(Fraction(num, V ** D))]), stored)[0] != x:
                    off.append(f"{self.label(0, a)} = {float(x)!r} is no packed value of {D} base-{V} digits")
                for i in range(D - 1, -1, -1):
                    num, table[a * D + i] = divmod(num, V)
            return (None if off else table), off
        y = np.clip(np.rint(payload * V), 0, V - 1).astype(np.int64)
        grid = _cast(y / V, stored)
        for r, a in zip(*np.nonzero(grid != payload)):
            off.append(f"{self.label(int(r), int(a))} = {float(payload[r, a])!r} is not y/{V} for any token y "
                       f"(nearest grid value {float(grid[r, a])!r})")
        if off:
            return None, off
        if self.claim in ("theorem1", "theorem2"):
            return y[0], off
        return y.T.copy(), off
