"""prefix_bias: a prefix adds a bias from the span of its values (Petrov, Torr & Bibi 2024, Sec. 4)."""
from __future__ import annotations

from prefixproof.theorems.obligations.base import Obligation, Theorem
from prefixproof.theorems.obligations.limitation import run_lemma, run_sampled
from prefixproof.verify.symbolic.prefix import bias_lemma

THEOREM = Theorem(
    id="prefix_bias",
    title="A prefix adds a bias from the span of its values",
    paper="Petrov, Torr & Bibi (ICLR 2024), Section 4",
    claim=(
        "At every content query i, given the same layer input: t_pt[i] = (1 - alpha_i) t[i] + sum_p A_pt[i,p] v_p. "
        "With one prefix position the output moves along the segment from t[i] to v_1; the prefix's contribution "
        "lies in span{v_p}, inside range(W_V) for activation prefixes; with several heads and output projections "
        "the change lies in sum_h W_O^h span{v_p^h}. Holds per layer, with causal and padding masks and pre-LayerNorm."
    ),
    predicate="t_pt[i] = (1 - alpha_i) t[i] + sum_p A_pt[i,p] v_p, per head, before and after W_O",
    params=(),
    obligations=(
        Obligation("bias-lemma", "t_pt = (1 - alpha) t + sum_p A_pt[p] v_p; the one-prefix segment; range(W_V); "
                   "several heads with W_O (symbolic in n, P, H and the dimensions)", ("symbolic",),
                   "prefixproof.verify.symbolic.prefix.bias_lemma", lambda ctx: run_lemma(THEOREM.id, bias_lemma, ctx),
                   applies_to_weights=False),
        Obligation("fuzz", "the identity before and after W_O, and range(W_V) for activation prefixes, on seeded random "
                   "transformers through the forward pass, within the documented float tolerance", ("numeric",),
                   "prefixproof.verify.identities.properties.prefix_bias", lambda ctx: run_sampled(THEOREM.id, "prefix_bias", ctx),
                   applies_to_weights=False),
    ),
)
