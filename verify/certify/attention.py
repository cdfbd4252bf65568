"""Certificate stage 1: attention and the first MLP layer, as forms in the row's own payload value.

For every row r of a lookup claim and every hidden unit h of the first MLP
layer, this encloses the pre-activation as an affine form in t, the value of
the row's own payload coordinate:

    pre1[r, h] in c[r, h] + b[r, h] * t        (c, b intervals; t >= 0)

valid for every other payload coordinate in its range and every free token.
The derivation follows docs/semantics.md step by step, in factored form:

  attention weights  A^h[r, p]: tight softmax of interval scores, valid over
                     the whole input box (the own coordinate included);
  values             routed straight into the MLP through the composed maps
                     F^h = W1 W_O^h W_V^h (enclosed with their rounding error),
                     so value vectors are never formed row by row;
  own coordinate     the payload box minus the own column, plus the own
                     column times t;
  executed rounding  one uniform error vector over the hidden units, from
                     magnitude bounds of every executed intermediate.

Units that are dead for every row (upper bound < 0 with row-uniform bounds)
are dropped before any per-row work, so a V = 32000 lookup touches one unit
per row instead of V.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from prefixproof.constructions.model import Layer, Model
from prefixproof.verify.certify import interval as I
from prefixproof.verify.certify import recorder
from prefixproof.verify.certify.chain import chain_product
from prefixproof.verify.certify.lookup_rows import LookupRows
from prefixproof.verify.certify.interval import Exec, Iv
from prefixproof.verify.certify.interval import as_dense as iv_as_dense
from prefixproof.verify.certify.sparse_routing import free_candidates, free_sparse, sparse_free_terms, sparse_pair


DENSE_PAIRS = 30_000_000  # (row, hidden unit) pairs the certificate evaluates densely at most
SCORE_BLOCK = 2_000_000  # score entries per block of rows (scores and softmax): 16 MB per array


class Unsupported(Exception):
    """The model is outside the class the structured certificate handles (reported as UNKNOWN)."""


@dataclass(frozen=True)
class FirstLayer:
    rows: np.ndarray  # (P,) row of each (row, unit) pair
    units: np.ndarray  # (P,) hidden unit of each pair
    c: Iv  # (P,) constant part of the pre-activation
    b: Iv  # (P,) coefficient of t
    n_units: int
    attention_min: float  # over rows, the smallest lower bound of a row's largest attention weight


def supported_layer(model: Model) -> Layer:
    if len(model.layers) != 1:
        raise Unsupported(f"the structured certificate handles one layer; this model has {len(model.layers)}")
    layer = model.layers[0]
    if layer.ln is not None or layer.attn_residual or layer.mlp_residual:
        raise Unsupported("LayerNorm and residual connections are not handled by the structured certificate")
    if not layer.causal:
        raise Unsupported("non-causal attention: greedy generation recomputes every prefix, "
                          "so the teacher-forced equivalence the certificate relies on does not apply")
    if len(layer.mlp) < 2:
        raise Unsupported("the MLP needs at least one hidden ReLU layer")
    return layer


_dense = iv_as_dense  # one conversion for every certificate module (interval.as_dense)


def _col_hull(E) -> Iv:
    """Column-wise min and max over the rows of E (the hull of every token embedding)."""
    if sp.issparse(E):
        return E.min(axis=0).toarray().ravel(), E.max(axis=0).toarray().ravel()
    return E.min(axis=0), E.max(axis=0)


def _T(M):
    return M.T.tocsr() if sp.issparse(M) else np.ascontiguousarray(M.T)


def _gather(M, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    if sp.issparse(M):
        return np.asarray(M[i, j]).ravel()
    return M[i, j]


def first_layer_forms(model: Model, claim: LookupRows, ex: Exec) -> FirstLayer:
    """Stage 1 of the certificate (docs/certificates.md): attention weights over the whole box, values routed
    through W_1 W_O W_V, then the first pre-activations as affine forms in the row's own payload value. Longer
    than 60 lines on purpose: the derivation's steps in the order the docs give them."""
    layer = supported_layer(model)
    heads = layer.heads
    W1, b1 = layer.mlp[0].W, np.asarray(layer.mlp[0].b, dtype=np.float64)
    hidden = W1.shape[0]
    n, R = claim.n_positions, claim.rows
    if n > model.n_ctx:
        raise Unsupported(f"the claim needs {n} positions, the model has {model.n_ctx}")
    P = _dense(model.pos[:n])
    d = P.shape[1]
    tmin, tmax = float(claim.tau_lo.min()), float(claim.tau_hi.max())
    pay, nv, free, fixed = claim.payload, claim.virtual, claim.free_pos, list(claim.fixed_pos)
    E_rows = [model.embed[claim.fixed_tok[:, j]] for j in range(len(fixed))]

    # Input boxes: virtual positions (payload coordinates in [tmin, tmax]) and free content positions
    # (any token) are shared by all rows; fixed content positions hold each row's own token.
    box = (np.zeros(d), np.zeros(d))
    box[0][pay], box[1][pay] = tmin, tmax
    E_lo, E_hi = _col_hull(model.embed)
    shared = list(range(nv)) + free  # positions whose box all rows share
    # A sum with an exact-zero operand is exact, in float64 and in the executed format (the stored operands are
    # values of it): keep those entries as points, so that zero stays zero and sparse routing stays sparse. The
    # other entries are the executed sum fl(P + x), enclosed. Built in place: (positions x d) is 2N+1 wide.
    lo, hi = np.empty((len(shared), d)), np.empty((len(shared), d))
    inexact = np.empty((len(shared), d), dtype=bool)
    parts = [(slice(0, nv), P[:nv], box)] + ([(slice(nv, None), _take_rows(P, free), (E_lo, E_hi))] if free else [])
    for rows, Pr, (add_lo, add_hi) in parts:
        np.add(Pr, add_lo, out=lo[rows])
        np.add(Pr, add_hi, out=hi[rows])
        np.logical_and(Pr != 0, ~((add_lo == 0) & (add_hi == 0)), out=inexact[rows])
    del parts
    lo[inexact], hi[inexact] = I.exec_round((I.down(lo[inexact]), I.up(hi[inexact])), ex)
    X = (lo, hi)
    del lo, hi, inexact
    P_at = {p: P[p].copy() for p in set(range(nv)) | set(fixed)}  # the rows of P read below
    del P  # the dense (positions x d) P is freed
    xmag = I.mag(X).max(axis=0)
    for j in range(len(fixed)):
        xmag = np.maximum(xmag, np.maximum(np.abs(E_lo), np.abs(E_hi)) + np.abs(P_at[fixed[j]]))
    col = {p: i for i, p in enumerate(shared)}
    visible = np.arange(n)[None, :] <= claim.query_pos[:, None]  # causal

    # Everything read from the (positions x d) box X first, so that X is freed before the (rows x positions)
    # attention weights are formed: the values' routing F X of free positions, each head's queries and keys.
    F_all = [chain_product([W1, head.W_O, head.W_V]) for head in heads]
    FX_all = [_free_routing(X, nv, Fc, Fr) if free else None for Fc, Fr in F_all]
    QK = [(_row_queries(head, claim, X, col, E_rows, P_at, fixed, ex), I.linear(X, head.W_K, ex)) for head in heads]
    del X
    A_all: list = [None] * len(heads)
    # each head's queries and keys are freed once its weights are formed; the widest head first, while no
    # (rows x positions) weights are held yet
    for h in sorted(range(len(heads)), key=lambda h: -QK[h][0][0].size):
        head = heads[h]
        (Q, K), QK[h] = QK[h], None
        keys = I.mid_rad((K[0].T, K[1].T))  # the keys, split once for every block of rows
        del K
        fixed_keys = [_project_rows(E_rows[j], P_at[p], head.W_K, ex) for j, p in enumerate(fixed)]
        A_all[h] = _attention_weights(head, Q, keys, fixed_keys, shared, fixed, visible, ex)
        del Q, keys, fixed_keys

    err1 = _exec_error(layer, xmag, A_all, ex)
    recorder.note("attention", A=A_all, err1=err1)
    att_min = float(min(A[0].max(axis=1).min() for A in A_all)) if R else 1.0

    pieces = []
    fp_rows = list(range(nv)) + fixed  # the positions whose F P_p is read (free positions go through FX)
    for h, (A, (Fc, Fr)) in enumerate(zip(A_all, F_all)):
        piece = {"A": A, "Fbox": I.linear(box, Fc, W_rad=Fr),
                 "FP": _rows_of(I.linear(I.point(np.array([P_at[p] for p in fp_rows]).reshape(len(fp_rows), d)), Fc, W_rad=Fr),
                               fp_rows),  # F P_p, virtual and fixed p
                 "Fpay_c": _slice_cols(Fc, pay), "Fpay_r": _slice_cols(Fr, pay)}
        if free:
            piece.update(FX_all[h])
        if fixed:
            FEc, FEr = chain_product([W1, heads[h].W_O, heads[h].W_V, _T(model.embed)])
            piece["FE_c"] = sp.csc_array(FEc) if sp.issparse(FEc) else FEc
            piece["FE_r"] = FEr
        pieces.append(piece)

    rows, units = _candidate_pairs(claim, pieces, b1, err1, hidden)
    c, b = _pair_forms(claim, pieces, b1, err1, rows, units, tmin, tmax)
    return FirstLayer(rows, units, c, b, hidden, att_min)


