"""Certificate of the packing construction in an executed arithmetic (docs/certificates.md, "Packing").

The decision depends on the packed value r of coordinate u_1 through D digit stages. The packing lemma
(verify/symbolic.py) says every stage decides exactly when the value it reads is within g_k/4 of the
grid; so the certificate is a recursion on one number, the error E_k of x_k, enclosed rigorously:

  E_0      from the first-layer forms of the selected unit (attention leak, executed rounding; stage 1
           of the lookup certificate, verify/cert_attention.py) plus the encoder's rounding of r;
  stage k  the threshold units' argument A may move by (2/g_k) V E_k, by the rounding of its own
           dot product, and by the difference between the model's weights and the exact ones; the
           stage is exact when the sum stays below 1/2 (the saturated ReLU pair then gives exactly
           0 or 1 in any format); then E_(k+1) = V E_k + rounding of V x_k - d_k;
  output   the selected digit d/V, off by the selection's error, decoded by the grid lemma.

Exact-zero terms add no rounding: non-selected select, sel and accumulator terms are exactly 0 here.
"""
from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import Any

import numpy as np

from constructions.model import Model, materialize
from constructions.packing import Packing
from theorems.base import RunContext
from verify import interval as I
from verify.cert_attention import Unsupported, first_layer_forms
from verify.checker import DecodeProblem, check_decoding, evaluate_boxes
from verify.claims import LookupRows
from verify.decoder import grid_fit, grid_margins
from verify.dtypes import round_model, round_to
from verify.interval import Exec, PrecisionExhausted, exec_for
from verify.verdict import Coverage, Record, Verdict

FALLBACK_MAPS = 20  # maps the counterexample search draws when the certificate does not decide


