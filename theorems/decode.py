"""The `decode` obligation shared by the lookup theorems: every input decodes with a positive margin.

Methods, strongest first, chosen by the run's levels:

  certify  the structured interval certificate over the whole input set, at
           the real softmax scale, in the executed arithmetic (float64 by
           default). When it certifies, it is cross-checked: arb balls on a few
           boxes (including the tightest), and a numeric run on seeded
           samples. Any contradiction is ERROR.
           When it does not certify, the failing boxes are searched for a
           concrete counterexample (confirmed by incremental generation):
           FALSIFIED; otherwise UNKNOWN with the reason.
  numeric  the teacher-forced checker: CHECKED (exhaustive) or SAMPLED.

The record reports the strongest verdict reached.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from constructions.io import weights_sha256
from constructions.model import Model
from theorems.base import RunContext
from theorems.encoding import LookupEncoding
from verify.arb import cross_check
from verify.certify import box_bounds, certify_lookup
from verify.checker import DecodeProblem, check_decoding, evaluate_boxes, search_boxes
from verify.claims import LookupRows
from verify.dtypes import round_model
from verify.interval import REAL, exec_for
from verify.verdict import Coverage, Record, Verdict

ARB_LIMIT = 400_000  # arb cross-check only when (positions x width^2) per box stays below this
FALLBACK_INPUTS = 20_000  # inputs the numeric search may run when the certificate does not decide


@dataclass(frozen=True)
class LookupSpec:
    claim: str
    block: str  # stream block holding the payload
    rows: Callable[[np.ndarray, LookupEncoding, str | None], LookupRows]
    inputs: Callable[[LookupEncoding], DecodeProblem]
    construction: Callable[[RunContext], Model]


def run_decode(spec: LookupSpec, ctx: RunContext) -> Record:
    t0 = time.perf_counter()
    model = ctx.model if ctx.model is not None else spec.construction(ctx)
    enc = LookupEncoding.of(model, spec.block)
    problem = spec.inputs(enc)
    sha = ctx.weights_sha256 or weights_sha256(model)
    if "certify" not in ctx.levels:
        return check_decoding(model, problem, claim=spec.claim, params=dict(ctx.params), samples=ctx.samples,
                              seed=ctx.seed, dtype=ctx.dtype, weights_sha256=sha, min_margin=ctx.min_margin,
                              progress=ctx.reporter(spec.claim))

    ex = exec_for(ctx.dtype)
    run_model = round_model(model, ctx.dtype)
    claim = spec.rows(enc.payload, enc, ctx.dtype)
    cert, _ = certify_lookup(run_model, claim, ex, min_margin=ctx.min_margin,
                             progress=ctx.reporter(f"{spec.claim} certificate"))
    common: dict[str, Any] = dict(
        claim=spec.claim, obligation="decode", arithmetic=ex.name, params=dict(ctx.params), seed=ctx.seed,
        dtype=ctx.dtype, weights_sha256=sha,
    )
    details: dict[str, Any] = {"certificate": {"decoder": cert.decoder, "block_evaluations": cert.evaluations,
                                               "margin_lower_bound": cert.min_margin, "demanded_margin": ctx.min_margin}}
    method = f"structured interval certificate ({cert.decoder})"
    # Without the numeric level, the fallback numeric search is bounded to about FALLBACK_INPUTS inputs.
    numeric_samples = ctx.samples if "numeric" in ctx.levels else \
        max(1, min(ctx.samples, FALLBACK_INPUTS // max(problem.sample_count(1), 1)))
    if cert.certified and not ctx.extra.get("cross_checks", True):
        details["cross_checks"] = "skipped (precision sweep)"
        return Record(verdict=Verdict.CERTIFIED, method=method, coverage=Coverage(problem.total, problem.total,
                      problem.form), min_margin=cert.min_margin, seconds=time.perf_counter() - t0, details=details,
                      **common)
    if cert.certified:
        problems = _arb_check(run_model, enc, spec, claim, ex, ctx, details)
        # Numeric cross-check: concrete inputs from the extreme and some random boxes, in the same arithmetic
        # (the full sampled run as well with --level all). Each is one execution the certificate covers: its
        # margin may not fall below the bound, beyond the rounding of the final subtraction forming the margin.
        num = evaluate_boxes(model, problem, _check_boxes(claim.rows, claim.V, ctx.seed), dtype=ctx.dtype,
                             min_margin=ctx.min_margin, seed=ctx.seed)
        counterexample = num["counterexample"]
        if "numeric" in ctx.levels:
            full = check_decoding(model, problem, claim=spec.claim, params=dict(ctx.params), samples=ctx.samples,
                                  seed=ctx.seed, dtype=ctx.dtype, weights_sha256=sha, min_margin=ctx.min_margin,
                                  progress=ctx.reporter(spec.claim))
            num = {"min_margin": min(num["min_margin"], full.min_margin),
                   "inputs": num["inputs"] + full.coverage.covered, "counterexample": counterexample or full.counterexample}
        details["numeric_cross_check"] = {"inputs": num["inputs"], "min_margin": num["min_margin"]}
        if num["counterexample"] is not None or num["min_margin"] < cert.min_margin - 2**-50 * abs(cert.min_margin):
            problems.append(f"numeric evaluation found margin {num['min_margin']} below the certified bound "
                            f"{cert.min_margin}")
        if problems:
            return Record(verdict=Verdict.ERROR, method=method, reason="; ".join(problems),
                          counterexample=num["counterexample"], seconds=time.perf_counter() - t0,
                          details=details, **common)
        cov = Coverage(problem.total, problem.total, problem.form)
        method += (f"; cross-checked: arb on {details['arb_cross_check']['boxes']} boxes, "
                   f"numeric on {num['inputs']} inputs")
        return Record(verdict=Verdict.CERTIFIED, method=method, coverage=cov, min_margin=cert.min_margin,
                      seconds=time.perf_counter() - t0, details=details, **common)

    # Not certified: look for a real counterexample before saying UNKNOWN.
    boxes = [(r, y) for r, y, _ in cert.failures]
    found = search_boxes(model, problem, boxes, dtype=ctx.dtype, min_margin=ctx.min_margin, seed=ctx.seed)
    if found is not None and found["confirmation"]["fails"]:
        return Record(verdict=Verdict.FALSIFIED, method=method + "; counterexample from a failing box",
                      min_margin=found["teacher_forced_margin"], counterexample=found,
                      seconds=time.perf_counter() - t0, details=details, **common)
    if not ctx.extra.get("cross_checks", True):
        r, y, m = cert.failures[0] if cert.failures else (None, None, None)
        reason = cert.reason or f"certificate fails at box (row {r}, value {y}) with margin bound {m:.3g}; no " \
                                "counterexample in that box"
        return Record(verdict=Verdict.UNKNOWN, method=method, reason=reason, seconds=time.perf_counter() - t0,
                      details=details, **common)
    num = check_decoding(model, problem, claim=spec.claim, params=dict(ctx.params), samples=numeric_samples,
                         seed=ctx.seed, dtype=ctx.dtype, weights_sha256=sha, min_margin=ctx.min_margin,
                         progress=ctx.reporter(spec.claim))
    details["numeric"] = {"verdict": num.verdict_text, "min_margin": num.min_margin,
                          "inputs": None if num.coverage is None else num.coverage.covered}
    if num.verdict in (Verdict.FALSIFIED, Verdict.ERROR):
        return Record(verdict=num.verdict, method=method + "; " + num.method, reason=num.reason,
                      coverage=num.coverage, min_margin=num.min_margin, counterexample=num.counterexample,
                      seconds=time.perf_counter() - t0, details=details, **common)
    if cert.reason:
        reason = cert.reason
    elif num.coverage is None:
        r, y, m = cert.failures[0]
        reason = f"certificate fails at box (row {r}, value {y}) with margin bound {m:.3g}; numeric check: {num.reason}"
    else:
        r, y, m = cert.failures[0]
        reason = (f"certificate fails at box (row {r}, value {y}) with margin bound {m:.3g}; no counterexample "
                  f"in that box nor in {num.coverage.covered} {'exhaustive' if num.coverage.exhaustive else 'sampled'} inputs")
    return Record(verdict=Verdict.UNKNOWN, method=method, reason=reason, coverage=num.coverage,
                  min_margin=num.min_margin, seconds=time.perf_counter() - t0, details=details, **common)


def _check_boxes(R: int, V: int, seed: int) -> list[tuple[int, int]]:
    """The extreme boxes (last and first rows, largest and smallest values) and a few random ones."""
    rng = np.random.default_rng(seed)
    boxes = {(R - 1, V - 1), (R - 1, 0), (0, V - 1), (0, 0)}
    boxes |= {(int(rng.integers(R)), int(rng.integers(V))) for _ in range(4)}
    return sorted(boxes)


def _arb_check(model: Model, enc: LookupEncoding, spec: LookupSpec, claim_rows: LookupRows, ex, ctx: RunContext,
               details: dict[str, Any]) -> list[str]:
    """arb balls on the extreme boxes of the last rows and a few random ones (real arithmetic on both sides)."""
    width = model.d_model
    positions = int(claim_rows.query_pos.max()) + 1
    if positions * width * width > ARB_LIMIT:
        details["arb_cross_check"] = {"boxes": 0, "skipped": f"model too large for the pure-Python arb back-end "
                                      f"({positions} positions x width {width})"}
        return []
    exact_rows = spec.rows(enc.payload, enc, None)  # exact encodings y/V, real arithmetic
    boxes = _check_boxes(exact_rows.rows, exact_rows.V, ctx.seed)
    bounds = box_bounds(model, exact_rows, REAL, boxes)
    problems = cross_check(model, exact_rows, bounds, points=1, seed=ctx.seed)
    details["arb_cross_check"] = {"boxes": len(boxes), "disagreements": problems}
    return problems
