"""Theorem 2: any map m: [V] -> [V] from one virtual token (Petrov, Torr & Bibi 2024, Thm 2, Sec. 3)."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from constructions.alphabet import render
from constructions.model import Model
from constructions.theorem2 import Theorem2
from theorems.base import Obligation, Param, RunContext, Theorem
from verify.arith import NumpyOps
from verify.checker import Batch, check_decoding
from verify.generate import generate
from verify.verdict import Record


class Theorem2Inputs:
    """The input set [V]^V x [V] of (map, user token) pairs, for the numeric checker.

    Sampling draws K maps and checks each one on every user token, so a
    sampled run covers K * V inputs.
    """

    def __init__(self, c: Theorem2) -> None:
        self.c = c
        V = c.V
        self.total = V ** V * V
        self.form = f"{V}^{V + 1}"
        self.positions_per_input = 2

    def _batches(self, maps: Iterator[np.ndarray], batch_size: int) -> Iterator[Batch]:
        """All (map, u) pairs of the given maps, in batches of at most batch_size sequences."""
        V = self.c.V
        pending_maps: list[np.ndarray] = []
        pending_u: list[np.ndarray] = []
        count = 0
        for m in maps:
            for lo in range(0, V, batch_size):
                u = np.arange(lo, min(lo + batch_size, V))
                if count + len(u) > batch_size and count:
                    yield self._batch(pending_maps, pending_u)
                    pending_maps, pending_u, count = [], [], 0
                pending_maps.append(np.broadcast_to(m, (len(u), V)))
                pending_u.append(u)
                count += len(u)
        if count:
            yield self._batch(pending_maps, pending_u)

    def _batch(self, maps: list[np.ndarray], us: list[np.ndarray]) -> Batch:
        M = np.concatenate(maps).astype(np.int64)
        u = np.concatenate(us).astype(np.int64)
        expected = M[np.arange(len(u)), u][:, None]
        items = [(M[i], int(u[i])) for i in range(len(u))]
        return Batch(self.c.encode_batch(M), u[:, None], expected, np.array([1]), items)

    def exhaustive(self, batch_size: int) -> Iterator[Batch]:
        V = self.c.V
        powers = V ** np.arange(V - 1, -1, -1, dtype=np.int64)
        maps = ((i // powers) % V for i in range(V ** V))
        return self._batches(maps, batch_size)

    def extremes(self) -> np.ndarray:
        """Maps that stress the construction: identity, constants, reversal, a shift."""
        V = self.c.V
        k = np.arange(V)
        return np.stack([k, np.full(V, V - 1), V - 1 - k, np.zeros(V, dtype=np.int64), (k + 1) % V])

    def sample_count(self, samples: int) -> int:
        return samples * self.c.V

    def sampling(self, samples: int) -> str:
        return f"{samples} seeded maps (first {min(samples, 5)} extremal) x all {self.c.V} inputs"

    def sampled(self, samples: int, seed: int, batch_size: int) -> Iterator[Batch]:
        rng = np.random.default_rng(seed)
        fixed = self.extremes()

        def maps() -> Iterator[np.ndarray]:
            for i in range(samples):
                yield fixed[i] if i < len(fixed) else rng.integers(0, self.c.V, size=self.c.V)

        return self._batches(maps(), batch_size)

    def describe(self, item: Any) -> dict[str, Any]:
        m, u = item
        a = self.c.alphabet
        return {"map": render(m, a), "map_tokens": [int(t) for t in m], "input": render([u], a),
                "expected": render([m[u]], a)}

    def confirm(self, model: Model, ops: NumpyOps, item: Any) -> dict[str, Any]:
        m, u = item
        gen = generate(model, soft=self.c.encode_batch(np.asarray(m)[None]), prompt=[[u]], steps=1, ops=ops)
        got, margin = int(gen.tokens[0, 0]), float(gen.margins[0, 0])
        return {
            "method": "incremental greedy generation (key/value cache)",
            "generated": render([got], self.c.alphabet),
            "fails": bool(got != m[u] or not margin > 0),
        }


def construction(ctx: RunContext) -> Theorem2:
    return Theorem2(ctx.params["V"], ctx.alphabet)


def run_decode(ctx: RunContext) -> Record:
    c = construction(ctx)
    model = ctx.model if ctx.model is not None else c.model()
    return check_decoding(
        model, Theorem2Inputs(c), claim=THEOREM.id, params=dict(ctx.params), samples=ctx.samples,
        seed=ctx.seed, dtype=ctx.dtype, weights_sha256=ctx.weights_sha256, progress=ctx.reporter("theorem2"),
    )


THEOREM = Theorem(
    id="theorem2",
    title="Conditional generation: any token-to-token map from one virtual token",
    paper="Petrov, Torr & Bibi (ICLR 2024), Theorem 2, Section 3",
    claim=(
        "For any vocabulary size V >= 2, a one-layer transformer with context 2, two heads and a three-layer "
        "ReLU MLP answers m(u) to every user token u, for any map m: [V] -> [V], conditioned on the single "
        "virtual token with payload m/V."
    ),
    predicate="forall m in [V]^[V], u in [V]: argmax logits(model, [virtual(m/V), u])[1] == m(u), margin > 0",
    params=(Param("V", "vocabulary size", 2, 95),),
    obligations=(
        Obligation(
            id="decode",
            statement="every (map, user token) pair decodes to m(u) with a positive margin",
            level="numeric",
            method="verify.checker.check_decoding",
            run=run_decode,
        ),
    ),
)
