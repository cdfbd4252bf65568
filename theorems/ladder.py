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
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from prefixproof.constructions.io import weights_sha256
from prefixproof.constructions.model import Model
from prefixproof.theorems.base import RunContext
from prefixproof.theorems.encoding import LookupEncoding
from prefixproof.verify.exact.arb import cross_check
from prefixproof.verify.certify.lookup import box_bounds, certify_lookup
from prefixproof.verify.numeric.decoding import DecodeProblem, check_decoding, evaluate_boxes, search_boxes
from prefixproof.verify.certify.lookup_rows import LookupRows
from prefixproof.verify.semantics.formats import round_model
from prefixproof.verify.certify.interval import REAL, exec_for
from prefixproof.verify.verdict import Coverage, Record, Verdict

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
        return explain_numeric(check_decoding(model, problem, claim=spec.claim, params=dict(ctx.params),
                                              samples=ctx.samples, seed=ctx.seed, dtype=ctx.dtype, weights_sha256=sha,
                                              min_margin=ctx.min_margin, progress=ctx.reporter(spec.claim)))

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

    def full_numeric() -> Record:
        return check_decoding(model, problem, claim=spec.claim, params=dict(ctx.params), samples=numeric_samples,
                              seed=ctx.seed, dtype=ctx.dtype, weights_sha256=sha, min_margin=ctx.min_margin,
                              progress=ctx.reporter(spec.claim))

    def error(reason: str, counterexample: dict | None = None) -> Record:
        return Record(verdict=Verdict.ERROR, method=method, reason=f"evaluators disagree: {reason}",
                      counterexample=counterexample, seconds=time.perf_counter() - t0, details=details, **common)

    if cert.certified and not ctx.extra.get("cross_checks", True):
        details["cross_checks"] = "skipped (precision sweep)"
        return Record(verdict=Verdict.CERTIFIED, method=method, coverage=Coverage(problem.total, problem.total,
                      problem.form), min_margin=cert.min_margin, seconds=time.perf_counter() - t0, details=details,
                      **common)
    if cert.certified:
        said = f"certificate ({cert.decoder}, {ex.name}): CERTIFIED margin >= {cert.min_margin:.3g}"
        problems = [f"arb balls: {p}" for p in _arb_check(run_model, enc, spec, claim, ex, ctx, details)]
        # Numeric cross-check: concrete inputs from the extreme and some random boxes, in the same arithmetic
        # (the full sampled run as well with --level all). Each is one execution the certificate covers: its
        # margin may not fall below the bound, beyond the rounding of the final subtraction forming the margin.
        boxes = evaluate_boxes(model, problem, _check_boxes(claim.rows, claim.V, ctx.seed), dtype=ctx.dtype,
                               min_margin=ctx.min_margin, seed=ctx.seed)
        runs = [(f"numeric ({ctx.dtype}, {boxes['inputs']} inputs from the certificate's boxes)", boxes)]
        if "numeric" in ctx.levels:
            full = full_numeric()
            runs.append((f"numeric ({full.arithmetic}, {_covered(full)} inputs)",
                         {"min_margin": full.min_margin, "inputs": full.coverage.covered if full.coverage else 0,
                          "counterexample": full.counterexample, "verdict": full.verdict, "reason": full.reason}))
        details["numeric_cross_check"] = {"inputs": sum(r["inputs"] for _, r in runs),
                                          "min_margin": min(r["min_margin"] for _, r in runs)}
        floor = cert.min_margin - 2**-50 * abs(cert.min_margin)
        for who, r in runs:
            if r["counterexample"] is not None:
                problems.append(f"{who}: counterexample {counterexample_text(r['counterexample'])}")
            elif r.get("verdict") is Verdict.ERROR:
                problems.append(f"{who}: ERROR({r['reason']})")
            elif r["min_margin"] < floor:
                problems.append(f"{who}: min margin {r['min_margin']!r} below the certified bound {cert.min_margin!r}")
        if problems:
            ce = next((r["counterexample"] for _, r in runs if r["counterexample"] is not None), None)
            return error(f"{said}; " + "; ".join(problems), ce)
        cov = Coverage(problem.total, problem.total, problem.form)
        method += (f"; cross-checked: arb on {details['arb_cross_check']['boxes']} boxes, "
                   f"numeric on {details['numeric_cross_check']['inputs']} inputs")
        return Record(verdict=Verdict.CERTIFIED, method=method, coverage=cov, min_margin=cert.min_margin,
                      seconds=time.perf_counter() - t0, details=details, **common)

    # Not certified: look for a real counterexample before saying UNKNOWN.
    boxes = [(r, y) for r, y, _ in cert.failures]
    found = search_boxes(model, problem, boxes, dtype=ctx.dtype, min_margin=ctx.min_margin, seed=ctx.seed)
    if found is not None and not found["confirmation"]["fails"]:
        return error(f"teacher-forced pass ({ctx.dtype}) in a failing certificate box: counterexample "
                     f"{counterexample_text(found)}, which incremental generation does not reproduce", found)
    if found is not None:
        said = f"certificate box search ({ctx.dtype}): counterexample {counterexample_text(found)}"
        if "numeric" in ctx.levels:
            num = full_numeric()
            details["numeric"] = {"verdict": num.verdict_text, "min_margin": num.min_margin,
                                  "inputs": None if num.coverage is None else num.coverage.covered}
            if num.verdict is Verdict.CHECKED:
                return error(f"{said}; numeric ({num.arithmetic}, {_covered(num)} inputs): CHECKED, every input "
                             f"decodes (min margin {num.min_margin:.3g})", found)
        return Record(verdict=Verdict.FALSIFIED, method=method + "; counterexample from a failing box",
                      min_margin=found["teacher_forced_margin"], counterexample=found,
                      seconds=time.perf_counter() - t0, details=details, **common)
    if not ctx.extra.get("cross_checks", True):
        r, y, m = cert.failures[0] if cert.failures else (None, None, None)
        reason = cert.reason or f"certificate fails at box (row {r}, value {y}) with margin bound {m:.3g}; no " \
                                "counterexample in that box"
        return Record(verdict=Verdict.UNKNOWN, method=method, reason=reason, seconds=time.perf_counter() - t0,
                      details=details, **common)
    num = explain_numeric(full_numeric())
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


