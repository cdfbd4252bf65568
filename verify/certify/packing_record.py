"""The packing certificate's recorded pass (`verify --certificate`; docs/certificate-format.md, "Version 2").

When a recording is open and the verdict pass certified, packing.analyse runs the same error recursion once more
inside a recorder session, with every claim widened outward so that an independent checker, which recomputes each
step from the previous step's *claims* with its own (equally sound, not bit-identical) rounding, finds its result
inside the claim:

  attention   each weight A by a relative max(2^-45, 32 u) + (2^-40 + 2^12 u)(1 - A) (small ones relatively more);
  forms       the constants by 8 err1[unit] + max(2^-46, 32 u)(1 + |c|), the coefficients by a relative
              max(2^-46, 32 u) plus twice the attention padding;
  (M, e)      the first layer's state is computed from the widened forms; every layer's (M, e) up by a relative
              2^-40 (and 2^-1060) before the next layer reads it (run_hidden's `pad`);
  decode      every (row, y, j) bound of the model's own logits from the row's own e, lowered by a relative 2^-12.

The notes ("claims", "recursion" per layer, "decode") are what prefixproof/certificate.py writes. The verdict is
never changed by this pass; if the widened claims no longer certify, the session's result says why.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from prefixproof.verify.certify import interval as I
from prefixproof.verify.certify import recorder
from prefixproof.verify.certify.attention import FirstLayer, Unsupported, first_layer_forms
from prefixproof.verify.certify.interval import PrecisionExhausted
from prefixproof.verify.certify.packing_recursion import State, Uncovered, pair_bounds, run_hidden

PAD_STATE, PAD_MARGIN = 2.0**-40, 2.0**-12
# below float64: attention, form and err1 paddings (the checker's stage 1 is now as tight as this engine's there,
# and the threshold stages leave no room for more: float16 at V=2 moves by 0.64 with the float64-style paddings)
LOW_PADS = (2.0**-45, 2.0**-46, 2.0**-40, 0.25)


@dataclass(frozen=True)
class Recorded:
    certified: bool
    margin: float
    reason: str | None = None


def _up(x: np.ndarray, rel: float) -> np.ndarray:
    return I.up(np.asarray(x, dtype=np.float64) + np.abs(x) * rel + 2.0**-1060)


def _dn(x: np.ndarray, rel: float) -> np.ndarray:
    return I.down(np.asarray(x, dtype=np.float64) - np.abs(x) * rel - 2.0**-1060)


def _pad(s: State) -> State:
    return State(_up(s.M, PAD_STATE), _up(s.e, PAD_STATE))


def _attention_room(model: Any, rows: Any, A_engine: list, A_claim: list, tmax: float) -> tuple[np.ndarray, ...]:
    """Upper bounds (rows, units) of how far the attention widening can move a form's constant and coefficient."""
    layer = model.layers[0]
    dense = lambda M: np.abs(M.toarray() if hasattr(M, "toarray") else np.asarray(M, dtype=np.float64))  # noqa: E731
    P, E = dense(model.pos[:rows.n_positions]), dense(model.embed)
    xmag = np.maximum(P.max(axis=0) + E.max(axis=0), P[0])
    xmag[rows.payload] += tmax
    wc, wb = 0.0, 0.0
    for head, (elo, ehi), (clo, chi) in zip(layer.heads, A_engine, A_claim):
        G = dense(layer.mlp[0].W) @ (dense(head.W_O) @ dense(head.W_V))  # (units, d), non-negative
        widen = I.up(np.maximum(chi - ehi, elo - clo).sum(axis=1))  # (rows,)
        wc = I.up(wc + I.up(widen[:, None] * I.up(I.up(G @ xmag) * (1 + 2.0**-40))[None, :]))
        wb = I.up(wb + I.up(widen[:, None] * I.up(G[:, rows.payload].max(axis=1) * (1 + 2.0**-40))[None, :]))
    return wc, wb


def record(model: Any, c: Any, ex: Any, rows: Any, tmax: float, enc: float, dg: Any, layer: Any) -> None:
    """Run the widened pass in a recorder session (docstring above); its notes become the certificate."""
    from prefixproof.verify.certify.packing import state_from_forms

    with recorder.session(rows, ex) as rec:
        try:
            first = first_layer_forms(model, rows, ex)  # notes "attention" (A, err1)
            att = rec.notes[-1][1]
            pa, pf, small, pe = LOW_PADS if ex.u > 2.0**-53 else (2.0**-45, 2.0**-46, 2.0**-40 + 2.0**-41, 8.0)
            A = [(np.clip(_dn(lo, pa + small * np.clip(1 - lo, 0, 1)), 0, 1),
                  np.clip(_up(hi, pa + small * np.clip(1 - hi, 0, 1)), 0, 1)) for lo, hi in att["A"]]
            order = np.lexsort((first.units, first.rows))
            r, h = first.rows[order], first.units[order]
            cl, ch, bl, bh = (x[order] for x in (*first.c, *first.b))
            # the widened attention moves a checker's forms by at most sum_p (widening) |value|: per head, the
            # row's total widening times |W1| |W_O| |W_V| |x| (x over every position's box), and for b the
            # payload columns of |W1| |W_O| |W_V|
            wc, wb = _attention_room(model, rows, att["A"], A, tmax)
            slack = pe * att["err1"][h] + pf * (1 + np.maximum(np.abs(cl), np.abs(ch))) + wc[r, h]
            cw = (_dn(cl - slack, pf), _up(ch + slack, pf))
            bw = (_dn(bl - wb[r, h], pf + 2 * pa), _up(bh + wb[r, h], pf + 2 * pa))
            recorder.note("claims", A=A, rows=r, units=h, c=cw, b=bw)
            wide = FirstLayer(r, h, cw, bw, first.n_units, first.attention_min)
            s0 = _pad(state_from_forms(wide, c, rows, tmax, enc))
            recorder.note("recursion", layer=0, M=s0.M, e=s0.e)
            s, _ = run_hidden(layer, dg, s0, ex, pad=_pad)
            inv_ok = all(float(a["e"][:, :c.V - 1].max()) < 0.5 for k, a in rec.notes  # the stage-a layers
                         if k == "recursion" and 2 <= a["layer"] < 2 * c.D + 2 and a["layer"] % 2 == 0)
            W, b = layer.mlp[-1].W, layer.mlp[-1].b
            lower = np.stack([pair_bounds(W, b, float(e), c.V, ex) for e in s.e[:, 0]])  # (R, y, j)
            margin = _dn(lower[:, ~np.eye(c.V, dtype=bool)].ravel(), PAD_MARGIN)  # row, y, then j != y
            recorder.note("decode", margin=margin)
            m = float(margin.min())
            rec.result = Recorded(m > 0 and inv_ok, m, None if m > 0 else f"the widened margin bound {m:.3g} <= 0")
        except (Uncovered, Unsupported, PrecisionExhausted) as e:
            rec.result = Recorded(False, float("-inf"), f"the widened claims do not certify: {e}")
