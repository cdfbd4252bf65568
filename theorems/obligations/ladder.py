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
from prefixproof.theorems.obligations.base import RunContext
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.verify.exact.arb import cross_check
from prefixproof.verify.certify import recorder
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


@dataclass(frozen=True)
class Run:
    """The knobs of one `decode` run as plain values (what the ladder and the numeric checker need)."""

    claim: str
    params: dict[str, int]
    samples: int
    seed: int
    dtype: str
    levels: frozenset[str]
    min_margin: float
    sha: str
    progress: Callable[[int, int], None] | None
    cross_checks: bool  # False only in precision sweeps, which need the certificate's answer alone

    @classmethod
    def of(cls, claim: str, ctx: RunContext, model: Model) -> "Run":
        return cls(claim, dict(ctx.params), ctx.samples, ctx.seed, ctx.dtype, frozenset(ctx.levels), ctx.min_margin,
                   ctx.weights_sha256 or weights_sha256(model), ctx.reporter(claim),
                   bool(ctx.extra.get("cross_checks", True)))


@dataclass(frozen=True)
class Certificate:
    """What a certificate engine hands the ladder: its decision over the whole input set, and where to look next.

    `certified` means every input decodes with margin >= `margin` (and >= the demanded margin) in the stated
    arithmetic. `check_boxes` are (row, value) boxes whose concrete inputs cross-check a CERTIFIED;
    `failing_boxes` the boxes where it failed, searched for a counterexample; `cross_check` an independent
    evaluator (arb balls) that returns its disagreements; `runnable` False when the weights cannot run in the
    format at all; `fallback_samples` the numeric search budget when the certificate does not decide.
    """

    certified: bool
    margin: float
    method: str
    arithmetic: str
    details: dict[str, Any]
    reason: str | None = None
    check_boxes: tuple[tuple[int, int], ...] = ()
    failing_boxes: tuple[tuple[int, int], ...] = ()
    cross_check: Callable[[], list[str]] | None = None
    runnable: bool = True
    fallback_samples: int = 1


def numeric_only(model: Model, problem: DecodeProblem, run: Run, samples: int | None = None) -> Record:
    """The teacher-forced checker alone: CHECKED (exhaustive) or SAMPLED, FALSIFIED, or ERROR naming both."""
    return explain_numeric(check_decoding(model, problem, claim=run.claim, params=dict(run.params),
                                          samples=run.samples if samples is None else samples, seed=run.seed,
                                          dtype=run.dtype, weights_sha256=run.sha, min_margin=run.min_margin,
                                          progress=run.progress))


