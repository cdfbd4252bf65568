"""Claims in the form the structured certificate reads (docs/certificates.md).

A *lookup claim* has one virtual token at position 0 whose payload
coordinate k sits at stream direction `payload[k]`. Encoding token y writes the
value `tau[y]` there, enclosed by [tau_lo[y], tau_hi[y]] (exact y/V enclosed
outward, or the float the encoder actually writes). Each row r of the claim
is one decoding decision: the query at position `query_pos[r]` must emit y
whenever payload coordinate `own[r]` of the virtual token at `own_pos[r]`
encodes y, whatever the other payload coordinates and the free tokens are.
Content positions are either free (any of the V tokens) or hold a token fixed
per row (the user's input).

- Theorem 1: row i queries position i and reads coordinate i of the one
  virtual token. The tokens at positions 1..i are free.
- Theorem 2: row u queries position 1, which holds the user token u (fixed),
  and reads coordinate u.
- Conditional generation (L inputs, R outputs): row (r, u_1..u_L) queries
  output position r, reads coordinate index(u) of virtual token r; the L input
  tokens are fixed, earlier outputs are free.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prefixproof.verify.certify.interval import down, up


@dataclass(frozen=True)
class LookupRows:
    payload: np.ndarray  # (K,) stream index of each payload coordinate (the same at every virtual position)
    tau_lo: np.ndarray  # (V,) lower end of the encoded value of token y
    tau_hi: np.ndarray  # (V,) upper end
    tau_exact: bool  # True when tau encloses the exact rational y/V (real-arithmetic encoding)
    query_pos: np.ndarray  # (R,) query position of each row
    own: np.ndarray  # (R,) payload coordinate each row decodes
    n_positions: int  # positions used (0..n_positions-1)
    virtual: int = 1  # positions 0..virtual-1 hold virtual tokens
    own_pos: np.ndarray | None = None  # (R,) virtual position holding the row's coordinate (default 0)
    fixed_pos: tuple[int, ...] = ()  # content positions whose token is fixed per row
    fixed_tok: np.ndarray | None = None  # (R, len(fixed_pos)) the tokens there; other content tokens are free

    @property
    def V(self) -> int:
        return len(self.tau_lo)

    @property
    def rows(self) -> int:
        return len(self.own)

    @property
    def own_position(self) -> np.ndarray:
        return np.zeros(self.rows, dtype=np.int64) if self.own_pos is None else self.own_pos

    @property
    def free_pos(self) -> list[int]:
        return [p for p in range(self.virtual, self.n_positions) if p not in self.fixed_pos]

    @property
    def row_token(self) -> np.ndarray | None:
        """The token fixed at the (single) fixed position, when there is exactly one (Theorem 2)."""
        return None if not self.fixed_pos else self.fixed_tok[:, 0]

    def __post_init__(self) -> None:
        if not (np.all(self.tau_lo <= self.tau_hi) and np.all(np.diff(self.tau_lo) >= 0)):
            raise ValueError("encoded values must be ordered enclosures, nondecreasing in y")
        if self.fixed_pos and (self.fixed_tok is None or self.fixed_tok.shape != (self.rows, len(self.fixed_pos))):
            raise ValueError("fixed_tok must give one token per row and fixed position")
        if any(p < self.virtual or p >= self.n_positions for p in self.fixed_pos):
            raise ValueError("fixed positions must be content positions")


def encoded_values(V: int, dtype: str | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Enclosures of the value token y gets: exact y/V (dtype None) or its rounding to `dtype`."""
    if dtype is None:
        exact = np.arange(V, dtype=np.float64) / V  # y/V correctly rounded (IEEE division of exact integers)
        return down(exact), up(exact), True
    from prefixproof.verify.semantics.formats import round_to

    vals = round_to(np.arange(V) / V, dtype).astype(np.float64)  # y/V correctly rounded, then to dtype
    return vals, vals.copy(), False


def theorem1_rows(payload: np.ndarray, V: int, N: int, dtype: str | None) -> LookupRows:
    lo, hi, exact = encoded_values(V, dtype)
    idx = np.arange(N)
    return LookupRows(np.asarray(payload), lo, hi, exact, query_pos=idx, own=idx, n_positions=N)


def theorem2_rows(payload: np.ndarray, V: int, dtype: str | None) -> LookupRows:
    lo, hi, exact = encoded_values(V, dtype)
    idx = np.arange(V)
    return LookupRows(np.asarray(payload), lo, hi, exact, query_pos=np.ones(V, dtype=np.int64), own=idx,
                      n_positions=2, fixed_pos=(1,), fixed_tok=idx[:, None])
