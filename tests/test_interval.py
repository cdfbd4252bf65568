"""Interval primitives enclose every sampled point, and the enclosure tests can fail."""
import numpy as np
from hypothesis import given, strategies as st

from prefixproof.verify.certify import interval as I


def boxes(rng, shape, width):
    c = rng.normal(size=shape) * rng.choice([1e-3, 1.0, 30.0])
    r = np.abs(rng.normal(size=shape)) * width
    return (c - r, c + r)


def sample(rng, box, k):
    lo, hi = box
    return [lo + (hi - lo) * rng.uniform(size=lo.shape) for _ in range(k)] + [lo, hi]


def encloses(box, values) -> bool:
    return all(np.all(box[0] <= v) and np.all(v <= box[1]) for v in values)


@given(seed=st.integers(0, 10**6), width=st.sampled_from([0.0, 1e-12, 1e-3, 1.0]))
def test_linear_and_matmul_enclose(seed, width):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(5, 7)) * rng.choice([1e-8, 1.0, 1e8])
    x = boxes(rng, (3, 7), width)
    y = I.linear(x, W)
    assert encloses(y, [p @ W.T for p in sample(rng, x, 20)])
    A, B = boxes(rng, (4, 6), width), boxes(rng, (6, 3), width)
    C = I.matmul(A, B)
    assert encloses(C, [a @ b for a, b in zip(sample(rng, A, 20), sample(rng, B, 20))])


@given(seed=st.integers(0, 10**6), width=st.sampled_from([0.0, 0.01, 1.0]), spread=st.sampled_from([1.0, 20.0, 700.0]))
def test_softmax_encloses_and_beats_naive(seed, width, spread):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(3, 8)) * spread
    vis = np.tril(np.ones((3, 8), dtype=bool), 5)
    box = (s - width, s + width)
    A = I.softmax(box, vis)
    pts = []
    for p in sample(rng, box, 30):
        q = np.where(vis, p, -np.inf)
        e = np.exp(q - q.max(-1, keepdims=True))
        pts.append(e / e.sum(-1, keepdims=True))
    assert encloses(A, pts)
    # naive exp/sum-exp with intervals is wider (DESIGN: several times too wide)
    top = np.where(vis, s, -np.inf).max(-1, keepdims=True)
    lo_e, hi_e = np.exp(np.where(vis, box[0], -np.inf) - top), np.exp(np.where(vis, box[1], -np.inf) - top)
    lo_e, hi_e = np.where(vis, lo_e, 0), np.where(vis, hi_e, 0)
    naive_w = hi_e / lo_e.sum(-1, keepdims=True) - lo_e / hi_e.sum(-1, keepdims=True)
    if width > 0:  # (at width 0 only rounding padding remains)
        assert np.all((A[1] - A[0])[vis] <= naive_w[vis] + 1e-12)


def test_enclosure_check_catches_a_shrunken_box():
    """Negative control: shave 10% off each side of a matmul enclosure and sampled points fall outside."""
    rng = np.random.default_rng(5)
    A, B = boxes(rng, (4, 6), 1.0), boxes(rng, (6, 3), 1.0)
    C = I.matmul(A, B)
    w = C[1] - C[0]
    shrunk = (C[0] + 0.1 * w, C[1] - 0.1 * w)
    pts = [a @ b for a, b in zip(sample(rng, A, 200), sample(rng, B, 200))]
    assert not encloses(shrunk, pts)


def test_exp_and_rounding_assumptions_hold_here():
    from prefixproof.verify.certify.float_env import check_environment

    check_environment()
    x = np.array([-745.0, -700.0, -1.0, 0.0, 1e-300, 700.0])
    lo, hi = I.exp((x, x))
    assert np.all(lo <= np.exp(x)) and np.all(np.exp(x) <= hi) and lo[0] == 0.0


def test_chain_product_encloses_exact_product():
    from fractions import Fraction

    rng = np.random.default_rng(3)
    mats = [rng.normal(size=(3, 4)), rng.normal(size=(4, 5)), rng.normal(size=(5, 2))]
    from prefixproof.verify.certify.chain import chain_product

    c, r = chain_product(mats)
    exact = [[Fraction(0)] * 2 for _ in range(3)]
    for i in range(3):
        for j in range(2):
            exact[i][j] = sum(Fraction(mats[0][i, a]) * Fraction(mats[1][a, b]) * Fraction(mats[2][b, j])
                              for a in range(4) for b in range(5))
    for i in range(3):
        for j in range(2):
            assert Fraction(c[i, j]) - Fraction(r[i, j]) <= exact[i][j] <= Fraction(c[i, j]) + Fraction(r[i, j])
