"""prefix_rescale: a prefix only rescales the attention over the content (Petrov, Torr & Bibi 2024, Sec. 4)."""
from __future__ import annotations

from prefixproof.theorems.obligations.base import Obligation, Theorem
from prefixproof.theorems.obligations.limitation import run_lemma, run_sampled
from prefixproof.verify.symbolic.prefix import rescale_lemma

THEOREM = Theorem(
    id="prefix_rescale",
    title="A prefix only rescales the content attention",
    paper="Petrov, Torr & Bibi (ICLR 2024), Section 4 (Theorem 3 and the attention decomposition)",
    claim=(
        "With P prefix positions (activations s_p with k_p = W_K s_p, v_p = W_V s_p, or raw keys and values), at "
        "every content query i of every head and layer, given the same layer input: A_pt[i,j] = (1 - alpha_i) "
        "A[i,j] for every content key j, where alpha_i is the attention mass on the prefix. Ratios, ranking and "
        "argmax of the content attention are unchanged. Holds with causal and padding masks, several heads and "
        "pre-LayerNorm (prefix activations normalised like the content)."
    ),
    predicate="forall layer, head, content query i, content key j: A_pt[i,j] = (1 - sum_p A_pt[i,p]) A[i,j]",
    params=(),
    obligations=(
        Obligation("rescale-lemma", "A_pt[i,j] = (1 - alpha_i) A[i,j] with 1 - alpha_i > 0; ratios, ranking and "
                   "argmax unchanged (symbolic in n, P and the dimensions)", ("symbolic",),
                   "prefixproof.verify.symbolic.prefix.rescale_lemma", lambda ctx: run_lemma(THEOREM.id, rescale_lemma, ctx),
                   applies_to_weights=False),
        Obligation("fuzz", "the identity and the argmax on seeded random transformers through the forward pass, "
                   "within the documented float tolerance", ("numeric",), "prefixproof.verify.identities.properties.prefix_rescale",
                   lambda ctx: run_sampled(THEOREM.id, "prefix_rescale", ctx), applies_to_weights=False),
    ),
)