def packing_rows(c: Packing, payload: np.ndarray, tmax: float) -> LookupRows:
    V, L = c.V, c.L
    a = np.arange(V ** L)
    digits = np.stack([(a // V ** (L - 1 - l)) % V for l in range(L)], axis=1)
    tau = np.array([0.0, tmax])
    return LookupRows(np.asarray(payload), tau, tau.copy(), False, query_pos=np.full(len(a), L), own=digits[:, 0],
                      n_positions=L + 1, virtual=1, fixed_pos=tuple(range(1, L + 1)), fixed_tok=digits)


def _deviation(actual: Any, exact: Any) -> np.ndarray:
    """Row sums of |actual - exact| for a weight matrix (the model's floats against the construction's rationals)."""
    A = actual.toarray() if hasattr(actual, "toarray") else np.asarray(actual, dtype=np.float64)
    out = np.zeros(A.shape[0])
    E = np.zeros(A.shape)
    for (i, j), v in exact.entries.items():
        E[i, j] = float(v)
        diff = abs(Fraction(float(A[i, j])) - v)
        out[i] += float(diff)
    # entries the construction leaves at zero
    out += np.abs(np.where(E == 0, A, 0.0)).sum(axis=1)
    return I.up(out * (1 + 4 * I.U))


def analyse(model: Model, c: Packing, ex: Exec, encoder_dtype: str | None) -> dict[str, Any]:
    """The error recursion; returns {'certified': bool, 'margin': lower bound, 'reason': str | None, ...}."""
    exact = c.model()
    V, D, L = c.V, c.D, c.L
    stream = c.stream
    pay = np.array(stream.block("pay"))
    tmax = float(I.up((V ** D - 1) / V ** D))
    if encoder_dtype is not None:
        tmax = float(round_to(tmax, encoder_dtype).astype(np.float64))
    rows = packing_rows(c, pay, max(tmax, 1e-300))
    first = first_layer_forms(model, rows, ex)
    layer = model.layers[0]
    select = [model.layers[0].hidden[0].index(f"select:{a}") for a in range(V)]
    is_own = first.units == np.array(select)[rows.own[first.rows]]
    is_select = np.isin(first.units, select)
    T = (np.zeros(len(first.rows)), np.full(len(first.rows), tmax))
    pre = I.add(first.c, I.mul(first.b, T))
    if np.any(pre[1][is_select & ~is_own] > 0):
        return {"certified": False, "reason": "a select unit other than u_1's can be active", "stage": "select"}
    # E_0: x_0 = ReLU(c + b t) against t, over t in [0, tmax].
    c_own, b_own = (first.c[0][is_own], first.c[1][is_own]), (first.b[0][is_own], first.b[1][is_own])
    slope = np.maximum(np.abs(b_own[0] - 1), np.abs(b_own[1] - 1))
    E0 = float(np.max(np.maximum(np.abs(c_own[0]), np.abs(c_own[1])) + slope * tmax))
    if np.any(b_own[0] <= 0):
        return {"certified": False, "reason": "the selected unit does not grow with the packed value", "stage": "select"}
    E0 = max(E0, float(np.max(np.maximum(np.abs(c_own[0]), np.abs(c_own[1])) / b_own[0])))
    u = ex.u
    E0 += ex.dot(V) * 1.0 + (0.0 if encoder_dtype is None else _enc_err(encoder_dtype))
    # idx: the true index unit >= 1 - (L-1)(1 - min true keep), every other <= max false keep (+ rounding)
    R, H1 = rows.rows, layer.hidden[0].dim
    lo_m, hi_m = np.full((R, H1), -np.inf), np.zeros((R, H1))  # pairs not listed are off everywhere
    lo_m[first.rows, first.units], hi_m[first.rows, first.units] = pre
    true_lo, false_hi = 1.0, 0.0
    for l in range(2, L + 1):
        units = np.array([layer.hidden[0].index(f"keep{l}:{b}") for b in range(V)])
        tok = rows.fixed_tok[:, l - 1]
        mine = np.zeros((R, V), dtype=bool)
        mine[np.arange(R), tok] = True
        true_lo = min(true_lo, float(lo_m[:, units][mine].min()))
        false_hi = max(false_hi, float(np.maximum(hi_m[:, units][~mine], 0.0).max(initial=0.0)))
    idx_true_lo = 1.0 - (L - 1) * (1.0 - min(true_lo, 1.0)) - ex.dot(L) * L
    idx_false_hi = false_hi + ex.dot(L) * L
    # stages
    E = E0
    dense = [materialize(model).layers[0].mlp[k] for k in range(len(layer.mlp))]
    exact_dense = exact.layers[0].mlp
    worst = 0.0
    for k in range(D):
        g_inv = V ** (D - 1 - k)
        lay = 2 + 2 * k  # Dense index of stage k's first layer (0: select, 1: start)
        dev = _deviation(dense[lay].W, exact_dense[lay].W) + _deviation(dense[lay].b[:, None], _as2(exact_dense[lay].b))
        dev_inv = float(dev[:V - 1].max())
        terms = 4.0 * g_inv * V * V + 1.0
        shift = float(I.up(2.0 * g_inv * V * E + ex.dot(V + 1) * terms + dev_inv * (1 + terms)))
        worst = max(worst, shift)
        if not shift < 0.5:
            return {"certified": False, "stage": k, "E0": E0, "E": E, "shift": shift,
                    "reason": f"digit stage {k}: the threshold argument may move by {shift:.3g} >= 1/2 "
                              f"(error of x_{k} {E:.3g}, grid step g = V^-{D - 1 - k})"}
        E = float(I.up(V * E + ex.dot(V) * (2 * V - 1)))
    inv_lo = float(I.down(1.0 / V))
    sel_err = float(I.up((1 - idx_true_lo) + abs(float(Fraction(1, V)) - 1 / V) * V + ex.dot(V + 1) * 3))
    if not idx_false_hi < inv_lo - ex.dot(V + 1) * 3:
        return {"certified": False, "stage": "select digit", "reason": "an unselected digit can pass its ReLU"}
    fit = grid_fit(np.asarray(dense[-1].W.toarray() if hasattr(dense[-1].W, "toarray") else dense[-1].W),
                   np.asarray(dense[-1].b, dtype=np.float64))
    e = (np.array([-sel_err]), np.array([sel_err]))
    mid = np.array([max(1, V // 2)])
    margin = float(min(grid_margins(e, mid, mid, V)[0], grid_margins(e, np.array([0]), np.array([0]), V)[0],
                       grid_margins(e, np.array([V - 1]), np.array([V - 1]), V)[0]) - fit.slack(np.array([1.0]), ex)[0])
    return {"certified": margin > 0, "margin": margin, "E0": E0, "E_final": E, "worst_shift": worst,
            "reason": None if margin > 0 else f"decode margin bound {margin:.3g} <= 0 (selection error {sel_err:.3g})",
            "u": u}


def _as2(vec):
    from constructions.basis import ExactArray

    return ExactArray((vec.shape[0], 1), {(k[0], 0): v for k, v in vec.entries.items()})


def _enc_err(dtype: str) -> float:
    """Largest |fl(r) - r| for r in [0, 1): half an ulp at 1/2..1 in the format."""
    return {"float64": 2.0**-54, "float32": 2.0**-25, "float16": 2.0**-12, "bfloat16": 2.0**-9}[dtype]


def certify_packing(claim: str, model: Model, c: Packing, problem: DecodeProblem, ctx: RunContext) -> Record:
    t0 = time.perf_counter()
    ex = exec_for(ctx.dtype)
    common: dict[str, Any] = dict(claim=claim, obligation="decode", arithmetic=ex.name, params=dict(ctx.params),
                                  seed=ctx.seed, dtype=ctx.dtype)
    method = "packing certificate: stage-1 enclosure, then the digit-stage error recursion (packing lemma)"
    try:
        run = round_model(model, ctx.dtype)
        result = analyse(run, c, ex, ctx.dtype)
    except (Unsupported, PrecisionExhausted) as e:
        result = {"certified": False, "reason": str(e)}
    except ValueError as e:  # weights beyond the format's range cannot even be stored
        result = {"certified": False, "reason": f"the weights do not fit {ctx.dtype}: {e}"}
    details = {"packing_certificate": {k: v for k, v in result.items() if k != "certified"}}
    if result["certified"] and ctx.min_margin <= result["margin"]:
        check = evaluate_boxes(model, problem, [(0, 0), (problem.K - 1, problem.V - 1)], dtype=ctx.dtype,
                               seed=ctx.seed) if _runnable(ctx.dtype, c) else None
        if check is not None and (check["counterexample"] is not None or check["min_margin"] < result["margin"]):
            return Record(verdict=Verdict.ERROR, method=method, reason=f"a numeric run went below the certified "
                          f"margin {result['margin']:.3g}", counterexample=check["counterexample"],
                          seconds=time.perf_counter() - t0, details=details, **common)
        return Record(verdict=Verdict.CERTIFIED, method=method, coverage=Coverage(problem.total, problem.total,
                      problem.form), min_margin=result["margin"], seconds=time.perf_counter() - t0, details=details,
                      **common)
    if not _runnable(ctx.dtype, c) or not ctx.extra.get("cross_checks", True):
        return Record(verdict=Verdict.UNKNOWN, method=method, reason=result["reason"], details=details,
                      seconds=time.perf_counter() - t0, **common)
    num = check_decoding(model, problem, claim=claim, params=dict(ctx.params),
                         samples=ctx.samples if "numeric" in ctx.levels else FALLBACK_MAPS, seed=ctx.seed,
                         dtype=ctx.dtype, min_margin=ctx.min_margin, progress=ctx.reporter(claim))
    if num.verdict in (Verdict.FALSIFIED, Verdict.ERROR):
        return Record(verdict=num.verdict, method=method + "; " + num.method, reason=num.reason,
                      coverage=num.coverage, min_margin=num.min_margin, counterexample=num.counterexample,
                      seconds=time.perf_counter() - t0, details=details, **common)
    return Record(verdict=Verdict.UNKNOWN, method=method, reason=f"{result['reason']}; no counterexample in "
                  f"{num.coverage.covered if num.coverage else 0} inputs", coverage=num.coverage,
                  min_margin=num.min_margin, details=details, seconds=time.perf_counter() - t0, **common)


def _runnable(dtype: str, c: Packing) -> bool:
    """Whether the weights can be stored in the format at all (the largest is about 4 V^(D+1))."""
    big = 4.0 * float(c.V) ** (c.D + 1)
    limit = {"float16": 65504.0, "bfloat16": 3.39e38}.get(dtype, math.inf)
    return big < limit
