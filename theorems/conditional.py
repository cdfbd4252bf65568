"""Conditional generation claims (paper appendix): long_response, multi_token, and the general case.

- long_response (V, R): any map from a user token to a response of R tokens, from R virtual tokens;
- multi_token (V, L): any map from L user tokens to one token (the precision-robust construction);
- conditional (V, L, R): any map from L user tokens to R response tokens.

All three are lookup claims over constructions/conditional.py: row (r, u) decides response token r
for input u, reading table coordinate index(u) of virtual token r.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from prefixproof.constructions.alphabet import render
from prefixproof.constructions.conditional import Conditional
from prefixproof.constructions.model import Model
from prefixproof.theorems.obligations.base import Param, RunContext, Theorem
from prefixproof.theorems.obligations.ladder import LookupSpec
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.theorems.obligations.adapter_prompt import adapter_prompt_obligation
from prefixproof.theorems.obligations.stored_prompt import stored_prompt_obligation
from prefixproof.theorems.obligations.lookup import QUICK_LIMIT, lookup_obligations, run_hardmax, run_leakage
from prefixproof.verify.semantics.ops import NumpyOps
from prefixproof.verify.numeric.decoding import Batch
from prefixproof.verify.certify.lookup_rows import LookupRows, encoded_values
from prefixproof.verify.semantics.generate import generate
from prefixproof.verify.verdict import Record


def shape_of(enc: LookupEncoding) -> tuple[int, int, int]:
    """(V, L, R) of a conditional model from its labels: V^L table coordinates, context 2R + L - 1."""
    V, K = enc.V, enc.K
    L = max(1, round(np.log(K) / np.log(V)))
    if V ** L != K:
        raise ValueError(f"the table block has {K} coordinates, not a power of V={V}")
    R = (enc.n_ctx - L + 1) // 2
    return V, L, R


def conditional_rows(payload: np.ndarray, enc: LookupEncoding, dtype: str | None) -> LookupRows:
    V, L, R = shape_of(enc)
    K = V ** L
    lo, hi, exact = encoded_values(V, dtype)
    a = np.tile(np.arange(K), R)
    r = np.repeat(np.arange(R), K)
    digits = np.stack([(a // V ** (L - 1 - l)) % V for l in range(L)], axis=1)
    return LookupRows(np.asarray(payload), lo, hi, exact, query_pos=R + L - 1 + r, own=a, n_positions=2 * R + L - 1,
                      virtual=R, own_pos=r, fixed_pos=tuple(range(R, R + L)), fixed_tok=digits)


class ConditionalInputs:
    """Tables [V]^(V^L x R) times inputs [V]^L; sampling draws tables and checks each on every input."""

    def __init__(self, enc: LookupEncoding) -> None:
        self.enc = enc
        self.V, self.L, self.R = shape_of(enc)
        self.K = self.V ** self.L
        self.total = self.V ** (self.K * self.R + self.L)
        self.form = f"{self.V}^{self.K * self.R + self.L}"
        self.positions_per_input = 2 * self.R + self.L - 1
        self.outputs = np.arange(self.R) + self.R + self.L - 1

    def _soft(self, tables: np.ndarray) -> np.ndarray:
        soft = np.zeros((len(tables), self.R, self.enc.d))
        soft[:, :, self.enc.payload] = np.transpose(tables, (0, 2, 1)) / self.V
        return soft

    def _digits(self, a: np.ndarray) -> np.ndarray:
        return np.stack([(a // self.V ** (self.L - 1 - l)) % self.V for l in range(self.L)], axis=1)

    def batch_of(self, items: Any) -> Batch:
        tables = np.stack([t for t, _ in items]).astype(np.int64)
        a = np.array([i for _, i in items], dtype=np.int64)
        resp = tables[np.arange(len(a)), a]  # (B, R)
        tokens = np.concatenate([self._digits(a), resp[:, :-1]], axis=1)
        return Batch(self._soft(tables), tokens, resp, self.outputs, list(items))

    def _all_inputs(self, tables: Iterator[np.ndarray], batch_size: int) -> Iterator[Batch]:
        items: list = []
        for t in tables:
            for a in range(self.K):
                items.append((t, a))
                if len(items) >= batch_size:
                    yield self.batch_of(items)
                    items = []
        if items:
            yield self.batch_of(items)

    def exhaustive(self, batch_size: int) -> Iterator[Batch]:
        n = self.K * self.R
        powers = self.V ** np.arange(n - 1, -1, -1, dtype=np.int64)
        return self._all_inputs((((i // powers) % self.V).reshape(self.K, self.R) for i in range(self.V ** n)),
                                batch_size)

    def extremes(self) -> np.ndarray:
        V, K, R = self.V, self.K, self.R
        a, r = np.arange(K)[:, None], np.arange(R)[None, :]
        return np.stack([np.full((K, R), V - 1), np.zeros((K, R), dtype=np.int64), (a + r) % V, (V - 1 - a - r) % V])

    def sample_count(self, samples: int) -> int:
        return samples * self.K

    def sampling(self, samples: int) -> str:
        return f"{samples} seeded tables (first {min(samples, 4)} extremal) x all {self.K} inputs"

    def sampled(self, samples: int, seed: int, batch_size: int) -> Iterator[Batch]:
        rng = np.random.default_rng(seed)
        fixed = self.extremes()

        def tables() -> Iterator[np.ndarray]:
            for i in range(samples):
                yield fixed[i] if i < len(fixed) else rng.integers(0, self.V, size=(self.K, self.R))

        return self._all_inputs(tables(), batch_size)

    def describe(self, item: Any) -> dict[str, Any]:
        t, a = item
        al = self.enc.alphabet
        return {"input": render(self._digits(np.array([a]))[0], al), "expected": render(t[a], al),
                "table_tokens": np.asarray(t).tolist()}

    def box_inputs(self, row: int, y: int, rng: np.random.Generator, count: int) -> list:
        r, a = divmod(row, self.K)
        tables = np.concatenate([self.extremes(), rng.integers(0, self.V, size=(max(count - 4, 0), self.K, self.R))])
        tables = tables[:count].copy()
        tables[:, a, r] = y
        return [(t, a) for t in tables]

    def position_of(self, row: int) -> int:
        return int(self.outputs[row // self.K])

    def confirm(self, model: Model, ops: NumpyOps, item: Any, position: int | None = None) -> dict[str, Any]:
        t, a = item
        gen = generate(model, soft=self._soft(np.asarray(t)[None]), prompt=self._digits(np.array([a])),
                       steps=self.R, ops=ops)
        out, margins = gen.tokens[0], gen.margins[0]
        wrong = np.flatnonzero((out != t[a]) | ~(margins > 0))
        at = None if position is None else int(position - self.outputs[0])
        return {"method": "incremental greedy generation (key/value cache)", "generated": render(out, self.enc.alphabet),
                "min_margin": float(margins.min()),
                "margin_at": float(margins[at]) if at is not None else float(margins.min()),
                "fails": bool(wrong.size)}


def _make(claim_id: str, title: str, claim: str, params: tuple[Param, ...], fixed: dict[str, int]) -> Theorem:
    def construction(ctx: RunContext) -> Conditional:
        p = {**fixed, **ctx.params}
        return Conditional(p["V"], p["L"], p["R"], ctx.alphabet if p["V"] == 95 else None)

    spec = LookupSpec(claim=claim_id, block="table", rows=conditional_rows, inputs=ConditionalInputs,
                      construction=lambda ctx: construction(ctx).model())

    def hardmax(ctx: RunContext) -> Record:
        c = construction(ctx)
        model = c.model()
        rows = conditional_rows(np.array(c.stream.block("table")), LookupEncoding.of(model, "table"), None)
        return run_hardmax(claim_id, model, rows, c.competitors, c.scale, ctx)

    def leakage(ctx: RunContext) -> Record:
        c = construction(ctx)
        return run_leakage(claim_id, c.V, c.competitors, c.scale, ctx, pointers=c.L)

    def hardmax_quick(params: dict[str, int]) -> bool:
        c = Conditional(**{k: v for k, v in {**fixed, **params}.items() if k in ("V", "L", "R")})
        return c.R * c.K * c.n_ctx * c.stream.dim <= QUICK_LIMIT

    return Theorem(
        id=claim_id, title=title, paper="Petrov, Torr & Bibi (ICLR 2024), appendix (conditional generation)",
        claim=claim,
        predicate="forall tables m, inputs u in [V]^L: greedy(model, [virtual(m_r/V) for r < R] + u)[0:R] == m(u), "
                  "margin > 0 at every step",
        params=params,
        obligations=lookup_obligations(claim_id, "m_r(u)/V", spec, hardmax, leakage, hardmax_quick)
        + (stored_prompt_obligation(claim_id), adapter_prompt_obligation(claim_id),),
        payload_block="table",
    )


LONG_RESPONSE = _make(
    "long_response", "A response of R tokens to one user token, from R virtual tokens",
    "For any V >= 2 and R >= 1, a one-layer transformer with two heads and a three-layer ReLU MLP answers "
    "every user token u with the response m(u) in [V]^R, for any map m, conditioned on R virtual tokens.",
    (Param("V", "vocabulary size", 2, 95), Param("R", "response length", 1, 10)), {"L": 1})
MULTI_TOKEN = _make(
    "multi_token", "One token conditioned on L user tokens (precision-robust construction)",
    "For any V >= 2 and L >= 1, a one-layer transformer with L+1 heads and a three-layer ReLU MLP answers "
    "m(u_1, ..., u_L) for any map m: [V]^L -> [V], conditioned on one virtual token of width V^L that stores "
    "one table entry per coordinate (never more than log2 V bits in a coordinate).",
    (Param("V", "vocabulary size", 2, 95), Param("L", "user tokens", 1, 2)), {"R": 1})
CONDITIONAL = _make(
    "conditional", "R response tokens conditioned on L user tokens",
    "For any V, L, R >= 1 (V >= 2), a one-layer transformer with L+1 heads and a three-layer ReLU MLP answers "
    "any map m: [V]^L -> [V]^R, conditioned on R virtual tokens of width V^L.",
    (Param("V", "vocabulary size", 2, 7), Param("L", "user tokens", 1, 2), Param("R", "response length", 1, 3)), {})
