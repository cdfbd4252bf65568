"""One plain sentence per claim: what was established, over which inputs, in which arithmetic, and what the
margin means. `verify` prints them last and stores them in the JSON report (`claims[].summary`).

Every number in a sentence comes from the run's records; nothing is a constant.
"""
from __future__ import annotations

from typing import Any, Sequence

from prefixproof.verify.verdict import Record, Verdict, weakest

# what one input of a lookup claim is
INPUT_NOUN = {
    "theorem1": "target sequences",
    "theorem2": "(map, user token) pairs",
    "long_response": "(table, user token) pairs",
    "multi_token": "(table, input) pairs",
    "conditional": "(table, input) pairs",
    "multi_token_packing": "(packed table, input) pairs",
}
EXACT_WORDS = {"exact (symbolic)": "symbolic algebra (sympy)", "exact (rationals)": "exact rational arithmetic"}
MARGIN_MEANS = "the closest wrong token's logit is {m} below the right one's"


def _num(x: float) -> str:
    return f"{x:.2g}"


def _inputs(r: Record, claim: str) -> str:
    cov = r.coverage
    noun = INPUT_NOUN.get(claim, "inputs")
    if cov is None:
        return noun
    size = str(cov.total) if cov.total < 10**12 else cov.form
    if cov.exhaustive:
        return f"all {size} {noun}"
    return f"{cov.covered} seeded samples out of {size} {noun}"


def _rounding(r: Record) -> str:
    """How much of a certified bound the allowance for rounding took, from the run's own figures."""
    d = r.details or {}
    cert = d.get("certificate") or {}
    real, bound = cert.get("margin_lower_bound_real_arithmetic"), cert.get("margin_lower_bound")
    fmt = (r.dtype or "the format")
    if isinstance(real, float) and isinstance(bound, float):
        loss = real - bound
        if loss <= 0:
            return f"; allowing for every {fmt} rounding does not lower that bound measurably"
        return (f"; allowing for every {fmt} rounding takes {_num(loss)} off that bound "
                f"({_num(loss / real if real else float('inf'))} of it)")
    pack = d.get("packing_certificate") or {}
    if isinstance(pack.get("value_error"), float):
        return (f"; the packed value is read within {_num(pack['value_error'])} of its grid point "
                f"(softmax leakage and {fmt} rounding together)")
    return ""


def _lookup_sentence(claim: str, rec: Record, verdict: Verdict, weakest_rec: Record) -> str:
    where = rec.arithmetic
    m = rec.min_margin
    if verdict is Verdict.CERTIFIED or (verdict is Verdict.PROVED and rec.verdict is Verdict.CERTIFIED):
        return (f"established for {_inputs(rec, claim)} by a sound interval certificate of {where}: in every "
                f"input, at every step, {MARGIN_MEANS.format(m=_num(m))} or more{_rounding(rec)}.")
    if verdict is Verdict.CHECKED:
        margin = "" if m is None else f"; at worst {MARGIN_MEANS.format(m=_num(m))}"
        return f"every one of {_inputs(rec, claim)} was run in {where} and decodes right{margin}."
    if verdict is Verdict.SAMPLED:
        margin = "" if m is None else f"; at worst {MARGIN_MEANS.format(m=_num(m))}"
        return (f"not proved: {_inputs(rec, claim)} (seed {rec.seed}) were run in {where} without a failure"
                f"{margin}. Samples are evidence, not a proof.")
    return _failure(weakest_rec)


def _failure(r: Record) -> str:
    if r.verdict is Verdict.FALSIFIED:
        return (f"false as built: {r.obligation} has a counterexample in {r.arithmetic}, confirmed by a second "
                "evaluator (shown above).")
    if r.verdict is Verdict.ERROR:
        return (f"nothing is established: the verifier failed or two evaluators disagree on {r.obligation} "
                "(reason above).")
    return f"not established: {r.obligation} is undecided ({r.reason or 'no reason given'})."


def _other_sentence(records: Sequence[Record], verdict: Verdict) -> str:
    if not verdict.passed:
        return _failure(max(records, key=lambda r: r.verdict.value))
    proved = [r for r in records if r.verdict is Verdict.PROVED]
    rest = [r for r in records if r.verdict is not Verdict.PROVED]
    parts = []
    if proved:
        names = " and ".join(r.obligation for r in proved)
        how = " and ".join(dict.fromkeys(EXACT_WORDS.get(r.arithmetic, r.arithmetic) for r in proved))
        parts.append(f"{names} proved with {how}, for every input and with no rounding involved")
    for r in rest:
        if r.verdict is Verdict.CHECKED:
            parts.append(f"{r.obligation} checked on {_covered(r)} in {r.arithmetic}")
        elif r.verdict is Verdict.SAMPLED:
            worst = (r.details or {}).get("worst_error_over_tolerance")
            how = f"no failure in {_covered(r)}" if r.coverage is not None else f"no failure: {r.method}"
            parts.append(f"{r.obligation} not proved: {how} (seed {r.seed}, {r.arithmetic})"
                         + (f", the worst error {worst:.2g} of its tolerance" if isinstance(worst, float) else "")
                         + "; that is evidence, not a proof")
        else:
            parts.append(f"{r.obligation} {r.verdict.name}")
    return "; ".join(parts) + "."


def _covered(r: Record) -> str:
    if r.coverage is None:
        return "its cases"
    return f"all {r.coverage.covered} cases" if r.coverage.exhaustive else \
        f"{r.coverage.covered} seeded cases"


def claim_sentence(claim: str, title: str, params: dict[str, Any], records: Sequence[Record]) -> str:
    """One sentence: the claim in words, then what the run established about it."""
    verdict = weakest(r.verdict for r in records)
    named = claim + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")
    if not records:
        return f"{named}: nothing ran, so nothing is established."
    decode = next((r for r in records if r.obligation == "decode"), None)
    worst = max(records, key=lambda r: r.verdict.value)
    if decode is not None and verdict.passed:
        body = _lookup_sentence(claim, decode, decode.verdict, worst)
    elif decode is not None:
        body = _failure(worst)
    else:
        body = _other_sentence(records, verdict)
    return f"{named}, \"{title}\": {verdict.name}, {body}"
