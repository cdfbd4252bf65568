"""Numeric checker: run a construction against a decoding claim on a finite input set.

A claim about greedy decoding is turned into a `DecodeProblem`: batches of
teacher-forced inputs with the token expected at each checked position. The
checker evaluates them (exhaustively when the input set is small enough, else
on K seeded samples), tracks the minimum decode margin (target logit minus the
best other logit; a tie or NaN is a failure), and re-runs the first failure
through a second code path (incremental greedy generation with a key/value
cache) before calling the claim FALSIFIED.

In float32, float16 and bfloat16 every input runs in two executions of the
format's class (verify/semantics/executions.py; docs/certificates.md, "Execution
classes"): numpy arrays of that dtype with numpy's own matmul, then the bias
add, and the fused execution (each affine map rounded once). The verdict
passes only when both pass; a failure in either is confirmed in that same
execution, and the record names the executions.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from prefixproof.constructions.io import weights_sha256 as model_sha256
from prefixproof.constructions.model import Model
from prefixproof.verify.semantics.ops import NumpyOps
from prefixproof.verify.semantics.formats import format_of
from prefixproof.verify.semantics.executions import Execution, describe, executions
from prefixproof.verify.semantics.forward import forward
from prefixproof.verify.parallel import default_workers, ordered_map
from prefixproof.verify.budget import Budget, current
from prefixproof.verify.estimates import forward_bytes, shape_of
from prefixproof.verify.verdict import Coverage, Record, Verdict

EXHAUSTIVE_LIMIT = 1 << 20  # input sets up to this size are checked exhaustively
BATCH_FLOATS = 1 << 24  # activation budget per batch (~128 MB in float64)


@dataclass(frozen=True)
class Batch:
    soft: np.ndarray | None  # (B, k, d) virtual tokens, float64
    tokens: np.ndarray  # (B, n) token ids after the virtual tokens
    expected: np.ndarray  # (B, c) tokens that must win at `positions`
    positions: np.ndarray  # (c,) output positions that are checked
    items: Sequence[Any]  # one identifier per sequence, for counterexamples


class DecodeProblem(Protocol):
    """A finite input set of a decoding claim, as the checker needs it."""

    total: int  # size of the input set
    form: str  # compact form of the size, e.g. "95^20"
    positions_per_input: int  # sequence length of one input (for batch sizing)

    def exhaustive(self, batch_size: int) -> Iterator[Batch]: ...
    def sampled(self, samples: int, seed: int, batch_size: int) -> Iterator[Batch]: ...
    def sample_count(self, samples: int) -> int: ...
    def sampling(self, samples: int) -> str: ...
    def describe(self, item: Any) -> dict[str, Any]: ...
    def box_inputs(self, row: int, y: int, rng: np.random.Generator, count: int) -> Any: ...
    def batch_of(self, items: Any) -> Batch: ...
    def position_of(self, row: int) -> int: ...
    def confirm(self, model: Model, ops: NumpyOps, item: Any, position: int | None = None) -> dict[str, Any]: ...


def decode_margins(logits: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """logit[expected] - max over other tokens; <= 0 or NaN means the claim fails there."""
    target = np.take_along_axis(logits, expected[..., None], axis=-1)[..., 0]
    others = logits.copy()
    np.put_along_axis(others, expected[..., None], -np.inf, axis=-1)
    return target - others.max(axis=-1)


def batch_size_for(model: Model, positions: int, workers: int = 1, budget: Budget | None = None) -> int:
    """Sequences per batch: the batches in flight stay within BATCH_FLOATS of activations and within the memory
    budget (`forward_bytes` per sequence); OverBudget (before allocating) when not even one sequence fits,
    which makes the obligation UNKNOWN(budget)."""
    per_seq = forward_bytes(shape_of(model), positions)
    cap = max(1, 8 * BATCH_FLOATS // (per_seq * max(1, workers)))
    return (budget or current()).batch("numeric checker (one input)", per_seq, workers=workers, at_most=cap)


@dataclass
class _Tally:
    seen: int = 0
    failures: int = 0
    min_margin: float = math.inf
    first: tuple[Any, int, float] | None = None  # (item, position, margin)
    first_scale: float = 1.0  # largest |logit| at the first failing decision

    def add(self, batch: Batch, margins: np.ndarray, min_margin: float = 0.0,
            scales: np.ndarray | None = None) -> None:
        self.seen += len(batch.items)
        bad = ~(margins > 0) | (margins < min_margin)
        if np.isnan(margins).any():
            self.min_margin = math.nan
        elif not math.isnan(self.min_margin):
            self.min_margin = min(self.min_margin, float(margins.min()))
        if bad.any():
            self.failures += int(bad.any(axis=1).sum())
            if self.first is None:
                b, c = np.argwhere(bad)[0]
                self.first = (batch.items[b], int(batch.positions[c]), float(margins[b, c]))
                self.first_scale = 1.0 if scales is None else float(scales[b, c])


def check_decoding(
    model: Model,
    problem: DecodeProblem,
    *,
    claim: str,
    params: dict[str, Any],
    samples: int,
    seed: int,
    dtype: str = "float64",
    weights_sha256: str | None = None,
    exhaustive_limit: int = EXHAUSTIVE_LIMIT,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    min_margin: float = 0.0,
) -> Record:
    """Evaluate every (or K sampled) input(s); the verdict is CHECKED, SAMPLED, FALSIFIED or ERROR.

    A decision fails when its margin is not > 0 or is below `min_margin`.

    Longer than 60 lines on purpose: the one batch loop of the checker (batching, both executions, margins,
    confirmation, record) kept together so that no path can skip the confirmation.
    """
    t0 = time.perf_counter()
    weights_sha256 = weights_sha256 or model_sha256(model)
    if not all(layer.causal for layer in model.layers):
        return Record(claim=claim, obligation="decode", verdict=Verdict.UNKNOWN, method="teacher-forced pass",
                      arithmetic=f"numpy {dtype}", params=params, seconds=time.perf_counter() - t0, dtype=dtype,
                      weights_sha256=weights_sha256,
                      reason="non-causal attention: greedy generation recomputes every prefix, so one "
                             "teacher-forced pass does not decide it")
    execs = executions(model, dtype)
    exhaustive = problem.total <= exhaustive_limit
    workers = workers or default_workers()
    bs = batch_size_for(execs[0].model, problem.positions_per_input, workers)
    goal = problem.total if exhaustive else problem.sample_count(samples)
    batches = problem.exhaustive(bs) if exhaustive else problem.sampled(samples, seed, bs)
    tallies = [_Tally() for _ in execs]
    failing_any = 0

    def margins_of(batch: Batch) -> list[tuple[np.ndarray, np.ndarray]]:
        return [_margins(e, batch) for e in execs]

    for batch, per_exec in ordered_map(margins_of, batches, workers):
        bad_any = np.zeros(len(batch.items), dtype=bool)
        for e, tally, (margins, scales) in zip(execs, tallies, per_exec):
            tally.add(batch, margins, min_margin, scales)
            if not e.diagnostic:
                bad_any |= (~(margins > 0) | (margins < min_margin)).any(axis=1)
        failing_any += int(bad_any.sum())
        if progress is not None:
            progress(tallies[0].seen, goal)

    method = f"teacher-forced pass, {'exhaustive' if exhaustive else problem.sampling(samples)}; {describe(execs)}"
    deciding = [(e, t) for e, t in zip(execs, tallies) if not e.diagnostic]
    common = dict(
        claim=claim, obligation="decode", method=method, arithmetic=_arithmetic(dtype, execs), params=params,
        coverage=Coverage(tallies[0].seen, problem.total, problem.form), min_margin=_lowest(t for _, t in deciding),
        seed=None if exhaustive else seed, dtype=dtype, weights_sha256=weights_sha256,
        details={"failing_inputs": failing_any, "executions": _per_execution(execs, tallies)},
    )
    failed = [(e, t) for e, t in deciding if t.first is not None]
    if not failed and exhaustive and tallies[0].seen != problem.total:  # CHECKED only for every input
        return Record(verdict=Verdict.ERROR, reason=f"the exhaustive run evaluated {tallies[0].seen} of "
                      f"{problem.total} inputs", seconds=time.perf_counter() - t0, **common)
    if not failed:
        verdict = Verdict.CHECKED if exhaustive else Verdict.SAMPLED
        return Record(verdict=verdict, seconds=time.perf_counter() - t0, **common)

    e, tally = failed[0]
    item, position, margin = tally.first
    counterexample = problem.describe(item)
    counterexample.update(failing_position=position, teacher_forced_margin=margin, execution=e.name)
    counterexample["confirmation"] = confirm(problem, e.model, e.ops, item, position, margin, tally.first_scale,
                                             dtype, min_margin)
    second = counterexample["confirmation"]
    verdict = Verdict.FALSIFIED if second["fails"] else Verdict.ERROR
    reason = None if second["fails"] else f"incremental generation disagrees with the teacher-forced pass ({e.name})"
    return Record(verdict=verdict, reason=reason, counterexample=counterexample,
                  seconds=time.perf_counter() - t0, **common)


def _margins(e: Execution, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Decode margins (B, c) of one execution on a batch (computed exactly in float64 from the format's logits),
    and the largest |logit| at each decision."""
    logits = np.asarray(forward(e.model, batch.tokens, batch.soft, ops=e.ops, outputs_at=batch.positions).logits,
                        dtype=np.float64)
    return decode_margins(logits, batch.expected), np.abs(logits).max(axis=-1)


