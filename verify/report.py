"""Reports: a terminal table and a JSON document (format in docs/report.md)."""
from __future__ import annotations

import datetime as _dt
import json
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from theorems.base import Theorem
from verify.verdict import Record, Verdict, weakest

REPORT_FORMAT = "prefixproof-report"
REPORT_VERSION = 1

EXIT_OK, EXIT_FALSIFIED, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3


@dataclass(frozen=True)
class ClaimResult:
    theorem: Theorem
    params: dict[str, int]
    records: list[Record]

    @property
    def verdict(self) -> Verdict:
        return weakest(r.verdict for r in self.records)


def exit_status(results: Sequence[ClaimResult]) -> int:
    """1 if anything is FALSIFIED, else 3 if the verifier failed (ERROR), else 0."""
    verdicts = [r.verdict for c in results for r in c.records]
    if Verdict.FALSIFIED in verdicts:
        return EXIT_FALSIFIED
    if Verdict.ERROR in verdicts:
        return EXIT_ERROR
    return EXIT_OK


def _margin(m: float | None) -> str:
    if m is None:
        return "-"
    if math.isnan(m):
        return "nan"
    return f"{m:.3g}"


def table(results: Sequence[ClaimResult]) -> str:
    head = ("claim", "obligation", "method", "verdict", "inputs covered", "min margin", "seconds")
    rows = [head]
    for c in results:
        for r in c.records:
            cov = "-" if r.coverage is None else r.coverage.text()
            rows.append((r.claim, r.obligation, f"{r.method} [{r.arithmetic}]", r.verdict_text, cov,
                         _margin(r.min_margin), f"{r.seconds:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    for c in results:
        params = ", ".join(f"{k}={v}" for k, v in c.params.items())
        named = f"{c.theorem.id} ({params})" if params else c.theorem.id
        lines.append(f"{named}: {c.verdict.name} - weakest of {len(c.records)} obligation(s)")
        for r in c.records:
            if r.counterexample:
                lines.append(f"  counterexample for {r.obligation}: {json.dumps(r.counterexample)}")
            if r.verdict is Verdict.SAMPLED:
                lines.append(f"  {r.obligation}: SAMPLED is evidence from seeded samples (seed {r.seed}), not a proof")
    return "\n".join(lines)


def to_json(results: Sequence[ClaimResult], argv: Sequence[str]) -> dict[str, Any]:
    return {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(argv),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "exit_status": exit_status(results),
        "claims": [
            {
                "claim": c.theorem.id,
                "title": c.theorem.title,
                "paper": c.theorem.paper,
                "predicate": c.theorem.predicate,
                "params": c.params,
                "verdict": c.verdict.name,
                "obligations": [r.to_json() for r in c.records],
            }
            for c in results
        ],
    }


def write_json(path: str | Path, results: Sequence[ClaimResult], argv: Sequence[str]) -> None:
    Path(path).write_text(json.dumps(to_json(results, argv), indent=2, default=str) + "\n")
