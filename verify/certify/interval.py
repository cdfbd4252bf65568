"""Sound interval arithmetic in numpy float64 (docs/certificates.md, "Soundness").

An interval is a pair (lo, hi) of float64 arrays with lo <= x <= hi for the
real quantity x it encloses. numpy rounds to nearest, so every result is
computed in round-to-nearest and then stepped outward with `nextafter` (one
step covers the half-ulp error of a single operation). Matrix products use the
midpoint-radius form with an a-priori rounding term:

    |fl(sum_i a_i b_i) - sum_i a_i b_i| <= gamma_n * sum_i |a_i b_i|,   gamma_n = n u / (1 - n u)

plus n * ETA for underflow, where u = 2^-53 and ETA = 2^-1074.

`Exec` describes the arithmetic of the computation being certified (not ours):
real arithmetic (u = 0), or a floating-point format whose every operation has
relative error <= u (dot products gamma_n(u)), absolute underflow error
<= eta, and exp error <= exp_ulps * u relative (+ eta). The enclosures then
contain every execution allowed by that model (docs/certificates.md,
"Execution classes"). `exec_for` measures the format's exp before it returns
(verify/certify/exp_check.py) and raises when the measurement exceeds the bound.

Assumptions checked by `float_env.check_environment` at start-up: subnormals exist (no
flush-to-zero), also inside BLAS products, and numpy's exp agrees with arb on
a spot-check to within EXP_ULPS ulp.

Longer than 300 lines on purpose: one idea, the outward-rounded interval arithmetic and its rounding model;
splitting would separate the operations from the error bounds they rely on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

U = 2.0**-53  # unit roundoff of float64, round to nearest
ETA = 2.0**-1074  # smallest subnormal
EXP_ULPS = 4  # trusted error bound of np.exp, in ulp of the result
_EXP_REL = EXP_ULPS * 2.0**-52

Iv = tuple[np.ndarray, np.ndarray]


class EnvironmentError_(RuntimeError):
    """The machine's floating point does not meet the certificate's assumptions."""


class PrecisionExhausted(ValueError):
    """An accumulation too long for the format's rounding bound (n u >= 1/2): the bound says nothing."""


def gamma(n: int, u: float = U) -> float:
    """gamma_n = n u / (1 - n u), rounded up (n u < 1 assumed)."""
    if n * u >= 0.5:
        raise PrecisionExhausted(f"sums of {n} terms are too long to bound in a format with unit roundoff {u:.3g}")
    return float(np.nextafter(n * u / (1 - n * u), np.inf)) * (1 + 4 * U)