def _covered(r: Record) -> str:
    return "?" if r.coverage is None else r.coverage.text()


def counterexample_text(ce: dict[str, Any]) -> str:
    """A counterexample in one phrase: the input, where it fails, both evaluators' margins."""
    keys = [k for k in ("target", "map", "input", "expected") if k in ce]
    parts = [f"{k}={ce[k]!r}" for k in keys]
    if "failing_position" in ce:
        parts.append(f"position {ce['failing_position']}")
    if "teacher_forced_margin" in ce:
        parts.append(f"margin {ce['teacher_forced_margin']:.3g}")
    conf = ce.get("confirmation") or {}
    if conf:
        parts.append(f"(generation: {conf.get('generated')!r}, margin {conf.get('margin_at', float('nan')):.3g}, "
                     f"{'fails' if conf.get('fails') else 'passes'})")
    return " ".join(parts)


def explain_numeric(rec: Record) -> Record:
    """A numeric record whose two evaluators disagree (ERROR) gets a reason naming both results."""
    ce = rec.counterexample
    if rec.verdict is not Verdict.ERROR or not ce or "confirmation" not in ce:
        return rec
    conf = ce["confirmation"]
    reason = (f"evaluators disagree: teacher-forced pass ({rec.arithmetic}): {counterexample_text({**ce, 'confirmation': {}})}"
              f"; incremental generation ({rec.arithmetic}): generated {conf.get('generated')!r} with margin "
              f"{conf.get('margin_at', float('nan')):.3g} there, a pass")
    return replace(rec, reason=reason)


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
