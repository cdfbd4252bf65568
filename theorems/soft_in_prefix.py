"""soft_in_prefix: soft prompting is a special case of prefix-tuning, strictly (Petrov, Torr & Bibi 2024, Sec. 3-4)."""
from __future__ import annotations

import dataclasses
import time
from fractions import Fraction

from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.theorems.obligations.base import Obligation, RunContext, Theorem
from prefixproof.theorems.obligations.limitation import run_lemma, run_sampled, seeded_cases, worst
from prefixproof.verify.exact.linalg import certifies_inconsistent, left_null_vector
from prefixproof.verify.identities.properties import PROPERTIES
from prefixproof.verify.symbolic.prefix import soft_prefix_lemma
from prefixproof.verify.verdict import Record, Verdict

CROSS_CHECK_CASES = 20
STRICT_INSTANCE = (4, 3)  # the Theorem 1 construction at V=4, N=3


def run_inclusion(ctx: RunContext) -> Record:
    """The symbolic lemma (the layer modelled, induction over layers), cross-checked through the forward pass on
    seeded random transformers (the cross-check can only withdraw PROVED, never grant it)."""
    t0 = time.perf_counter()
    ms = [m for c in seeded_cases(ctx.seed, CROSS_CHECK_CASES) for m in PROPERTIES["soft_in_prefix"].measures(c)]
    w = worst(ms)
    ok = w is None or w.ok
    note = (f"cross-check: {CROSS_CHECK_CASES} seeded random transformers, soft-prompt run vs prefix run per layer "
            f"through prefixproof.verify.semantics.forward.forward; worst error {0.0 if w is None else w.ratio:.3g} x tolerance")
    rec = run_lemma(THEOREM.id, soft_prefix_lemma, ctx, note if ok else f"the forward pass disagrees ({w.name}): {note}",
                    ok, t0)
    return dataclasses.replace(rec, seed=ctx.seed)  # the cross-check drew its transformers with the seed


def _stacked_key_value_rows(model) -> tuple[list[list[Fraction]], list[tuple[str, str, int]]]:
    """Rows of [W_K^h; W_V^h] over the heads of layer 1, exactly, with (head, part, row) labels."""
    layer = model.layers[0]
    d = layer.d_in
    rows, labels = [], []
    for head in layer.heads:
        for part in ("W_K", "W_V"):
            W = getattr(head, part)
            dense = [[Fraction(0)] * d for _ in range(W.shape[0])]
            for (i, c), v in W.entries.items():
                dense[i][c] = Fraction(v)
            rows += dense
            labels += [(head.name, part, i) for i in range(W.shape[0])]
    return rows, labels


def run_strict(ctx: RunContext) -> Record:
    """A layer-1 prefix (key, value) that no soft prompt realises: an exact Fredholm certificate."""
    t0 = time.perf_counter()
    V, N = STRICT_INSTANCE
    model = Theorem1(V, N).model()
    M, labels = _stacked_key_value_rows(model)
    y = left_null_vector(M)
    common = dict(claim=THEOREM.id, obligation="strict", method="exact rational linear algebra: certificate y with "
                  "y^T M = 0 and y^T b != 0 (Fredholm alternative)", arithmetic="exact (rationals)",
                  params=dict(ctx.params))
    if y is None:
        return Record(verdict=Verdict.UNKNOWN, reason="the stacked key/value map is onto: every (key, value) is "
                      "realised on this model", seconds=time.perf_counter() - t0, **common)
    b = list(y)  # the prefix: its stacked (key, value) vector is y itself, so y^T b = |y|^2 > 0
    ok = certifies_inconsistent(M, y, b)
    prefix: dict[str, dict[str, list[str]]] = {}
    for (head, part, _), value in zip(labels, b):
        prefix.setdefault(head, {}).setdefault("key" if part == "W_K" else "value", []).append(str(value))
    details = {
        "model": f"Theorem 1 construction, V={V}, N={N} (exact weights), layer 1, heads "
                 f"{', '.join(h.name for h in model.layers[0].heads)}",
        "statement": "a virtual token s at any position p gives keys and values M (s + P[p]), which lie in range(M); "
                     "the prefix with stacked (key, value) b is not in range(M) because y^T M = 0 and y^T b != 0, so "
                     "no soft prompt of any length, at any position and with any value, has this key and value",
        "prefix_key_value": prefix,
        "certificate_y": [str(v) for v in y],
        "y_dot_b": str(sum((a * c for a, c in zip(y, b)), Fraction(0))),
        "rows_x_cols": [len(M), len(M[0])],
        "parametric_in": "per instance (this model); every soft prompt value and position",
    }
    if not ok:
        return Record(verdict=Verdict.ERROR, reason="the certificate does not check in Fractions",
                      seconds=time.perf_counter() - t0, details=details, **common)
    return Record(verdict=Verdict.PROVED, seconds=time.perf_counter() - t0, details=details, **common)


THEOREM = Theorem(
    id="soft_in_prefix",
    title="Soft prompting is strictly contained in prefix-tuning",
    paper="Petrov, Torr & Bibi (ICLR 2024), Sections 3-4",
    claim=(
        "Every soft prompt equals a particular prefix: the prefix at layer l holds the soft run's layer-l "
        "activations at the virtual positions, on the model whose content positions are shifted by the prompt "
        "length; with causal attention these prefixes do not depend on the content, so each soft prompt is one "
        "fixed prefix. The inclusion is strict: on a concrete model, a layer-1 prefix (key, value) exists that no "
        "soft prompt realises."
    ),
    predicate="forall soft S: exists prefix P(S) with out(S, x) = out'(P(S), x); exists prefix P*: forall S: kv(S) != P*",
    params=(),
    obligations=(
        Obligation("soft-is-prefix", "a soft prompt equals the prefix of its own layer activations: the layer "
                   "(causal attention with positions, heads, LayerNorm, MLP, optional residual) modelled in sympy, "
                   "proved by induction over layers; cross-checked through the forward pass", ("symbolic",),
                   "prefixproof.verify.symbolic.soft.soft_prefix_lemma + prefixproof.verify.identities.checks.soft_prefix_measures",
                   run_inclusion, applies_to_weights=False),
        Obligation("strict", "a layer-1 prefix (key, value) on the Theorem 1 model that no soft prompt realises",
                   ("symbolic",), "prefixproof.verify.exact.linalg", run_strict, applies_to_weights=False),
        Obligation("fuzz", "soft prompt vs prefix per layer on seeded random transformers", ("numeric",),
                   "prefixproof.verify.identities.properties.soft_in_prefix", lambda ctx: run_sampled(THEOREM.id, "soft_in_prefix", ctx),
                   applies_to_weights=False),
    ),
)
