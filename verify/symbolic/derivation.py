"""One chained derivation per proof: every step consumes the previous step's conclusion.

A `Chain` starts from an expression built from the definitions (for example the
softmax weight of the intended key) and moves through a sequence

    e_0  R_1  e_1  R_2  e_2  ...      (each R_k one of =, <=, >=)

where step k takes e_(k-1) -- the very sympy object the previous step produced --
and produces e_k by a named rule that sympy checks:

* ``equals``: e_k - e_(k-1) simplifies to 0 (in the finite-sum normal form);
* ``at_most`` / ``at_least``: e_k - e_(k-1) (resp. e_(k-1) - e_k) equals a stated
  slack, and sympy's assumption system decides that the slack is >= 0;
* ``use``: a proved fact a <= b (or a >= b) is applied inside e_(k-1): the
  occurrence of a is replaced by a fresh symbol z, sympy decides the sign of
  d e/dz on a domain that holds both a and b, and e_k = e_(k-1)[a := b];
* ``sum_termwise``: a fact f(j) <= g(j) for every j bounds a finite sum term by term;
* ``relu_drop``: max(0, z) >= z, and max(0, z) = z once z >= 0 is a proved fact.

A chain mixes = with one direction of inequality only, and its conclusion
``e_0 R e_n`` becomes a `Fact` that later chains consume (again as the same
objects). Hypotheses of the statement are facts too, so the premises a proof
rests on are listed, never re-typed.

Guard against vacuity: a step whose two sides are structurally identical, or
whose difference is 0 before simplification (it cancels when sympy builds it),
is refused with `VacuousStep` -- such a step proves nothing and could hide a
mutated definition.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import sympy as sp

from prefixproof.verify.symbolic.sums import same


class VacuousStep(ValueError):
    """A step that compares an expression with itself, or whose difference is 0 before any simplification."""


def refuse_vacuous(text: str, lhs: sp.Expr, rhs: sp.Expr) -> None:
    lhs, rhs = sp.sympify(lhs), sp.sympify(rhs)
    if lhs == rhs:
        raise VacuousStep(f"step '{text}': both sides are the same expression ({lhs}); a step must move the derivation")
    if lhs.is_Matrix != rhs.is_Matrix:  # a 1x1 matrix expression against a scalar: only structure to compare
        return
    if sp.sympify(lhs - rhs) == 0:
        raise VacuousStep(f"step '{text}': its difference is 0 before simplification ({lhs} vs {rhs}); it proves nothing")


def nonvacuous_zero(text: str, expr: sp.Expr) -> bool:
    """expr simplifies to 0, and is not already 0 as built."""
    expr = sp.sympify(expr)
    if expr == 0:
        raise VacuousStep(f"step '{text}': the expression is 0 before simplification; it proves nothing")
    return sp.simplify(expr) == 0


@dataclass(frozen=True)
class Fact:
    """lhs rel rhs for every value of the symbols in `forall` (rel one of '=', '<=', '>=')."""
    lhs: sp.Expr
    rel: str
    rhs: sp.Expr
    text: str
    forall: tuple[sp.Symbol, ...] = ()
    origin: "Fact | None" = field(default=None, compare=False)  # the universal fact this one instantiates
    binding: tuple = field(default=(), compare=False)  # ... at these (symbol, value) pairs

    def at(self, mapping: dict) -> "Fact":
        """The instance of a universal fact at the given values of its `forall` symbols."""
        bad = set(mapping) - set(self.forall)
        if bad:
            raise ValueError(f"fact '{self.text}' is not universal in {sorted(map(str, bad))}")
        return Fact(self.lhs.xreplace(mapping), self.rel, self.rhs.xreplace(mapping), self.text,
                    tuple(s for s in self.forall if s not in mapping), origin=self,
                    binding=tuple(mapping.items()))

    def __str__(self) -> str:
        return f"{self.lhs} {self.rel} {self.rhs}"


def _sign(e: sp.Expr, given: tuple[Fact, ...] = ()) -> bool | None:
    """True: e >= 0 is decided; False: e <= 0 is decided; None: undecided.

    `given` facts a <= b / a >= b with a a symbol restrict its domain: a is written b - w / b + w with w >= 0
    (sign for every such w covers every allowed a)."""
    e = sp.sympify(e).doit()
    for f in given:
        if isinstance(f.lhs, sp.Symbol) and f.rel in ("<=", ">="):
            w = sp.Dummy("w", nonnegative=True)
            e = e.xreplace({f.lhs: f.rhs - w if f.rel == "<=" else f.rhs + w})
    for form in (lambda x: x, lambda x: sp.factor(sp.together(x)), lambda x: sp.factor(sp.simplify(x))):
        f = form(e)  # cheapest form first; each is the same value, so any decided sign is the sign of e
        if f.is_nonnegative:
            return True
        if f.is_nonpositive:
            return False
    return None


def _domain_symbol(a: sp.Expr, b: sp.Expr) -> sp.Symbol:
    """A fresh symbol whose assumptions hold at both a and b (so the segment between them lies in its domain)."""
    if a.is_positive and b.is_positive:
        return sp.Dummy("z", positive=True)
    if a.is_nonnegative and b.is_nonnegative:
        return sp.Dummy("z", nonnegative=True)
    return sp.Dummy("z", real=True)


@dataclass
class Chain:
    """A derivation from `start`; `current` is the conclusion the next step consumes."""
    lemma: "object"  # prefixproof.verify.symbolic.lemmas.Lemma (a structural dependency only)
    name: str
    start: sp.Expr
    current: sp.Expr = field(init=False)
    relation: str = field(init=False, default="=")
    ok: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        self.current = self.start

    # -- bookkeeping ---------------------------------------------------------------------------------------------
    def _record(self, text: str, rel: str, new: sp.Expr, ok: bool) -> "Chain":
        if rel != "=" and self.relation != "=" and rel != self.relation:
            ok = False
            text += f" (refused: the chain already concluded '{self.relation}', it cannot turn to '{rel}')"
        self.lemma.check(f"[{self.name}] {text}", ok)
        self.ok = self.ok and ok
        if rel != "=":
            self.relation = rel
        self.current = new
        return self

    def conclude(self, text: str, forall: tuple[sp.Symbol, ...] = ()) -> Fact:
        """The chain's conclusion start R current, as a fact (only when every step checked)."""
        fact = Fact(self.start, self.relation, self.current, text, forall)
        self.lemma.facts.append((fact, self.ok))
        return fact

    # -- rules ---------------------------------------------------------------------------------------------------
    def equals(self, text: str, new: sp.Expr, check: Callable[[sp.Expr, sp.Expr], bool] = same) -> "Chain":
        refuse_vacuous(text, self.current, new)
        return self._record(f"= {text}", "=", new, bool(check(self.current, new)))

    def _given_ok(self, given: tuple[Fact, ...]) -> bool:
        return all(self.lemma.has_fact(f) for f in given)

    def at_most(self, text: str, new: sp.Expr, given: tuple[Fact, ...] = ()) -> "Chain":
        refuse_vacuous(text, self.current, new)
        return self._record(f"<= {text}", "<=", new, _sign(new - self.current, given) is True and self._given_ok(given))

    def at_least(self, text: str, new: sp.Expr, given: tuple[Fact, ...] = ()) -> "Chain":
        refuse_vacuous(text, self.current, new)
        return self._record(f">= {text}", ">=", new, _sign(self.current - new, given) is True and self._given_ok(given))

    def reach(self, text: str, goal: sp.Expr, rel: str) -> "Chain":
        """Close the chain at `goal` (an inequality step when the current expression is not already it)."""
        if self.current == goal:
            return self
        return self.at_most(text, goal) if rel == "<=" else self.at_least(text, goal)

    def split_shift(self, text: str, index: sp.Symbol, at: sp.Expr) -> "Chain":
        """Every sum over index = 0..hi becomes sum 0..at-1 plus the sum of the shifted term over 0..hi-at
        (finite sums; valid when 0 <= at <= hi + 1, which sympy must decide)."""
        sums = [t for t in self.current.atoms(sp.Sum) if len(t.limits) == 1 and t.limits[0][0] == index
                and t.limits[0][1] == 0]
        ok = bool(sums)
        mapping = {}
        for t in sums:
            _, _, hi = t.limits[0]
            ok = ok and _sign(at) is True and _sign(hi + 1 - at) is True
            mapping[t] = (sp.Sum(t.function, (index, 0, at - 1))
                          + sp.Sum(t.function.xreplace({index: index + at}), (index, 0, hi - at)))
        return self._record(f"= {text} (finite sums: split at {at}, shift by {at})", "=",
                            self.current.xreplace(mapping), ok)

    def use_forall(self, text: str, fact: Fact, var) -> "Chain":
        """A proved equation lhs(var) = rhs(var), universal in var (a symbol or a tuple of symbols), applied at
        every instance in the expression."""
        vs = tuple(var) if isinstance(var, (tuple, list)) else (var,)
        wild = {v: sp.Wild(f"w_{v}") for v in vs}
        pattern, image = fact.lhs.xreplace(wild), fact.rhs.xreplace(wild)
        new = self.current.replace(pattern, image)
        ok = (fact.rel == "=" and all(v in fact.forall for v in vs) and self.lemma.has_fact(fact)
              and new != self.current)
        return self._record(f"= {text} [{fact.text}]", "=", new, ok)

    def relu_zero(self, text: str, fact: Fact) -> "Chain":
        """An occurrence max(0, u) becomes 0 from a proved fact u <= 0."""
        occ = sp.Max(0, fact.lhs)
        ok = fact.rel == "<=" and fact.rhs == 0 and self.lemma.has_fact(fact) and self.current.has(occ)
        return self._record(f"= {text} (max(0, u) = 0 for u <= 0) [{fact.text}]", "=",
                            self.current.xreplace({occ: sp.S.Zero}), ok)

    def relu_keep(self, text: str, fact: Fact) -> "Chain":
        """An occurrence max(0, u) becomes u from a proved fact u >= 0."""
        occ = sp.Max(0, fact.lhs)
        ok = fact.rel == ">=" and fact.rhs == 0 and self.lemma.has_fact(fact) and self.current.has(occ)
        return self._record(f"= {text} (max(0, u) = u for u >= 0) [{fact.text}]", "=",
                            self.current.xreplace({occ: fact.lhs}), ok)

    def relu_monotone(self, text: str, fact: Fact) -> "Chain":
        """max(0, a) <= max(0, b) from a proved fact a <= b (max(0, .) is nondecreasing)."""
        e = self.current
        ok = (isinstance(e, sp.Max) and sp.S.Zero in e.args and fact.lhs in e.args and fact.rel == "<="
              and self.lemma.has_fact(fact))
        return self._record(f"<= {text} [{fact.text}]", "<=", sp.Max(0, fact.rhs), ok)

    def use(self, text: str, fact: Fact, given: tuple[Fact, ...] = ()) -> "Chain":
        """Apply a proved fact a R b at its occurrence in the current expression (monotonicity by derivative sign)."""
        proved = self.lemma.has_fact(fact)
        if fact.rel == "=":
            new = self.current.xreplace({fact.lhs: fact.rhs})
            if new == self.current:  # a product inside a longer product is not one subtree: match algebraically
                new = self.current.subs(fact.lhs, fact.rhs)
            return self._record(f"= {text} [{fact.text}]", "=", new, proved and new != self.current)
        z = _domain_symbol(fact.lhs, fact.rhs)
        body = self.current.xreplace({fact.lhs: z})
        if z not in body.free_symbols:  # a quotient inside a product is not one subtree: match algebraically
            body = self.current.subs(fact.lhs, z)
        if z not in body.free_symbols:
            return self._record(f"{text}: '{fact.lhs}' does not occur in the current expression", self.relation,
                                self.current, False)
        grows = _sign(sp.diff(body, z), given)
        new = body.xreplace({z: fact.rhs})
        if grows is None:
            return self._record(f"{text} [{fact.text}]: the monotonicity is undecided", self.relation, new, False)
        rel = ("<=" if grows else ">=") if fact.rel == "<=" else (">=" if grows else "<=")
        return self._record(f"{rel} {text} [{fact.text}]", rel, new, proved and self._given_ok(given))

    def sum_termwise(self, text: str, fact: Fact, index: sp.Symbol, given: tuple[Fact, ...] = ()) -> "Chain":
        """A finite sum over `index` whose term is fact.lhs (for every index) is bounded by the sum of fact.rhs."""
        target = [s for s in self.current.atoms(sp.Sum) if s.function == fact.lhs and s.limits[0][0] == index]
        if len(target) != 1 or index not in fact.forall:
            return self._record(f"{text}: no single sum over {index} of '{fact.lhs}'", self.relation, self.current, False)
        whole = target[0]
        _, lo, hi = whole.limits[0]
        # a termwise bound needs an ordinary range (sympy's Sum with hi < lo - 1 is minus a sum: it would flip)
        ordinary = _sign(hi - lo + 1) is True
        bounded = sp.Sum(fact.rhs, *whole.limits).doit()
        sub = Fact(whole, fact.rel, bounded, f"termwise: {fact.text}")
        self.lemma.facts.append((sub, self.lemma.has_fact(fact) and ordinary))
        return self.use(f"{text} (term by term over {index})", sub, given)

    def relu_drop(self, text: str, nonneg: Fact | None = None) -> "Chain":
        """max(0, z) >= z; with a proved fact z >= 0 (or 0 <= z), max(0, z) = z."""
        e = self.current
        if not (isinstance(e, sp.Max) and len(e.args) == 2 and sp.S.Zero in e.args):
            return self._record(f"{text}: the current expression is not max(0, z)", self.relation, e, False)
        z = e.args[1] if e.args[0] == 0 else e.args[0]
        if nonneg is None:
            return self._record(f">= {text} (max(0, z) >= z)", ">=", z, True)
        ok = self.lemma.has_fact(nonneg) and nonneg.lhs == z and nonneg.rel == ">=" and nonneg.rhs == 0
        return self._record(f"= {text} (max(0, z) = z for z >= 0) [{nonneg.text}]", "=", z, ok)


def abs_fact(lemma, upper: Fact, lower: Fact, center: sp.Expr, text: str) -> Fact:
    """|X - c| <= d from proved facts X <= c + d and X >= c - d (the same X, the same d)."""
    d = sp.simplify(upper.rhs - center)
    ok = (upper.lhs == lower.lhs and upper.rel == "<=" and lower.rel == ">=" and lemma.has_fact(upper)
          and lemma.has_fact(lower) and sp.simplify(center - lower.rhs - d) == 0)
    fact = Fact(sp.Abs(upper.lhs - center), "<=", d, text)
    lemma.check(f"{text}: from {upper.text} and {lower.text}", ok)
    lemma.facts.append((fact, ok))
    return fact
