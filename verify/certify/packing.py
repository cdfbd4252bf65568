"""Certificate of the packing construction in an executed arithmetic (docs/certificates.md, "The packing certificate").

Every weight of the model enters the bound, and no layer is assumed to be the construction's:

  stage 1  attention (every head's W_Q, W_K, W_V, W_O and scale, E, P) and the first MLP layer, as affine
           forms in the stored packed value (verify/certify/attention.py); compared with the ideal select/keep
           values of the exact construction, plus the encoder's rounding of r;
  MLP      every later Dense layer, its weights and biases against the exact construction's rationals,
           with the executed rounding and the saturating ReLU pairs of the digit stages decided on the
           model's own weights (verify/certify/packing_recursion.py);
  decoder  the value's error against m(u)/V, decoded with the decoder's own weights and rounding.

A stage that cannot be enclosed gives UNKNOWN("stage not covered: ..."), never CERTIFIED.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np

from prefixproof.constructions.model import Model, materialize
from prefixproof.constructions.packing import Packing
from prefixproof.theorems.base import RunContext
from prefixproof.verify.certify import interval as I
from prefixproof.verify.certify.attention import Unsupported, first_layer_forms
from prefixproof.verify.certify.packing_recursion import Digits, State, Uncovered, decode_margin, exact_parts, run_hidden
from prefixproof.verify.numeric.decoding import DecodeProblem, check_decoding, evaluate_boxes
from prefixproof.verify.certify.lookup_rows import LookupRows
from prefixproof.verify.semantics.formats import round_model, round_to
from prefixproof.verify.certify.interval import Exec, PrecisionExhausted, exec_for
from prefixproof.verify.verdict import Coverage, Record, Verdict

FALLBACK_MAPS = 20  # maps the counterexample search draws when the certificate does not decide


def packing_rows(c: Packing, payload: np.ndarray, tmax: float) -> LookupRows:
    V, L = c.V, c.L
    a = np.arange(V ** L)
    digits = np.stack([(a // V ** (L - 1 - l)) % V for l in range(L)], axis=1)
    tau = np.array([0.0, tmax])
    return LookupRows(np.asarray(payload), tau, tau.copy(), False, query_pos=np.full(len(a), L), own=digits[:, 0],
                      n_positions=L + 1, virtual=1, fixed_pos=tuple(range(1, L + 1)), fixed_tok=digits)


def first_state(model: Model, c: Packing, rows: LookupRows, tmax: float, ex: Exec, enc_err: float) -> State:
    """Stage 1: (M, e) of every unit of the first MLP layer for every row, from the attention forms.

    The ideal (exact construction, hardmax) is select:u_1 = r, every other select 0, keep<l>:b = [u_l = b].
    A listed (row, unit) pair has pre-activation c + b t with t the stored packed value in [0, tmax] and
    |t - r| <= enc_err; an unlisted pair is dead (exactly 0)."""
    layer = model.layers[0]
    exact_space = exact_parts(c)[0].layers[0].hidden[0]
    first = first_layer_forms(model, rows, ex)
    R, H1 = rows.rows, first.n_units
    if H1 != exact_space.dim:
        raise Uncovered(f"stage not covered: the first MLP layer has {H1} units, the construction {exact_space.dim}")
    ideal = np.zeros((R, H1))
    own_unit = np.array([exact_space.index(f"select:{a}") for a in range(c.V)])[rows.own]
    for l in range(2, c.L + 1):
        for b in range(c.V):
            ideal[rows.fixed_tok[:, l - 1] == b, exact_space.index(f"keep{l}:{b}")] = 1.0
    M = ideal.copy()
    M[np.arange(R), own_unit] = 1.0  # r < 1
    e = M.copy()  # unlisted pairs are exactly 0: the error is the ideal itself
    T = (np.zeros(len(first.rows)), np.full(len(first.rows), tmax))
    pre = I.add(first.c, I.mul(first.b, T))
    fixed = np.maximum(np.abs(np.maximum(pre[0], 0.0) - ideal[first.rows, first.units]),
                       np.abs(np.maximum(pre[1], 0.0) - ideal[first.rows, first.units]))
    # the own select unit: |ReLU(c + b t) - r| <= |c + (b - 1) t| + |t - r|, affine in t: largest at an end
    slope = I.sub(first.b, I.point(np.ones(len(first.rows))))
    at_max = I.add(first.c, I.scale(slope, tmax))
    own = I.up(np.maximum(I.mag(first.c), I.mag(at_max)) + enc_err)
    is_own = first.units == own_unit[first.rows]
    e[first.rows, first.units] = np.where(is_own, own, I.up(fixed))
    if layer.mlp[0].W.shape[0] != H1:
        raise Uncovered("stage not covered: first-layer shapes disagree")
    return State(M, e)


def analyse(model: Model, c: Packing, ex: Exec, encoder_dtype: str | None) -> dict[str, Any]:
    """The error recursion; returns {'certified': bool, 'margin': lower bound, 'reason': str | None, ...}.

    Every weight enters: the attention (every head's W_Q, W_K, W_V, W_O and scale, E and P) and the first
    MLP layer through the stage-1 forms, every later Dense layer through packing_recursion, the decoder
    through decode_margin. A stage that cannot be enclosed gives certified False with the stage named."""
    V, D, L = c.V, c.D, c.L
    if model.unembed is not None:
        raise Uncovered("stage not covered: an unembedding matrix (the packing construction has none)")
    exact_layer = exact_parts(c)[0].layers[0]
    layer = materialize(model).layers[0]
    if len(layer.mlp) != len(exact_layer.mlp) or len(layer.heads) != len(exact_layer.heads):
        raise Uncovered(f"stage not covered: {len(layer.heads)} heads and {len(layer.mlp)} Dense layers where the "
                        f"construction has {len(exact_layer.heads)} and {len(exact_layer.mlp)}")
    try:  # the payload as the model's own labels place it (the encoder writes the virtual token by them)
        pay = np.array(model.stream.block("pay"))
    except KeyError:
        raise Uncovered("stage not covered: the model's stream has no 'pay' block") from None
    if len(pay) != V:
        raise Uncovered(f"stage not covered: the 'pay' block has {len(pay)} coordinates, the construction {V}")
    tmax = float(I.up((V ** D - 1) / V ** D))
    enc = 0.0
    if encoder_dtype is not None:
        tmax = float(round_to(tmax, encoder_dtype).astype(np.float64))
        enc = _enc_err(encoder_dtype)
    rows = packing_rows(c, pay, max(tmax, 1e-300))
    s0 = first_state(model, c, rows, tmax, ex, enc)
    istar = np.zeros(rows.rows, dtype=np.int64)
    for l in range(2, L + 1):
        istar = istar * V + rows.fixed_tok[:, l - 1]
    s, info = run_hidden(layer, Digits(c, istar), s0, ex)
    e_value = float(s.e.max())
    E0 = float(s0.e.max())
    margin = decode_margin(layer.mlp[-1].W, layer.mlp[-1].b, e_value, V, ex)
    return {"certified": margin > 0, "margin": margin, "first_layer_error": E0, "value_error": e_value, **info,
            "reason": None if margin > 0 else f"decode margin bound {margin:.3g} <= 0 (value error {e_value:.3g})"}


def _enc_err(dtype: str) -> float:
    """Largest |t - r| for r in [0, 1) and t = fl_dtype(fl64(r)): half an ulp at 1/2..1 in the format, plus the
    float64 encoder's own half ulp when the value is rounded twice."""
    half = {"float64": 2.0**-54, "float32": 2.0**-25, "float16": 2.0**-12, "bfloat16": 2.0**-9}[dtype]
    return half if dtype == "float64" else half + 2.0**-54


def certify_packing(claim: str, model: Model, c: Packing, problem: DecodeProblem, ctx: RunContext) -> Record:
    """The ladder: certificate; then a numeric run beside it (extreme boxes by default, the full run with the
    numeric level). A numeric failure or a margin below the certified bound next to CERTIFIED is ERROR."""
    t0 = time.perf_counter()
    ex = exec_for(ctx.dtype)
    common: dict[str, Any] = dict(claim=claim, obligation="decode", arithmetic=ex.name, params=dict(ctx.params),
                                  seed=ctx.seed, dtype=ctx.dtype)
    method = "packing certificate: stage-1 enclosure, then every Dense layer against the exact construction"
    try:
        run = round_model(model, ctx.dtype)
        result = analyse(run, c, ex, ctx.dtype)
    except Unsupported as e:
        result = {"certified": False, "reason": f"stage not covered: attention and the first MLP layer: {e}"}
    except (Uncovered, PrecisionExhausted) as e:
        result = {"certified": False, "reason": str(e)}
    except ValueError as e:  # weights beyond the format's range cannot even be stored
        result = {"certified": False, "reason": f"the weights do not fit {ctx.dtype}: {e}"}
    details = {"packing_certificate": {k: v for k, v in result.items() if k != "certified"}}
    runnable = _runnable(ctx.dtype, c)
    numeric = "numeric" in ctx.levels
    if result["certified"] and ctx.min_margin <= result["margin"]:
        bound = result["margin"]
        if numeric and runnable:
            num = check_decoding(model, problem, claim=claim, params=dict(ctx.params), samples=ctx.samples,
                                 seed=ctx.seed, dtype=ctx.dtype, min_margin=ctx.min_margin,
                                 progress=ctx.reporter(claim))
            bad = num.verdict in (Verdict.FALSIFIED, Verdict.ERROR) or (
                num.min_margin is not None and num.min_margin < bound)
            details["numeric_run"] = {"verdict": num.verdict.name, "method": num.method, "min_margin": num.min_margin,
                                      "reason": num.reason}
            if bad:
                return Record(verdict=Verdict.ERROR, method=method + "; " + num.method,
                              reason=_disagreement(bound, num.verdict.name, num.min_margin, num.counterexample,
                                                   num.reason), coverage=num.coverage, min_margin=num.min_margin,
                              counterexample=num.counterexample, seconds=time.perf_counter() - t0, details=details,
                              **common)
        elif runnable:
            check = evaluate_boxes(model, problem, [(0, 0), (problem.K - 1, problem.V - 1)], dtype=ctx.dtype,
                                   seed=ctx.seed)
            details["numeric_run"] = {"method": "extreme boxes", "min_margin": check["min_margin"]}
            if check["counterexample"] is not None or check["min_margin"] < bound:
                verdict = "FALSIFIED" if check["counterexample"] is not None else "no failure on the extreme boxes"
                return Record(verdict=Verdict.ERROR, method=method, reason=_disagreement(
                    bound, verdict, check["min_margin"], check["counterexample"], None),
                    counterexample=check["counterexample"], seconds=time.perf_counter() - t0, details=details,
                    **common)
        return Record(verdict=Verdict.CERTIFIED, method=method, coverage=Coverage(problem.total, problem.total,
                      problem.form), min_margin=bound, seconds=time.perf_counter() - t0, details=details,
                      **common)
    if not runnable or not ctx.extra.get("cross_checks", True):
        return Record(verdict=Verdict.UNKNOWN, method=method, reason=result["reason"], details=details,
                      seconds=time.perf_counter() - t0, **common)
    num = check_decoding(model, problem, claim=claim, params=dict(ctx.params),
                         samples=ctx.samples if numeric else FALLBACK_MAPS, seed=ctx.seed,
                         dtype=ctx.dtype, min_margin=ctx.min_margin, progress=ctx.reporter(claim))
    if num.verdict in (Verdict.FALSIFIED, Verdict.ERROR):
        return Record(verdict=num.verdict, method=method + "; " + num.method, reason=num.reason,
                      coverage=num.coverage, min_margin=num.min_margin, counterexample=num.counterexample,
                      seconds=time.perf_counter() - t0, details=details, **common)
    return Record(verdict=Verdict.UNKNOWN, method=method, reason=f"{result['reason']}; no counterexample in "
                  f"{num.coverage.covered if num.coverage else 0} inputs", coverage=num.coverage,
                  min_margin=num.min_margin, details=details, seconds=time.perf_counter() - t0, **common)


def _disagreement(bound: float, verdict: str, margin: float | None, counterexample: Any, reason: str | None) -> str:
    """The two results that disagree, side by side."""
    text = f"the evaluators disagree: the certificate says CERTIFIED with decode margin >= {bound:.6g}, " \
           f"the numeric run says {verdict} with min margin {margin if margin is None else f'{margin:.6g}'}"
    if counterexample is not None:
        brief = {k: counterexample[k] for k in ("input", "expected", "failing_position") if k in counterexample}
        generated = (counterexample.get("confirmation") or {}).get("generated")
        if generated is not None:
            brief["generated"] = generated
        text += f" (counterexample {json.dumps(brief or counterexample, default=str)[:300]})"
    elif reason:
        text += f" ({reason})"
    return text


def _runnable(dtype: str, c: Packing) -> bool:
    """Whether the weights can be stored in the format at all (the largest is about 4 V^(D+1))."""
    big = 4.0 * float(c.V) ** (c.D + 1)
    limit = {"float16": 65504.0, "bfloat16": 3.39e38}.get(dtype, math.inf)
    return big < limit
