"""Obligations shared by the limitation claims: a symbolic lemma, and seeded fuzzing through the forward pass."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import numpy as np

from prefixproof.theorems.obligations.base import RunContext
from prefixproof.theorems.obligations.lookup import lemma_record
from prefixproof.verify.identities.cases import CONFIRM_DTYPE, Case
from prefixproof.verify.identities.properties import PROPERTIES
from prefixproof.verify.identities.checks import Measure
from prefixproof.verify.symbolic.lemmas import Lemma
from prefixproof.verify.verdict import Record, Verdict


def run_lemma(claim: str, make: Callable[[], Lemma], ctx: RunContext, extra: str = "", extra_ok: bool = True,
              t0: float | None = None) -> Record:
    """A PROVED record when every step checks (and `extra_ok`); timed from `t0` (default: now)."""
    t0 = time.perf_counter() if t0 is None else t0
    lemma = make()
    return lemma_record(claim, lemma, ctx, time.perf_counter() - t0, extra, extra_ok)


def seeded_cases(seed: int, count: int, dtype: str | None = None) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = [Case.random(rng) for _ in range(count)]
    return cases if dtype is None else [replace(c, dtype=dtype) for c in cases]


def worst(measures: list[Measure]) -> Measure | None:
    return max(measures, key=lambda m: m.ratio) if measures else None


def run_sampled(claim: str, prop: str, ctx: RunContext) -> Record:
    """K seeded random cases (models, inputs, prefixes) through the forward pass, in the run's dtype.

    A failure is re-measured on the same weights in extended precision (the second evaluation): confirmed ->
    FALSIFIED, otherwise UNKNOWN.
    """
    t0 = time.perf_counter()
    dtype = ctx.dtype
    common = dict(claim=claim, obligation="fuzz", method=f"prefixproof.verify.identities.properties.{prop} on {ctx.samples} seeded random "
                  "transformers (of an infinite set; per layer, given the same layer input)", arithmetic=dtype,
                  params=dict(ctx.params), seed=ctx.seed, dtype=dtype)
    if dtype not in ("float64", "float32"):
        return Record(verdict=Verdict.UNKNOWN, reason=f"the fuzz cases run in float32 or float64, not {dtype}",
                      seconds=time.perf_counter() - t0, **common)
    cases = seeded_cases(ctx.seed, ctx.samples, dtype)
    report = ctx.reporter(f"{claim} fuzz")
    top = 0.0
    for done, case in enumerate(cases, 1):
        ms = PROPERTIES[prop].measures(case)
        w = worst(ms)
        top = max(top, 0.0 if w is None else w.ratio)
        if w is not None and not w.ok:
            confirmed = any(not m.ok for m in PROPERTIES[prop].measures(case, None, CONFIRM_DTYPE))
            cx = {"case": case.to_json(), "measure": w.to_json(), "extended_precision_confirms": confirmed, "after_cases": done}
            if confirmed:
                return Record(verdict=Verdict.FALSIFIED, counterexample=cx, seconds=time.perf_counter() - t0, **common)
            return Record(verdict=Verdict.UNKNOWN, counterexample=cx, seconds=time.perf_counter() - t0,
                          reason=f"{w.name} exceeds its {dtype} tolerance but extended precision passes", **common)
        if report:
            report(done, len(cases))
    return Record(verdict=Verdict.SAMPLED, seconds=time.perf_counter() - t0,
                  details={"worst_error_over_tolerance": top,
                           "note": "the set of transformers is infinite: seeded samples are evidence, not a proof; "
                                   "the symbolic lemma is the proof"},
                  **common)
