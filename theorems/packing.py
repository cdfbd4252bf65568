"""multi_token_packing: the paper's single-virtual-token packing for L user tokens, verified honestly.

The claim: the packing construction (constructions/packing.py) answers m(u_1, ..., u_L) for every map,
from one virtual token whose coordinate a holds the sub-table of u_1 = a packed as base-V digits.
It holds in exact arithmetic (PROVED), and in a floating-point format only while V^(V^(L-1)) digits
fit: the float64 certificate (verify/certify/packing.py) and the counterexample search say exactly where.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from prefixproof.constructions.packing import Packing
from prefixproof.theorems.obligations.base import Obligation, Param, RunContext, Theorem
from prefixproof.theorems.conditional import ConditionalInputs
from prefixproof.theorems.obligations.ladder import Certificate, Run, climb, numeric_only
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.theorems.obligations.adapter_prompt import adapter_prompt_obligation
from prefixproof.theorems.obligations.stored_prompt import stored_prompt_obligation
from prefixproof.theorems.obligations.lookup import lemma_record
from prefixproof.verify.verdict import Record

EXACT_LIMIT = 20_000  # exhaustive exact evaluations (packed value x input) for the quick level
FALLBACK_MAPS = 20  # maps the counterexample search draws when the certificate does not decide


class PackingInputs(ConditionalInputs):
    """Maps [V]^L -> [V] (tables of V^L entries) times inputs; the virtual token holds packed digits."""

    def __init__(self, enc: LookupEncoding) -> None:
        V = enc.V
        L = enc.n_ctx - 1
        self.packing = Packing(V, L)
        self.enc, self.V, self.L, self.R = enc, V, L, 1
        self.K = V ** L
        self.total = V ** (self.K + L)
        self.form = f"{V}^{self.K + L}"
        self.positions_per_input = L + 1
        self.outputs = np.array([L])

    def _soft(self, tables: np.ndarray) -> np.ndarray:
        soft = np.zeros((len(tables), 1, self.enc.d))
        for i, t in enumerate(tables):
            soft[i, 0, self.enc.payload] = [float(r) for r in self.packing.pack(np.asarray(t).reshape(-1))]
        return soft

    def batch_of(self, items: Any) -> Any:
        items = [(np.asarray(t).reshape(self.K, 1), a) for t, a in items]
        return super().batch_of(items)

    def extremes(self) -> np.ndarray:
        return super().extremes()


def construction(ctx: RunContext) -> Packing:
    return Packing(ctx.params["V"], ctx.params["L"])


def run_lemmas(ctx: RunContext, make=None) -> Record:
    """The chained packing lemmas, then their own derived scale rule e^scale >= R at this instance."""
    from fractions import Fraction

    from prefixproof.verify.symbolic.lemmas import packing_lemma
    from prefixproof.verify.symbolic.leakage import exp_at_least
    from prefixproof.verify.symbolic.packing import D, V, m

    t0 = time.perf_counter()
    lemma = (make or packing_lemma)()
    c = construction(ctx)
    R = lemma.results.get("scale_threshold")
    value = None if R is None else R.subs({V: c.V, m: c.L, D: c.D})
    ok = value is not None and value.is_Rational and exp_at_least(c.scale, Fraction(int(value.p), int(value.q)))
    note = (f"this instance: e^scale >= R with the proved rule R = {R} at V={c.V}, m={c.L}, D={c.D} "
            f"(scale {c.scale}; arb)")
    return lemma_record(THEOREM.id, lemma, ctx, time.perf_counter() - t0, note if ok else "scale rule fails: " + note,
                        ok)


def run_exact(ctx: RunContext) -> Record:
    from prefixproof.verify.exact.packing import exhaustive_exact

    return exhaustive_exact(THEOREM.id, construction(ctx), ctx.params)


def run_decode(ctx: RunContext) -> Record:
    """`decode`: the packing certificate (every layer against the exact construction), then the one ladder."""
    from prefixproof.verify.certify.packing import packing_certificate

    c = construction(ctx)
    model = ctx.model if ctx.model is not None else c.model()
    problem = PackingInputs(LookupEncoding.of(model, "pay"))
    run = Run.of(THEOREM.id, ctx, model)
    if "certify" not in run.levels:
        return numeric_only(model, problem, run)
    out = packing_certificate(model, c, run.dtype)
    if "packing_certificate" in out["details"]:  # a certificate file records the demanded margin (--min-margin)
        out["details"]["packing_certificate"]["demanded_margin"] = run.min_margin
    certified = out["certified"] and run.min_margin <= out["margin"]
    reason = out["reason"] or (None if certified else f"the demanded margin {run.min_margin:.3g} is above the "
                                                      f"certified {out['margin']:.3g}")
    extremes = ((0, 0), (problem.K - 1, problem.V - 1))  # (sub-table row, value) boxes with concrete inputs
    return climb(model, problem, Certificate(
        certified=certified, margin=out["margin"], method=out["method"], arithmetic=out["arithmetic"],
        details=out["details"], reason=reason, check_boxes=extremes, runnable=out["runnable"],
        fallback_samples=FALLBACK_MAPS), run)


def exact_quick(params: dict[str, int]) -> bool:
    c = Packing(params["V"], params["L"])
    return c.V ** c.D * c.V ** c.L <= EXACT_LIMIT


THEOREM = Theorem(
    id="multi_token_packing",
    title="The paper's packing: L user tokens from one virtual token of packed digits",
    paper="Petrov, Torr & Bibi (ICLR 2024), appendix; companion notebook, two-token conditioning",
    claim=(
        "The packing construction answers m(u_1, ..., u_L) for every map m: [V]^L -> [V] from one virtual token "
        "whose coordinate a holds m(a, .) as V^(L-1) base-V digits, with a ReLU MLP extracting the digit "
        "(no host-language steps). Exact arithmetic: always. A floating-point format: only while the digits fit."
    ),
    predicate="forall m, u: argmax logits(model, [virtual(pack(m)), u_1..u_L])[L] == m(u), margin > 0",
    params=(Param("V", "vocabulary size", 2, 4), Param("L", "user tokens", 2, 2)),
    obligations=(
        Obligation("packing-lemmas", "the digit stages extract the right digit whenever the packed value is within "
                   "V^-D/4 of its grid point, and the scale keeps it there", ("symbolic",),
                   "prefixproof.verify.symbolic.lemmas.packing_lemma", run_lemmas, applies_to_weights=False),
        Obligation("exact-lookup", "exact rational evaluation (hardmax attention) of every packed value and input",
                   ("symbolic",), "prefixproof.verify.exact.packing.exhaustive_exact", run_exact, applies_to_weights=False,
                   quick=exact_quick),
        Obligation("decode", "every map and input decodes with a positive margin in the executed arithmetic",
                   ("certify", "numeric"), "prefixproof.verify.certify.packing.packing_certificate, then prefixproof.theorems.obligations.ladder.climb",
                   run_decode),
        stored_prompt_obligation("multi_token_packing"), adapter_prompt_obligation("multi_token_packing"),
    ),
    payload_block="pay",
)
