"""Certificate stage 2: from first-layer forms to a decode margin for every (row, value) box.

The boxes of row r are the V values y of its own payload coordinate. They are
handled in blocks of consecutive y, starting with {0}, [1, V-2] and {V-1}.
On a block, t ranges over [tau(ya), tau(yb)] and every activation stays an
affine form c + b t as long as each ReLU is decided on the whole block
(always on, or always off). The decode error e = x - y/V is then the form
c + (b - 1) t, tight even on long blocks. A block whose ReLU is undecided,
or whose margin bound fails, is split in two; a single y that still fails is
a failed box. Because a block's enclosure covers every y in it, this proves
exactly what V separate enclosures would, with far fewer evaluations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from prefixproof.constructions.model import Dense, Model
from prefixproof.verify.certify import interval as I
from prefixproof.verify.certify import recorder
from prefixproof.verify.certify.attention import FirstLayer, Unsupported
from prefixproof.verify.certify.lookup_rows import LookupRows
from prefixproof.verify.certify.decoder import GridFit, brute_margins, grid_fit, grid_margins, singleton_margins
from prefixproof.verify.certify.interval import Exec, Iv
from prefixproof.verify.certify.interval import as_dense as iv_as_dense
from prefixproof.verify.certify.interval_ops import EnclosureUnsupported
from prefixproof.verify.certify.per_box import box_margins, box_terms, supported

BLOCK_BUDGET = 20_000_000  # block evaluations before the certificate gives up (UNKNOWN)
BRUTE_BUDGET = 50_000_000  # (box x vocabulary) logit differences for non-grid decoders
REFINE_BOXES = 4096  # single boxes per certificate re-evaluated with per-operation rounding (per_box.py)
REFINE_TERMS = 25_000_000  # and products formed by those re-evaluations (per_box.box_terms per box; ~30 s)


@dataclass
class CertResult:
    certified: bool
    min_margin: float  # lower bound of the decode margin over every box evaluated
    boxes: int  # rows x V
    failures: list[tuple[int, int, float]] = field(default_factory=list)  # (row, y, margin bound)
    evaluations: int = 0
    reason: str | None = None
    decoder: str = ""


_dense = iv_as_dense  # one conversion for every certificate module (interval.as_dense)


def _tail(model: Model) -> list[Dense]:
    layer = model.layers[0]
    tail = list(layer.mlp[1:])
    if model.unembed is not None:
        tail.append(Dense(model.unembed, np.zeros(model.unembed.shape[0])))
    return tail


def _encoding_slack(claim: LookupRows) -> float:
    """max_y |tau_y - y/V| for a float encoding (0 when tau encloses y/V itself)."""
    if claim.tau_exact:
        return 0.0
    V = claim.V
    y = np.arange(V, dtype=np.float64)
    return float(I.ratio_distance(claim.tau_lo, y, np.full(V, float(V))).max())


def _linear_rows(W: np.ndarray, x: Iv, bias: np.ndarray | None) -> Iv:
    """Batched point matrices W (K, out, in) or shared W (out, in) times interval x (K, in)."""
    c, r = I.mid_rad(x)
    if W.ndim == 2:
        W = W[None]
    n = W.shape[-1]
    g = I.gamma(max(n, 1))
    absW = np.abs(W)
    yc = np.einsum("koi,ki->ko", W, c)
    ac = np.einsum("koi,ki->ko", absW, np.abs(c))
    rad = I.up((np.einsum("koi,ki->ko", absW, r) + g * ac) * (1 + 4 * g) + n * I.ETA)
    out = I.down(yc - rad), I.up(yc + rad)
    if bias is not None:
        out = I.add(out, I.point(bias))
    return out


def _form_range(c: Iv, b: Iv, T: Iv) -> Iv:
    return I.add(c, I.mul(b, T))


class BlockEvaluator:
    """Stage 2 prepared for one model and claim: evaluates blocks (row, ya..yb) to margin lower bounds."""

    def __init__(self, model: Model, claim: LookupRows, first: FirstLayer, ex: Exec) -> None:
        tail = _tail(model)
        V, R = claim.V, claim.rows
        if model.vocab.size != V:
            raise Unsupported(f"the claim decodes V={V} values but the model has {model.vocab.size} logits")
        if len(tail) < 2:
            raise Unsupported("the certificate needs at least two Dense layers after the first")
        final = tail[-1]
        self.W_fin, self.b_fin = _dense(final.W), np.asarray(final.b, dtype=np.float64)
        self.middle = [(_dense(d.W), np.asarray(d.b, dtype=np.float64)) for d in tail[:-1]]
        self.fit = grid_fit(self.W_fin, self.b_fin) if self.W_fin.shape[1] == 1 else None
        self.decoder = "grid lemma" if self.fit is not None else "all logit differences"
        self.claim, self.ex, self.V, self.R = claim, ex, V, R
        self.model = model
        self.refinable = supported(model, ex) is None
        self.refined = 0
        self.refine_cap = min(REFINE_BOXES, REFINE_TERMS // box_terms(model, claim)) if self.refinable else 0
        self.slack_tau = _encoding_slack(claim)

        # Pairs that can be positive somewhere in the full range of t, grouped by row.
        tmin, tmax = float(claim.tau_lo.min()), float(claim.tau_hi.max())
        Tfull = (np.full(len(first.rows), tmin), np.full(len(first.rows), tmax))
        keep = _form_range(first.c, first.b, Tfull)[1] > 0
        rows, units = first.rows[keep], first.units[keep]
        order = np.lexsort((units, rows))
        rows, units = rows[order], units[order]
        cF = (first.c[0][keep][order], first.c[1][keep][order])
        bF = (first.b[0][keep][order], first.b[1][keep][order])
        counts = np.bincount(rows, minlength=R)
        A_max = max(int(counts.max()) if counts.size else 0, 1)
        slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        U = np.zeros((R, A_max), dtype=np.int64)
        self.C = (np.full((R, A_max), -1.0), np.full((R, A_max), -1.0))  # padding: a unit that is always off
        self.B = (np.zeros((R, A_max)), np.zeros((R, A_max)))
        U[rows, slot] = units
        self.C[0][rows, slot], self.C[1][rows, slot] = cF
        self.B[0][rows, slot], self.B[1][rows, slot] = bF
        self.W2rows = np.transpose(self.middle[0][0][:, U], (1, 0, 2))  # (R, hidden2, A_max)

    def evaluate(self, br: np.ndarray, ya: np.ndarray, yb: np.ndarray) -> np.ndarray:
        return _evaluate(br, ya, yb, self.claim, self.C, self.B, self.W2rows, self.middle, self.W_fin,
                         self.b_fin, self.fit, self.ex, self.slack_tau, self.R, self.V)

    def refine(self, margin: np.ndarray, br: np.ndarray, ya: np.ndarray, yb: np.ndarray,
               threshold: float) -> np.ndarray:
        """Single boxes at or below `threshold` re-evaluated with one monotone rounding per operation of the
        format (per_box.py), within REFINE_BOXES per certificate. Both are lower bounds: the larger is kept."""
        todo = np.flatnonzero((ya == yb) & ~(margin > threshold))
        if not self.refinable or not todo.size:
            return margin
        if todo.size > self.refine_cap - self.refined:  # some box would stay failing: the certificate fails anyway
            self.refined = self.refine_cap
            return margin
        self.refined += len(todo)
        try:
            better = box_margins(self.model, self.claim, self.ex, br[todo], ya[todo])
        except EnclosureUnsupported:
            return margin
        out = margin.copy()
        out[todo] = np.maximum(out[todo], better)
        return out


def certify_blocks(model: Model, claim: LookupRows, first: FirstLayer, ex: Exec, *,
                   min_margin: float = 0.0, progress: Callable[[int, int], None] | None = None) -> CertResult:
    ev = BlockEvaluator(model, claim, first, ex)
    V, R = ev.V, ev.R
    starts = [0, 1, V - 1] if V >= 3 else list(range(V))  # {0}, [1, V-2], {V-1}
    ends = [0, V - 2, V - 1] if V >= 3 else list(range(V))
    blk_r = np.repeat(np.arange(R), len(starts))
    blk_a = np.tile(starts, R)
    blk_b = np.tile(ends, R)
    result = CertResult(True, np.inf, R * V, decoder=ev.decoder)
    threshold = max(min_margin, 0.0)
    done_boxes = 0
    while len(blk_r):
        result.evaluations += len(blk_r)
        if result.evaluations > BLOCK_BUDGET:
            raise Unsupported(f"block budget exceeded ({BLOCK_BUDGET} evaluations)")
        plain = ev.evaluate(blk_r, blk_a, blk_b)
        margin = ev.refine(plain, blk_r, blk_a, blk_b, threshold)
        good = margin > threshold
        # perbox: good only through the per-operation re-evaluation (certificate step "perbox")
        recorder.note("blocks", row=blk_r, ya=blk_a, yb=blk_b, margin=margin, good=good,
                      perbox=good & ~(plain > threshold))
        if good.any():
            result.min_margin = min(result.min_margin, float(margin[good].min()))
        single = blk_a == blk_b
        failed = ~good & single
        for r, y, m in zip(blk_r[failed][:20], blk_a[failed][:20], margin[failed][:20]):
            result.failures.append((int(r), int(y), float(m)))
        if failed.any():
            result.certified = False
            result.min_margin = min(result.min_margin, float(margin[failed].min()))
        done_boxes += int((blk_b - blk_a + 1)[good | single].sum())
        if progress is not None:
            progress(done_boxes, R * V)
        split = ~good & ~single
        mid = (blk_a[split] + blk_b[split]) // 2
        blk_r = np.concatenate([blk_r[split], blk_r[split]])
        blk_a, blk_b = np.concatenate([blk_a[split], mid + 1]), np.concatenate([mid, blk_b[split]])
        if len(result.failures) >= 20:
            break
    return result


def _evaluate(br, ya, yb, claim, C, Bf, W2rows, middle, W_fin, b_fin, fit: GridFit | None, ex: Exec,
              slack_tau: float, R: int, V: int) -> np.ndarray:
    """Margin lower bound of each block (-inf when it must be split or fails)."""
    K = len(br)
    single = ya == yb
    T1 = (claim.tau_lo[ya][:, None], claim.tau_hi[yb][:, None])
    split = np.zeros(K, dtype=bool)
    c, b = (C[0][br], C[1][br]), (Bf[0][br], Bf[1][br])
    c, b, split = _relu_forms(c, b, T1, single, split)
    for k, (W, bias) in enumerate(middle):
        Wk = W2rows[br] if k == 0 else W
        n_in = Wk.shape[-1]
        x_mag = I.up(I.mag(c) + I.mag(b) * T1[1])
        oc = _linear_rows(Wk, c, bias)
        ob = _linear_rows(Wk, b, None)
        if not ex.exact:
            absW = np.abs(Wk) if Wk.ndim == 3 else np.abs(Wk)[None]
            size = np.einsum("koi,ki->ko", absW, x_mag) + np.abs(bias)
            oc = I.widen(oc, I.up(ex.dot(n_in + 1) * size * (1 + 4 * I.U) + (n_in + 1) * ex.eta))
        c, b, split = _relu_forms(oc, ob, T1, single, split)
    x = _form_range(c, b, T1)
    if fit is not None:
        e = I.add(c, I.mul((I.down(b[0] - 1.0), I.up(b[1] - 1.0)), T1))  # x - t as a form
        e = (I.down(e[0][:, 0] - slack_tau), I.up(e[1][:, 0] + slack_tau))
        x1 = (x[0][:, 0], x[1][:, 0])
        margin = I.down(grid_margins(e, ya, yb, V) - fit.slack(I.mag(x1), ex))
        idx = np.flatnonzero(single)
        if idx.size:  # single values: the neighbours exactly, with the model's own weights
            exact_nb = singleton_margins((x1[0][idx], x1[1][idx]), (e[0][idx], e[1][idx]), ya[idx], W_fin, b_fin,
                                         fit, ex)
            margin[idx] = np.maximum(margin[idx], exact_nb)
    else:
        margin = np.full(K, -np.inf)
        idx = np.flatnonzero(single & ~split)
        if idx.size:
            if idx.size * V * x[0].shape[1] > BRUTE_BUDGET:
                raise Unsupported("decoder is not the nearest-grid decoder and V is too large to compare "
                                  "every logit difference")
            margin[idx] = brute_margins((x[0][idx], x[1][idx]), ya[idx], W_fin, b_fin, ex)
    return np.where(split, -np.inf, margin)


def _relu_forms(c: Iv, b: Iv, T: Iv, single: np.ndarray, split: np.ndarray):
    """ReLU on forms over each block: decided units keep (or lose) their form; undecided ones force a split.

    On a single-value block an undecided unit becomes the constant ReLU(enclosure).
    """
    pre = _form_range(c, b, T)
    on = pre[0] >= 0
    off = pre[1] <= 0
    undecided = ~on & ~off
    recorder.note("relu", on=on, off=off)
    split = split | (undecided.any(axis=1) & ~single)
    post_const = I.relu(pre)
    use_const = undecided & single[:, None]
    zero = np.zeros_like(c[0])
    c_out = (np.where(on, c[0], np.where(use_const, post_const[0], 0.0)),
             np.where(on, c[1], np.where(use_const, post_const[1], 0.0)))
    b_out = (np.where(on, b[0], zero), np.where(on, b[1], zero))
    return c_out, b_out, split