def _lowest(tallies: Any) -> float:
    values = [t.min_margin for t in tallies]
    return math.nan if any(math.isnan(v) for v in values) else min(values)


def _arithmetic(dtype: str, execs: list[Execution]) -> str:
    return f"numpy {dtype}" if len(execs) == 1 else f"{dtype}: " + " and ".join(e.name for e in execs)


def _per_execution(execs: list[Execution], tallies: list[_Tally]) -> dict[str, dict[str, Any]]:
    return {e.name: {"min_margin": t.min_margin, "failing_inputs": t.failures,
                     "role": "diagnostic" if e.diagnostic else "decides the verdict"} for e, t in zip(execs, tallies)}


ROUNDING_AGREEMENT = 16  # multiples of eps x |logit| within which two executions' margins agree


def confirm(problem: DecodeProblem, model: Model, ops: NumpyOps, item: Any, position: int, margin: float,
            scale: float, dtype: str, min_margin: float) -> dict[str, Any]:
    """Re-run a failing input through the second code path (incremental generation).

    The failure is confirmed when the second path fails too, or when its margin at the same decision
    agrees with the first path's within rounding (16 eps |logit|): both are executions of the same
    arithmetic, so a failing one exists; their operation orders differ, which in float32 and below can
    move a near-tie to either side. Margins further apart mean an evaluator is wrong: not confirmed.
    """
    second = problem.confirm(model, ops, item, position)
    if min_margin > 0 and margin > 0:  # a pass that misses the demanded margin: confirm that margin
        second["fails"] = bool(second.get("margin_at", math.nan) < min_margin)
    if not second["fails"]:
        eps = format_of(dtype).eps
        tol = ROUNDING_AGREEMENT * eps * max(1.0, scale)
        if abs(second.get("margin_at", math.inf) - margin) <= tol:
            second["fails"] = True
            second["note"] = (f"the second path's margin {second['margin_at']:.3g} is within {dtype} rounding "
                              f"({tol:.2g}) of the first's {margin:.3g}: the tie depends on the order of operations, "
                              f"and every order is a {dtype} execution")
    return second


