"""The sympy lemmas of the limitation claims, the finite-sum normal form they rest on, and wrong statements they reject."""
import pytest
import sympy as sp

from prefixproof.verify.symbolic.prefix import _softmax_parts, bias_lemma, rescale_lemma, soft_prefix_lemma
from prefixproof.verify.symbolic.sphere import _scalar, rotation_lemma
from prefixproof.verify.symbolic.sums import SumFormError, canon, same


@pytest.mark.parametrize("make", [rescale_lemma, bias_lemma, soft_prefix_lemma, rotation_lemma])
def test_lemmas_are_proved_step_by_step(make):
    lemma = make()
    assert lemma.proved, lemma.failed_steps()
    assert len(lemma.steps) >= 4 and lemma.parametric


def test_the_rescale_identity_is_not_vacuous():
    q = _softmax_parts()
    assert same(q["A_pt"], (1 - q["alpha"]) * q["A"])
    assert not same(q["A_pt"], q["A"])  # the (1 - alpha) factor dropped
    assert not same(q["A_pt"], (1 + q["alpha"]) * q["A"])
    assert not same(q["alpha"], q["F"] / q["E"])  # the wrong normaliser


def test_the_bias_identity_is_not_vacuous():
    n, P = sp.symbols("n P", integer=True, positive=True)
    j, p, rho = sp.symbols("j p rho", integer=True, positive=True)
    q = _softmax_parts()
    u, v = sp.IndexedBase("u", real=True), sp.IndexedBase("v", real=True)
    t = sp.Sum(q["A"] * v[j, rho], (j, 1, n))
    added = sp.Sum(q["A_pt_prefix"] * u[p, rho], (p, 1, P))
    t_pt = added + sp.Sum(q["A_pt"] * v[j, rho], (j, 1, n))
    assert same(t_pt, (1 - q["alpha"]) * t + added)
    assert not same(t_pt, t + added)  # a pure bias without the rescale
    assert not same(t_pt, (1 - q["alpha"]) * t)  # the prefix values dropped


def test_canon_exchanges_and_merges_finite_sums():
    i, k = sp.symbols("i k", integer=True)
    n, m = sp.symbols("n m", integer=True, positive=True)
    a, b = sp.IndexedBase("a"), sp.IndexedBase("b")
    nested = sp.Sum(a[i] * sp.Sum(b[i, k], (k, 1, m)), (i, 1, n))
    swapped = sp.Sum(sp.Sum(a[i] * b[i, k], (i, 1, n)), (k, 1, m))
    assert same(nested, swapped)
    assert not same(nested, sp.Sum(a[i], (i, 1, n)) * sp.Sum(b[i, k], (k, 1, m), (i, 1, n)))
    assert same(sp.Sum(3 * a[i], (i, 1, n)), 3 * sp.Sum(a[i], (i, 1, n)))


def test_canon_refuses_dependent_bounds():
    i, k = sp.symbols("i k", integer=True)
    n = sp.Symbol("n", integer=True, positive=True)
    a = sp.IndexedBase("a")
    with pytest.raises(SumFormError):
        canon(sp.Sum(sp.Sum(a[i, k], (k, 1, i)), (i, 1, n)))


def test_a_translation_does_not_keep_the_sphere():
    d = sp.Symbol("d", integer=True, positive=True)
    b = sp.MatrixSymbol("b", d, 1)
    beta = sp.Symbol("beta", positive=True)
    x = b / beta
    norm = _scalar((x + b).T * (x + b), {b.T * b: beta**2})
    assert sp.simplify(norm - (1 + beta) ** 2) == 0
    assert sp.simplify(norm - 1) != 0  # a wrong claim that the translated point stays on the sphere is rejected
