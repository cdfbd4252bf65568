"""Exact rational linear algebra: certificates that a linear system has no solution.

By the Fredholm alternative, M s = b has no solution exactly when some y has
y^T M = 0 and y^T b != 0. `left_null_vector` finds such a y in exact
rationals (sympy); `certifies_inconsistent` re-checks the certificate with
Python Fractions, independently of how it was found.
"""
from __future__ import annotations

from fractions import Fraction
from math import lcm
from typing import Sequence

import sympy as sp

Matrix = Sequence[Sequence[Fraction]]


def left_null_vector(M: Matrix) -> list[Fraction] | None:
    """A nonzero integer vector y with y^T M = 0, or None when M has full row rank."""
    rows = len(M)
    basis = sp.Matrix([[sp.Rational(x.numerator, x.denominator) for x in row] for row in M]).T.nullspace()
    if not basis:
        return None
    y = [Fraction(int(v.p), int(v.q)) for v in basis[0]]
    scale = lcm(*(f.denominator for f in y))
    y = [f * scale for f in y]
    if len(y) != rows:
        raise ValueError(f"left null vector has {len(y)} entries for {rows} rows")
    return y


def certifies_inconsistent(M: Matrix, y: Sequence[Fraction], b: Sequence[Fraction]) -> bool:
    """True when y^T M = 0 and y^T b != 0: then M s = b has no solution s (checked in Fractions)."""
    if len(y) != len(M) or len(b) != len(M):
        raise ValueError(f"certificate of length {len(y)} and right side of length {len(b)} for {len(M)} rows")
    cols = len(M[0]) if M else 0
    orthogonal = all(sum((y[i] * M[i][c] for i in range(len(M))), Fraction(0)) == 0 for c in range(cols))
    return orthogonal and sum((yi * bi for yi, bi in zip(y, b)), Fraction(0)) != 0