def _step(x: Any, sign: float) -> Any:
    """x moved outward by at least one ulp: x + sign (2^-52 |x| + ETA), evaluated in round-to-nearest.

    For finite x the step is at least ulp(x) (2^-52 |x| >= ulp(x) for normal x, ETA = ulp in the subnormal
    range), so the exact sum lies beyond the neighbouring float and rounding to nearest, being monotone,
    cannot come back past it. About 3x faster than np.nextafter on large arrays; non-finite entries take
    np.nextafter.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)  # one new array, updated in place (large arrays: allocation and page faults dominate)
    np.abs(x, out=out)
    out *= 2.0**-52
    out += ETA
    with np.errstate(invalid="ignore", over="ignore"):
        if sign > 0:
            np.add(x, out, out=out)
        else:
            np.subtract(x, out, out=out)
    if not np.isfinite(out.sum()):  # one pass; a non-finite entry (or an overflowing sum) is rare
        bad = ~np.isfinite(out)
        if bad.any():
            out = np.where(bad, np.nextafter(x, sign * np.inf), out)
    return out[()] if out.ndim == 0 else out


def down(x: Any) -> np.ndarray:
    return _step(x, -1.0)


def up(x: Any) -> np.ndarray:
    return _step(x, 1.0)


@dataclass(frozen=True)
class Exec:
    """The arithmetic whose results are being enclosed."""

    name: str
    u: float  # relative error of one operation (0: exact real arithmetic)
    eta: float  # absolute error from underflow, per operation
    exp_ulps: float = 8.0  # executed exp's relative error bound, in units of u (exp_check.EXP_BOUND_U)
    max_value: float = float("inf")  # largest finite value (overflow limit)
    fmt: str | None = None  # the format's name (verify/semantics/formats.py) when the execution is one format's

    @property
    def exact(self) -> bool:
        return self.u == 0.0

    def dot(self, n: int) -> float:
        return 0.0 if self.exact else gamma(n, self.u)


REAL = Exec("real arithmetic", 0.0, 0.0, 0.0)


def exec_for(dtype_name: str) -> Exec:
    """The execution model of a floating-point format (round to nearest, gradual underflow).

    exp is trusted to EXP_BOUND_U[format] u + eta (4 ulp of float64 and float32, 1 ulp of float16 and
    bfloat16), only after numpy's exp in that format has been measured within it on this machine
    (verify/certify/exp_check.py; raises ExpAccuracyError otherwise).
    """
    from prefixproof.verify.certify.exp_check import check_exp
    from prefixproof.verify.semantics.formats import format_of

    fmt = format_of(dtype_name)
    check_exp(dtype_name)
    return Exec(f"{dtype_name} execution", fmt.u, fmt.eta, fmt.exp_bound_u, fmt.largest, dtype_name)


# ------------------------------------------------------------------ construction

def ratio_distance(x: Any, num: Any, den: Any) -> np.ndarray:
    """Upper bound of |x - num/den| (elementwise) for floats x and integers 0 <= |num|, den < 2^53.

    q = fl(num/den) is the correctly rounded quotient, |q - num/den| <= u |num/den| <= u |q| / (1 - u); and
    |x - q| <= |fl(x - q)| / (1 - u). Replaces an exact rational comparison at a cost of a few ulp of slack.
    """
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if np.any(np.abs(num) >= 2.0**53) or np.any(den >= 2.0**53) or np.any(den <= 0):
        raise ValueError("ratio_distance needs integers below 2^53 and a positive denominator")
    q = num / den
    x = np.asarray(x, dtype=np.float64)
    return up(up(np.abs(x - q) * (1 + 2 * U)) + up(U * np.abs(q) * (1 + 2 * U)))


def as_dense(W: Any) -> np.ndarray:
    """A weight (dense array, CSR matrix) as a dense float64 array."""
    return np.asarray(W.toarray() if hasattr(W, "toarray") else W, dtype=np.float64)


def point(x: Any) -> Iv:
    x = np.asarray(x, dtype=np.float64)
    return x, x


def hull(lo: Any, hi: Any) -> Iv:
    return np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)


def widen(a: Iv, rad: Any) -> Iv:
    """[lo - rad, hi + rad], outward."""
    if np.isscalar(rad) and rad == 0:
        return a
    return down(a[0] - rad), up(a[1] + rad)


def mag(a: Iv) -> np.ndarray:
    """max |x| over the interval."""
    return np.maximum(np.abs(a[0]), np.abs(a[1]))


def add(a: Iv, b: Iv) -> Iv:
    return down(a[0] + b[0]), up(a[1] + b[1])


def neg(a: Iv) -> Iv:
    return -a[1], -a[0]


def sub(a: Iv, b: Iv) -> Iv:
    return add(a, neg(b))


def mul(a: Iv, b: Iv) -> Iv:
    p = [a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1]]
    return down(np.minimum.reduce(p)), up(np.maximum.reduce(p))


def scale(a: Iv, s: float) -> Iv:
    lo, hi = a[0] * s, a[1] * s
    return (down(lo), up(hi)) if s >= 0 else (down(hi), up(lo))


def relu(a: Iv) -> Iv:
    return np.maximum(a[0], 0.0), np.maximum(a[1], 0.0)


def exec_round(a: Iv, ex: Exec, terms: Any = 1.0) -> Iv:
    """Widen by the error of one executed operation of relative size u (plus underflow)."""
    if ex.exact:
        return a
    return widen(a, up(ex.u * mag(a) + ex.eta * terms))


def mid_rad(a: Iv) -> tuple[np.ndarray, np.ndarray]:
    """Midpoint and radius with [c - r, c + r] containing [lo, hi]."""
    c = 0.5 * (a[0] + a[1])
    c = np.where(np.isfinite(c), c, 0.0)
    r = up(np.maximum(up(a[1] - c), up(c - a[0])))
    point = a[0] == a[1]  # a point is its own midpoint, radius exactly 0
    return np.where(point, a[0], c), np.where(point, 0.0, r)


# ------------------------------------------------------------------ products

SPARSE_MIN = 1_000_000  # entries from which a mostly-zero input of `linear` goes through scipy.sparse
SPARSE_DENSITY = 0.05  # products whose factors have fewer live entries than this go through scipy.sparse

def _abs(W: Any) -> Any:
    return abs(W) if sp.issparse(W) else np.abs(W)


def _row_len(W: Any) -> int:
    """Terms per dot product of x @ W.T that can carry rounding: the most non-zero entries in a row of W.

    Zero weights contribute exact zeros, which add no rounding error.
    """
    if sp.issparse(W):
        counts = np.diff(sp.csr_array(W).indptr)
        return int(counts.max()) if counts.size else 0
    W = np.asarray(W)
    return int(np.count_nonzero(W, axis=-1).max()) if W.size else 0


def _right(x: np.ndarray, W: Any) -> np.ndarray:
    """x @ W.T for x of shape (..., n) and W (dense or CSR) of shape (m, n)."""
    if sp.issparse(W):
        flat = x.reshape(-1, x.shape[-1])
        return np.asarray(W @ flat.T).T.reshape(x.shape[:-1] + (W.shape[0],))
    return x @ W.T


def _enclose_products(center: np.ndarray, size: np.ndarray, spread: np.ndarray, n: int, ex: Exec) -> Iv:
    """Enclosure of sums of n products x_k w_k, given float-computed (round-to-nearest) sums over k of
    c_k w_k (`center`), |c_k w_k| (`size`) and the radius terms (`spread`), where x_k = c_k +- r_k (and w_k
    may carry a radius too), so that sum |x_k w_k| <= size + spread exactly.

    Each float sum of n non-negative terms is within gamma_n of its exact value, which the factor (1 + 4 gamma_n)
    covers; n * ETA covers underflow. When the product is executed in a lower precision (`ex`), its own dot-product
    error ex.dot(n) * sum |x_k w_k| + n * ex.eta is added on top.
    """
    g = gamma(n)
    rad = up((spread + g * size) * (1 + 4 * g) + n * ETA)
    out = down(center - rad), up(center + rad)
    if not ex.exact:
        magnitude = up((size + spread) * (1 + 4 * g))
        out = widen(out, up(ex.dot(n) * magnitude * (1 + 4 * g) + n * ex.eta))
    return out


def linear(x: Iv, W: Any, ex: Exec = REAL, W_rad: Any = None) -> Iv:
    """Enclosure of x @ W.T for interval rows x and the matrix W (dense or CSR).

    W is exact (its float values) unless `W_rad` gives a radius matrix, in
    which case every entry ranges over [W - W_rad, W + W_rad].
    """
    if x[0].ndim == 2 and x[0].size >= SPARSE_MIN:
        live = (x[0] != 0) | (x[1] != 0)
        if live.mean() < SPARSE_DENSITY:
            from prefixproof.verify.certify.interval_sparse import sparse_linear

            return sparse_linear(x, live, W, ex, W_rad)
    c, r = mid_rad(x)
    absW = _abs(W)
    spread = _right(r, absW)
    if W_rad is not None:
        spread = spread + _right(np.abs(c) + r, W_rad)
    out = _enclose_products(_right(c, W), _right(np.abs(c), absW), spread, max(_row_len(W), 1), ex)
    # An output all of whose terms have a factor exactly 0 (an input entry [0, 0], or a weight 0 with no
    # radius) is exactly 0 in every arithmetic: no underflow or rounding term, so sparse results stay sparse.
    live_x = ((c != 0) | (r != 0)).astype(np.float64)
    live_W = _pattern(W) if W_rad is None else _pattern(absW + _abs(W_rad))
    zero = _right(live_x, live_W) == 0
    return np.where(zero, 0.0, out[0]), np.where(zero, 0.0, out[1])


def _pattern(W: Any) -> Any:
    """1 where W has a non-zero entry, else 0 (same sparsity)."""
    if sp.issparse(W):
        P = sp.csr_array(W, copy=True)
        P.data = (P.data != 0).astype(np.float64)
        return P
    return (np.asarray(W) != 0).astype(np.float64)


def matmul(A: Iv, B: Iv, ex: Exec = REAL) -> Iv:
    """Enclosure of A @ B for interval (dense) arrays, batched over leading axes."""
    return matmul_mid_rad(*mid_rad(A), *mid_rad(B), ex)


def matmul_mid_rad(ac: np.ndarray, ar: np.ndarray, bc: np.ndarray, br: np.ndarray, ex: Exec = REAL) -> Iv:
    """`matmul` of factors given as midpoint and radius (`mid_rad`): a factor reused by many calls, such as
    the keys of every block of queries, is split once."""
    if ac.ndim == 2 and bc.ndim == 2 and ac.size and bc.size:
        live_a, live_b = (ac != 0) | (ar != 0), (bc != 0) | (br != 0)
        if live_a.mean() < SPARSE_DENSITY and live_b.mean() < SPARSE_DENSITY:
            from prefixproof.verify.certify.interval_sparse import sparse_matmul

            return sparse_matmul(ac, ar, bc, br, live_a, ex)
    aac, abc = np.abs(ac), np.abs(bc)
    return _enclose_products(ac @ bc, aac @ abc, aac @ br + ar @ (abc + br), max(ac.shape[-1], 1), ex)


def dot_rows(a: Iv, b: Iv, ex: Exec = REAL) -> Iv:
    """Row-wise dot products sum_k a[..., k] b[..., k] (same shapes): batched 1 x n times n x 1 products."""
    out = matmul((a[0][..., None, :], a[1][..., None, :]), (b[0][..., :, None], b[1][..., :, None]), ex)
    return out[0][..., 0, 0], out[1][..., 0, 0]


def sum_last(a: Iv, ex: Exec = REAL) -> Iv:
    """Sum over the last axis."""
    n = a[0].shape[-1]
    g = gamma(max(n, 1))
    lo, hi = np.sum(a[0], axis=-1), np.sum(a[1], axis=-1)
    m = np.sum(mag(a), axis=-1)
    out = down(lo - up(g * m + n * ETA)), up(hi + up(g * m + n * ETA))
    if not ex.exact:
        out = widen(out, up(ex.dot(n) * m * (1 + 4 * g) + n * ex.eta))
    return out


# ------------------------------------------------------------------ exp and softmax

def exp(a: Iv, ex: Exec = REAL) -> Iv:
    """Enclosure of exp, trusting np.exp to EXP_ULPS ulp (checked at start-up)."""
    with np.errstate(over="ignore", under="ignore"):
        el = np.exp(a[0])
        eh = el if a[1] is a[0] else np.exp(a[1])  # a point (softmax's shifted scores): one exp
    lo = np.maximum(0.0, down(down(el * (1 - _EXP_REL)) - EXP_ULPS * ETA))
    hi = up(up(eh * (1 + _EXP_REL)) + EXP_ULPS * ETA)
    if not ex.exact:
        lo = np.maximum(0.0, down(lo * (1 - ex.exp_ulps * ex.u) - ex.eta))
        hi = up(hi * (1 + ex.exp_ulps * ex.u) + ex.eta)
    return lo, hi


def softmax(scores: Iv, visible: np.ndarray, ex: Exec = REAL) -> Iv:
    """Tight enclosure of softmax over the last axis, restricted to `visible` keys.

    The lower bound of A_j uses score j's lower end and every other score's
    upper end (and the reverse for the upper bound):

        A_j >= e^{lo_j} / (e^{lo_j} + sum_{k != j} e^{hi_k}).

    Exponents are shifted by the row maximum M of the upper ends (the ratios do
    not depend on the shift). In executed arithmetic the shift is the computed
    maximum m; it cancels too, except through the rounding of s_j - m, and
    exp, the sum and the division each add their error.
    Invisible keys get weight exactly 0.
    """
    lo = np.where(visible, scores[0], -np.inf)
    hi = np.where(visible, scores[1], -np.inf)
    M_hi = np.max(hi, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        d_lo = np.where(visible, down(lo - M_hi), -np.inf)
        d_hi = np.where(visible, up(hi - M_hi), -np.inf)
    if not ex.exact:
        # The executed shift m (some computed score, in [max lo, max hi]) is common to the row, so it cancels
        # from every ratio except through the rounding of s_j - m: |fl(s_j - m) - (s_j - m)| <= u |s_j - m|.
        M_lo = np.max(lo, axis=-1, keepdims=True)
        with np.errstate(invalid="ignore"):
            D = np.where(visible, up(np.maximum(np.abs(lo - M_hi), np.abs(hi - M_lo))), 0.0)
            d_lo = np.where(visible, down(d_lo - ex.u * D), -np.inf)
            d_hi = np.where(visible, up(d_hi + ex.u * D), -np.inf)
    e_lo = exp((d_lo, d_lo), ex)  # encloses e^{d_lo}
    e_hi = exp((d_hi, d_hi), ex)  # encloses e^{d_hi}
    n = int(visible.shape[-1])
    g = gamma(max(n, 1))
    tot_hi = up(np.sum(e_hi[1], axis=-1, keepdims=True) * (1 + 4 * g) + n * ETA)
    tot_lo = np.maximum(0.0, down(np.sum(e_lo[0], axis=-1, keepdims=True) * (1 - 4 * g)))
    others_hi = np.maximum(0.0, up(tot_hi - e_hi[0]))  # >= sum_{k != j} e^{hi_k}
    others_lo = np.maximum(0.0, down(tot_lo - e_lo[1]))  # <= sum_{k != j} e^{lo_k}
    a = e_lo[0]
    A_lo = np.where(a > 0, down(a / up(a + others_hi)), 0.0)
    b = e_hi[1]
    den = down(b + others_lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        A_hi = np.where(den > 0, up(b / den), 1.0)
    if not ex.exact:  # executed sum (gamma_n) and division (u)
        f = ex.dot(n) + ex.u
        A_lo = np.maximum(0.0, down(A_lo * (1 - f) / (1 + f) - ex.eta))
        A_hi = up(A_hi * (1 + f) / (1 - f) + ex.eta)
    A_lo = np.where(visible, np.clip(A_lo, 0.0, 1.0), 0.0)
    A_hi = np.where(visible, np.clip(A_hi, 0.0, 1.0), 0.0)
    return A_lo, A_hi
