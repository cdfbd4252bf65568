"""A hypothesis-driven fuzz runner with a fixed example budget, chunks on worker processes, shrinking and replay.

Two engines draw the cases. `hypothesis` (the default) is described below.
`random` draws cases with numpy's seeded generator and shrinks a failure
greedily (`verify/identities/shrink.py`): no targeting, but no per-example
hypothesis overhead either (on this machine hypothesis costs about as much
per example as measuring a small model).

The budget is split into chunks; each chunk is one hypothesis run
(`max_examples` = the chunk size, `@seed` = a seed derived from the run's
seed and the chunk index, no example database), so a run with an example
budget is reproducible whatever the number of workers. Hypothesis draws a
`Case`, the property measures it, `target()` steers towards the worst
error/tolerance ratio, and the first failing case is shrunk by hypothesis
before the chunk returns it. Only generation counts as examples: calls made
while shrinking are not counted.

Why not HypoFuzz: it is a long-running, coverage-guided pytest replacement
with a dashboard and no fixed example budget; this CLI needs "N examples, then
a table", and coverage feedback adds nothing to straight-line numpy code.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from prefixproof.verify.identities.cases import CONFIRM_DTYPE, Case
from prefixproof.verify.identities.properties import CONTROLS, PROPERTIES
from prefixproof.verify.identities.checks import Measure

SIZES: dict[str, dict[str, Any]] = {
    "default": {},
    "small": {"layers": 1, "heads": (1, 2), "d": (1, 4), "d_k": (1, 2), "d_v": (1, 3), "n": (1, 4),
              "batch": 1, "prefix_len": (1, 2)},
}


def _measure(prop: str, control: str | None, case: Case) -> tuple[list[Measure], str | None]:
    """A property's measures on one case; an exception while measuring is a failure of the case."""
    try:
        return PROPERTIES[prop].measures(case, control), None
    except Exception as e:  # noqa: BLE001 - reported as the case's failure, never swallowed as a pass
        return [], f"{type(e).__name__}: {e}"


class HarnessError(RuntimeError):
    """The fuzz harness itself failed (not a counterexample)."""


@dataclass
class Failure:
    property: str
    control: str | None
    case: Case
    measures: list[Measure]
    error: str | None = None  # an exception raised while measuring

    def bad(self) -> list[Measure]:
        return [m for m in self.measures if not m.ok]

    def to_json(self) -> dict[str, Any]:
        return {"property": self.property, "control": self.control, "case": self.case.to_json(),
                "measures": [m.to_json() for m in self.measures], "error": self.error}


@dataclass
class Stats:
    """Examples generated and the worst error/tolerance ratio seen, for one property."""

    examples: int = 0
    seconds: float = 0.0
    worst: float = 0.0
    worst_measure: str | None = None
    worst_case: Case | None = None
    failure: Failure | None = None

    def merge(self, other: "Stats") -> None:
        self.examples += other.examples
        self.seconds += other.seconds
        if other.worst > self.worst or self.worst_case is None:
            self.worst, self.worst_measure, self.worst_case = other.worst, other.worst_measure, other.worst_case
        self.failure = self.failure or other.failure


class _Failed(Exception):
    """Raised inside the hypothesis test to stop it at the first failing case (the case is kept in `state`)."""


