"""capacity_count: k hard tokens select at most V^k behaviours, one virtual token reaches V^N (Sec. 3)."""
from __future__ import annotations

import time

from prefixproof.constructions.model import materialize
from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.theorems.obligations.base import Obligation, Param, RunContext, Theorem
from prefixproof.verify.numeric.capacity import COUNT_LIMIT, hard_prompt_count, random_model, virtual_token_count
from prefixproof.verify.verdict import Coverage, Record, Verdict


def _common(ctx: RunContext, obligation: str, method: str) -> dict:
    return dict(claim=THEOREM.id, obligation=obligation, method=method, arithmetic="float64 execution",
                params=dict(ctx.params), seed=ctx.seed, dtype="float64")


def run_hard(ctx: RunContext) -> Record:
    """All V^k hard prompts, k = 1..min(2, N), on the Theorem 1 model and on a seeded random model."""
    t0 = time.perf_counter()
    V, N = ctx.params["V"], ctx.params["N"]
    common = _common(ctx, "hard-prompt-bound", "exhaustive greedy generation over every hard prompt "
                     "(prefixproof.verify.numeric.capacity.hard_prompt_count)")
    ks = [k for k in range(1, min(2, N) + 1) if V**k <= COUNT_LIMIT]
    if not ks:
        return Record(verdict=Verdict.UNKNOWN, reason=f"V = {V} exceeds the exhaustive limit {COUNT_LIMIT}",
                      seconds=time.perf_counter() - t0, **common)
    models = {"theorem1": materialize(Theorem1(V, N).model()), f"random (seed {ctx.seed})": random_model(V, N, ctx.seed)}
    counts, ok = {}, True
    for name, model in models.items():
        for k in ks:
            c = hard_prompt_count(model, k)
            counts[f"{name}, k={k}"] = {"prompts": c.inputs, "distinct_completions": c.distinct,
                                        "tokens_per_completion": c.steps, "bound_V^k": V**k}
            ok &= c.distinct <= V**k
    total = sum(V**k for k in ks) * len(models)
    details = {"counts": counts, "statement": "greedy decoding is a function of the prompt, so V^k prompts give at "
               "most V^k completions; the Theorem 1 construction ignores token embeddings (E = 0), so every hard "
               "prompt gives the same completion there"}
    return Record(verdict=Verdict.CHECKED if ok else Verdict.ERROR, coverage=Coverage(total, total, str(total)),
                  seconds=time.perf_counter() - t0, details=details,
                  reason=None if ok else "more distinct completions than prompts: the generator is not a function",
                  **common)


def run_virtual(ctx: RunContext) -> Record:
    """All V^N virtual tokens of the Theorem 1 construction: count the distinct completions."""
    t0 = time.perf_counter()
    V, N = ctx.params["V"], ctx.params["N"]
    common = _common(ctx, "virtual-token-reach", "exhaustive greedy generation from every virtual token Y/V "
                     "(prefixproof.verify.numeric.capacity.virtual_token_count)")
    if V**N > COUNT_LIMIT:
        return Record(verdict=Verdict.UNKNOWN, reason=f"V^N = {V}^{N} exceeds the exhaustive limit {COUNT_LIMIT}; "
                      "theorem1's certificate covers large sizes", seconds=time.perf_counter() - t0, **common)
    c = Theorem1(V, N)
    count, exact = virtual_token_count(materialize(c.model()), c.encode_batch, V, N)
    ok = count.distinct == V**N and exact == V**N
    details = {"distinct_completions": count.distinct, "V^N": V**N, "reproduce_their_target": exact,
               "hard_prompt_bound_k=1": V, "statement": "one virtual token reaches all V^N completions"}
    verdict = Verdict.CHECKED if ok else Verdict.UNKNOWN
    return Record(verdict=verdict, coverage=Coverage(count.inputs, V**N, f"{V}^{N}"), seconds=time.perf_counter() - t0,
                  details=details, reason=None if ok else f"only {count.distinct} of {V**N} completions reached "
                  f"({exact} reproduce their target); see theorem1's decode obligation", **common)


THEOREM = Theorem(
    id="capacity_count",
    title="Hard prompts select few behaviours; one virtual token reaches all",
    paper="Petrov, Torr & Bibi (ICLR 2024), Section 3 (varying the first token vs the first virtual token)",
    claim=(
        "k hard-prompt tokens select at most V^k behaviours (greedy completions), while one virtual token reaches "
        "all V^N on the Theorem 1 model. Counted exhaustively at concrete sizes."
    ),
    predicate="#{greedy(model, p) : p in [V]^k} <= V^k  and  #{greedy(theorem1, Y/V) : Y in [V]^N} = V^N",
    params=(
        Param("V", "vocabulary size", 2, 3),
        Param("N", "response length", 1, 4),
    ),
    obligations=(
        Obligation("hard-prompt-bound", "every hard prompt of length k <= 2 enumerated: at most V^k distinct "
                   "completions", ("certify", "numeric"), "prefixproof.verify.numeric.capacity.hard_prompt_count", run_hard,
                   applies_to_weights=False),
        Obligation("virtual-token-reach", "every virtual token Y/V enumerated: V^N distinct completions",
                   ("certify", "numeric"), "prefixproof.verify.numeric.capacity.virtual_token_count", run_virtual,
                   applies_to_weights=False),
    ),
)
