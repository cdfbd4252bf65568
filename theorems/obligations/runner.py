"""Run a theorem's obligations; an exception becomes an ERROR record, never a pass."""
from __future__ import annotations

import time
import traceback

from prefixproof.theorems.obligations.base import Obligation, RunContext, Theorem
from prefixproof.theorems.obligations.agreement import disagreements
from prefixproof.verify.budget import OverBudget
from prefixproof.verify.verdict import Record, Verdict, weakest


def run_obligation(theorem: Theorem, ob: Obligation, ctx: RunContext) -> Record:
    t0 = time.perf_counter()
    try:
        record = ob.run(ctx)
        if not isinstance(record, Record):
            raise TypeError(f"obligation {ob.id} returned {type(record).__name__}, not a Record")
        return record
    except (OverBudget, MemoryError) as e:  # over the memory budget: this obligation is UNKNOWN, the rest run
        reason = e.verdict_reason if isinstance(e, OverBudget) else \
            f"budget: ran out of memory ({type(e).__name__}{': ' + str(e) if str(e) else ''}); lower the sizes"
        return Record(
            claim=theorem.id, obligation=ob.id, verdict=Verdict.UNKNOWN, method=ob.method, arithmetic="-",
            params=dict(ctx.params), seconds=time.perf_counter() - t0, seed=ctx.seed, dtype=ctx.dtype,
            weights_sha256=ctx.weights_sha256, reason=reason,
        )
    except Exception as e:  # noqa: BLE001 - any failure of the verifier is reported as ERROR
        where = traceback.extract_tb(e.__traceback__)[-1]
        reason = f"{type(e).__name__}: {e} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
        return Record(
            claim=theorem.id, obligation=ob.id, verdict=Verdict.ERROR, method=ob.method, arithmetic="-",
            params=dict(ctx.params), seconds=time.perf_counter() - t0, seed=ctx.seed, dtype=ctx.dtype,
            weights_sha256=ctx.weights_sha256, reason=reason,
        )


def selected(theorem: Theorem, ctx: RunContext) -> list[Obligation]:
    """The obligations with a method at one of the context's levels (and, for given weights, about weights)."""
    return [ob for ob in theorem.obligations
            if set(ob.levels) & set(ctx.levels) and (ctx.model is None or ob.applies_to_weights)
            and (not ob.needs_directory or ctx.extra.get("weights_dir"))
            and (not ob.needs_adapter or ctx.extra.get("adapter_dir"))]


def skipped(theorem: Theorem, ctx: RunContext) -> list[Obligation]:
    """Selected obligations the quick level leaves out because they are slow at these parameters."""
    return [ob for ob in selected(theorem, ctx) if ctx.quick and not ob.quick(ctx.params)]


def run_theorem(theorem: Theorem, ctx: RunContext) -> list[Record]:
    skip = skipped(theorem, ctx)
    records = [run_obligation(theorem, ob, ctx) for ob in selected(theorem, ctx) if ob not in skip]
    return records + disagreements(records)  # two records contradicting each other: ERROR naming both


def theorem_verdict(records: list[Record]) -> Verdict:
    return weakest(r.verdict for r in records)