def run_chunk(prop: str, seed: int, examples: int, size: str = "default", control: str | None = None,
              deadline: float | None = None, shrink: bool = True) -> Stats:
    """One hypothesis run of `examples` examples of `prop` (or of a control); stops at the first failure."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings, target
    from hypothesis import seed as hseed

    from prefixproof.verify.identities.strategies import cases

    limits = dict(SIZES[size])
    if control is not None:
        limits.update(CONTROLS[control].limits)
    stats = Stats()
    state: dict[str, Any] = {"failed": None}
    t0 = time.perf_counter()

    def measure(case: Case) -> tuple[list[Measure], str | None]:
        return _measure(prop, control, case)

    phases = [Phase.generate, Phase.target] + ([Phase.shrink] if shrink else [])

    @settings(max_examples=examples, database=None, deadline=None, derandomize=False, phases=phases,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, report_multiple_bugs=False)
    @hseed(seed)
    @given(cases(**limits))
    def check(case: Case) -> None:
        shrinking = state["failed"] is not None
        if not shrinking and deadline is not None and time.monotonic() > deadline:
            return
        measures, error = measure(case)
        ratio = max((m.ratio for m in measures), default=0.0)
        if error is None:
            target(min(ratio, 1e300) if math.isfinite(ratio) else 1e300, label="worst error / tolerance")
        if not shrinking:
            stats.examples += 1
            if ratio > stats.worst or stats.worst_case is None:
                worst = max(measures, key=lambda m: m.ratio) if measures else None
                stats.worst, stats.worst_case = ratio, case
                stats.worst_measure = None if worst is None else worst.name
        if error is not None or ratio > 1.0:
            state["failed"] = Failure(prop, control, case, measures, error)
            raise _Failed

    try:
        check()
    except _Failed:
        state["stopped"] = True  # the failing case is already in state["failed"]
    except Exception as e:  # noqa: BLE001 - hypothesis itself failed (e.g. a flaky failure)
        if state["failed"] is None:
            raise HarnessError(f"hypothesis failed: {type(e).__name__}: {e}") from e
    stats.failure = state["failed"]
    stats.seconds = time.perf_counter() - t0
    return stats


def run_random_chunk(prop: str, seed: int, examples: int, size: str = "default", control: str | None = None,
                     deadline: float | None = None, shrink: bool = True) -> Stats:
    """The random engine: `examples` cases from numpy's seeded generator, no hypothesis per example.

    Much cheaper per example than hypothesis (no choice sequence, no targeting); the first failure is
    shrunk greedily by `prefixproof.verify.identities.shrink.shrink`.
    """
    import numpy as np

    from prefixproof.verify.identities.shrink import shrink as greedy

    limits = dict(SIZES[size])
    if control is not None:
        limits.update(CONTROLS[control].limits)
    rng = np.random.default_rng(seed)
    stats = Stats()
    t0 = time.perf_counter()

    def measure(case: Case) -> tuple[list[Measure], str | None]:
        return _measure(prop, control, case)

    for _ in range(examples):
        if deadline is not None and time.monotonic() > deadline:
            break
        case = Case.random(rng, **limits)
        measures, error = measure(case)
        ratio = max((m.ratio for m in measures), default=0.0)
        stats.examples += 1
        if ratio > stats.worst or stats.worst_case is None:
            worst = max(measures, key=lambda m: m.ratio) if measures else None
            stats.worst, stats.worst_case, stats.worst_measure = ratio, case, None if worst is None else worst.name
        if error is not None or ratio > 1.0:
            if shrink:
                case, _ = greedy(case, lambda c: (lambda ms, err: err is not None or
                                                  any(not m.ok for m in ms))(*measure(c)))
                measures, error = measure(case)
            stats.failure = Failure(prop, control, case, measures, error)
            break
    stats.seconds = time.perf_counter() - t0
    return stats


ENGINES = {"hypothesis": run_chunk, "random": run_random_chunk}


@dataclass
class Plan:
    """A fuzz run: which properties, how many examples, how long, which seed, how many worker processes."""

    properties: list[str]
    examples: int | None = None
    seconds: float | None = None
    seed: int = 0
    workers: int = 1
    size: str = "default"
    chunk: int = 500
    engine: str = "hypothesis"
    results: dict[str, Stats] = field(default_factory=dict)


def chunk_seed(seed: int, prop: str, index: int) -> int:
    return (seed * 1_000_003 + sum(map(ord, prop)) * 7919 + index) % 2**32


def fuzz(plan: Plan, report: Callable[[str, Stats, int | None], None] | None = None) -> dict[str, Stats]:
    """Run every property of the plan; stops a property at its first (shrunk) failure."""
    if plan.examples is None and plan.seconds is None:
        raise ValueError("give an example budget, a time budget, or both")
    per_prop_seconds = None if plan.seconds is None else plan.seconds / len(plan.properties)
    import prefixproof.verify.identities.strategies  # noqa: F401 - loaded once here, inherited by forked workers
    pool = ProcessPoolExecutor(plan.workers) if plan.workers > 1 else None
    try:
        for prop in plan.properties:
            plan.results[prop] = _fuzz_one(plan, prop, per_prop_seconds, pool, report)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return plan.results


def _fuzz_one(plan: Plan, prop: str, seconds: float | None, pool: ProcessPoolExecutor | None,
              report: Callable[[str, Stats, int | None], None] | None) -> Stats:
    total = Stats()
    deadline = None if seconds is None else time.monotonic() + seconds
    budget = plan.examples
    index = 0
    pending: list[Future] = []

    def submit() -> bool:
        nonlocal index, budget
        if budget is not None and budget <= 0:
            return False
        if deadline is not None and time.monotonic() > deadline:
            return False
        n = plan.chunk if budget is None else min(plan.chunk, budget)
        args = (prop, chunk_seed(plan.seed, prop, index), n, plan.size, None, deadline)
        runner = ENGINES[plan.engine]
        pending.append(pool.submit(runner, *args) if pool else _Done(runner(*args)))
        index += 1
        if budget is not None:
            budget -= n
        return True

    t0 = time.perf_counter()
    while len(pending) < max(plan.workers, 1) and submit():
        continue
    while pending:
        stats = pending.pop(0).result()
        total.merge(stats)
        total.seconds = time.perf_counter() - t0
        if report:
            report(prop, total, plan.examples)
        if total.failure is not None:
            for f in pending:
                f.cancel()
            break
        submit()
    total.seconds = time.perf_counter() - t0
    return total


class _Done:
    """A finished result with the Future interface (for the single-process path)."""

    def __init__(self, value: Stats) -> None:
        self.value = value

    def result(self) -> Stats:
        return self.value

    def cancel(self) -> bool:
        return False


def run_control(name: str, seed: int, examples: int = 2000) -> Stats:
    """Run a negative control until it is flagged (a failure found) or the budget runs out; no shrinking."""
    control = CONTROLS[name]
    return run_chunk(control.property, chunk_seed(seed, name, 0), examples, control=name, shrink=False)


def replay(failure: dict[str, Any]) -> tuple[list[Measure], list[Measure]]:
    """Re-measure a saved failure: in its own dtype, and the same weights in extended precision (the confirmation)."""
    case = Case.from_json(failure.get("case"))
    prop, control = failure.get("property"), failure.get("control")
    if prop not in PROPERTIES:
        raise ValueError(f"unknown property {prop!r} in the saved failure; known: {', '.join(PROPERTIES)}")
    if control is not None and control not in CONTROLS:
        raise ValueError(f"unknown control {control!r} in the saved failure; known: {', '.join(CONTROLS)}")
    own = PROPERTIES[prop].measures(case, control)
    wide = PROPERTIES[prop].measures(case, control, CONFIRM_DTYPE)
    return own, wide
