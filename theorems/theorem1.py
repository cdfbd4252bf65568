"""Theorem 1: any Y in [V]^N from one virtual token (Petrov, Torr & Bibi 2024, Thm 1, Sec. 3)."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from prefixproof.constructions.alphabet import render
from prefixproof.constructions.model import Model
from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.theorems.obligations.base import Param, RunContext, Theorem
from prefixproof.theorems.obligations.ladder import LookupSpec
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.theorems.obligations.adapter_prompt import adapter_prompt_obligation
from prefixproof.theorems.obligations.stored_prompt import stored_prompt_obligation
from prefixproof.theorems.obligations.lookup import lookup_obligations, run_hardmax, run_leakage
from prefixproof.verify.semantics.ops import NumpyOps
from prefixproof.verify.numeric.decoding import Batch
from prefixproof.verify.certify.lookup_rows import theorem1_rows
from prefixproof.verify.semantics.generate import generate
from prefixproof.verify.verdict import Record


class Theorem1Inputs:
    """The input set [V]^N of target sequences, for the numeric checker."""

    def __init__(self, enc: LookupEncoding) -> None:
        self.enc = enc
        self.V, self.N = enc.V, enc.K
        self.total = self.V ** self.N
        self.form = f"{self.V}^{self.N}"
        self.positions_per_input = self.N

    def _batch(self, Y: np.ndarray) -> Batch:
        return Batch(self.enc.encode_batch(Y), Y[:, :-1], Y, np.arange(self.N), list(Y))

    def exhaustive(self, batch_size: int) -> Iterator[Batch]:
        V, N = self.V, self.N
        powers = V ** np.arange(N - 1, -1, -1, dtype=np.int64)
        for lo in range(0, self.total, batch_size):
            idx = np.arange(lo, min(lo + batch_size, self.total), dtype=np.int64)
            yield self._batch((idx[:, None] // powers) % V)

    def extremes(self) -> np.ndarray:
        """Targets that stress the construction: the largest payload everywhere, zero, alternation."""
        V, N = self.V, self.N
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
                rows.append(rng.integers(0, self.V, size=(need, self.N)))
            yield self._batch(np.concatenate(rows).astype(np.int64))
            done += n

    def describe(self, item: Any) -> dict[str, Any]:
        return {"target": render(item, self.enc.alphabet), "target_tokens": [int(t) for t in item]}

    def box_inputs(self, row: int, y: int, rng: np.random.Generator, count: int) -> np.ndarray:
        """Concrete targets in box (row, y): Y_row = y, the other coordinates extreme or random."""
        base = np.concatenate([self.extremes(), rng.integers(0, self.V, size=(max(count - 4, 0), self.N))])[:count]
        base[:, row] = y
        return base

    def position_of(self, row: int) -> int:
        """The output position that decides row `row` of the certificate."""
        return row

    def batch_of(self, items: Any) -> Batch:
        return self._batch(np.asarray(items, dtype=np.int64))

    def confirm(self, model: Model, ops: NumpyOps, item: Any, position: int | None = None) -> dict[str, Any]:
        Y = np.asarray(item)
        gen = generate(model, soft=self.enc.encode_batch(Y[None]), ops=ops)
        out, margins = gen.tokens[0], gen.margins[0]
        wrong = np.flatnonzero((out != Y) | ~(margins > 0))
        return {
            "method": "incremental greedy generation (key/value cache)",
            "generated": render(out, self.enc.alphabet),
            "first_wrong_position": int(wrong[0]) if wrong.size else None,
            "min_margin": float(margins.min()),
            "margin_at": float(margins[position]) if position is not None else float(margins.min()),
            "fails": bool(wrong.size),
        }


def construction(ctx: RunContext) -> Theorem1:
    return Theorem1(ctx.params["V"], ctx.params["N"], ctx.alphabet)


SPEC = LookupSpec(
    claim="theorem1",
    block="target",
    rows=lambda payload, enc, dtype: theorem1_rows(payload, enc.V, enc.K, dtype),
    inputs=Theorem1Inputs,
    construction=lambda ctx: construction(ctx).model(),
)


def run_hardmax_lookup(ctx: RunContext) -> Record:
    c = construction(ctx)
    model = c.model()
    rows = theorem1_rows(np.array(c.stream.block("target")), c.V, c.N, None)
    return run_hardmax(THEOREM.id, model, rows, c.N - 1, c.scale, ctx)


def run_leakage_bound(ctx: RunContext) -> Record:
    c = construction(ctx)
    return run_leakage(THEOREM.id, c.V, c.N - 1, c.scale, ctx)


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
    obligations=lookup_obligations("theorem1", "Y_i/V", SPEC, run_hardmax_lookup, run_leakage_bound)
    + (stored_prompt_obligation("theorem1"), adapter_prompt_obligation("theorem1"),),
    payload_block="target",
)
