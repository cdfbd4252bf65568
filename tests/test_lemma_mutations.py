"""Lemma mutation suite (issue 9, items 8-9): every mutated statement or definition must stop proving.

Each lemma builder takes its definitions and claimed forms as arguments; a mutant passes a wrong one. The
unmutated lemma is the positive control. A mutant that still proves is a hole in the proof. A mutant may
also be refused outright (VacuousStep, SumFormError): that is a refusal to prove, never a pass.
"""
import math

import pytest
import sympy as sp

from prefixproof.theorems.obligations.base import RunContext
from prefixproof.theorems.obligations.lookup import run_leakage
from prefixproof.verify.symbolic.derivation import VacuousStep
from prefixproof.verify.symbolic.lemmas import decode_lemma, leakage_lemma, packing_lemma
from prefixproof.verify.symbolic import leakage as sl, packing as pk, prefix as sx, soft as ss
from prefixproof.verify.symbolic.prefix import _softmax_parts, bias_lemma, rescale_lemma, soft_prefix_lemma
from prefixproof.verify.symbolic.sphere import rotation_lemma
from prefixproof.verify.symbolic.sums import SumFormError, same
from prefixproof.verify.verdict import Verdict


def _proves(make, **mutation) -> bool:
    try:
        return make(**mutation).proved
    except (VacuousStep, SumFormError):
        return False


def _weights_without_prefix_in_normaliser():
    q = _softmax_parts()
    q["A_pt"] = q["A"]  # the prefix left out of the content softmax
    return q


def _prefix_weight_over_content_only():
    q = _softmax_parts()
    q["A_pt_prefix"] = q["A_pt_prefix"] * q["Z"] / q["E"]
    q["alpha"] = sp.Sum(q["A_pt_prefix"], (sp.Symbol("p", integer=True, positive=True),
                                             1, sp.Symbol("P", integer=True, positive=True)))
    return q


n_ = sp.Symbol("n", integer=True, positive=True)

