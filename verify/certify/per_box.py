"""Per-box margins in a low-precision format, one monotone rounding per operation (verify/certify/directed.py).

A box (row r, value y) of a lookup claim fixes the row's own payload coordinate to the encoded value of y;
every other payload coordinate ranges over [min tau, max tau], fixed content tokens are the row's own, and a
free content token is any token (the column hull of the embedding). The one forward pass
(`verify/semantics/forward.py`) runs on that box with `DirectedOps`, up to the row's query position.

Decoding keeps the dependency between logits: the decoder's input z is a value of F (the stored output of a
ReLU layer), so with a one-wide decoder input the values of F in [z_lo, z_hi] are taken one by one (or in at
most PIECES consecutive runs) and the logits enclosed for each; the margin logit_y - max_j logit_j (exact
comparison of values of F; a tie fails) is bounded below on each piece. A wider decoder input is taken as one
piece.

This evaluator is sound for the execution class of F (docs/certificates.md) when every layer has at most two
heads (the forward pass adds heads one at a time, which fixes the order of that sum) and F is narrower than
float64. `supported` says why not otherwise.
"""
from __future__ import annotations

import numpy as np

from prefixproof.constructions.model import Model
from prefixproof.verify.certify import interval as I
from prefixproof.verify.certify.directed import DirectedOps, Grid, _columns, grid_for
from prefixproof.verify.certify.interval_ops import Box, EnclosureUnsupported
from prefixproof.verify.certify.lookup_rows import LookupRows
from prefixproof.verify.semantics.forward import forward

PIECES = 64  # runs of consecutive decoder inputs per box
CHUNK_TERMS = 20_000_000  # products formed per chunk of boxes


def supported(model: Model, ex: I.Exec) -> str | None:
    """None when per-operation rounding applies to this model and execution, else the reason it does not."""
    if ex.fmt is None or ex.fmt == "float64":
        return "per-operation rounding covers formats narrower than float64"
    for layer in model.layers:
        if layer.ln is not None:
            return "LayerNorm"
        if len(layer.heads) > 2:
            return "more than two heads: the order of the head sum is not fixed"
    return None


def box_terms(model: Model, claim: LookupRows) -> int:
    """Products one box's evaluation forms: each weight's rows times their largest count of non-zero columns,
    once per position, and the attention's position pairs; a cost estimate for budgets."""
    n = int(claim.query_pos.max()) + 1 if claim.rows else 1
    weights = sum(int(np.prod(_columns(W)[0].shape)) for layer in model.layers
                  for W in [w for h in layer.heads for w in (h.W_Q, h.W_K, h.W_V, h.W_O)] + [d.W for d in layer.mlp])
    return max(1, n * weights + n * n * model.d_model)


def _hull(E) -> tuple[np.ndarray, np.ndarray]:
    E = I.as_dense(E)
    return E.min(axis=0), E.max(axis=0)


