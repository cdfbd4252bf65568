"""Verdict vocabulary and the report record of one proof obligation.

Verdicts, strongest first (DESIGN.md, "Verdicts"):

  PROVED     symbolic or exact reasoning valid for every input
  CERTIFIED  sound enclosure over the whole input set at the finite softmax scale
  CHECKED    exhaustive evaluation of a finite input set
  SAMPLED    no failure in K seeded samples; never a proof
  UNKNOWN    bound too loose, timed out, or unsupported (with a reason)
  FALSIFIED  a counterexample, confirmed by a second evaluator
  ERROR      the verifier itself failed; never a pass

A theorem's verdict is the weakest of its obligations' verdicts.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Iterable


class Verdict(Enum):
    PROVED = 0
    CERTIFIED = 1
    CHECKED = 2
    SAMPLED = 3
    UNKNOWN = 4
    FALSIFIED = 5
    ERROR = 6

    @property
    def passed(self) -> bool:
        """True for the verdicts that report no failure (PROVED..SAMPLED)."""
        return self.value <= Verdict.SAMPLED.value


def weakest(verdicts: Iterable[Verdict]) -> Verdict:
    verdicts = list(verdicts)
    if not verdicts:
        return Verdict.ERROR
    return max(verdicts, key=lambda v: v.value)


def _json_int(n: int) -> int | str | None:
    """JSON-safe integer: exact below 2^53, a decimal string up to ~300 digits, else None (use the form)."""
    if n < 2**53:
        return n
    return str(n) if n.bit_length() < 1000 else None


@dataclass(frozen=True)
class Coverage:
    """How much of the input set an obligation covered.

    `total` is the size of the input set as an exact integer when it is
    small enough to print, `form` its compact form ("95^20"), `log10` its
    size's base-10 logarithm, and `covered` how many inputs were evaluated.
    """

    covered: int
    total: int
    form: str

    @property
    def log10(self) -> float:
        return math.log10(self.total) if self.total > 0 else float("-inf")

    @property
    def exhaustive(self) -> bool:
        return self.covered >= self.total

    def text(self) -> str:
        total = str(self.total) if self.total < 10**12 else f"{self.form} (log10 {self.log10:.2f})"
        if self.exhaustive:
            return f"all {total}"
        return f"{self.covered} of {total}"

    def to_json(self) -> dict[str, Any]:
        return {
            "covered": _json_int(self.covered),
            "total": _json_int(self.total),
            "total_form": self.form,
            "total_log10": round(self.log10, 4),
            "exhaustive": self.exhaustive,
        }


@dataclass(frozen=True)
class Record:
    """The outcome of one obligation of one claim (one row of the report)."""

    claim: str
    obligation: str
    verdict: Verdict
    method: str
    arithmetic: str
    params: dict[str, Any]
    coverage: Coverage | None = None
    min_margin: float | None = None
    seconds: float = 0.0
    seed: int | None = None
    dtype: str | None = None
    weights_sha256: str | None = None
    reason: str | None = None
    counterexample: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict_text(self) -> str:
        if self.verdict in (Verdict.UNKNOWN, Verdict.ERROR) and self.reason:
            return f"{self.verdict.name}({self.reason})"
        return self.verdict.name

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["verdict"] = self.verdict.name
        out["coverage"] = None if self.coverage is None else self.coverage.to_json()
        if self.min_margin is not None and not math.isfinite(self.min_margin):
            out["min_margin"] = str(self.min_margin)
        return out