def _take_rows(M: np.ndarray, idx: list[int]) -> np.ndarray:
    """M[idx], as a view when idx is a run of consecutive rows (no copy of a (positions x d) array)."""
    if idx and list(idx) == list(range(idx[0], idx[0] + len(idx))):
        return M[idx[0]:idx[0] + len(idx)]
    return M[idx]


class _rows_of:
    """Rows of an interval array computed for some positions only, indexed by position: [lo/hi][p]."""

    def __init__(self, M: Iv, positions: list[int]) -> None:
        at = {p: i for i, p in enumerate(positions)}
        self._ends = tuple({p: M[k][i] for p, i in at.items()} for k in (0, 1))

    def __getitem__(self, k: int) -> dict:
        return self._ends[k]


def _free_routing(X: Iv, nv: int, Fc, Fr) -> dict:
    """F X for the free content positions (n_free, hidden), as {"FX_sparse": ...} when it reaches few units
    (Theorem 1: one unit each), else {"FX": dense interval}."""
    FX = I.linear((X[0][nv:], X[1][nv:]), Fc, W_rad=Fr)
    sparse_fx = sparse_pair(FX)
    return {"FX": FX} if sparse_fx is None else {"FX_sparse": sparse_fx}


def _attention_weights(head, Q: Iv, keys: tuple[np.ndarray, np.ndarray], fixed_keys: list[Iv], shared: list[int],
                       fixed: list[int], visible: np.ndarray, ex: Exec) -> Iv:
    """A^h (rows x positions): the scores Q K^T (K^T given as midpoint and radius, `keys`; a fixed position's
    key differs per row: `fixed_keys`), scaled as executed, then the tight softmax; by blocks of rows (rows are
    independent), so that only A^h and one block's temporaries are held."""
    R, n = visible.shape
    kc, kr = keys
    A = (np.empty((R, n)), np.empty((R, n)))
    step = max(1, SCORE_BLOCK // max(n, 1))
    for a in range(0, R, step):
        rows = slice(a, a + step)
        Qb = (Q[0][rows], Q[1][rows])
        S = (np.empty((len(Qb[0]), n)), np.empty((len(Qb[0]), n)))
        S[0][:, shared], S[1][:, shared] = I.matmul_mid_rad(*I.mid_rad(Qb), kc, kr, ex)
        for p, key in zip(fixed, fixed_keys):
            S[0][:, p], S[1][:, p] = I.dot_rows(Qb, (key[0][rows], key[1][rows]), ex)
        # executed: fl(dots * fl(scale)); numpy rounds a Python scale to the array's format first, one more u
        S = I.exec_round(I.exec_round(I.scale(S, head.scale), ex), ex)
        A[0][rows], A[1][rows] = I.softmax(S, visible[rows], ex)
    return A


def _row_queries(head, claim: LookupRows, X: Iv, col: dict[int, int], E_rows: list, P: dict[int, np.ndarray],
                 fixed: list[int], ex: Exec) -> Iv:
    """Each row's query: from the shared box of its query position, or from its own token there."""
    R = claim.rows
    Qs = I.linear(X, head.W_Q, ex)
    Q = (np.empty((R, head.d_k)), np.empty((R, head.d_k)))
    for qp in np.unique(claim.query_pos):
        rows = np.flatnonzero(claim.query_pos == qp)
        if int(qp) in col:
            Q[0][rows], Q[1][rows] = Qs[0][col[int(qp)]], Qs[1][col[int(qp)]]
        else:
            j = fixed.index(int(qp))
            q = _project_rows(E_rows[j][rows], P[int(qp)], head.W_Q, ex)
            Q[0][rows], Q[1][rows] = q
    return Q


def _slice_cols(M, cols: np.ndarray):
    if sp.issparse(M):
        return sp.csc_array(M)[:, cols]
    return M[:, cols]


def _project_rows(E_rows, offset: np.ndarray, W, ex: Exec) -> Iv:
    """Enclosure of fl(W fl(E_r + offset)) for every row E_r of E_rows: shape (R, out)."""
    c, r = chain_product([E_rows, _T(W)])
    c, r = _dense(c), _dense(r)
    o = I.linear(I.point(offset[None]), W)
    lo, hi = I.down(c - r + o[0]), I.up(c + r + o[1])
    if not ex.exact:
        xmag = np.abs(_dense(E_rows)).max(axis=0) if not sp.issparse(E_rows) else abs(E_rows).max(axis=0).toarray().ravel()
        xmag = xmag + np.abs(offset)
        n = max(I._row_len(W), 1)
        absW = abs(W) if sp.issparse(W) else np.abs(W)
        err = I.up(I._right(I.up(xmag * (1 + ex.u) + ex.eta), absW) * (ex.u + ex.dot(n)) * 2 + n * ex.eta)
        lo, hi = I.down(lo - err), I.up(hi + err)
    return lo, hi


def _exec_error(layer: Layer, xmag: np.ndarray, A_all: list[Iv], ex: Exec) -> np.ndarray:
    """A uniform bound, per hidden unit, on the executed rounding error of the first pre-activation."""
    W1 = layer.mlp[0].W
    if ex.exact:
        return np.zeros(W1.shape[0])
    absW1 = abs(W1) if sp.issparse(W1) else np.abs(W1)
    out_err = 0.0
    out_mag = 0.0
    for head, A in zip(layer.heads, A_all):
        absV = abs(head.W_V) if sp.issparse(head.W_V) else np.abs(head.W_V)
        absO = abs(head.W_O) if sp.issparse(head.W_O) else np.abs(head.W_O)
        nV, nO = max(I._row_len(head.W_V), 1), max(I._row_len(head.W_O), 1)
        npos = A[0].shape[1]
        a_sum = float(I.up(A[1].sum(axis=1).max() * (1 + 4 * I.gamma(npos))))
        vmag = I._right(xmag, absV)
        ev = I.up(ex.dot(nV) * vmag + nV * ex.eta)
        omag = I.up(a_sum * (vmag + ev))
        eo = I.up(a_sum * ev + ex.dot(npos) * omag + npos * ex.eta)
        wmag = I._right(omag + eo, absO)
        ew = I.up(I._right(eo, absO) + ex.dot(nO) * wmag + nO * ex.eta)
        out_err = out_err + ew
        out_mag = out_mag + wmag + ew
    H = len(layer.heads)
    out_err = I.up(out_err + ex.dot(H) * out_mag + H * ex.eta)
    n1 = max(I._row_len(W1), 1)
    b1 = np.abs(np.asarray(layer.mlp[0].b, dtype=np.float64))
    pre_mag = I._right(out_mag + out_err, absW1) + b1
    return I.up((I._right(out_err, absW1) + ex.dot(n1 + 1) * pre_mag + (n1 + 1) * ex.eta) * (1 + 4 * I.gamma(n1)))


def _contribution(Fc: np.ndarray, Fr: np.ndarray, tmin: float, tmax: float) -> Iv:
    """Enclosure of F * t over F in [Fc - Fr, Fc + Fr] and t in [tmin, tmax] (tmin >= 0)."""
    return I.mul((I.down(Fc - Fr), I.up(Fc + Fr)), (np.full_like(Fc, tmin), np.full_like(Fc, tmax)))


def _candidate_pairs(claim: LookupRows, pieces, b1, err1, hidden):
    """(row, unit) pairs whose pre-activation may be positive; all pairs when some content token is free
    and its routing into the first layer is dense."""
    R = claim.rows
    if claim.free_pos and not free_sparse(claim, pieces):
        if R * hidden > DENSE_PAIRS:
            raise Unsupported(f"{R} rows x {hidden} hidden units exceed the certificate's dense budget "
                              f"({DENSE_PAIRS}); certify a smaller instance")
        return np.repeat(np.arange(R), hidden), np.tile(np.arange(hidden), R)
    # Row-uniform upper bound of every unit, leaving out the row-specific sparse columns.
    upper = I.up(b1 + err1)
    for pc in pieces:
        A = pc["A"]
        for p in range(claim.virtual):
            a = float(A[1][:, p].max())
            upper = I.up(upper + a * np.maximum(pc["FP"][1][p] + pc["Fbox"][1], 0.0))
        for p in claim.fixed_pos:
            a = float(A[1][:, p].max())
            upper = I.up(upper + a * np.maximum(pc["FP"][1][p], 0.0))
    touched_rows, touched_units = [], []
    if claim.free_pos:
        upper, touched_rows, touched_units = free_candidates(claim, pieces, upper)
    alive = np.flatnonzero(upper > 0)
    for pc in pieces:
        sources = [(pc["Fpay_c"], claim.own)] + [(pc["FE_c"], claim.fixed_tok[:, j]) for j in range(len(claim.fixed_pos))]
        for M, cols in sources:
            csc = sp.csc_array(M) if sp.issparse(M) else sp.csc_array(np.asarray(M))
            rr, cc = csc[:, cols].nonzero()
            touched_units.append(rr)
            touched_rows.append(cc)
    if R * len(alive) > DENSE_PAIRS:
        raise Unsupported(f"{len(alive)} hidden units may be active in every row ({R} rows): over the dense budget")
    rows = np.concatenate([np.repeat(np.arange(R), len(alive))] + touched_rows)
    units = np.concatenate([np.tile(alive, R)] + touched_units)
    key = np.unique(rows.astype(np.int64) * hidden + units)
    return key // hidden, key % hidden


def _pair_forms(claim: LookupRows, pieces, b1, err1, rows, units, tmin, tmax):
    c = (I.down(b1[units] - err1[units]), I.up(b1[units] + err1[units]))
    b = (np.zeros(len(rows)), np.zeros(len(rows)))
    own, own_pos = claim.own[rows], claim.own_position[rows]
    free = claim.free_pos
    for pc in pieces:
        A = pc["A"]
        fc, fr = _gather(pc["Fpay_c"], units, own), _gather(pc["Fpay_r"], units, own)
        own_box = _contribution(fc, fr, tmin, tmax)
        full = (pc["Fbox"][0][units], pc["Fbox"][1][units])
        excl = (I.down(full[0] - I.up(own_box[0])), I.up(full[1] - I.down(own_box[1])))
        for p in range(claim.virtual):  # virtual positions: F P_p + payload box (without the own column at own_pos)
            a = (A[0][rows, p], A[1][rows, p])
            mine = own_pos == p
            box_p = (np.where(mine, excl[0], full[0]), np.where(mine, excl[1], full[1]))
            c = I.add(c, I.mul(a, I.add((pc["FP"][0][p][units], pc["FP"][1][p][units]), box_p)))
            coef = (np.where(mine, I.down(fc - fr), 0.0), np.where(mine, I.up(fc + fr), 0.0))
            b = I.add(b, I.mul(a, coef))
        if free and "FX_sparse" in pc:  # free content positions, sparse routing: per pair, its few terms
            c = I.add(c, sparse_free_terms(A, free, pc["FX_sparse"], rows, units))
        elif free:  # free content positions: one dense product over all rows
            D = I.matmul((A[0][:, free], A[1][:, free]), pc["FX"])
            c = I.add(c, (D[0][rows, units], D[1][rows, units]))
        for j, p in enumerate(claim.fixed_pos):  # each row's own token at a fixed position
            a = (A[0][rows, p], A[1][rows, p])
            tok = claim.fixed_tok[rows, j]
            fe = (_gather(pc["FE_c"], units, tok), _gather(pc["FE_r"], units, tok))
            term = I.add((pc["FP"][0][p][units], pc["FP"][1][p][units]), (I.down(fe[0] - fe[1]), I.up(fe[0] + fe[1])))
            c = I.add(c, I.mul(a, term))
    return c, b