def climb(model: Model, problem: DecodeProblem, cert: Certificate, run: Run) -> Record:
    """The one verdict ladder of every `decode` obligation (the lookup claims and the packing).

    CERTIFIED only after the cross-checks agree (independent evaluator, concrete inputs of the check boxes, the
    full numeric run with the numeric level); any disagreement is ERROR naming both results. Not certified: the
    failing boxes, then a bounded numeric search, look for a counterexample confirmed by incremental
    generation (FALSIFIED); otherwise UNKNOWN with the certificate's reason.

    Longer than 60 lines on purpose: the ladder is one decision procedure read top to bottom, and
    docs/certificates.md follows it step by step.
    """
    t0 = time.perf_counter()
    common: dict[str, Any] = dict(claim=run.claim, obligation="decode", arithmetic=cert.arithmetic,
                                  params=dict(run.params), seed=run.seed, dtype=run.dtype, weights_sha256=run.sha)
    details = cert.details  # the cross-check writes its own entry into the same dict
    method = cert.method
    numeric = "numeric" in run.levels
    samples = run.samples if numeric else cert.fallback_samples

    def record(verdict: Verdict, **kw: Any) -> Record:
        return Record(verdict=verdict, seconds=time.perf_counter() - t0, details=details, **{"method": method, **kw},
                      **common)

    def error(reason: str, counterexample: dict | None = None) -> Record:
        return record(Verdict.ERROR, reason=f"evaluators disagree: {reason}", counterexample=counterexample)

    everything = Coverage(problem.total, problem.total, problem.form)
    if cert.certified and not run.cross_checks:
        details["cross_checks"] = "skipped (precision sweep)"
        return record(Verdict.CERTIFIED, coverage=everything, min_margin=cert.margin)
    if cert.certified:
        said = f"certificate ({cert.method}, {cert.arithmetic}): CERTIFIED margin >= {cert.margin:.3g}"
        problems = [f"arb balls: {p}" for p in (cert.cross_check() if cert.cross_check else [])]
        runs = []
        if cert.runnable and cert.check_boxes:
            # Concrete inputs of the check boxes, in the same arithmetic: each is one execution the certificate
            # covers, so its margin may not fall below the bound (beyond the rounding of the final subtraction).
            boxes = evaluate_boxes(model, problem, list(cert.check_boxes), dtype=run.dtype,
                                   min_margin=run.min_margin, seed=run.seed)
            runs.append((f"numeric ({run.dtype}, {boxes['inputs']} inputs from the certificate's boxes)", boxes))
        if numeric and cert.runnable:
            full = numeric_only(model, problem, run)
            runs.append((f"numeric ({full.arithmetic}, {_covered(full)} inputs)",
                         {"min_margin": full.min_margin, "inputs": full.coverage.covered if full.coverage else 0,
                          "counterexample": full.counterexample, "verdict": full.verdict, "reason": full.reason}))
        details["numeric_cross_check"] = {"inputs": sum(r["inputs"] for _, r in runs),
                                          "min_margin": min((r["min_margin"] for _, r in runs), default=None)}
        floor = cert.margin - 2**-50 * abs(cert.margin)
        for who, r in runs:
            if r["counterexample"] is not None:
                problems.append(f"{who}: counterexample {counterexample_text(r['counterexample'])}")
            elif r.get("verdict") is Verdict.ERROR:
                problems.append(f"{who}: ERROR({r['reason']})")
            elif r["min_margin"] is not None and r["min_margin"] < floor:
                problems.append(f"{who}: min margin {r['min_margin']!r} below the certified bound {cert.margin!r}")
        if problems:
            ce = next((r["counterexample"] for _, r in runs if r["counterexample"] is not None), None)
            return error(f"{said}; " + "; ".join(problems), ce)
        arb = details.get("arb_cross_check", {})
        checked = [f"{arb['boxes']} input boxes re-enclosed in arb ball arithmetic"] if arb.get("boxes") else []
        checked += [f"{details['numeric_cross_check']['inputs']} concrete inputs run"] if runs else []
        method += f"; cross-checked: {', '.join(checked)}" if checked else "; no cross-check could run"
        if arb.get("skipped"):
            method += f"; no arb cross-check ({arb['skipped']})"
        return record(Verdict.CERTIFIED, coverage=everything, min_margin=cert.margin)

    # Not certified: look for a real counterexample before saying UNKNOWN.
    if cert.failing_boxes:
        found = search_boxes(model, problem, list(cert.failing_boxes), dtype=run.dtype, min_margin=run.min_margin,
                             seed=run.seed)
        if found is not None and not found["confirmation"]["fails"]:
            return error(f"teacher-forced pass ({run.dtype}) in a failing certificate box: counterexample "
                         f"{counterexample_text(found)}, which incremental generation does not reproduce", found)
        if found is not None:
            said = f"certificate box search ({run.dtype}): counterexample {counterexample_text(found)}"
            if numeric:
                num = numeric_only(model, problem, run)
                details["numeric"] = _summary(num)
                if num.verdict is Verdict.CHECKED:
                    return error(f"{said}; numeric ({num.arithmetic}, {_covered(num)} inputs): CHECKED, every "
                                 f"input decodes (min margin {num.min_margin:.3g})", found)
                if num.verdict is Verdict.ERROR:
                    return error(f"{said}; numeric ({num.arithmetic}): ERROR({num.reason})", found)
            method += "; counterexample from a failing box"
            return record(Verdict.FALSIFIED, min_margin=found["teacher_forced_margin"], counterexample=found)
    if not cert.runnable or not run.cross_checks:
        where = cert.reason or "the certificate did not decide"
        return record(Verdict.UNKNOWN, reason=where + ("; no counterexample in its failing boxes"
                                                       if cert.failing_boxes else ""))
    num = numeric_only(model, problem, run, samples)
    details["numeric"] = _summary(num)
    if num.verdict in (Verdict.FALSIFIED, Verdict.ERROR):
        method += "; " + num.method
        return record(num.verdict, reason=num.reason, coverage=num.coverage, min_margin=num.min_margin,
                      counterexample=num.counterexample)
    where = cert.reason or "the certificate did not decide"
    if num.coverage is None:
        reason = f"{where}; numeric check: {num.reason}"
    else:
        how = "exhaustive" if num.coverage.exhaustive else "sampled"
        boxes = " in its failing boxes nor" if cert.failing_boxes else ""
        reason = f"{where}; no counterexample{boxes} in {num.coverage.covered} {how} inputs"
    return record(Verdict.UNKNOWN, reason=reason, coverage=num.coverage, min_margin=num.min_margin)


