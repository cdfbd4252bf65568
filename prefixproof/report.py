"""Reports: a terminal table and a JSON document (format in docs/report.md)."""
from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from prefixproof.output import render_table, terminal_width, write_json as write_json_file
from prefixproof.plainwords import claim_sentence
from prefixproof.theorems.obligations.base import Theorem
from prefixproof.verify.verdict import Record, Verdict, weakest

REPORT_FORMAT = "prefixproof-report"
REPORT_VERSION = 1

EXIT_OK, EXIT_FALSIFIED, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3
VERDICT_CELL = 60  # longer verdict texts go below the table, whole and wrapped (never cut)


@dataclass(frozen=True)
class ClaimResult:
    theorem: Theorem
    params: dict[str, int]
    records: list[Record]
    skipped: tuple[str, ...] = ()  # obligations the quick level left out at these parameters

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


def versions() -> dict[str, str | None]:
    """prefixproof's version, Python's, and those of numpy, sympy, python-flint and torch. torch is null unless
    this process imported it (the run used it); the others are null only when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    from prefixproof import __version__

    out: dict[str, str | None] = {"prefixproof": __version__, "python": platform.python_version()}
    for dist in ("numpy", "sympy", "python-flint", "torch"):
        if dist == "torch" and "torch" not in sys.modules:
            out[dist] = None
            continue
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def provenance(command: Sequence[str], arithmetic: Sequence[str]) -> dict[str, Any]:
    """The fields every JSON report starts with (docs/report.md, "Common fields"): when, the command line,
    the versions, the machine, and the arithmetic(s) the run evaluated in."""
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": list(command),
        "versions": versions(),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "arithmetic": list(dict.fromkeys(arithmetic)),
    }


def _margin(m: float | None) -> str:
    if m is None:
        return "-"
    if math.isnan(m):
        return "nan"
    return f"{m:.3g}"


def sentence(c: ClaimResult) -> str:
    """The claim's plain sentence (prefixproof/plainwords.py)."""
    return claim_sentence(c.theorem.id, c.theorem.title, c.params, c.records)


def table(results: Sequence[ClaimResult], quiet: bool = False) -> str:
    """The verify report for the terminal: one table row per obligation, a short account per claim, and one
    plain sentence per claim at the end. `quiet`: the sentences only. Everything wraps to the terminal's
    width; nothing is cut."""
    width = terminal_width()
    lines: list[str] = []

    def say(text: str, indent: str = "") -> None:  # one logical line, wrapped to the width (never cut)
        lines.extend(textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent + "    ",
                                   break_long_words=True, break_on_hyphens=False) or [""])

    if not quiet:
        head = ("claim", "obligation", "verdict", "inputs covered", "min margin", "seconds")
        rows, notes = [], []
        for c in results:
            for i, r in enumerate(c.records):
                cov = "-" if r.coverage is None else r.coverage.text()
                rows.append((r.claim if i == 0 else "", r.obligation, _cell(r), cov, _margin(r.min_margin),
                             f"{r.seconds:.2f}"))
                notes.append(f"method: {r.method}; arithmetic: {r.arithmetic}")
        lines += render_table(head, rows, width=width, notes=notes).split("\n")
        lines.append("")
        for c in results:
            params = ", ".join(f"{k}={v}" for k, v in c.params.items())
            named = f"{c.theorem.id} ({params})" if params else c.theorem.id
            say(f"{named}: {c.verdict.name} - weakest of {len(c.records)} obligation(s)")
            for r in c.records:
                for line in _explain(r):
                    say(line, "  ")
            for ob in c.skipped:
                say(f"{ob}: not run - slow at this size for the quick level (run with --level symbolic)", "  ")
        lines += ["", "In plain words:"]
    for c in results:
        say(sentence(c), "" if quiet else "  ")
    return "\n".join(lines)


def _cell(r: Record) -> str:
    text = r.verdict_text
    return text if len(text) <= VERDICT_CELL else f"{r.verdict.name} (reason below)"


def _reason_lines(r: Record) -> list[str]:
    """The whole reason of a failing or undecided record, as one logical line wrapped (never cut)."""
    if not r.reason or (r.verdict is Verdict.UNKNOWN and len(r.verdict_text) <= VERDICT_CELL):
        return []
    text = f"{r.obligation}: {r.verdict_text}" if r.verdict in (Verdict.UNKNOWN, Verdict.ERROR) else \
        f"{r.obligation}: {r.verdict.name}: {r.reason}"
    return [text]


def _explain(r: Record) -> list[str]:
    """One or two lines saying how strong a record's verdict is and what it rests on."""
    out = _reason_lines(r)
    d = r.details or {}
    if r.verdict is Verdict.PROVED and str(d.get("parametric_in", "")).startswith("per instance"):
        what = str(d["parametric_in"])[len("per instance"):].strip(" ;")
        out.append(f"{r.obligation}: PROVED for this instance only{' ' + what if what else ''}")
    elif r.verdict is Verdict.PROVED and d.get("parametric_in"):
        extra = f"; {d['per_instance']}" if d.get("per_instance") else ""
        out.append(f"{r.obligation}: PROVED for every value of {d['parametric_in']}{extra}")
    elif r.verdict is Verdict.PROVED and d.get("per_instance"):
        out.append(f"{r.obligation}: PROVED for this instance only ({d['per_instance']})")
    elif r.verdict is Verdict.CERTIFIED:
        bound = "" if r.min_margin is None else f"; decode margin >= {r.min_margin:.6g}"
        out.append(f"{r.obligation}: CERTIFIED for every input in {r.arithmetic}{bound}")
    elif r.verdict is Verdict.SAMPLED:
        out.append(f"{r.obligation}: SAMPLED is evidence from seeded samples (seed {r.seed}), not a proof")
    if r.counterexample:
        ce = json.dumps(r.counterexample)
        short = ce if len(ce) < 400 else ce[:400] + " [continues: the whole counterexample is in the --json report]"
        out.append(f"counterexample for {r.obligation}: {short}")
    return out


def to_json(results: Sequence[ClaimResult], argv: Sequence[str], dtype: str = "float64",
            seed: int | None = None) -> dict[str, Any]:
    """The verify report. `argv` is the whole command line, starting with "prefixproof"."""
    used = [r.arithmetic for c in results for r in c.records if r.arithmetic and r.arithmetic != "-"]
    return {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        **provenance(argv, used),
        "dtype": dtype,
        "seed": seed,
        "exit_status": exit_status(results),
        "claims": [
            {
                "claim": c.theorem.id,
                "title": c.theorem.title,
                "paper": c.theorem.paper,
                "predicate": c.theorem.predicate,
                "params": c.params,
                "verdict": c.verdict.name,
                "summary": sentence(c),
                "obligations": [r.to_json() for r in c.records],
                "skipped": list(c.skipped),
            }
            for c in results
        ],
    }


def write_json(path: str | Path, results: Sequence[ClaimResult], argv: Sequence[str], dtype: str = "float64",
               seed: int | None = None) -> None:
    write_json_file(path, to_json(results, argv, dtype, seed))