MUTANTS = {
    decode_lemma: {
        "logit with j^2/V": dict(logit=lambda jj, x, V: 2 * jj / V * x - jj**2 / V),
        "logit slope j/V": dict(logit=lambda jj, x, V: jj / V * x - (jj / V) ** 2),
        "logit +(j/V)^2": dict(logit=lambda jj, x, V: 2 * jj / V * x + (jj / V) ** 2),
        "near tolerance 2/V": dict(near=2 / sp.Symbol("V", positive=True)),
        "far tolerance 3/V": dict(far=3 / sp.Symbol("V", positive=True)),
        "decision threshold 1/V": dict(threshold=1 / sp.Symbol("V", positive=True)),
    },
    leakage_lemma: {
        "rule 8Vm -> 2Vm": dict(rule=lambda V, m, L: V * (L + 1) * m),
        "target 1/(4V) -> 1/V": dict(target=1 / sl.V),
        "target 1/(4V) -> 1/(2V)": dict(target=1 / (2 * sl.V)),
        "margin goal 1/V^2": dict(margin_goal=1 / sl.V**2),
        "competitor values up to 2": dict(value_max=sp.Integer(2)),
        "softmax without exp": dict(softmax=lambda own, h: own / (sl.s[h, 0] + sp.Sum(sl.s[h, sl.j], (sl.j, 1, sl.m)))),
        "softmax missing the intended key in the normaliser":
            dict(softmax=lambda own, h: sp.exp(own) / sp.Sum(sp.exp(sl.s[h, sl.j]), (sl.j, 1, sl.m))),
        "select without -L": dict(select=lambda f, p, L: sp.Max(0, f + p)),
        "decode margin (1/V)(1/V - 4 err)": dict(margin=lambda v, err: (1 / v) * (1 / v - 4 * err)),
    },
    packing_lemma: {
        "threshold offset 1": dict(unit=lambda z, j, g: (2 / g) * (z - j) + 1),
        "threshold slope 1/g": dict(unit=lambda z, j, g: (1 / g) * (z - j) + sp.Rational(3, 2)),
        "one ReLU": dict(step=lambda A: sp.Max(0, 1 - A)),
        "stage (V+1) x - d": dict(stage=lambda x, d, v: (v + 1) * x - d),
        "tolerance g/2": dict(tolerance=pk.g / 2),
        "rule 8 m V^D": dict(rule=lambda V, m, D: 8 * m * V**D),
        "leak 4 m e^-sigma against the 16 m V^D rule": dict(leak=4 * pk.m * sp.exp(-pk.sigma),
                                                            rule=lambda V, m, D: 16 * m * V**D),
        "select without -1": dict(select=lambda value, flag: sp.Max(0, value + flag)),
    },
    rescale_lemma: {
        "factor 1 + alpha": dict(factor=lambda q: 1 + q["alpha"]),
        "factor 1": dict(factor=lambda q: sp.Integer(1)),
        "alpha = F/E": dict(alpha_form=lambda q: q["F"] / q["E"]),
        "keep = F/(E+F)": dict(keep_form=lambda q: q["F"] / q["Z"]),
        "prefix left out of the content normaliser": dict(parts=_weights_without_prefix_in_normaliser),
        "prefix weights normalised over the content only": dict(parts=_prefix_weight_over_content_only),
        "content score reads the prefix": dict(content_score=lambda sg, WQ, WK, xi, xj, sp_: sg * (WQ * xi).T * (WK * (xj + sp_))),
        "shift on the numerator only": dict(shifted_softmax=lambda sh: sp.exp(sx.s[sx.j] - sh) / (
            sp.Sum(sp.exp(sx.s[sx.j]), (sx.j, 1, sx.n)) + sp.Sum(sp.exp(sx.r[sx.p]), (sx.p, 1, sx.P)))),
    },
    bias_lemma: {
        "no rescale": dict(claimed=lambda q, t, added: t + added),
        "prefix values dropped": dict(claimed=lambda q, t, added: (1 - q["alpha"]) * t),
        "one prefix: (1 - alpha)(u - t)": dict(claimed_one=lambda a1, u1, t: (1 - a1) * (u1 - t)),
        "one prefix: alpha u": dict(claimed_one=lambda a1, u1, t: a1 * u1),
        "activation g with the prefix weights squared": dict(activation_g=lambda q, hp: sp.Sum(
            q["A_pt_prefix"] ** 2 * hp[sx.p, sx.c], (sx.p, 1, sx.P))),
        "heads keep alpha": dict(head_keep=lambda al: al[sx.h]),
    },
    soft_prefix_lemma: {
        "key/value map (x**2, sin(x))": dict(prefix_kv=lambda h, x: (x**2, sp.sin(x))),
        "content positions unshifted": dict(shifted_pos=lambda jj: ss.P[jj]),
        "prefix from the next position": dict(prefix_source=lambda layer, mm: ss.X[layer, mm + 1]),
        "prefix from the next layer": dict(prefix_source=lambda layer, mm: ss.X[layer + 1, mm]),
        "one prefix position short": dict(prefix_len=ss.k - 1),
        "soft run without the causal mask": dict(soft_visible_hi=lambda pos: ss.k + n_ - 1),
        "key and value swapped": dict(prefix_kv=lambda h, x: (ss.Wf(h, ss.LN(x)), ss.Kf(h, ss.LN(x)))),
        "prefix skips the LayerNorm": dict(prefix_kv=lambda h, x: (ss.Kf(h, x), ss.Wf(h, x))),
    },
    rotation_lemma: {
        "R^T R = 2I": dict(gram=lambda d: 2 * sp.Identity(d)),
        "unit point b/|b|^2": dict(unit_point=lambda b, beta: b / beta**2),
        "|x* + b|^2 = 1 + |b|^2": dict(claimed_shift=lambda beta: 1 + beta**2),
        "prefix map without kappa": dict(prefix_map=lambda kappa, u, b: u + b, claimed_diff=lambda kappa, w: 4 * kappa * w),
        "difference 2 kappa <u,b>": dict(claimed_diff=lambda kappa, w: 2 * kappa * w),
        "gap alpha (1 - alpha)": dict(claimed_gap=lambda alpha: alpha * (1 - alpha)),
    },
}
CASES = [(make, name, mut) for make, muts in MUTANTS.items() for name, mut in muts.items()]


@pytest.mark.parametrize("make", list(MUTANTS), ids=lambda f: f.__name__)
def test_every_lemma_proves_unmutated_and_has_five_mutants(make):
    assert make().proved, make().failed_steps()
    assert len(MUTANTS[make]) >= 5


@pytest.mark.parametrize("make,name,mutation", CASES, ids=[f"{m.__name__}:{n}" for m, n, _ in CASES])
def test_mutant_stops_proving(make, name, mutation):
    assert not _proves(make, **mutation), f"{make.__name__} still proves with the mutant '{name}'"


