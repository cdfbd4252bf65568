"""The fuzzed properties and their negative controls, by name.

A property maps a `Case` to `Measure`s (error and tolerance); it holds on a
case when every measure is within its tolerance. A negative control is a
deliberately wrong identity evaluated the same way: the harness must flag it
(find a case where it exceeds its tolerance), or the harness itself is broken.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from prefixproof.verify.identities.cases import Case
from prefixproof.verify.identities.checks import Measure, prefix_measures, soft_prefix_measures

BIAS_PARTS = ("bias", "bias W_O", "in range(W_V)")


def _only(parts: tuple[str, ...], measures: list[Measure]) -> list[Measure]:
    return [m for m in measures if any(m.name.endswith(" " + p) for p in parts)]


@dataclass(frozen=True)
class Property:
    name: str
    statement: str
    check: Callable[..., list[Measure]]  # (case, control, evaluate_in) -> measures

    def measures(self, case: Case, control: str | None = None, evaluate_in: Any = None) -> list[Measure]:
        """Measures in the case's dtype, or the same weights evaluated in `evaluate_in` (the confirmation)."""
        return self.check(case, control, evaluate_in)


@dataclass(frozen=True)
class Control:
    name: str
    property: str
    wrong: str  # the deliberately wrong identity, in words
    limits: dict[str, Any]  # case ranges where the control is meaningful (e.g. heads >= 2 to swap heads)


PROPERTIES: dict[str, Property] = {p.name: p for p in (
    Property("prefix_rescale",
             "at every prefixed layer, given the same layer input: A_pt[i, P+j] = (1 - alpha_i) A[i, j] for every "
             "content key j, and the content argmax is unchanged",
             lambda c, ctl, ev: prefix_measures(c, ctl, False, ev)),
    Property("prefix_bias",
             "at every prefixed layer, given the same layer input: t_pt = (1 - alpha) t + sum_p A_pt[i,p] v_p per "
             "head, before and after W_O; activation-prefix values lie in range(W_V)",
             lambda c, ctl, ev: _only(BIAS_PARTS, prefix_measures(c, ctl, True, ev))),
    Property("soft_in_prefix",
             "a soft prompt of k vectors equals, at every layer, the prefix of its own layer activations on the "
             "model whose content positions are shifted by k (same attention and head outputs); with causal "
             "attention those prefixes do not depend on the content",
             soft_prefix_measures),
)}

CONTROLS: dict[str, Control] = {c.name: c for c in (
    Control("drop_alpha", "prefix_rescale", "A_pt[i, P+j] = A[i, j] (the (1 - alpha) factor dropped)", {}),
    Control("other_layer_input", "prefix_rescale",
            "compare layer l with the prefix-free model's own layer input instead of the same input",
            {"layers": (2, 3), "prefix_layers": 3}),
    Control("swap_heads", "prefix_bias", "the prefix values of head h+1 used for head h", {"heads": (2, 3)}),
    Control("raw_values_in_range", "prefix_bias", "raw prefix values claimed to lie in range(W_V)",
            {"raw": True, "d": (1, 3), "d_v": (4, 6)}),
    Control("unshifted_positions", "soft_in_prefix",
            "the prefix-side model keeps positions 0..n-1 for the content (no shift by k)", {}),
    Control("noncausal_fixed_prefix", "soft_in_prefix",
            "one fixed prefix per soft prompt without a causal mask (the virtual positions then read the content)",
            {"causal": False, "layers": (2, 3), "padding": False}),
)}


def evaluate(prop: str, case: Case, control: str | None = None) -> list[Measure]:
    return PROPERTIES[prop].measures(case, control)
