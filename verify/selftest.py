"""`prefixproof selftest`: the verifier against its mutants, plus positive and sanity controls.

- every mutant (verify/mutants.py) must end FALSIFIED or UNKNOWN; CERTIFIED,
  CHECKED or SAMPLED is a false pass, ERROR a verifier failure;
- the unmutated constructions must be CERTIFIED (the tests are not vacuous);
- sanity mode: demanding a margin 0.1% above the attained minimum must not
  certify, and 0.1% below it must.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from constructions.theorem1 import Theorem1
from constructions.theorem2 import Theorem2
from theorems import theorem1, theorem2
from theorems.base import RunContext
from theorems.decode import LookupSpec
from verify.mutants import all_mutants
from verify.runner import run_obligation
from verify.verdict import Record, Verdict

KILLED = (Verdict.FALSIFIED, Verdict.UNKNOWN)
SPECS: dict[str, LookupSpec] = {"theorem1": theorem1.SPEC, "theorem2": theorem2.SPEC}


@dataclass(frozen=True)
class Outcome:
    label: str
    expected: str  # "killed" or "certified"
    record: Record

    @property
    def ok(self) -> bool:
        if self.expected == "killed":
            return self.record.verdict in KILLED
        return self.record.verdict is Verdict.CERTIFIED


def _decode(claim: str, params: dict[str, int], model=None, min_margin: float = 0.0, samples: int = 50) -> Record:
    theorem = {"theorem1": theorem1.THEOREM, "theorem2": theorem2.THEOREM}[claim]
    ctx = RunContext(params=params, samples=samples, seed=0, levels=frozenset({"certify"}), model=model,
                     min_margin=min_margin)
    ob = next(o for o in theorem.obligations if o.id == "decode")
    return run_obligation(theorem, ob, ctx)


def run_selftest(say: Callable[[str], None] = lambda s: None) -> list[Outcome]:
    outcomes = []
    for m in all_mutants():
        t0 = time.perf_counter()
        rec = _decode(m.claim, m.params, model=m.build())
        o = Outcome(f"{m.claim}: {m.name}", "killed", rec)
        outcomes.append(o)
        say(f"  {'ok ' if o.ok else 'BAD'} {o.label}: {rec.verdict_text[:100]} ({time.perf_counter() - t0:.2f}s)")
    for claim, c, params in (("theorem1", Theorem1(95, 20), {"V": 95, "N": 20}), ("theorem2", Theorem2(95), {"V": 95})):
        base = _decode(claim, params)
        outcomes.append(Outcome(f"{claim}: unmutated construction", "certified", base))
        for factor, expected in ((1.001, "killed"), (0.999, "certified")):
            rec = _decode(claim, params, min_margin=c.margin_bound * factor)
            outcomes.append(Outcome(f"{claim}: demand {factor} x the attained margin", expected, rec))
        for o in outcomes[-3:]:
            say(f"  {'ok ' if o.ok else 'BAD'} {o.label}: {o.record.verdict_text[:100]}")
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    mutants = [o for o in outcomes if o.expected == "killed" and "demand" not in o.label]
    killed = sum(o.ok for o in mutants)
    by = {}
    for o in mutants:
        claim = o.label.split(":")[0]
        k, n = by.get(claim, (0, 0))
        by[claim] = (k + o.ok, n + 1)
    falsified = sum(o.record.verdict is Verdict.FALSIFIED for o in mutants)
    lines = [f"kill rate: {killed}/{len(mutants)} mutants ({100 * killed / max(len(mutants), 1):.0f}%); "
             f"{falsified} FALSIFIED with a confirmed counterexample, {killed - falsified} UNKNOWN"]
    for claim, (k, n) in by.items():
        lines.append(f"  {claim}: {k}/{n}")
    controls = [o for o in outcomes if o not in mutants]
    lines.append(f"controls: {sum(o.ok for o in controls)}/{len(controls)} as expected "
                 "(unmutated constructions CERTIFIED; demanding 0.1% more than the attained margin not certified)")
    bad = [o for o in outcomes if not o.ok]
    for o in bad:
        lines.append(f"  FAILED: {o.label} -> {o.record.verdict_text}")
    return "\n".join(lines)