CTX = RunContext(params={"V": 4}, samples=1, seed=0)


def test_reported_leakage_instance_is_not_proved():
    """Issue 9: run_leakage(V=4, m=2, scale=ln 20) was PROVED although e^scale = 20 < 64 = 8Vm."""
    rec = run_leakage("theorem1", 4, 2, math.log(20), CTX)
    assert rec.verdict is Verdict.UNKNOWN and "scale rule fails" in rec.reason
    # with the constant mutated to 2Vm everywhere (rule, target and the instance check read one object)
    mutated = run_leakage("theorem1", 4, 2, math.log(20), CTX,
                          make=lambda: leakage_lemma(rule=lambda V, m, L: V * (L + 1) * m))
    assert mutated.verdict is Verdict.UNKNOWN
    # the smallest grid scale at or above ln 64 is proved
    ok = run_leakage("theorem1", 4, 2, math.ceil(math.log(64) * 16) / 16, CTX)
    assert ok.verdict is Verdict.PROVED, ok.reason


def test_the_instance_check_reads_the_proved_rule():
    lem = leakage_lemma()
    assert sl.threshold_at(lem, 4, 2, 1) == 64 and sl.threshold_at(lem, 7, 5, 2) == 4 * 7 * 3 * 5
    assert not sl.scale_meets_rule(4, 2, math.log(64) - 1e-9, 1, lem)
    assert not sl.scale_meets_rule(4, 2, 10.0, 1, leakage_lemma(target=1 / sl.V))  # an unproved lemma never passes


def test_index_capture_is_refused():
    """Issue 9: same(sum_j a_j (sum_j b_j), sum_j sum_j a_j b_j) was True; the two differ at n = 2."""
    j = sp.Symbol("j", integer=True)
    a, b = sp.IndexedBase("a"), sp.IndexedBase("b")
    lhs = sp.Sum(a[j] * sp.Sum(b[j], (j, 1, n_)), (j, 1, n_))
    rhs = sp.Sum(sp.Sum(a[j] * b[j], (j, 1, n_)), (j, 1, n_))
    vals = {a[1]: 1, a[2]: 2, b[1]: 3, b[2]: 5}
    assert lhs.subs(n_, 2).doit().subs(vals) != rhs.subs(n_, 2).doit().subs(vals)  # they really differ
    with pytest.raises(SumFormError, match="reuse the index j"):
        same(lhs, rhs)
    k = sp.Symbol("k", integer=True)  # a free symbol captured by merging: sum_j a_k (sum_k b_k)
    with pytest.raises(SumFormError):
        same(sp.Sum(a[k] * sp.Sum(b[k], (k, 1, n_)), (j, 1, n_)), sp.Sum(a[k] * b[k], (j, 1, n_), (k, 1, n_)))
    renamed = sp.Sum(a[j] * sp.Sum(b[k], (k, 1, n_)), (j, 1, n_))  # distinct names still merge
    assert same(renamed, sp.Sum(sp.Sum(a[j] * b[k], (j, 1, n_)), (k, 1, n_)))


def test_construction_scales_follow_the_derived_rule():
    """The constructions' scales (constructions/scales.py) meet the rule the leakage lemma derives, and the
    formula there is the lemma's own threshold; one grid step lower fails."""
    from prefixproof.constructions.conditional import Conditional
    from prefixproof.constructions.scales import SCALE_GRID, leakage_threshold, lookup_scale
    from prefixproof.constructions.theorem1 import Theorem1
    from prefixproof.constructions.theorem2 import Theorem2

    lem = leakage_lemma()
    for V, m, L in [(2, 1, 1), (4, 2, 1), (95, 19, 1), (7, 5, 2), (10, 3, 3), (32000, 1023, 1)]:
        assert sl.threshold_at(lem, V, m, L) == leakage_threshold(V, m, L)
        scale = lookup_scale(V, m, L)
        assert sl.scale_meets_rule(V, m, scale, L, lem)
        assert not sl.scale_meets_rule(V, m, scale - 1 / SCALE_GRID, L, lem)
    for c, m, L in [(Theorem1(11, 6), 5, 1), (Theorem2(9), 1, 1)]:
        assert sl.scale_meets_rule(c.V, m, c.scale, L, lem)
    c = Conditional(5, L=2, R=3)
    assert sl.scale_meets_rule(c.V, c.competitors, c.scale, c.L, lem)
