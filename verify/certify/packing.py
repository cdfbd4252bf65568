"""Certificate of the packing construction in an executed arithmetic (docs/certificates.md, "The packing certificate").

Every weight of the model enters the bound, and no layer is assumed to be the construction's:

  stage 1  attention (every head's W_Q, W_K, W_V, W_O and scale, E, P) and the first MLP layer, as affine
           forms in the stored packed value (verify/certify/attention.py); compared with the ideal select/keep
           values of the exact construction, plus the encoder's rounding of r;
  MLP      every later Dense layer, its weights and biases against the exact construction's rationals,
           with the executed rounding and the saturating ReLU pairs of the digit stages decided on the
           model's own weights (verify/certify/packing_recursion.py);
  decoder  the value's error against m(u)/V, decoded with the decoder's own weights and rounding.

A stage that cannot be enclosed gives UNKNOWN("stage not covered: ..."), never CERTIFIED.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from prefixproof.constructions.model import Model, materialize
from prefixproof.constructions.packing import Packing
from prefixproof.verify.certify import interval as I, recorder
from prefixproof.verify.certify.attention import Unsupported, first_layer_forms
from prefixproof.verify.certify.packing_recursion import Digits, State, Uncovered, decode_margin, exact_parts, run_hidden
from prefixproof.verify.certify.lookup_rows import LookupRows
from prefixproof.verify.semantics.formats import format_of, round_model, round_to
from prefixproof.verify.certify.interval import Exec, PrecisionExhausted, exec_for



def packing_rows(c: Packing, payload: np.ndarray, tmax: float) -> LookupRows:
    V, L = c.V, c.L
    a = np.arange(V ** L)
    digits = np.stack([(a // V ** (L - 1 - l)) % V for l in range(L)], axis=1)
    tau = np.array([0.0, tmax])
    return LookupRows(np.asarray(payload), tau, tau.copy(), False, query_pos=np.full(len(a), L), own=digits[:, 0],
                      n_positions=L + 1, virtual=1, fixed_pos=tuple(range(1, L + 1)), fixed_tok=digits)


def first_state(model: Model, c: Packing, rows: LookupRows, tmax: float, ex: Exec, enc_err: float) -> State:
    """Stage 1: (M, e) of every unit of the first MLP layer for every row, from the attention forms.

    The ideal (exact construction, hardmax) is select:u_1 = r, every other select 0, keep<l>:b = [u_l = b].
    A listed (row, unit) pair has pre-activation c + b t with t the stored packed value in [0, tmax] and
    |t - r| <= enc_err; an unlisted pair is dead (exactly 0)."""
    return state_from_forms(first_layer_forms(model, rows, ex), c, rows, tmax, enc_err)


def state_from_forms(first: Any, c: Packing, rows: LookupRows, tmax: float, enc_err: float) -> State:
    """(M, e) of the first MLP layer from its (row, unit) forms (first_state; the certificate pass widens them)."""
    exact_space = exact_parts(c)[0].layers[0].hidden[0]
    R, H1 = rows.rows, first.n_units
    if H1 != exact_space.dim:
        raise Uncovered(f"stage not covered: the first MLP layer has {H1} units, the construction {exact_space.dim}")
    ideal = np.zeros((R, H1))
    own_unit = np.array([exact_space.index(f"select:{a}") for a in range(c.V)])[rows.own]
    for l in range(2, c.L + 1):
        for b in range(c.V):
            ideal[rows.fixed_tok[:, l - 1] == b, exact_space.index(f"keep{l}:{b}")] = 1.0
    M = ideal.copy()
    M[np.arange(R), own_unit] = 1.0  # r < 1
    e = M.copy()  # unlisted pairs are exactly 0: the error is the ideal itself
    T = (np.zeros(len(first.rows)), np.full(len(first.rows), tmax))
    pre = I.add(first.c, I.mul(first.b, T))
    fixed = np.maximum(np.abs(np.maximum(pre[0], 0.0) - ideal[first.rows, first.units]),
                       np.abs(np.maximum(pre[1], 0.0) - ideal[first.rows, first.units]))
    # the own select unit: |ReLU(c + b t) - r| <= |c + (b - 1) t| + |t - r|, affine in t: largest at an end
    slope = I.sub(first.b, I.point(np.ones(len(first.rows))))
    at_max = I.add(first.c, I.scale(slope, tmax))
    own = I.up(np.maximum(I.mag(first.c), I.mag(at_max)) + enc_err)
    is_own = first.units == own_unit[first.rows]
    e[first.rows, first.units] = np.where(is_own, own, I.up(fixed))
    return State(M, e)


def analyse(model: Model, c: Packing, ex: Exec, encoder_dtype: str) -> dict[str, Any]:
    """The error recursion; returns {'certified': bool, 'margin': lower bound, 'reason': str | None, ...}.

    Every weight enters: the attention (every head's W_Q, W_K, W_V, W_O and scale, E and P) and the first
    MLP layer through the stage-1 forms, every later Dense layer through packing_recursion, the decoder
    through decode_margin. A stage that cannot be enclosed gives certified False with the stage named."""
    V, D, L = c.V, c.D, c.L
    if model.unembed is not None:
        raise Uncovered("stage not covered: an unembedding matrix (the packing construction has none)")
    exact_layer = exact_parts(c)[0].layers[0]
    layer = materialize(model).layers[0]
    if len(layer.mlp) != len(exact_layer.mlp) or len(layer.heads) != len(exact_layer.heads):
        raise Uncovered(f"stage not covered: {len(layer.heads)} heads and {len(layer.mlp)} Dense layers where the "
                        f"construction has {len(exact_layer.heads)} and {len(exact_layer.mlp)}")
    try:  # the payload as the model's own labels place it (the encoder writes the virtual token by them)
        pay = np.array(model.stream.block("pay"))
    except KeyError:
        raise Uncovered("stage not covered: the model's stream has no 'pay' block") from None
    if len(pay) != V:
        raise Uncovered(f"stage not covered: the 'pay' block has {len(pay)} coordinates, the construction {V}")
    # the largest packed value as the encoder stores it in the format, and the encoder's rounding of any value
    tmax = float(round_to(float(I.up((V ** D - 1) / V ** D)), encoder_dtype).astype(np.float64))
    enc = _enc_err(encoder_dtype)
    rows = packing_rows(c, pay, tmax)
    s0 = first_state(model, c, rows, tmax, ex, enc)
    istar = np.zeros(rows.rows, dtype=np.int64)
    for l in range(2, L + 1):
        istar = istar * V + rows.fixed_tok[:, l - 1]
    s, info = run_hidden(layer, Digits(c, istar), s0, ex)
    e_value = float(s.e.max())
    E0 = float(s0.e.max())
    margin = decode_margin(layer.mlp[-1].W, layer.mlp[-1].b, e_value, V, ex)
    if margin > 0 and recorder.active():  # verify --certificate: the recorded pass (packing_record.py)
        from prefixproof.verify.certify.packing_record import record
        record(model, c, ex, rows, tmax, enc, Digits(c, istar), layer)
    return {"certified": margin > 0, "margin": margin, "first_layer_error": E0, "value_error": e_value, **info,
            "reason": None if margin > 0 else f"decode margin bound {margin:.3g} <= 0 (value error {e_value:.3g})"}


def _enc_err(dtype: str) -> float:
    """Largest |t - r| for r in [0, 1) and t = fl_dtype(fl64(r)): half an ulp at 1/2..1 in the format, plus the
    float64 encoder's own half ulp when the value is rounded twice."""
    half = format_of(dtype).u / 2
    return half if dtype == "float64" else half + 2.0**-54


METHOD = "packing certificate: stage-1 enclosure, then every Dense layer against the exact construction"


def packing_certificate(model: Model, c: Packing, dtype: str) -> dict[str, Any]:
    """The certificate's decision over every map and input, executed in `dtype` (the weights rounded to it).

    Returns {"certified", "margin" (lower bound, when certified), "reason" (when not), "runnable" (whether the
    weights can be stored in the format at all), "method", "arithmetic", "details"}. A stage the recursion does
    not enclose is "stage not covered", never certified; the ladder (prefixproof.theorems.obligations.ladder)
    does the rest.
    """
    ex = exec_for(dtype)
    try:
        run = round_model(model, dtype)
    except ValueError as e:  # weights beyond the format's range cannot even be stored
        return {"certified": False, "margin": float("-inf"), "reason": f"the weights do not fit {dtype}: {e}",
                "runnable": False, "arithmetic": ex.name, "method": METHOD, "details": {}}
    try:
        result = analyse(run, c, ex, dtype)
    except Unsupported as e:
        result = {"certified": False, "reason": f"stage not covered: attention and the first MLP layer: {e}"}
    except (Uncovered, PrecisionExhausted) as e:
        result = {"certified": False, "reason": str(e)}
    return {"certified": bool(result["certified"]), "margin": result.get("margin", float("-inf")),
            "reason": result.get("reason"), "runnable": _runnable(dtype, c), "arithmetic": ex.name,
            "method": METHOD,
            "details": {"packing_certificate": {k: v for k, v in result.items() if k != "certified"}}}


def _runnable(dtype: str, c: Packing) -> bool:
    """Whether the weights can be stored in the format at all (the largest is about 4 V^(D+1))."""
    big = 4.0 * float(c.V) ** (c.D + 1)
    limit = format_of(dtype).largest
    return big < limit
