"""Theorem 1: any Y in [V]^N from one virtual token (Petrov, Torr & Bibi 2024, Thm 1, Sec. 3)."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from constructions.alphabet import render
from constructions.model import Model
from constructions.theorem1 import Theorem1
from theorems.base import Obligation, Param, RunContext, Theorem
from verify.arith import NumpyOps
from verify.checker import Batch, check_decoding
from verify.generate import generate
from verify.verdict import Record


class Theorem1Inputs:
    """The input set [V]^N of target sequences, for the numeric checker."""

    def __init__(self, c: Theorem1) -> None:
        self.c = c
        self.total = c.V ** c.N
        self.form = f"{c.V}^{c.N}"
        self.positions_per_input = c.N

    def _batch(self, Y: np.ndarray) -> Batch:
        return Batch(self.c.encode_batch(Y), Y[:, :-1], Y, np.arange(self.c.N), list(Y))

    def exhaustive(self, batch_size: int) -> Iterator[Batch]:
        V, N = self.c.V, self.c.N
        powers = V ** np.arange(N - 1, -1, -1, dtype=np.int64)
        for lo in range(0, self.total, batch_size):
            idx = np.arange(lo, min(lo + batch_size, self.total), dtype=np.int64)
            yield self._batch((idx[:, None] // powers) % V)

    def extremes(self) -> np.ndarray:
        """Targets that stress the construction: the largest payload everywhere, zero, alternation."""
        V, N = self.c.V, self.c.N
        k = np.arange(N)
        return np.stack([np.full(N, V - 1), np.zeros(N, dtype=np.int64), (k % 2) * (V - 1), k % V])

    def sample_count(self, samples: int) -> int:
        return samples

    def sampling(self, samples: int) -> str:
        return f"{samples} seeded targets (first {min(samples, 4)} extremal)"

    def sampled(self, samples: int, seed: int, batch_size: int) -> Iterator[Batch]:
        rng = np.random.default_rng(seed)
        fixed = self.extremes()[:samples]
        done = 0
        while done < samples:
            n = min(batch_size, samples - done)
            rows = []
            if done < len(fixed):
                rows.append(fixed[done:done + n])
            need = n - sum(len(r) for r in rows)
            if need:
                rows.append(rng.integers(0, self.c.V, size=(need, self.c.N)))
            yield self._batch(np.concatenate(rows).astype(np.int64))
            done += n

    def describe(self, item: Any) -> dict[str, Any]:
        return {"target": render(item, self.c.alphabet), "target_tokens": [int(t) for t in item]}

    def confirm(self, model: Model, ops: NumpyOps, item: Any) -> dict[str, Any]:
        Y = np.asarray(item)
        gen = generate(model, soft=self.c.encode_batch(Y[None]), ops=ops)
        out, margins = gen.tokens[0], gen.margins[0]
        wrong = np.flatnonzero((out != Y) | ~(margins > 0))
        return {
            "method": "incremental greedy generation (key/value cache)",
            "generated": render(out, self.c.alphabet),
            "first_wrong_position": int(wrong[0]) if wrong.size else None,
            "fails": bool(wrong.size),
        }


def construction(ctx: RunContext) -> Theorem1:
    return Theorem1(ctx.params["V"], ctx.params["N"], ctx.alphabet)


def run_decode(ctx: RunContext) -> Record:
    c = construction(ctx)
    model = ctx.model if ctx.model is not None else c.model()
    return check_decoding(
        model, Theorem1Inputs(c), claim=THEOREM.id, params=dict(ctx.params), samples=ctx.samples,
        seed=ctx.seed, dtype=ctx.dtype, weights_sha256=ctx.weights_sha256, progress=ctx.reporter("theorem1"),
    )


THEOREM = Theorem(
    id="theorem1",
    title="Unconditional generation from one virtual token",
    paper="Petrov, Torr & Bibi (ICLR 2024), Theorem 1, Section 3",
    claim=(
        "For any vocabulary size V >= 2 and length N >= 1, a one-layer transformer with two heads and a "
        "three-layer ReLU MLP greedily generates any Y in [V]^N from the single virtual token whose "
        "payload coordinates are Y/V."
    ),
    predicate="forall Y in [V]^N: greedy(model, virtual(Y/V))[0:N] == Y with margin > 0 at every step",
    params=(
        Param("V", "vocabulary size", 2, 95),
        Param("N", "response length", 1, 20),
    ),
    obligations=(
        Obligation(
            id="decode",
            statement="every target decodes at every position with a positive margin (teacher-forced, "
                      "equivalent to greedy generation by induction)",
            level="numeric",
            method="verify.checker.check_decoding",
            run=run_decode,
        ),
    ),
)
