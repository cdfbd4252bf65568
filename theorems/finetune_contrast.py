"""finetune_contrast: fine-tuning can change relative attention, a prefix cannot (Sec. 5-6, rebuttal example)."""
from __future__ import annotations

import time

from prefixproof.theorems.obligations.base import Obligation, RunContext, Theorem
from prefixproof.theorems.obligations.limitation import run_lemma
from prefixproof.verify.numeric import attention_patterns as ap
from prefixproof.verify.symbolic.sphere import rotation_lemma
from prefixproof.verify.verdict import Coverage, Record, Verdict

PATTERNS = 6  # strict rankings of three content weights


def _common(ctx: RunContext, obligation: str, method: str) -> dict:
    return dict(claim=THEOREM.id, obligation=obligation, method=method, arithmetic="exact (integer scores); "
                "float64 forward cross-check", params=dict(ctx.params), dtype="float64")


def _ratio(W_Q, W_K, j: int, k: int) -> float:
    A = ap.forward(ap.model(W_Q, W_K), ap.SEQUENCE[None], return_attention=True).attention[0][0, 0, -1]
    return float(A[j] / A[k])


def run_witness(ctx: RunContext) -> Record:
    """One explicit update of each kind (full, LoRA rank 1 on W_Q, on W_K) that reorders the content attention."""
    t0 = time.perf_counter()
    original = ap.exact_pattern(ap.IDENTITY, ap.IDENTITY)
    witnesses, ok = {}, True
    for kind, updates in ap.updates().items():
        want_rank = 2 if kind == "full fine-tuning" else 1  # a full-rank update for full fine-tuning
        hit = next((w for w in updates if w.rank == want_rank and ap.exact_pattern(w.W_Q, w.W_K) not in (None, original)),
                   None)
        if hit is None:
            ok = False
            continue
        pattern = ap.exact_pattern(hit.W_Q, hit.W_K)
        j, k = ap.flipped_pair(original, pattern)
        before, after = _ratio(ap.IDENTITY, ap.IDENTITY, j, k), _ratio(hit.W_Q, hit.W_K, j, k)
        witnesses[kind] = {"update": hit.label, "rank": hit.rank, "pattern_before": original, "pattern_after": pattern,
                           f"A[{j}]/A[{k}] before": before, f"A[{j}]/A[{k}] after": after}
        ok &= before > 1 > after
    details = {"model": ap.__doc__.split("\n\n")[1].replace("\n", " "), "witnesses": witnesses,
               "why a prefix cannot": "prefix_rescale: every prefix keeps A[j]/A[k] (rescale-lemma), so no prefix "
                                      "moves a ratio across 1"}
    return Record(verdict=Verdict.CHECKED if ok else Verdict.UNKNOWN, seconds=time.perf_counter() - t0,
                  coverage=Coverage(len(witnesses), 3, "3 update kinds"), details=details,
                  reason=None if ok else "no witness found for some update kind, or the float forward disagrees",
                  **_common(ctx, "witness", "exact scores of explicit updates; prefixproof.verify.semantics.forward.forward ratios"))


def run_patterns(ctx: RunContext) -> Record:
    """Exhaustive: patterns reached by every prefix of the grid vs by every update of the grids."""
    t0 = time.perf_counter()
    original = ap.exact_pattern(ap.IDENTITY, ap.IDENTITY)
    ft = ap.finetune_reach()
    pre = ap.prefix_reach()
    ft_all = set().union(*(r.patterns for r in ft.values()))
    strict = set(pre.patterns) == {original} and original in ft_all and len(ft_all) > 1
    agree = pre.float_disagreements == 0 and all(r.float_disagreements == 0 for r in ft.values())
    details = {
        "patterns": f"strict rankings of the 3 content weights at the query ({PATTERNS} possible)",
        "original": original,
        "prefix_reachable": sorted(pre.patterns),
        "prefix_grid": f"{pre.tried} raw prefixes (1 or 2 positions, keys in {list(ap.PREFIX_GRID)}^2); every other "
                       "prefix keeps the ranking by the rescale-lemma",
        "finetune_reachable": {k: {"patterns": len(r.patterns), "updates": r.tried, "ties_skipped": r.ties}
                               for k, r in ft.items()},
        "finetune_reachable_total": len(ft_all),
        "statement": f"prefixes reach {len(pre.patterns)} pattern(s) of {PATTERNS}; fine-tuning reaches {len(ft_all)}: "
                     "prefix-reachable is a strict subset",
    }
    if not agree:
        return Record(verdict=Verdict.ERROR, reason="the float forward pass disagrees with the exact scores",
                      seconds=time.perf_counter() - t0, details=details,
                      **_common(ctx, "reachable-patterns", "exhaustive enumeration"))
    tried = pre.tried + sum(r.tried for r in ft.values())
    return Record(verdict=Verdict.CHECKED if strict else Verdict.UNKNOWN, seconds=time.perf_counter() - t0,
                  coverage=Coverage(tried, tried, str(tried)), details=details,
                  reason=None if strict else "the prefix-reachable patterns are not a strict subset here",
                  **_common(ctx, "reachable-patterns", "exhaustive enumeration of prefix and update grids"))


THEOREM = Theorem(
    id="finetune_contrast",
    title="Fine-tuning can change relative attention; a prefix cannot",
    paper="Petrov, Torr & Bibi (ICLR 2024), Sections 5-6 and the rotation example of the rebuttal",
    claim=(
        "An explicit weight update (full fine-tuning, or rank-1 LoRA on W_Q or W_K) changes the relative attention "
        "over the content, which no prefix can. A rotation keeps the unit sphere on itself, no non-zero bias does "
        "(every dimension d >= 1). On a small model the content-attention patterns reachable by prefixes are a "
        "strict subset of those reachable by fine-tuning."
    ),
    predicate="exists dW: A'[j]/A'[k] != A[j]/A[k]; R^T R = I => |Rx| = |x|; b != 0 => exists |x| = 1: |x + b| != 1",
    params=(),
    obligations=(
        Obligation("witness", "full fine-tuning and rank-1 LoRA on W_Q and W_K each reorder the content attention",
                   ("certify", "numeric"), "prefixproof.verify.numeric.attention_patterns", run_witness, applies_to_weights=False),
        Obligation("rotation-sphere", "a rotation keeps the unit sphere, no non-zero bias does (all d >= 1)",
                   ("symbolic",), "prefixproof.verify.symbolic.sphere.rotation_lemma",
                   lambda ctx: run_lemma(THEOREM.id, rotation_lemma, ctx), applies_to_weights=False),
        Obligation("reachable-patterns", "patterns reachable by prefixes are a strict subset of those reachable by "
                   "fine-tuning (exhaustive on a small model)", ("certify", "numeric"),
                   "prefixproof.verify.numeric.attention_patterns", run_patterns, applies_to_weights=False),
    ),
)
