"""Exact hardmax evaluation of a lookup claim, streamed in batches of rows within the memory budget.

Each row of a lookup claim (one decoding decision: its own payload value symbolic, every other coordinate
and free token over its exact interval) is an independent batch entry, so the rows go through the forward
pass a batch at a time: the batch size comes from the budget (`prefixproof.verify.estimates.hardmax_bytes`
per row, the exact weights once), and only the logits at each row's own query position are computed
(`forward(..., outputs_at=[query])`, rows grouped by query position). The values there are those of the
full pass (docs/semantics.md); the score gaps the evaluator records are those of the queries whose logits
are decided, which are the ones the leakage lemma needs.
"""
from __future__ import annotations

import functools
from fractions import Fraction
from typing import Callable, Iterator

import numpy as np

from prefixproof.constructions.model import Model
from prefixproof.verify.budget import Budget, current
from prefixproof.verify.estimates import OBJECT_ENTRY, hardmax_bytes, hardmax_fixed_bytes, shape_of
from prefixproof.verify.exact.hardmax import Form, HardmaxOps, exact_dense, q
from prefixproof.verify.semantics.forward import forward


def embedding_hull(E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact column-wise min and max over the rows of an exact dense embedding (every token a free
    position may hold)."""
    return np.array([min(col) for col in E.T], dtype=object), np.array([max(col) for col in E.T], dtype=object)


def row_forms(claim, rows: np.ndarray, E: np.ndarray, hull: tuple[np.ndarray, np.ndarray], d: int) -> Form:
    """Hardmax input forms (len(rows), positions, d) of the given rows of a lookup claim (exact encoding).

    Virtual tokens carry the payload box [0, (V-1)/V], except the row's own coordinate, which is the
    symbol t; fixed content positions hold the row's tokens; free ones the hull of all embeddings.
    """
    n, V = claim.n_positions, claim.V
    lo = np.empty((len(rows), n, d), dtype=object)
    lo[...] = q(0)
    hi, b = lo.copy(), lo.copy()
    top = q(Fraction(V - 1, V))
    own_pos = claim.own_position
    for i, r in enumerate(rows):
        for p in range(n):
            if p < claim.virtual:
                hi[i, p, claim.payload] = top
                if p == own_pos[r]:
                    hi[i, p, claim.payload[claim.own[r]]] = q(0)
                    b[i, p, claim.payload[claim.own[r]]] = q(1)
            elif p in claim.fixed_pos:
                row = E[claim.fixed_tok[r, claim.fixed_pos.index(p)]]
                lo[i, p, :], hi[i, p, :] = row, row
            else:
                lo[i, p, :], hi[i, p, :] = hull
    return Form(lo, hi, b)


def rows_per_batch(model: Model, claim, budget: Budget | None = None) -> int:
    """Rows per batch within the budget; OverBudget when not even one row fits."""
    shape = shape_of(model)
    per_row = hardmax_bytes(shape, claim.n_positions) + 3 * OBJECT_ENTRY * claim.n_positions * shape.d_model
    return (budget or current()).batch("exact hardmax evaluation (one row)", per_row, hardmax_fixed_bytes(shape),
                                       at_most=claim.rows)


def hardmax_logits(model: Model, claim, ops: HardmaxOps, *, budget: Budget | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[np.ndarray, Form]]:
    """Yield (row indices, logit forms (B, V) at each row's query position), a batch at a time.

    Raises `Undecided` as the evaluator does, and OverBudget (before allocating) when one row is too large."""
    batch = rows_per_batch(model, claim, budget)
    E = exact_dense(model.embed)
    hull = embedding_hull(E)
    qpos = np.asarray(claim.query_pos)
    done = 0
    for p in np.unique(qpos):
        group = np.flatnonzero(qpos == p)
        for lo in range(0, len(group), batch):
            rows = group[lo:lo + batch]
            forms = row_forms(claim, rows, E, hull, model.d_model)
            logits = forward(model, None, forms, ops=ops, outputs_at=[int(p)]).logits
            done += len(rows)
            if progress is not None:
                progress(done, claim.rows)
            yield rows, logits[:, 0]


@functools.lru_cache(maxsize=4)
def _grid(V: int) -> tuple[np.ndarray, np.ndarray]:
    want_b = np.array([q(Fraction(2 * j, V)) for j in range(V)], dtype=object)
    want_c = np.array([q(-Fraction(j * j, V * V)) for j in range(V)], dtype=object)
    return want_b, want_c


def grid_mismatches(logits: Form, V: int) -> np.ndarray:
    """For each row of logit forms (B, V): the first j whose logit is not the grid logit (2j/V) t - (j/V)^2,
    or -1 when every logit is."""
    want_b, want_c = _grid(V)
    ok = (logits.lo == want_c) & (logits.hi == want_c) & (logits.b == want_b)
    ok = np.asarray(ok, dtype=bool)
    first = np.argmin(ok, axis=1)
    return np.where(ok.all(axis=1), -1, first)
