"""Outward-rounded float64 intervals (lo, hi) and the execution classes' rounding constants.

Every result is stepped outward (up, dn: past the neighbouring float), so [lo, hi] contains the exact real result
of the operation on any points of the operand intervals. Matrix products use midpoint-radius with the a-priori
bound gamma_(n+2) |M| |c| for the product's own rounding (n non-zero terms per row).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

U64, ETA, MAX = 2.0**-53, 2.0**-1074, float(np.finfo(np.float64).max)
# format: (unit roundoff u, smallest subnormal eta, exp relative error bound in units of u)
FORMATS = {"float64": (2.0**-53, 2.0**-1074, 8.0), "float32": (2.0**-24, 2.0**-149, 8.0),
           "float16": (2.0**-11, 2.0**-24, 2.0), "bfloat16": (2.0**-8, 2.0**-133, 2.0)}


def _step(x, d: float):
    """x + d (|x| 2^-52 + eta), d = +-1: at or beyond the float next to x in direction d, for every float x
    (docs/certificate-format.md, "Outward steps"); -d inf goes to the largest finite float, as nextafter."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        s = np.abs(x) * 2.0**-52 + ETA
        return np.where(x == -d * np.inf, -d * MAX, x + s if d > 0 else x - s)[()]


def dn(x):
    return _step(x, -1.0)


def up(x):
    return _step(x, 1.0)


def gamma(n, u: float = U64):
    """gamma_n(u) = n u / (1 - n u), rounded up; n an int (a float returned) or an array of counts."""
    if np.any((n := np.asarray(n, dtype=np.float64)) * u >= 0.25):
        raise ValueError(f"sums of {int(n.max())} terms are too long to bound with unit roundoff {u}")
    return float(g) if (g := up(up(n * u) / dn(1 - n * u)) * (1 + 4 * U64)).ndim == 0 else g


def safe(x, n: int = 1):
    """An upper bound of the exact value of a computed non-negative sum/product chain of <= n terms."""
    return up(np.asarray(x, dtype=np.float64) * (1 + 2 * gamma(max(n, 1) + 2)) + (n + 2) * ETA)


def add(a, b):
    return dn(a[0] + b[0]), up(a[1] + b[1])


def mul(a, b):
    """Product of intervals of any signs."""
    c = [a[i] * b[j] for i in (0, 1) for j in (0, 1)]
    return dn(np.minimum.reduce(c)), up(np.maximum.reduce(c))


def widen(a, r):
    return dn(a[0] - r), up(a[1] + r)


def mag(a):
    return np.maximum(np.abs(a[0]), np.abs(a[1]))


def absm(M):
    return abs(M) if sp.issparse(M) else np.abs(M)


def row_len(M) -> int:
    if sp.issparse(M):
        return max(int(np.diff(sp.csr_array(M).indptr).max(initial=0)), 1)
    return max(int((np.asarray(M) != 0).sum(axis=-1).max(initial=0)), 1)


def lin(M, a, bias=None):
    """M x (+ bias) for every x in the interval a; M a point matrix (in,)/(in, B) columns, or (K, out, in) with
    a of shape (K, in), one matrix per row."""
    c = 0.5 * a[0] + 0.5 * a[1]
    r = np.maximum(up(a[1] - c), up(c - a[0]))
    n, A = M.shape[-1] if np.ndim(M) == 3 else row_len(M), absm(M)
    prod = (lambda X, x: np.einsum("koi,ki->ko", X, x)) if np.ndim(M) == 3 else (lambda X, x: np.asarray(X @ x))
    y = prod(M, c)
    rad = safe(prod(A, r) + gamma(n + 2) * prod(A, np.abs(c)), n)
    out = dn(y - rad), up(y + rad)
    return out if bias is None else add(out, (bias, bias))


def isum(a, axis: int = -1):
    """Sum of intervals along an axis."""
    n = a[0].shape[axis]
    g = gamma(max(n, 1))
    return (dn(np.sum(a[0], axis=axis) - safe(g * np.sum(np.abs(a[0]), axis=axis), n)),
            up(np.sum(a[1], axis=axis) + safe(g * np.sum(np.abs(a[1]), axis=axis), n)))


def check_environment() -> None:
    """Refuse to run when float64 flushes subnormals to zero (the enclosures would be unsound)."""
    tiny = np.nextafter(0.0, 1.0)
    if not tiny > 0 or not (np.array([[tiny]]) @ np.array([[1.0]]))[0, 0] > 0:
        raise RuntimeError("subnormal float64 numbers are flushed to zero; the checker cannot run soundly")
