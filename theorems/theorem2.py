"""Theorem 2: any map m: [V] -> [V] from one virtual token (Petrov, Torr & Bibi 2024, Thm 2, Sec. 3)."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from prefixproof.constructions.alphabet import render
from prefixproof.constructions.model import Model
from prefixproof.constructions.theorem2 import Theorem2
from prefixproof.theorems.obligations.base import Param, RunContext, Theorem
from prefixproof.theorems.obligations.ladder import LookupSpec
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.theorems.obligations.adapter_prompt import adapter_prompt_obligation
from prefixproof.theorems.obligations.stored_prompt import stored_prompt_obligation
from prefixproof.theorems.obligations.lookup import lookup_obligations, run_hardmax, run_leakage
from prefixproof.verify.semantics.ops import NumpyOps
from prefixproof.verify.numeric.decoding import Batch
from prefixproof.verify.certify.lookup_rows import theorem2_rows
from prefixproof.verify.semantics.generate import generate
from prefixproof.verify.verdict import Record


class Theorem2Inputs:
    """The input set [V]^V x [V] of (map, user token) pairs, for the numeric checker.

    Sampling draws K maps and checks each one on every user token, so a
    sampled run covers K * V inputs.
    """

    def __init__(self, enc: LookupEncoding) -> None:
        self.enc = enc
        self.V = V = enc.V
        self.total = V ** V * V
        self.form = f"{V}^{V + 1}"
        self.positions_per_input = 2

    def _batches(self, maps: Iterator[np.ndarray], batch_size: int) -> Iterator[Batch]:
        """All (map, u) pairs of the given maps, in batches of at most batch_size sequences."""
        V = self.V
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
        return Batch(self.enc.encode_batch(M), u[:, None], expected, np.array([1]), items)

    def exhaustive(self, batch_size: int) -> Iterator[Batch]:
        V = self.V
        powers = V ** np.arange(V - 1, -1, -1, dtype=np.int64)
        maps = ((i // powers) % V for i in range(V ** V))
        return self._batches(maps, batch_size)

    def extremes(self) -> np.ndarray:
        """Maps that stress the construction: identity, constants, reversal, a shift."""
        V = self.V
        k = np.arange(V)
        return np.stack([k, np.full(V, V - 1), V - 1 - k, np.zeros(V, dtype=np.int64), (k + 1) % V])

    def sample_count(self, samples: int) -> int:
        return samples * self.V

    def sampling(self, samples: int) -> str:
        return f"{samples} seeded maps (first {min(samples, 5)} extremal) x all {self.V} inputs"

    def sampled(self, samples: int, seed: int, batch_size: int) -> Iterator[Batch]:
        rng = np.random.default_rng(seed)
        fixed = self.extremes()

        def maps() -> Iterator[np.ndarray]:
            for i in range(samples):
                yield fixed[i] if i < len(fixed) else rng.integers(0, self.V, size=self.V)

        return self._batches(maps(), batch_size)

    def describe(self, item: Any) -> dict[str, Any]:
        m, u = item
        a = self.enc.alphabet
        return {"map": render(m, a), "map_tokens": [int(t) for t in m], "input": render([u], a),
                "expected": render([m[u]], a)}

    def box_inputs(self, row: int, y: int, rng: np.random.Generator, count: int) -> list:
        """Concrete (map, input) pairs in box (row u, y): m(u) = y, the other values extreme or random."""
        maps = np.concatenate([self.extremes(), rng.integers(0, self.V, size=(max(count - 5, 0), self.V))])[:count]
        maps[:, row] = y
        return [(m, row) for m in maps]

    def position_of(self, row: int) -> int:
        """The output position that decides row `row` of the certificate."""
        return 1

    def batch_of(self, items: Any) -> Batch:
        return self._batch([np.asarray(m)[None] for m, _ in items], [np.array([u]) for _, u in items])

    def confirm(self, model: Model, ops: NumpyOps, item: Any, position: int | None = None) -> dict[str, Any]:
        m, u = item
        gen = generate(model, soft=self.enc.encode_batch(np.asarray(m)[None]), prompt=[[u]], steps=1, ops=ops)
        got, margin = int(gen.tokens[0, 0]), float(gen.margins[0, 0])
        return {
            "method": "incremental greedy generation (key/value cache)",
            "generated": render([got], self.enc.alphabet),
            "min_margin": margin,
            "margin_at": margin,
            "fails": bool(got != m[u] or not margin > 0),
        }


def construction(ctx: RunContext) -> Theorem2:
    return Theorem2(ctx.params["V"], ctx.alphabet)


SPEC = LookupSpec(
    claim="theorem2",
    block="map",
    rows=lambda payload, enc, dtype: theorem2_rows(payload, enc.V, dtype),
    inputs=Theorem2Inputs,
    construction=lambda ctx: construction(ctx).model(),
)


def run_hardmax_lookup(ctx: RunContext) -> Record:
    c = construction(ctx)
    model = c.model()
    rows = theorem2_rows(np.array(c.stream.block("map")), c.V, None)
    return run_hardmax(THEOREM.id, model, rows, 1, c.scale, ctx)


def run_leakage_bound(ctx: RunContext) -> Record:
    c = construction(ctx)
    return run_leakage(THEOREM.id, c.V, 1, c.scale, ctx)


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
    obligations=lookup_obligations("theorem2", "m(u)/V", SPEC, run_hardmax_lookup, run_leakage_bound)
    + (stored_prompt_obligation("theorem2"), adapter_prompt_obligation("theorem2"),),
    payload_block="map",
)
