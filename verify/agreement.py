"""Claim-level agreement: two records of one claim's run that contradict each other make the claim ERROR.

Records say which statement they establish or refute. Only records about the *same* statement in the *same*
arithmetic are compared:

- a `decode` record with verdict CERTIFIED or CHECKED asserts "every input of the claim decodes with a
  positive margin" in its arithmetic (its dtype);
- any other record whose `details["about"]` is {"statement": "decode", "dtype": ...} and whose verdict is
  FALSIFIED holds a confirmed counterexample of that statement (for example `stored-prompt`, when the
  directory's own on-grid prompt generates a wrong answer, confirmed by a teacher-forced pass).

Both at once means one evaluator is wrong: the rule adds an ERROR record (obligation "agreement") whose
reason names both results. SAMPLED asserts nothing about every input, so it contradicts nothing; lemmas
about exact weights (hardmax-lookup, exact-lookup) are statements about other arithmetic and are not
compared with float decoding.
"""
from __future__ import annotations

from typing import Sequence

from verify.verdict import Record, Verdict

DECODE = "decode"
ASSERTS_ALL = (Verdict.CERTIFIED, Verdict.CHECKED)


def summary(r: Record) -> str:
    """One phrase stating a record's result: verdict, method and its strongest number."""
    if r.verdict is Verdict.CERTIFIED:
        margin = "" if r.min_margin is None else f" margin >= {r.min_margin:.3g}"
        return f"{r.obligation}: CERTIFIED{margin} ({r.arithmetic})"
    cov = "" if r.coverage is None else f", {r.coverage.text()} inputs"
    margin = "" if r.min_margin is None else f", min margin {r.min_margin:.3g}"
    return f"{r.obligation}: {r.verdict.name} ({r.arithmetic}{cov}{margin})"


def _about(r: Record) -> dict | None:
    about = (r.details or {}).get("about")
    return about if isinstance(about, dict) and about.get("statement") == DECODE else None


def disagreements(records: Sequence[Record]) -> list[Record]:
    """ERROR records for every pair (pass of `decode`, confirmed counterexample of `decode`) in one arithmetic."""
    passes = [r for r in records if r.obligation == DECODE and r.verdict in ASSERTS_ALL]
    counters = [(r, a) for r in records if r.verdict is Verdict.FALSIFIED and r.obligation != DECODE
                for a in [_about(r)] if a is not None]
    out = []
    for p in passes:
        for c, about in counters:
            if about.get("dtype") != p.dtype:
                continue
            reason = (f"{summary(p)}; {c.obligation}: FALSIFIED, a counterexample of the same statement "
                      f"({about.get('evaluators', 'confirmed')}): {about.get('text', c.reason)}")
            out.append(Record(claim=p.claim, obligation="agreement", verdict=Verdict.ERROR,
                              method=f"{p.obligation} vs {c.obligation} on 'every input decodes'", arithmetic=p.arithmetic,
                              params=dict(p.params), seed=p.seed, dtype=p.dtype, weights_sha256=p.weights_sha256,
                              reason=f"evaluators disagree: {reason}",
                              details={"pass": p.obligation, "counterexample": c.obligation}))
    return out
