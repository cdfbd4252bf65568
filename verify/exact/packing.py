"""Exact per-instance proof of the packing construction: every packed value, every input, in rationals.

In the hardmax limit the decision for inputs (u_1, ..., u_L) depends on coordinate u_1 of the virtual
token (the packed value, one of V^D grid points) and on the other coordinates only through select
units that must be off for every value they can take. So the forward pass runs once per (packed
value, input tuple), in exact rationals (`prefixproof.verify.exact.hardmax.HardmaxOps`), with the other coordinates as
exact intervals [0, 1 - V^-D]; every ReLU must be decided and every logit must equal the grid logit
of the digit the input selects.
"""
from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from prefixproof.constructions.packing import Packing
from prefixproof.verify.semantics.forward import forward
from prefixproof.verify.exact.hardmax import Form, HardmaxOps, Undecided, exact_dense, q
from prefixproof.verify.verdict import Coverage, Record, Verdict

LIMIT = 2_000_000  # sequences x positions x width the exact evaluator takes at most


def exhaustive_exact(claim: str, c: Packing, params: dict[str, int]) -> Record:
    """Every packed value x every input in exact rationals (hardmax attention); `params` label the record.

    Longer than 60 lines on purpose: the exact evaluation is one loop over packed values whose bookkeeping
    (budget, forms, record) reads best in one place."""
    t0 = time.perf_counter()
    V, L, D = c.V, c.L, c.D
    model = c.model()
    d = model.d_model
    n_values, n_inputs = V ** D, V ** L
    common = dict(claim=claim, obligation="exact-lookup", method="exact rationals, hardmax attention, every packed "
                  "value x every input", arithmetic="exact (rationals)", params=dict(params))
    if n_values * n_inputs * (L + 1) * d > LIMIT:
        return Record(verdict=Verdict.UNKNOWN, reason=f"V^D x V^L = {n_values} x {n_inputs} exact evaluations "
                      "exceed the exact evaluator's budget; the lemmas stay parametric", **common,
                      seconds=time.perf_counter() - t0)
    stream = c.stream
    pay = stream.block("pay")
    E = exact_dense(model.embed)
    top = q(Fraction(V ** D - 1, V ** D))
    B = n_values * n_inputs
    lo = np.empty((B, L + 1, d), dtype=object)
    lo[...] = q(0)
    hi, b = lo.copy(), lo.copy()
    inputs = np.array([[(a // V ** (L - 1 - l)) % V for l in range(L)] for a in range(n_inputs)])
    values = [q(Fraction(v, V ** D)) for v in range(n_values)]
    expected = np.empty(B, dtype=np.int64)
    for v in range(n_values):
        digits = [(v // V ** (D - 1 - i)) % V for i in range(D)]
        for a, us in enumerate(inputs):
            r = v * n_inputs + a
            hi[r, 0, pay] = top  # every coordinate may hold any packed value ...
            lo[r, 0, pay[us[0]]] = hi[r, 0, pay[us[0]]] = values[v]  # ... except u_1's, fixed to this one
            for l, u in enumerate(us):
                lo[r, l + 1, :], hi[r, l + 1, :] = E[u], E[u]
            i = 0
            for u in us[1:]:
                i = i * V + int(u)
            expected[r] = digits[i]
    try:
        logits = forward(model, None, Form(lo, hi, b), ops=HardmaxOps(t_max=q(0)), outputs_at=[L]).logits[:, 0]
    except Undecided as e:
        return Record(verdict=Verdict.UNKNOWN, reason=f"the exact evaluation does not decide: {e}", **common,
                      seconds=time.perf_counter() - t0)
    bad = None
    for r in range(B):
        y = int(expected[r])
        for j in range(V):
            f = logits[r, j]
            want = q(Fraction(2 * j * y, V * V) - Fraction(j * j, V * V))  # grid logit at x = y/V
            if not f.lo == f.hi == want:
                bad = (r, j)
                break
        if bad:
            break
    cov = Coverage(B, B, f"{V}^{D} x {V}^{L}")
    details = {"statement": "every packed value of u_1's coordinate and every input give exactly the grid logits "
                            "of the selected digit, whatever the other coordinates hold",
               "per_instance": ", ".join(f"{k}={v}" for k, v in params.items())}
    if bad:
        r, j = bad
        return Record(verdict=Verdict.UNKNOWN, reason=f"value {r // n_inputs}, input {inputs[r % n_inputs].tolist()}: "
                      f"logit {j} is not the grid logit of digit {expected[r]}", coverage=cov, details=details,
                      seconds=time.perf_counter() - t0, **common)
    return Record(verdict=Verdict.PROVED, coverage=cov, details=details, seconds=time.perf_counter() - t0, **common)
