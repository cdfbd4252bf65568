"""How a claim is stated: id, parameters, predicate, paper reference, proof obligations.

Each module in `theorems/` defines one `Theorem`. Its obligations name the
`verify/` method that discharges them and carry a `run` function from a
`RunContext` to a `prefixproof.verify.verdict.Record`; `theorems/obligations/runner.py` executes them
and turns any exception into an ERROR record (never a pass).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from prefixproof.constructions.model import Model
from prefixproof.verify.verdict import Record


@dataclass(frozen=True)
class Param:
    name: str
    meaning: str
    minimum: int
    default: int
    maximum: int | None = None

    def check(self, value: int) -> int:
        if not isinstance(value, int) or value < self.minimum or (self.maximum is not None and value > self.maximum):
            top = "" if self.maximum is None else f" and <= {self.maximum}"
            raise ValueError(f"{self.name} ({self.meaning}) must be an integer >= {self.minimum}{top}, got {value!r}")
        return value


@dataclass
class RunContext:
    """Everything an obligation needs to run: parameter values and the knobs of the run."""

    params: dict[str, int]
    samples: int
    seed: int
    dtype: str = "float64"
    levels: frozenset[str] = frozenset({"symbolic", "certify"})
    quick: bool = False  # the default level: skip obligations that are slow at these parameters
    min_margin: float = 0.0  # demanded decode margin (the sanity mode raises it)
    alphabet: str | None = None
    model: Model | None = None  # user weights to check instead of the construction
    weights_sha256: str | None = None
    progress: Callable[[str], Callable[[int, int], None]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def reporter(self, label: str) -> Callable[[int, int], None] | None:
        return None if self.progress is None else self.progress(label)


LEVELS = ("symbolic", "certify", "numeric")


@dataclass(frozen=True)
class Obligation:
    """One statement to establish; `levels` are the kinds of method that can discharge it."""

    id: str
    statement: str
    levels: tuple[str, ...]  # subset of LEVELS
    method: str  # the verify/ function(s) that discharge it
    run: Callable[[RunContext], Record]
    applies_to_weights: bool = True  # False: a statement about the construction itself, not about given weights
    quick: Callable[[dict[str, int]], bool] = lambda params: True  # fast enough for the default (quick) level
    needs_directory: bool = False  # True: about a weights directory's files (runs only with --weights DIR)
    needs_adapter: bool = False  # True: about a directory's PEFT adapter (runs only when --weights DIR holds one)


@dataclass(frozen=True)
class Theorem:
    id: str
    title: str
    paper: str
    claim: str  # in words
    predicate: str  # as a formula
    params: tuple[Param, ...]
    obligations: tuple[Obligation, ...]
    # The residual-stream block holding the virtual tokens' payload, for the lookup claims: a weights
    # directory whose labels carry this block can be checked against the claim (`verify --weights`).
    payload_block: str | None = None

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"{self.id} has no parameter {name!r}")

    def resolve(self, given: dict[str, int | None]) -> dict[str, int]:
        """Parameter values: the given ones checked against their ranges, defaults elsewhere."""
        out = {}
        for p in self.params:
            value = given.get(p.name)
            out[p.name] = p.check(p.default if value is None else value)
        return out
