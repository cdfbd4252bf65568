"""The checker's executed-rounding bounds (docs/certificate-format.md, "The executed arithmetic") against exact
rational values (python-flint fmpq) and real executions in several summation orders, each with a negative control
that the same comparison must catch: a Dense layer whose decided-off inputs are exactly 0 (gamma_(n+1) with n the
products that may be non-zero), a decoder logit fl(fl(w x) + c), the softmax enclosed key by key, and the
projection of a fixed token fl(M fl(E + P))."""
from __future__ import annotations

import numpy as np
import pytest
from flint import fmpq

from prefixproof.checker import iv
from prefixproof.checker.attention import softmax
from prefixproof.checker.blocks import dense_error


def _q(x) -> fmpq:
    return fmpq(*float(x).as_integer_ratio())


def _rn(q: fmpq, dtype) -> float:
    """q rounded to nearest (ties to even) in dtype, exactly: the nearest of three neighbours."""
    c = np.asarray(float(q.p) / float(q.q), dtype=np.float64).astype(dtype)
    cands = [np.nextafter(c, dtype(-np.inf)), c, np.nextafter(c, dtype(np.inf))]
    key = [(abs(_q(x) - q), int(np.asarray(x).view(np.uint32 if dtype == np.float32 else np.uint16)) & 1)
           for x in cands]
    return float(cands[min(range(3), key=lambda i: key[i])])


def _executions(w, x, b, dtype):
    """Executed w . x + b in dtype: separate roundings in four orders (zeros interleaved), fused multiply-adds,
    numpy's matmul then the bias, a float64 accumulator rounded once."""
    F = dtype
    idx = np.arange(len(w))
    rng = np.random.default_rng(len(w))
    orders = [idx, idx[::-1], rng.permutation(idx)]
    out = []
    for o in orders:
        s = F(b)
        for i in o:
            s = F(s + F(F(w[i]) * F(x[i])))
        out.append(float(s))
    terms = [F(F(w[i]) * F(x[i])) for i in idx] + [F(b)]
    while len(terms) > 1:  # pairwise
        terms = [F(terms[i] + terms[i + 1]) if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    out.append(float(terms[0]))
    s = _q(b)
    for i in idx:  # fused: each step w_i x_i + s rounded once
        s = _q(_rn(_q(w[i]) * _q(x[i]) + s, F))
    out.append(float(s))
    out.append(float((np.asarray(w, F) @ np.asarray(x, F)) + F(b)))
    out.append(float(F(np.dot(np.asarray(w, np.float64), np.asarray(x, np.float64)) + float(b))))
    return out


def _dense_cases(rng, dtype, K=60, m=48, live=12):
    """Rows of m inputs of which `live` are non-zero (the rest decided off: exactly 0), same-sign products so
    that roundings accumulate."""
    for _ in range(K):
        w = rng.uniform(1, 2, m).astype(dtype).astype(np.float64)
        x = np.zeros(m)
        on = rng.choice(m, live, replace=False)
        x[on] = rng.uniform(1, 2, live).astype(dtype).astype(np.float64)
        yield w, x, float(dtype(rng.uniform(0, 4))), x != 0


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_dense_bound_counts_only_live_inputs_and_holds_in_every_order(dtype):
    fmt = np.dtype(dtype).name
    u, eta, _ = iv.FORMATS[fmt]
    rng = np.random.default_rng(0)
    worst = 0.0  # the largest error seen, in units of the negative control's bound
    for w, x, b, live in _dense_cases(rng, dtype):
        exact = sum((_q(a) * _q(c) for a, c in zip(w, x)), _q(b))
        bound = float(dense_error(w[None, None, :], live[None, :], np.abs(x)[None, :], np.array([b]), u, eta)[0, 0])
        control = iv.gamma(2, u) * (float(np.abs(w) @ np.abs(x)) + abs(b))  # one rounding per sum: too tight
        for got in _executions(w, x, b, dtype):
            err = abs(_q(got) - exact)
            assert err <= _q(bound), (got, float(exact), bound)
            worst = max(worst, float(err) / control)
    assert worst > 1, worst  # the negative control is caught by some execution


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_decoder_logit_bound_holds_separately_and_fused(dtype):
    u, eta, _ = iv.FORMATS[np.dtype(dtype).name]
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(400):
        w, x, c = (float(dtype(v)) for v in (rng.uniform(0, 2), rng.uniform(0, 1), -rng.uniform(0, 1)))
        exact = _q(w) * _q(x) + _q(c)
        got = [float(dtype(dtype(w * x) + dtype(c))), _rn(exact, dtype)]
        bound = u * (1 + 2 * u) * (abs(w) * abs(x) + abs(float(exact))) + 2 * eta  # the checker's, per logit
        for g in got:
            err = float(abs(_q(g) - exact))
            assert err <= bound
            worst = max(worst, err / (0.5 * bound))
    assert worst > 1  # half the bound is violated: the control is caught


def _softmax_runs(s, dtype):
    """Executed softmax weights of score rows s (values of dtype): max shift, exp, sum in three orders (one of them
    in float32), division."""
    F = dtype
    m = s.max(axis=1, keepdims=True)
    e = np.exp((s - m).astype(F)).astype(F)
    sums = [e.sum(axis=1, dtype=F, keepdims=True),  # numpy's pairwise
            np.cumsum(e[:, ::-1], axis=1, dtype=F)[:, -1:],  # sequential, reversed
            e.astype(np.float32).sum(axis=1, keepdims=True).astype(F)]  # a wider accumulator
    return [(e / Z).astype(F).astype(np.float64) for Z in sums]


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_softmax_enclosure_contains_executions_and_real_only_is_caught(dtype):
    fmt = np.dtype(dtype).name
    u, eta, exp_u = iv.FORMATS[fmt]
    rng = np.random.default_rng(2)
    s = (rng.standard_normal((400, 8)) * rng.uniform(0.5, 6, (400, 1))).astype(dtype).astype(np.float64)
    vis = np.ones(s.shape, dtype=bool)
    lo, hi = softmax((s, s), vis, u, eta, exp_u)
    rlo, rhi = softmax((s, s), vis, 0.0, 0.0, exp_u)  # negative control: the real softmax, no executed rounding
    missed = 0
    for A in _softmax_runs(s.astype(dtype), dtype):
        assert np.all((lo <= A) & (A <= hi))
        missed += int(np.sum((A < rlo) | (A > rhi)))
    assert missed > 0


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_fixed_token_projection_contains_executions_and_the_real_product_is_caught(dtype):
    """fl(M fl(E[tok] + P[p])) at a fixed position (scores' queries and keys) in every order of `_executions`."""
    from prefixproof.checker.attention import Inputs

    fmt = np.dtype(dtype).name
    u, eta, _ = iv.FORMATS[fmt]
    rng = np.random.default_rng(3)
    M, E, P = (rng.uniform(0.5, 2, shape).astype(dtype).astype(np.float64) for shape in ((6, 8), (5, 8), (2, 8)))
    inp = object.__new__(Inputs)  # project reads E, P and eta only
    inp.E, inp.P, inp.eta = E, P, eta
    toks = np.arange(5)
    lo, hi = inp.project(M, toks, 1, u)
    rlo, rhi = inp.project(M, toks, 1, 0.0)  # negative control: no executed rounding
    missed = 0
    for t in toks:
        x = (E[t] + P[1]).astype(dtype).astype(np.float64)
        for o in range(M.shape[0]):
            for got in _executions(M[o], x, 0.0, dtype):
                assert lo[o, t] <= got <= hi[o, t]
                missed += not (rlo[o, t] <= got <= rhi[o, t])
    assert missed > 0
