"""Claim-level agreement: two records of one claim's run that contradict each other make the claim ERROR.

Records say which statement they establish or refute. Only records about the *same* statement in the *same*
arithmetic are compared:

- a `decode` record with verdict CERTIFIED or CHECKED asserts "every input of the claim decodes with a
  positive margin" in its arithmetic (its dtype);
- any other record whose `details["about"]` is {"statement": "decode", "dtype": ...} and whose verdict is
  FALSIFIED holds a confirmed counterexample of that statement (for example `stored-prompt`, when the
  directory's own on-grid prompt generates a wrong answer, confirmed by a teacher-forced pass).

- the other way round, a `decode` FALSIFIED whose counterexample is the very table another record holds
  `details["about"]["holds_for"]` (verdict CHECKED: `stored-prompt` generated it correctly on every user
  input). Only in float64, where both run numpy float64, and only when the counterexample's confirmation
  does not depend on the order of operations (no near-tie note) with a negative teacher-forced margin.

Both at once means one evaluator is wrong: the rule adds an ERROR record (obligation "agreement") whose
reason names both results. SAMPLED asserts nothing about every input, so it contradicts nothing; lemmas
about exact weights (hardmax-lookup, exact-lookup) are statements about other arithmetic and are not
compared with float decoding.
"""
from __future__ import annotations

from typing import Sequence

from prefixproof.verify.verdict import Record, Verdict

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
    out = _reverse(records)
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


def _payload(ce: dict) -> list | None:
    for key in ("target_tokens", "map_tokens", "table_tokens"):
        if key in ce:
            return list(_flat(ce[key]))
    return None


def _flat(x):
    for v in x:
        if isinstance(v, (list, tuple)):
            yield from _flat(v)
        else:
            yield int(v)


def _reverse(records: Sequence[Record]) -> list[Record]:
    """decode FALSIFIED on exactly the table another record generated correctly everywhere (float64)."""
    out = []
    for f in records:
        ce = f.counterexample or {}
        conf = ce.get("confirmation") or {}
        if not (f.obligation == DECODE and f.verdict is Verdict.FALSIFIED and f.dtype == "float64"
                and conf.get("fails") and "note" not in conf and ce.get("teacher_forced_margin", 0) < 0):
            continue
        table = _payload(ce)
        for c in records:
            about = _about(c)
            if c is f or c.verdict is not Verdict.CHECKED or about is None or about.get("dtype") != f.dtype \
                    or table is None or about.get("holds_for") != table:
                continue
            reason = (f"evaluators disagree: {f.obligation}: FALSIFIED, counterexample on the stored table "
                      f"(teacher-forced margin {ce['teacher_forced_margin']:.3g}, generation {conf.get('generated')!r} "
                      f"fails); {summary(c)}: {about.get('text', '')}")
            out.append(Record(claim=f.claim, obligation="agreement", verdict=Verdict.ERROR,
                              method=f"{f.obligation} vs {c.obligation} on the stored table", arithmetic=f.arithmetic,
                              params=dict(f.params), seed=f.seed, dtype=f.dtype, weights_sha256=f.weights_sha256,
                              reason=reason, details={"counterexample": f.obligation, "pass": c.obligation}))
    return out