def search_boxes(model: Model, problem: DecodeProblem, boxes: list[tuple[int, int]], *, dtype: str = "float64",
                 min_margin: float = 0.0, per_box: int = 8, seed: int = 0) -> dict[str, Any] | None:
    """Look for a concrete failing input inside the given (row, value) boxes; confirmed like a checker failure."""
    return evaluate_boxes(model, problem, boxes, dtype=dtype, min_margin=min_margin, per_box=per_box,
                          seed=seed)["counterexample"]


def evaluate_boxes(model: Model, problem: DecodeProblem, boxes: list[tuple[int, int]], *, dtype: str = "float64",
                   min_margin: float = 0.0, per_box: int = 8, seed: int = 0) -> dict[str, Any]:
    """Run concrete inputs from each (row, value) box: the smallest margin at the boxes' decisions, the number
    of inputs, and the first failure (confirmed by incremental generation), or None."""
    execs = [e for e in executions(model, dtype) if not e.diagnostic]
    rng = np.random.default_rng(seed)
    lowest, count = math.inf, 0
    for row, y in boxes:
        batch = problem.batch_of(problem.box_inputs(row, y, rng, per_box))
        at = batch.positions[batch.positions == problem.position_of(row)]
        batch = Batch(batch.soft, batch.tokens, batch.expected[:, np.isin(batch.positions, at)], at, batch.items)
        count += len(batch.items)
        for e in execs:
            tally = _Tally()
            margins, scales = _margins(e, batch)
            tally.add(batch, margins, min_margin, scales)
            lowest = min(lowest, tally.min_margin) if not math.isnan(tally.min_margin) else math.nan
            if tally.first is None:
                continue
            item, position, margin = tally.first
            counterexample = problem.describe(item)
            counterexample.update(failing_position=position, teacher_forced_margin=margin,
                                  box={"row": row, "value": y}, execution=e.name)
            counterexample["confirmation"] = confirm(problem, e.model, e.ops, item, position, margin,
                                                     tally.first_scale, dtype, min_margin)
            return {"min_margin": lowest, "inputs": count, "counterexample": counterexample}
    return {"min_margin": lowest, "inputs": count, "counterexample": None}
