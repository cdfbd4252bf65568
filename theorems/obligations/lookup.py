"""Symbolic obligations of the lookup theorems: two parametric lemmas and one per-instance evaluation."""
from __future__ import annotations

import time
from fractions import Fraction
from typing import Callable


from prefixproof.constructions.model import Model
from prefixproof.theorems.obligations.base import RunContext
from prefixproof.verify.exact.hardmax import HardmaxOps, Undecided, q
from prefixproof.verify.exact.streaming import grid_mismatches, hardmax_logits
from prefixproof.verify.symbolic.lemmas import Lemma, decode_lemma, leakage_lemma, scale_meets_rule
from prefixproof.verify.verdict import Record, Verdict

HARDMAX_LIMIT = 4_000_000  # rows x positions x width above which the exact evaluator refuses (memory)
QUICK_LIMIT = 300_000  # ... and above which the default (quick) level leaves it out


def lemma_record(claim: str, lemma: Lemma, ctx: RunContext, seconds: float, extra: str = "",
                 extra_ok: bool = True) -> Record:
    ok = lemma.proved and extra_ok
    failed = lemma.failed_steps() + ([] if extra_ok else [extra])
    return Record(
        claim=claim, obligation=lemma.name, verdict=Verdict.PROVED if ok else Verdict.UNKNOWN,
        method=f"sympy: {len(lemma.steps)} steps", arithmetic="exact (symbolic)", params=dict(ctx.params),
        seconds=seconds, reason=None if ok else f"steps not established: {'; '.join(failed)}",
        details={"statement": lemma.statement, "parametric_in": lemma.parametric,
                 "steps": [{"step": s, "checked": bool(k)} for s, k in lemma.steps],
                 **({"per_instance": extra} if extra else {})},
    )


def run_decode_lemma(claim: str, ctx: RunContext) -> Record:
    t0 = time.perf_counter()
    return lemma_record(claim, decode_lemma(), ctx, time.perf_counter() - t0)


def run_leakage(claim: str, V: int, m: int, sigma: float, ctx: RunContext, pointers: int = 1,
                make: Callable[[], Lemma] = leakage_lemma) -> Record:
    """The chained lemma, then its own derived rule e^scale >= R evaluated at this instance (`make` injects a lemma)."""
    from prefixproof.verify.symbolic.leakage import threshold_at

    t0 = time.perf_counter()
    lemma = make()
    ok = scale_meets_rule(V, m, sigma, pointers, lemma)
    R = lemma.results.get("scale_threshold")
    at = threshold_at(lemma, V, m, pointers) if R is not None else "none"
    note = (f"this instance: e^scale >= R with the proved rule R = {R} = {at} at V={V}, m={m}, L={pointers} "
            f"(scale {sigma}; arb)")
    return lemma_record(claim, lemma, ctx, time.perf_counter() - t0, note if ok else "scale rule fails: " + note, ok)


def run_hardmax(claim: str, model: Model, rows, m: int, sigma: float, ctx: RunContext) -> Record:
    """Exact hardmax evaluation of the exact construction, one row of the lookup claim per batch entry
    (the row's own value symbolic, everything else ranging over exact intervals)."""
    t0 = time.perf_counter()
    V = model.vocab.size
    size = rows.rows * rows.n_positions * model.d_model
    common = dict(claim=claim, obligation="hardmax-lookup", method="exact rational forms through the forward pass, "
                  "hardmax attention", arithmetic="exact (rationals)", params=dict(ctx.params))
    if size > HARDMAX_LIMIT:
        return Record(verdict=Verdict.UNKNOWN, reason=f"too large for the exact evaluator ({size} > {HARDMAX_LIMIT} "
                      "form entries); the lemmas stay parametric", seconds=time.perf_counter() - t0, **common)
    ops = HardmaxOps(t_max=q(Fraction(V - 1, V)))
    bad = []
    try:  # streamed in batches of rows within the memory budget (OverBudget: the runner says UNKNOWN(budget))
        for batch_rows, logits in hardmax_logits(model, rows, ops, progress=ctx.reporter(f"{claim} hardmax-lookup")):
            first = grid_mismatches(logits, V)
            bad += [(int(r), int(j)) for r, j in zip(batch_rows, first) if j >= 0]
    except Undecided as e:
        return Record(verdict=Verdict.UNKNOWN, reason=str(e), seconds=time.perf_counter() - t0, **common)
    bad.sort()
    query_pos = rows.query_pos
    gap_ok = ops.min_gap is None or ops.min_gap >= q(sigma)
    comp_ok = ops.max_competitors <= max(m, 0)
    details = {
        "rows": len(query_pos),
        "statement": "in the hardmax limit every logit equals the nearest-grid logit of the row's own value: "
                     "logit_j = (2j/V)(Y_i/V) - (j/V)^2, for every other target and free token",
        "min_score_gap": None if ops.min_gap is None else str(ops.min_gap),
        "max_competing_keys": ops.max_competitors,
        "per_instance": ", ".join(f"{k}={v}" for k, v in ctx.params.items()),
    }
    if bad or not gap_ok or not comp_ok:
        why = (f"row {bad[0][0]}: logit {bad[0][1]} is not the grid logit" if bad else
               f"score gap {ops.min_gap} < scale {sigma}" if not gap_ok else
               f"{ops.max_competitors} competing keys > {m}")
        return Record(verdict=Verdict.UNKNOWN, reason=f"the per-instance proof does not go through: {why}",
                      seconds=time.perf_counter() - t0, details=details, **common)
    return Record(verdict=Verdict.PROVED, seconds=time.perf_counter() - t0, details=details, **common)


def lookup_obligations(claim: str, what: str, spec, hardmax: Callable, leakage: Callable,
                       hardmax_quick: Callable[[dict], bool] | None = None) -> tuple:
    """The four obligations every lookup theorem has; `what` names the decoded value (Y_i/V, m(u)/V)."""
    from prefixproof.theorems.obligations.base import Obligation
    from prefixproof.theorems.obligations.ladder import run_decode

    return (
        Obligation("decode-lemma", "nearest-grid decoding picks y with margin (1/V)(1/V - 2|x - y/V|)",
                   ("symbolic",), "prefixproof.verify.symbolic.lemmas.decode_lemma", lambda ctx: run_decode_lemma(claim, ctx),
                   applies_to_weights=False),
        Obligation("leakage-bound", f"the derived scale keeps the selected value within 1/(4V) of {what}",
                   ("symbolic",), "prefixproof.verify.symbolic.lemmas.leakage_lemma", leakage, applies_to_weights=False),
        Obligation("hardmax-lookup", f"in the hardmax limit every decision's logits are the grid logits of {what}",
                   ("symbolic",), "prefixproof.verify.exact.hardmax.HardmaxOps", hardmax, applies_to_weights=False,
                   quick=hardmax_quick or (lambda params: True)),
        Obligation("decode", "every input decodes with a positive margin at every decision, at the actual scale, in "
                   "the executed arithmetic (teacher-forced, equivalent to greedy generation)", ("certify", "numeric"),
                   "prefixproof.verify.certify.lookup.certify_lookup / prefixproof.verify.numeric.decoding.check_decoding", lambda ctx: run_decode(spec, ctx)),
    )
