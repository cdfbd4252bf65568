"""Symbolic lemmas (sympy), parametric in V, N and the scale: the `Lemma` record and the lookup lemmas.

A lemma is a set of chained derivations (verify/symbolic/derivation.py): each step
consumes the previous step's conclusion and is checked by sympy (an identity,
a bound with a slack of decided sign, a proved fact applied by monotonicity,
...); a chain's conclusion is a `Fact` that later chains consume, and the
hypotheses of the statement are listed facts. A few steps are sign facts or
structural checks (`Lemma.check`). A step whose two sides are the same
expression as built, or whose difference is already 0, is refused
(`VacuousStep`). A lemma is PROVED only when every step checks. What is
trusted: sympy's simplifier and assumption system, the rules of
verify/symbolic/derivation.py, and the standard facts quoted in a step's text
(monotonicity of exp).

The lemmas live in verify/symbolic/decode.py, symbolic_leakage.py and
symbolic_packing.py; the functions here build them (keyword arguments inject
definitions, for the mutation tests) and cache the unmutated ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from prefixproof.verify.symbolic.derivation import Chain, Fact, nonvacuous_zero, refuse_vacuous


@dataclass
class Lemma:
    name: str
    statement: str
    parametric: str  # what the proof is parametric in
    steps: list[tuple[str, bool]] = field(default_factory=list)
    facts: list[tuple[Fact, bool]] = field(default_factory=list)  # hypotheses and chain conclusions, with validity
    results: dict = field(default_factory=dict)  # what the proof produces for per-instance checks (e.g. a scale rule)

    def check(self, text: str, ok: bool | None) -> None:
        self.steps.append((text, ok is True))

    def identity(self, text: str, lhs: sp.Expr, rhs: sp.Expr, equal=None) -> None:
        """A step lhs = rhs, refused when vacuous (see verify/symbolic/derivation.py); `equal` defaults to simplify."""
        refuse_vacuous(text, lhs, rhs)
        self.check(text, (equal or (lambda a, b: sp.simplify(a - b) == 0))(lhs, rhs))

    def assume(self, text: str, lhs: sp.Expr, rel: str, rhs: sp.Expr, forall: tuple = ()) -> Fact:
        """A hypothesis of the statement, listed among the facts (never re-typed inside a step)."""
        fact = Fact(sp.sympify(lhs), rel, sp.sympify(rhs), f"hypothesis: {text}", tuple(forall))
        self.facts.append((fact, True))
        return fact

    def chain(self, name: str, start: sp.Expr) -> Chain:
        return Chain(self, name, start)

    def has_fact(self, fact: Fact) -> bool:
        if any(f is fact or f == fact for f, ok in self.facts if ok):
            return True
        return (fact.origin is not None and self.has_fact(fact.origin)
                and fact.origin.at(dict(fact.binding)) == fact)

    @property
    def proved(self) -> bool:
        return bool(self.steps) and all(ok for _, ok in self.steps)

    def failed_steps(self) -> list[str]:
        return [text for text, ok in self.steps if not ok]


def _zero(expr: sp.Expr) -> bool:
    """expr simplifies to 0; refused (VacuousStep) when it is already 0 as built."""
    return nonvacuous_zero(str(expr), expr)


_DEFAULT: dict = {}


def _built(derive, definitions: dict) -> Lemma:
    """The lemma with the given definitions; the unmutated one is derived once per process (it is deterministic)."""
    if definitions:
        return derive(**definitions)
    if derive not in _DEFAULT:
        _DEFAULT[derive] = derive()
    return _DEFAULT[derive]


def decode_lemma(**definitions) -> Lemma:
    """The chained nearest-grid decode lemma (verify/symbolic/decode.py); keyword arguments inject definitions."""
    from prefixproof.verify.symbolic.decode import decode_lemma as derive

    return _built(derive, definitions)


def leakage_lemma(**definitions) -> Lemma:
    """The chained leakage derivation (verify/symbolic/leakage.py); keyword arguments inject definitions."""
    from prefixproof.verify.symbolic.leakage import leakage_lemma as derive

    return _built(derive, definitions)


def scale_meets_rule(V: int, m: int, sigma: float, pointers: int = 1, lemma: Lemma | None = None) -> bool:
    """Per instance: e^sigma >= the threshold R that the (proved) leakage lemma produced; arb ball arithmetic."""
    from prefixproof.verify.symbolic.leakage import scale_meets_rule as meets

    return meets(V, m, sigma, pointers, lemma)


def packing_lemma(**definitions) -> Lemma:
    """The chained packing lemmas (verify/symbolic/packing.py); keyword arguments inject definitions."""
    from prefixproof.verify.symbolic.packing import packing_lemma as derive

    return _built(derive, definitions)
