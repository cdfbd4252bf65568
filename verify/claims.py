"""Claims in the form the structured certificate reads (docs/certificates.md).

A *lookup claim* has one virtual token at position 0 whose payload
coordinate k sits at stream direction `payload[k]`. Encoding token y writes the
value `tau[y]` there, enclosed by [tau_lo[y], tau_hi[y]] (exact y/V enclosed
outward, or the float the encoder actually writes). Each row r of the claim
is one decoding decision: the query at position `query_pos[r]` must emit y
whenever payload coordinate `own[r]` encodes y, whatever the other payload
coordinates and the free tokens are.

- Theorem 1: row i queries position i and reads coordinate i. The tokens at
  positions 1..i are free (any of the V tokens).
- Theorem 2: row u queries position 1, which holds the user token u (fixed),
  and reads coordinate u.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from verify.interval import down, up


@dataclass(frozen=True)
class LookupRows:
    payload: np.ndarray  # (K,) stream index of each payload coordinate
    tau_lo: np.ndarray  # (V,) lower end of the encoded value of token y
    tau_hi: np.ndarray  # (V,) upper end
    tau_exact: bool  # True when tau encloses the exact rational y/V (real-arithmetic encoding)
    query_pos: np.ndarray  # (R,) query position of each row
    own: np.ndarray  # (R,) payload coordinate each row decodes
    row_token: np.ndarray | None  # (R,) token fixed at the query position, or None (all tokens free)
    n_positions: int  # positions used (0..n_positions-1)

    @property
    def V(self) -> int:
        return len(self.tau_lo)

    @property
    def rows(self) -> int:
        return len(self.own)

    def __post_init__(self) -> None:
        if not (np.all(self.tau_lo <= self.tau_hi) and np.all(np.diff(self.tau_lo) >= 0)):
            raise ValueError("encoded values must be ordered enclosures, nondecreasing in y")
        if self.row_token is not None and np.any(self.query_pos != self.query_pos[0]):
            raise ValueError("rows with a fixed query token must share the query position")


def encoded_values(V: int, dtype: str | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Enclosures of the value token y gets: exact y/V (dtype None) or its rounding to `dtype`."""
    if dtype is None:
        exact = np.array([float(Fraction(y, V)) for y in range(V)])
        return down(exact), up(exact), True
    from verify.dtypes import round_to

    vals = round_to(np.arange(V) / V, dtype).astype(np.float64)  # y/V correctly rounded, then to dtype
    return vals, vals.copy(), False


def theorem1_rows(payload: np.ndarray, V: int, N: int, dtype: str | None) -> LookupRows:
    lo, hi, exact = encoded_values(V, dtype)
    idx = np.arange(N)
    return LookupRows(np.asarray(payload), lo, hi, exact, idx, idx, None, N)


def theorem2_rows(payload: np.ndarray, V: int, dtype: str | None) -> LookupRows:
    lo, hi, exact = encoded_values(V, dtype)
    idx = np.arange(V)
    return LookupRows(np.asarray(payload), lo, hi, exact, np.ones(V, dtype=np.int64), idx, idx, 2)
