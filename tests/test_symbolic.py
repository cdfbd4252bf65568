"""Symbolic lemmas and the exact hardmax evaluation: proved for the constructions, not for broken ones."""
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from prefixproof.constructions.basis import ExactArray
from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.theorems.obligations.base import RunContext
from prefixproof.theorems.theorem1 import THEOREM as T1
from prefixproof.theorems.obligations.lookup import run_hardmax
from prefixproof.verify.symbolic.lemmas import Lemma, _zero, decode_lemma, leakage_lemma, scale_meets_rule
from prefixproof.verify.verdict import Verdict


def test_lemmas_prove_every_step():
    for lemma in (decode_lemma(), leakage_lemma()):
        assert lemma.proved, lemma.failed_steps()
        assert len(lemma.steps) >= 5


def test_a_false_step_is_not_proved():
    x = sp.Symbol("x")
    lem = Lemma("t", "s", "x")
    lem.check("true", _zero((x + 1) ** 2 - x**2 - 2 * x - 1))
    lem.check("false: x = x + 1", _zero(x - (x + 1)))
    lem.check("undecidable sign", sp.Symbol("y", real=True).is_positive)
    assert not lem.proved and lem.failed_steps() == ["false: x = x + 1", "undecidable sign"]


def test_vacuous_steps_are_refused():
    from prefixproof.verify.symbolic.derivation import VacuousStep

    x = sp.Symbol("x")
    lem = Lemma("t", "s", "x")
    with pytest.raises(VacuousStep):
        _zero(x - x)  # cancels to 0 as it is built
    with pytest.raises(VacuousStep):
        lem.identity("x against itself", x + 1, x + 1)
    with pytest.raises(VacuousStep):
        lem.chain("c", x).equals("no move", x)


def test_scale_rule_is_decided_per_instance():
    c = Theorem1(95, 20)
    assert scale_meets_rule(95, 19, c.scale)
    assert not scale_meets_rule(95, 19, c.scale - 1 / 16)  # one grid step lower breaks the rule


def _hardmax(model, c):
    from prefixproof.verify.certify.lookup_rows import theorem1_rows

    rows = theorem1_rows(np.array(c.stream.block("target")), c.V, c.N, None)
    return run_hardmax("theorem1", model, rows, c.N - 1, c.scale, RunContext(params={"V": c.V, "N": c.N}, samples=1, seed=0))


def test_hardmax_proves_the_construction():
    rec = next(ob for ob in T1.obligations if ob.id == "hardmax-lookup").run(
        RunContext(params={"V": 11, "N": 6}, samples=1, seed=0))
    assert rec.verdict is Verdict.PROVED
    assert rec.details["max_competing_keys"] == 5
    assert Fraction(rec.details["min_score_gap"]) == Fraction(Theorem1(11, 6).scale)  # gap = scale exactly


def test_hardmax_rejects_shifted_positions():
    c = Theorem1(11, 6)
    model = c.model()
    P = model.pos
    shifted = ExactArray(P.shape, {((i + 1) % P.shape[0], j): v for (i, j), v in P.entries.items()})
    rec = _hardmax(replace(model, pos=shifted), c)
    assert rec.verdict is Verdict.UNKNOWN and "does not go through" in rec.reason


def test_hardmax_rejects_a_wrong_decoder():
    c = Theorem1(11, 6)
    model = c.model()
    layer = model.layers[0]
    last = layer.mlp[-1]
    b = ExactArray(last.b.shape, {k: v * 2 for k, v in last.b.entries.items()})
    broken = replace(model, layers=(replace(layer, mlp=layer.mlp[:-1] + (replace(last, b=b),)),))
    rec = _hardmax(broken, c)
    assert rec.verdict is Verdict.UNKNOWN and "grid logit" in rec.reason


def test_chain_rules_refuse_what_they_cannot_justify():
    from prefixproof.verify.symbolic.derivation import Fact

    x, y = sp.symbols("x y", positive=True)
    lem = Lemma("t", "s", "x")
    forged = Fact(x, "<=", y, "never proved")  # not a hypothesis or a chain conclusion of this lemma
    lem.chain("forged", 2 * x).use("a fact nobody proved", forged)
    assert not lem.proved
    lem = Lemma("t", "s", "x")
    lem.chain("wrong bound", x**2 + 1).at_least("x^2 + 2 (false)", x**2 + 2)
    assert not lem.proved
    lem = Lemma("t", "s", "x")
    fact = lem.assume("x <= y", x, "<=", y)
    c = lem.chain("turn", 3 - x)
    c.use("x <= y", fact)  # 3 - x >= 3 - y
    c.at_most("3 (the chain already said >=)", sp.Integer(3))
    assert not lem.proved and "cannot turn" in lem.failed_steps()[0]
    j, k = sp.Symbol("j", integer=True, nonnegative=True), sp.Symbol("k", integer=True, positive=True)
    q, a = sp.Symbol("q", integer=True, nonnegative=True), sp.IndexedBase("a")
    lem = Lemma("t", "s", "x")
    lem.chain("split", sp.Sum(a[q], (q, 0, j))).split_shift("split at k > j + 1 possible", q, k)
    assert not lem.proved  # 0 <= k <= j + 1 is not decided
    m = sp.Symbol("m", integer=True)  # may be negative: sympy's Sum(f, (j, 1, m)) is then minus a sum
    lem = Lemma("t", "s", "x")
    b = sp.IndexedBase("b", nonnegative=True)
    term = lem.assume("b_q <= 1", b[q], "<=", sp.Integer(1), (q,))
    lem.chain("reversed range", sp.Sum(b[q], (q, 1, m))).sum_termwise("b_q <= 1 term by term", term, q)
    assert not lem.proved
