"""The counterexample scan of the precision report (docs/certificates.md, "Precision report").

Above the certified frontier every size is scanned in turn (a linear scan, not
doubling), up to a budget of sizes. At each size the decode obligation runs with
its counterexample search (the certificate's failing boxes, then seeded
samples), and, for the lookup claims with a row/value structure (theorem1,
theorem2), an adversarial sweep: every (row, value) box, i.e. every decision
(position i, or user token u) with every value y written in its payload
coordinate, on inputs whose other coordinates are extreme (0, V-1, neighbours
of y in the extremes' sense) or random. Every input runs in every execution the
format names (verify/semantics/executions.py), and a failure must be confirmed by
incremental generation in the same execution.

When a size is small enough to be checked over every input, the scan's answer
at that size is exact. Otherwise a size without a counterexample is only "not
seen failing", so the report labels the first size with one as the *smallest
found*, and lists the sizes scanned.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefixproof.theorems import THEOREMS
from prefixproof.theorems.obligations.base import RunContext
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.verify.numeric.decoding import EXHAUSTIVE_LIMIT, check_decoding, evaluate_boxes
from prefixproof.theorems import theorem1, theorem2
from prefixproof.verify.verdict import Record, Verdict

SWEEP_BOX_LIMIT = 20_000  # (row, value) boxes per size for the adversarial sweep
PER_BOX = 6  # inputs per box: the extremes first, then random
SCAN_SIZES = 40  # sizes scanned one by one above the certified frontier before falling back to doubling
SCAN_SECONDS = 120.0  # and the time budget of that linear scan


# the claims whose inputs have the (row, value) box structure the adversarial sweep walks
SWEPT = {"theorem1": theorem1.SPEC, "theorem2": theorem2.SPEC}


def _spec(theorem_id: str) -> Any:
    return SWEPT.get(theorem_id)


def sweep(theorem_id: str, params: dict[str, int], dtype: str, seed: int = 0) -> dict[str, Any] | None:
    """Adversarial sweep at one size: every (row, value) box, or None when the claim has no box structure or
    the boxes exceed SWEEP_BOX_LIMIT. Returns evaluate_boxes' result plus the problem's size and whether every
    input was checked (small input sets are run exhaustively instead)."""
    spec = _spec(theorem_id)
    if spec is None:
        return None
    theorem = THEOREMS[theorem_id]
    ctx = RunContext(params=theorem.resolve(params), samples=1, seed=seed, dtype=dtype)
    model = spec.construction(ctx)
    enc = LookupEncoding.of(model, spec.block)
    problem = spec.inputs(enc)
    if problem.total <= EXHAUSTIVE_LIMIT:
        rec = check_decoding(model, problem, claim=theorem_id, params=dict(ctx.params), samples=1, seed=seed,
                             dtype=dtype)
        # every input checked only when the checker decided (CHECKED or FALSIFIED); an ERROR (a failure the
        # second evaluator does not confirm) or UNKNOWN leaves the size not fully checked
        return {"exhaustive": rec.verdict in (Verdict.CHECKED, Verdict.FALSIFIED), "record": rec,
                "counterexample": rec.counterexample, "confirmed": rec.verdict is Verdict.FALSIFIED}
    rows = spec.rows(enc.payload, enc, dtype).rows
    if rows * enc.V > SWEEP_BOX_LIMIT:
        return None
    boxes = [(r, y) for r in range(rows) for y in range(enc.V)]
    out = evaluate_boxes(model, problem, boxes, dtype=dtype, per_box=PER_BOX, seed=seed)
    ce = out["counterexample"]
    return {"exhaustive": False, "boxes": len(boxes), "inputs": out["inputs"], "counterexample": ce,
            "confirmed": ce is not None and ce["confirmation"]["fails"], "min_margin": out["min_margin"]}


def linear_scan(theorem_id: str, dtype: str, axis: str, fixed: dict[str, int], start: int, cap: int,
                probe: Callable[[int], Record], say: Callable[[str], None] = lambda s: None
                ) -> tuple[int | None, Record | None, dict[str, Any]]:
    """Scan every size from `start` upward: (first size with a confirmed counterexample, its record, scan notes).

    `probe(size)` runs the decode obligation with its counterexample search; the adversarial sweep runs where
    the probe finds nothing. Stops at the first counterexample, at `cap`, or at the budget (SCAN_SIZES sizes,
    SCAN_SECONDS seconds); the notes say which, list the sizes scanned, and whether every scanned size below
    the answer was checked over all its inputs.
    """
    t0, scanned, all_exhaustive, errors = time.perf_counter(), [], True, []
    size = start
    while size <= cap:
        rec = probe(size)
        scanned.append(size)
        hit = rec if rec.verdict is Verdict.FALSIFIED else None
        sw = None
        decided = rec.verdict in (Verdict.CERTIFIED, Verdict.UNKNOWN) and rec.coverage is not None \
            and rec.coverage.exhaustive  # the probe already covered every input (certificate or full numeric run)
        if hit is None and decided:
            sw = {"exhaustive": True, "confirmed": False, "counterexample": None}
        elif hit is None:
            try:
                sw = sweep(theorem_id, {**fixed, axis: size}, dtype)
            except Exception as e:  # noqa: BLE001 - reported in the notes; the size counts as not fully checked
                errors.append(f"{axis}={size}: {type(e).__name__}: {e}")
        if hit is None and sw is not None and sw["confirmed"]:
            hit = _record_of(sw, theorem_id, dtype, {**fixed, axis: size})
            say(f"  {theorem_id} {dtype} {axis}={size} adversarial sweep: counterexample ({sw['counterexample']['execution']})")
        if hit is not None:
            return size, hit, _notes(scanned, all_exhaustive, errors, "a counterexample was found")
        all_exhaustive = all_exhaustive and rec.verdict is not Verdict.ERROR and sw is not None and sw["exhaustive"]
        if len(scanned) >= SCAN_SIZES or time.perf_counter() - t0 > SCAN_SECONDS:
            return None, None, _notes(scanned, all_exhaustive, errors, "budget of the linear scan reached")
        size += 1
    return None, None, _notes(scanned, all_exhaustive, errors, "search cap reached")


def _notes(scanned: list[int], exhaustive: bool, errors: list[str], stop: str) -> dict[str, Any]:
    out = {"sizes_scanned": scanned, "every_input_below": exhaustive, "stopped": stop}
    if errors:
        out["sweep_errors"] = errors
    return out


def _record_of(sw: dict[str, Any], theorem_id: str, dtype: str, params: dict[str, int]) -> Record:
    if sw["exhaustive"]:
        return sw["record"]
    ce = sw["counterexample"]
    return Record(claim=theorem_id, obligation="decode", verdict=Verdict.FALSIFIED,
                  method=f"adversarial sweep: every (row, value) box, {PER_BOX} inputs each",
                  arithmetic=dtype, params=params, min_margin=ce["teacher_forced_margin"], counterexample=ce,
                  dtype=dtype)
