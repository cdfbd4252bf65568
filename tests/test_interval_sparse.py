"""The sparse interval products (verify/certify/interval_sparse.py) enclose the real products, agree with the
dense evaluation to within the float sums' own rounding, and keep outputs with no live term exactly 0."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

from prefixproof.verify.certify import interval as I
from prefixproof.verify.certify.interval_sparse import sparse_linear, sparse_matmul


def _sparse_iv(rng, shape, density):
    live = rng.random(shape) < density
    lo = np.where(live, rng.standard_normal(shape), 0.0)
    hi = np.where(live, lo + rng.random(shape) * (rng.random(shape) < 0.5), 0.0)
    return lo, hi


def _inside(x, lo, hi) -> bool:
    return bool(np.all(lo <= x) and np.all(x <= hi))


def _exact_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b in exact rational arithmetic, rounded to the nearest float64 only at the end; compared with
    enclosures that are float64 values, so the comparison errs by at most half an ulp of the product."""
    out = np.empty((a.shape[0], b.shape[1]))
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            out[i, j] = float(sum((Fraction(float(a[i, k])) * Fraction(float(b[k, j])) for k in range(a.shape[1])
                                   if a[i, k] != 0 and b[k, j] != 0), Fraction(0)))
    return out


def _sample(rng, iv):
    return iv[0] + rng.random(iv[0].shape) * (iv[1] - iv[0])


@pytest.mark.parametrize("fmt", ["float64", "float16"])
def test_sparse_linear_encloses_and_matches_dense(fmt: str) -> None:
    rng = np.random.default_rng(7)
    ex = I.exec_for(fmt)
    for trial in range(6):
        x = _sparse_iv(rng, (12, 15), 0.15)
        W = sp.random(9, 15, density=0.3, random_state=trial).toarray()
        live = (x[0] != 0) | (x[1] != 0)
        got = sparse_linear(x, live, sp.csr_array(W) if trial % 2 else W, ex, None)
        for _ in range(5):  # real products of points of the box lie inside (exact rational arithmetic)
            pt = _sample(rng, x)
            ref = _exact_product(pt, W.T)
            assert _inside(ref, got[0], got[1])
        dense = I.linear(x, W, ex)  # below the sparse dispatch's size: the dense evaluation
        scale = np.abs(dense[0]) + np.abs(dense[1]) + 1e-300
        assert np.max(np.abs(got[0] - dense[0]) / scale) < 1e-12 and np.max(np.abs(got[1] - dense[1]) / scale) < 1e-12
        no_term = (live.astype(float) @ (W != 0).T.astype(float)) == 0
        assert no_term.any() and np.all(got[0][no_term] == 0) and np.all(got[1][no_term] == 0)


def test_sparse_matmul_encloses_and_matches_dense() -> None:
    rng = np.random.default_rng(11)
    ex = I.exec_for("float64")
    for _ in range(6):
        A, B = _sparse_iv(rng, (10, 14), 0.2), _sparse_iv(rng, (14, 8), 0.2)
        ac, ar = I.mid_rad(A)
        bc, br = I.mid_rad(B)
        live_a = (ac != 0) | (ar != 0)
        got = sparse_matmul(ac, ar, bc, br, live_a, ex)
        for _ in range(5):
            ref = _exact_product(_sample(rng, A), _sample(rng, B))
            assert _inside(ref, got[0], got[1])
        aac, abc = np.abs(ac), np.abs(bc)
        dense = I._enclose_products(ac @ bc, aac @ abc, aac @ br + ar @ (abc + br),
                                    max(int(live_a.sum(axis=1).max()), 1), ex)
        assert np.allclose(got[0], dense[0], rtol=1e-12, atol=1e-300)
        assert np.allclose(got[1], dense[1], rtol=1e-12, atol=1e-300)


def test_negative_control_a_dropped_live_entry_is_caught() -> None:
    """The containment check above can fail: an enclosure with one live output replaced by the empty-sum
    enclosure (as if the pattern had lost an entry) no longer holds the real product."""
    rng = np.random.default_rng(3)
    x = _sparse_iv(rng, (12, 15), 0.3)
    W = sp.random(9, 15, density=0.5, random_state=0).toarray()
    live = (x[0] != 0) | (x[1] != 0)
    got = sparse_linear(x, live, W, I.exec_for("float64"), None)
    pt = _sample(rng, x)
    ref = _exact_product(pt, W.T)
    i, j = np.unravel_index(np.argmax(np.abs(ref)), ref.shape)
    assert abs(ref[i, j]) > 1e-3
    broken = (got[0].copy(), got[1].copy())
    broken[0][i, j] = broken[1][i, j] = 0.0
    assert _inside(ref, *got) and not _inside(ref, *broken)
