"""The cross-check table, summary line and exit status (the rows come from prefixproof.verify.crosscheck.rows)."""
from __future__ import annotations

import math
from typing import Sequence

from prefixproof.output import render_table
from prefixproof.report import EXIT_ERROR, EXIT_FALSIFIED, EXIT_OK
from prefixproof.verify.verdict import Record, Verdict


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return f"{x:.2e}"


def verdict_cell(r: Record) -> str:
    """The verdict as printed (the table wraps long reasons; the JSON report has them as well)."""
    if r.details.get("control") and r.verdict is Verdict.FALSIFIED:
        return "FALSIFIED (control: expected)"
    return r.verdict_text


def render(records: Sequence[Record], width: int | None = None) -> str:
    head = ("target", "claim", "check", "dtype", "max error", "tolerance", "alpha range", "verdict", "note")
    rows = []
    for r in records:
        d = r.details
        alpha = "-" if d.get("alpha_min") is None else f"{d['alpha_min']:.3f}..{d['alpha_max']:.3f}"
        rows.append((d["target"], r.claim, r.obligation, r.dtype or "-", _num(d.get("max_error")),
                     _num(d.get("tolerance")), alpha, verdict_cell(r), d.get("note", "")))
    return render_table(head, rows, width=width)


def summary(records: Sequence[Record]) -> str:
    real = [r for r in records if not r.details.get("control")]
    ctrl = [r for r in records if r.details.get("control")]
    ok = sum(r.verdict is Verdict.CHECKED for r in real)
    caught = sum(r.verdict is Verdict.FALSIFIED for r in ctrl)
    worst: dict[str, float] = {}
    for r in real:
        e = r.details.get("max_error")
        if isinstance(e, float) and r.claim.startswith("prefix_"):
            worst[r.dtype] = max(worst.get(r.dtype, 0.0), e)
    if not real and not ctrl:
        return "nothing was checked (no rows)"
    parts = [f"{ok} of {len(real)} checks CHECKED" if real else "no check ran",
             f"{caught} of {len(ctrl)} negative controls flagged" if ctrl else "no negative control ran"]
    idle = [r for r in real if r.verdict is Verdict.UNKNOWN]
    if idle:
        parts.append(f"{len(idle)} compared nothing (UNKNOWN: the reason is in the row)")
    parts += [f"largest identity error {e:.2e} in {dt}" for dt, e in sorted(worst.items())]
    return "; ".join(parts)


def exit_status(records: Sequence[Record]) -> int:
    """As `verify`: 1 if a real check is FALSIFIED, else 3 if anything is ERROR (including a negative control
    that was not flagged), else 0. A control's expected FALSIFIED does not count."""
    if any(r.verdict is Verdict.FALSIFIED and not r.details.get("control") for r in records):
        return EXIT_FALSIFIED
    if any(r.verdict is Verdict.ERROR for r in records):
        return EXIT_ERROR
    return EXIT_OK