def box_margins(model: Model, claim: LookupRows, ex: I.Exec, rows: np.ndarray, ys: np.ndarray, *,
                nearest: bool = False) -> np.ndarray:
    """Lower bounds of the decode margin on boxes (rows[i], ys[i]); -inf where nothing can be said.

    `model` holds the weights as the execution stores them (values of F). `nearest` selects the deliberately
    unsound evaluator the tests must catch.
    """
    why = supported(model, ex)
    if why is not None:
        raise EnclosureUnsupported(why)
    grid = grid_for(ex.fmt)
    rows, ys = np.asarray(rows, dtype=np.int64), np.asarray(ys, dtype=np.int64)
    out = np.full(len(rows), -np.inf)
    decoder_W = model.unembed if model.unembed is not None else model.layers[-1].mlp[-1].W
    width = model.d_model
    for qp in np.unique(claim.query_pos[rows]):
        idx = np.flatnonzero(claim.query_pos[rows] == qp)
        n = int(qp) + 1
        per_box = box_terms(model, claim) + max(width, 1) * PIECES
        step = max(1, CHUNK_TERMS // max(per_box, 1))
        for s in range(0, len(idx), step):
            part = idx[s:s + step]
            out[part] = _margins(model, claim, ex, grid, rows[part], ys[part], n, decoder_W, nearest)
    return out


def _inputs(model: Model, claim: LookupRows, rows: np.ndarray, ys: np.ndarray, n: int) -> tuple[Box, np.ndarray]:
    B, d, nv = len(rows), model.d_model, claim.virtual
    lo, hi = np.zeros((B, nv, d)), np.zeros((B, nv, d))
    tmin, tmax = float(claim.tau_lo.min()), float(claim.tau_hi.max())
    lo[:, :, claim.payload], hi[:, :, claim.payload] = tmin, tmax
    own_p, own_c = claim.own_position[rows], claim.payload[claim.own[rows]]
    lo[np.arange(B), own_p, own_c] = claim.tau_lo[ys]
    hi[np.arange(B), own_p, own_c] = claim.tau_hi[ys]
    tokens = np.full((B, n - nv), -1, dtype=np.int64)  # -1: a free token (any token)
    for j, p in enumerate(claim.fixed_pos):
        if p < n:
            tokens[:, p - nv] = claim.fixed_tok[rows, j]
    return Box(lo[:, : min(nv, n)], hi[:, : min(nv, n)]), tokens


def _margins(model, claim, ex, grid: Grid, rows, ys, n, decoder_W, nearest) -> np.ndarray:
    ops = DirectedOps(ex, grid, nearest=nearest, capture=decoder_W, hull=_hull(model.embed))
    soft, tokens = _inputs(model, claim, rows, ys, n)
    tokens = tokens if tokens.shape[1] else None
    forward(model, tokens, soft, ops=ops, outputs_at=[n - 1])
    z = ops.captured  # (B, 1, h): the decoder's input at the query position
    if z is None:
        raise EnclosureUnsupported("the decoder's input was not seen by the forward pass")
    z = Box(z.lo[:, -1], z.hi[:, -1])
    dec_W = I.as_dense(decoder_W)
    dec_b = (np.zeros(dec_W.shape[0]) if model.unembed is not None
             else np.asarray(model.layers[-1].mlp[-1].b, dtype=np.float64))
    if not (np.all(np.isfinite(z.lo)) and np.all(np.isfinite(z.hi))):
        return np.full(len(rows), -np.inf)  # overflow: outside the execution class, never a pass
    pieces = _pieces(grid, z) if z.lo.shape[1] == 1 and not nearest else [z]
    worst = np.full(len(rows), np.inf)
    for piece in pieces:
        if model.unembed is not None:
            logits = ops.linear(piece, dec_W)
        else:
            logits = ops.affine(piece, dec_W, dec_b)
        own_lo = logits.lo[np.arange(len(rows)), ys]
        others = logits.hi.copy()
        others[np.arange(len(rows)), ys] = -np.inf
        m = own_lo - others.max(axis=1)  # a difference of two values of F: exact enough, stepped down
        m = np.where(np.isfinite(m), I.down(m), -np.inf)
        worst = np.minimum(worst, m)
    return worst


def _pieces(grid: Grid, z: Box) -> list[Box]:
    """Split the one-wide box [z_lo, z_hi] (values of F) into at most PIECES runs of consecutive values of F."""
    r_lo, r_hi = grid.ordinal(z.lo[:, 0]), grid.ordinal(z.hi[:, 0])
    count = r_hi - r_lo + 1
    k = int(min(PIECES, max(1, count.max())))
    out = []
    for i in range(k):  # piece i covers ranks [a_i, b_i]; pieces of a box with fewer values repeat its last
        a = r_lo + np.floor(count * i / k)
        b = np.maximum(r_lo + np.floor(count * (i + 1) / k) - 1, a)
        a, b = np.minimum(a, r_hi), np.minimum(b, r_hi)
        out.append(Box(grid.from_ordinal(a)[:, None], grid.from_ordinal(b)[:, None]))
    return out