def run_decode(spec: LookupSpec, ctx: RunContext) -> Record:
    """`decode` of a lookup claim: the structured interval certificate, then the ladder."""
    model = ctx.model if ctx.model is not None else spec.construction(ctx)
    enc = LookupEncoding.of(model, spec.block)
    problem = spec.inputs(enc)
    run = Run.of(spec.claim, ctx, model)
    if "certify" not in run.levels:
        return numeric_only(model, problem, run)
    ex = exec_for(run.dtype)
    run_model = round_model(model, run.dtype)
    rows = spec.rows(enc.payload, enc, run.dtype)
    cert, _ = certify_lookup(run_model, rows, ex, min_margin=run.min_margin,
                             progress=ctx.reporter(f"{spec.claim} certificate"))
    details: dict[str, Any] = {"certificate": {"decoder": cert.decoder, "block_evaluations": cert.evaluations,
                                               "margin_lower_bound": cert.min_margin, "demanded_margin": run.min_margin}}
    if cert.certified and run.cross_checks:
        # The same certificate in real arithmetic: how much of the bound the allowance for rounding takes (reports
        # quote it in words; it decides nothing).
        with recorder.paused():  # a certificate file covers the run's arithmetic, never this comparison
            real, _ = certify_lookup(run_model, rows, REAL, min_margin=run.min_margin)
        details["certificate"]["margin_lower_bound_real_arithmetic"] = real.min_margin
    reason = cert.reason
    if reason is None and cert.failures:
        r, y, m = cert.failures[0]
        reason = f"certificate fails at box (row {r}, value {y}) with margin bound {m:.3g}"
    fallback = max(1, min(run.samples, FALLBACK_INPUTS // max(problem.sample_count(1), 1)))
    return climb(model, problem, Certificate(
        certified=cert.certified, margin=cert.min_margin, method=f"structured interval certificate ({cert.decoder})",
        arithmetic=ex.name, details=details, reason=reason, check_boxes=tuple(_check_boxes(rows.rows, rows.V, run.seed)),
        failing_boxes=tuple((r, y) for r, y, _ in cert.failures),
        cross_check=lambda: _arb_check(run_model, enc, spec, rows, run.seed, details), fallback_samples=fallback), run)


def _summary(num: Record) -> dict[str, Any]:
    return {"verdict": num.verdict_text, "min_margin": num.min_margin,
            "inputs": None if num.coverage is None else num.coverage.covered}


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


def _arb_check(model: Model, enc: LookupEncoding, spec: LookupSpec, claim_rows: LookupRows, seed: int,
               details: dict[str, Any]) -> list[str]:
    """arb balls on the extreme boxes of the last rows and a few random ones (real arithmetic on both sides)."""
    width = model.d_model
    positions = int(claim_rows.query_pos.max()) + 1
    if positions * width * width > ARB_LIMIT:
        details["arb_cross_check"] = {"boxes": 0, "skipped": f"model too large for the pure-Python arb back-end "
                                      f"({positions} positions x width {width})"}
        return []
    exact_rows = spec.rows(enc.payload, enc, None)  # exact encodings y/V, real arithmetic
    boxes = _check_boxes(exact_rows.rows, exact_rows.V, seed)
    bounds = box_bounds(model, exact_rows, REAL, boxes)
    problems = cross_check(model, exact_rows, bounds, points=1, seed=seed)
    details["arb_cross_check"] = {"boxes": len(boxes), "disagreements": problems}
    return problems
