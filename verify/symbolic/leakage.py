"""The leakage lemma as one chained derivation from the softmax definition, and the scale rule it produces.

Setting (the lookup constructions, docs/constructions.md "Leakage"): at a query,
the fetch head (h = 0) and L pointer heads (h = 1..L) each have one intended
key (j = 0) and m competing keys (j = 1..m) whose scores are at least sigma
lower: s[h, j] <= s[h, 0] - sigma. The fetch head's intended value is the
payload t in [0, 1]; every other value lies in [0, 1] (value_range). Pointer
heads carry 1 at their intended key. The MLP selects x = max(0, f + sum_h p_h - L).

The derivation (every arrow consumes the previous conclusion):

  gap:     e^(s[h,j] - s[h,0]) <= e^-sigma                       (exp increasing)
  keep:    A[h,0] = 1/(1 + S_h) >= 1/(1 + m e^-sigma) >= 1 - m e^-sigma     (S_h = sum_j e^(s[h,j]-s[h,0]))
  lower:   x >= f + sum_h p_h - L >= ... >= t - (L+1) m e^-sigma >= t - (L+1) m / R >= t - target
  upper:   x <= max(0, f) = f <= t + (1-t) S_0/(1+S_0) <= ... <= t + (L+1) m / R <= t + target
  margin:  (1/V)(1/V - 2|x - t|) >= (1/V)(1/V - 2 target) >= margin_goal   (the decode lemma's proved margin)
  cut:     every other payload coordinate a: its ReLU argument <= (V-1)/V + 2 m e^-sigma - 1 < 0, so it selects 0

R, the threshold of the scale rule sigma >= ln R, is solved from the lower chain's
own conclusion (t - (L+1) m e^-sigma = t - target), unless a claimed rule is
injected; either way the chain checks it. `scale_meets_rule` evaluates that
very R at the instance, so a wrong constant anywhere stops the proof or fails
the instance check.
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Callable

import sympy as sp

from prefixproof.verify.symbolic.derivation import abs_fact
from prefixproof.verify.symbolic.lemmas import Lemma

V, m, L = sp.symbols("V m L", integer=True, positive=True)
sigma = sp.Symbol("sigma", positive=True)
h, j = sp.symbols("h j", integer=True, nonnegative=True)
s = sp.IndexedBase("s", real=True)  # scores s[head, key]
c = sp.IndexedBase("c", nonnegative=True)  # competitor values of the fetch head
d = sp.IndexedBase("d", nonnegative=True)  # competitor values of the pointer heads
t = sp.Symbol("t", nonnegative=True)  # the payload


def softmax_weight(own: sp.Expr, head: sp.Expr) -> sp.Expr:
    """Softmax over the intended key s[head, 0] and the m competitors s[head, j], j = 1..m."""
    return sp.exp(own) / (sp.exp(s[head, 0]) + sp.Sum(sp.exp(s[head, j]), (j, 1, m)))


def relu_select(fetched: sp.Expr, pointers: sp.Expr, count: sp.Expr) -> sp.Expr:
    return sp.Max(0, fetched + pointers - count)


def decode_margin(v: sp.Expr, err: sp.Expr) -> sp.Expr:
    """The margin the decode lemma proves at distance err from the grid point (its conclusion, not a copy)."""
    from prefixproof.verify.symbolic.decode import V as dV, a as da

    return _proved_decode_margin().xreplace({dV: v, da: err})


@lru_cache(maxsize=1)
def _proved_decode_margin() -> sp.Expr:
    from prefixproof.verify.symbolic.decode import decode_lemma

    proved = decode_lemma()
    if not proved.proved:
        raise ValueError("the decode lemma does not prove; the leakage lemma has no margin to use")
    return proved.results["margin"]


def leakage_lemma(softmax: Callable = softmax_weight, select: Callable = relu_select,
                  value_max: sp.Expr = sp.Integer(1), target: sp.Expr | None = None,
                  rule: Callable | None = None, margin_goal: sp.Expr | None = None,
                  margin: Callable = decode_margin) -> Lemma:
    """Every argument is a definition or a statement constant (injectable, for the mutation tests).

    Longer than 60 lines on purpose: one derivation chain from the softmax definition to the decode margin; each
    step consumes the previous conclusion, so splitting it would only pass the chain around."""
    target = 1 / (4 * V) if target is None else target
    margin_goal = 1 / (2 * V**2) if margin_goal is None else margin_goal
    lem = Lemma(
        "leakage-bound",
        "at a query whose intended key scores sigma above m others, in the fetch head and in each of L pointer "
        "heads, with values in [0, 1]: the softmax keeps A[h,0] >= 1 - m e^-sigma, the selected value "
        "x = max(0, f + sum_h p_h - L) satisfies t - (L+1) m e^-sigma <= x <= t + m e^-sigma, and "
        "sigma >= ln(4 V (L+1) m) gives |x - t| <= 1/(4V), so the decode margin stays >= 1/(2V^2)",
        "V, m (competing keys), L (pointer heads), sigma, every score and value symbolic",
    )
    gap = lem.assume("s[h,j] <= s[h,0] - sigma for every head h and competitor j", s[h, j], "<=", s[h, 0] - sigma,
                     (h, j))
    t_top = lem.assume("the payload t <= 1", t, "<=", sp.Integer(1))
    c_top = lem.assume(f"fetch competitor values c[j] <= {value_max}", c[j], "<=", value_max, (j,))
    d_top = lem.assume(f"pointer competitor values d[h,j] <= {value_max}", d[h, j], "<=", value_max, (h, j))
    E = sp.exp(-sigma)

    g = lem.chain("gap", sp.exp(s[h, j] - s[h, 0]))
    g.use("exp is increasing", gap)
    g_fact = g.conclude("e^(s[h,j]-s[h,0]) <= e^-sigma", (h, j))

    A0 = softmax(s[h, 0], h)
    S = sp.Sum(sp.exp(s[h, j] - s[h, 0]), (j, 1, m))
    k = lem.chain("keep", A0)
    k.equals("1/(1 + S_h), dividing by e^s[h,0]", 1 / (1 + S))
    k.sum_termwise("S_h <= m e^-sigma", g_fact, j)
    k.at_least("1 - m e^-sigma (the gap is (m e^-sigma)^2/(1 + m e^-sigma))", 1 - m * E)
    keep = k.conclude("A[h,0] >= 1 - m e^-sigma", (h,))

    Aj = softmax(s[h, j], h)
    pos = lem.chain("weight-sign", Aj * c[j])
    pos.at_least("0 (a softmax weight times a value >= 0)", sp.Integer(0))
    c_pos = pos.conclude("A[h,j] c[j] >= 0", (h, j))
    pd = lem.chain("pointer-weight-sign", Aj * d[h, j])
    pd.at_least("0", sp.Integer(0))
    d_pos = pd.conclude("A[h,j] d[h,j] >= 0", (h, j))
    cu = lem.chain("value-top", Aj * c[j])
    cu.use("c[j] <= value_max", c_top)
    c_le = cu.conclude("A[h,j] c[j] <= A[h,j] value_max", (h, j))
    du = lem.chain("pointer-value-top", Aj * d[h, j])
    du.use("d[h,j] <= value_max", d_top)
    d_le = du.conclude("A[h,j] d[h,j] <= A[h,j] value_max", (h, j))
    mass = lem.chain("mass", A0 + sp.Sum(Aj, (j, 1, m)))
    mass.equals("1 (the weights sum to one)", sp.Integer(1))
    one = mass.conclude("A[h,0] + sum_j A[h,j] = 1", (h,))

    at0 = {h: 0}
    fetched = softmax(s[0, 0], 0) * t + sp.Sum((Aj * c[j]).xreplace(at0), (j, 1, m))
    pointers = sp.Sum(A0 + sp.Sum(Aj * d[h, j], (j, 1, m)), (h, 1, L))
    x = select(fetched, pointers, L)

    lo = lem.chain("lower", x)
    lo.relu_drop("drop the ReLU")
    lo.sum_termwise("pointer competitors add >= 0", d_pos, j)
    lo.sum_termwise("each pointer keeps >= 1 - m e^-sigma", keep, h)
    lo.sum_termwise("fetch competitors add >= 0", c_pos.at(at0), j)
    lo.use("the fetch head keeps >= 1 - m e^-sigma of t", keep.at(at0))
    lo.at_least("t - (L+1) m e^-sigma (the gap is m e^-sigma (1 - t))", t - (L + 1) * m * E, given=(t_top,))
    derived_R = _solve_threshold(lo.current, t - target)
    R = derived_R if rule is None else sp.sympify(rule(V, m, L))
    scale = lem.assume("the scale rule sigma >= ln R", sigma, ">=", sp.log(R))
    lo.use("the scale rule", scale)
    lo.reach("the target", t - target, ">=")
    lower = lo.conclude("x >= t - target")

    zc = lem.chain("pointer-sum", fetched + pointers - L)
    zc.sum_termwise("pointer competitor values <= value_max", d_le, j)
    zc.sum_termwise("each pointer's weights sum to 1", one, h)
    z_top = zc.conclude("f + sum_h p_h - L <= f")
    fc = lem.chain("fetched-sign", fetched)
    fc.sum_termwise("fetch competitors add >= 0", c_pos.at(at0), j)
    fc.at_least("0", sp.Integer(0))
    f_pos = fc.conclude("f >= 0")
    up = lem.chain("upper", x)
    up.relu_monotone("the pointers add at most L", z_top)
    if isinstance(up.current, sp.Max):  # sympy may already have dropped max(0, f) from f's assumptions
        up.relu_drop("f >= 0", f_pos)
    up.sum_termwise("fetch competitor values <= value_max", c_le.at(at0), j)
    S0 = S.xreplace(at0)
    up.equals("t + (1 - t) S_0/(1 + S_0)", t + (1 - t) * S0 / (1 + S0))
    up.sum_termwise("S_0 <= m e^-sigma", g_fact.at(at0), j, given=(t_top,))  # g_fact is universal in h and j
    up.at_most("t + m e^-sigma", t + m * E)
    up.at_most("t + (L+1) m e^-sigma", t + (L + 1) * m * E)
    up.use("the scale rule", scale)
    up.reach("the target", t + target, "<=")
    upper = up.conclude("x <= t + target")

    _off_coordinates_cut(lem, softmax, select, g_fact, c_le, d_le, one, scale, S)

    err = abs_fact(lem, upper, lower, t, "|x - t| <= target")
    mg = lem.chain("margin", margin(V, err.lhs))
    mg.use("the error bound", err)
    mg.reach("the margin goal", margin_goal, ">=")
    mg.conclude("decode margin >= margin_goal")
    for name, chain, goal in (("lower", lo, t - target), ("upper", up, t + target), ("margin", mg, margin_goal)):
        lem.check(f"the {name} chain ends at its goal {goal}", chain.current == goal and chain.ok)
    lem.results["scale_threshold"] = R
    lem.results["symbols"] = (V, m, L)
    return lem


def _off_coordinates_cut(lem: Lemma, softmax: Callable, select: Callable, g_fact, c_le, d_le, one, scale,
                         S: sp.Expr) -> None:
    """Every other payload coordinate a is cut to exactly 0 by the ReLU, so the selected value is x alone.

    At coordinate a one pointer head (h = 1) has value 0 at its intended key, the others at most 1, and the
    payload there is at most (V-1)/V: the ReLU's argument is <= (V-1)/V + 2 m e^-sigma - 1 < 0 under the rule.
    """
    ta = sp.Symbol("t_a", nonnegative=True)
    ta_top = lem.assume("the payload coordinate t_a <= (V-1)/V", ta, "<=", (V - 1) / V)
    Aj = softmax(s[h, j], h)
    lk = lem.chain("competitor mass", sp.Sum(Aj, (j, 1, m)))
    lk.equals("S_h/(1 + S_h)", S / (1 + S))
    lk.sum_termwise("S_h <= m e^-sigma", g_fact, j)
    lk.at_most("m e^-sigma", m * sp.exp(-sigma))
    leak = lk.conclude("sum_j A[h,j] <= m e^-sigma", (h,))
    A0 = softmax(s[h, 0], h)
    a1 = lem.chain("intended weight <= 1", A0)
    a1.at_most("1", sp.Integer(1))
    a0_top = a1.conclude("A[h,0] <= 1", (h,))
    at0, at1 = {h: 0}, {h: 1}
    fetched = A0.xreplace(at0) * ta + sp.Sum((Aj * c[j]).xreplace(at0), (j, 1, m))
    zero_pointer = sp.Sum((Aj * d[h, j]).xreplace(at1), (j, 1, m))  # value 0 at its intended key
    others = sp.Sum(A0 + sp.Sum(Aj * d[h, j], (j, 1, m)), (h, 2, L))
    x_off = select(fetched, zero_pointer + others, L)
    arg = x_off.args[1] if isinstance(x_off, sp.Max) and x_off.args[0] == 0 else x_off
    z = lem.chain("off-coordinate argument", arg)
    z.sum_termwise("other pointers' competitor values <= 1", d_le, j)
    z.sum_termwise("other pointers' weights sum to 1", one, h)
    z.sum_termwise("the zero pointer's competitor values <= 1", d_le.at(at1), j)
    z.use("the zero pointer's competitor mass <= m e^-sigma", leak.at(at1))
    z.sum_termwise("fetch competitor values <= 1", c_le.at(at0), j)
    z.use("the fetch head's competitor mass <= m e^-sigma", leak.at(at0))
    z.use("t_a <= (V-1)/V", ta_top)
    z.use("A[0,0] <= 1", a0_top.at(at0))
    z.use("the scale rule", scale)
    z.reach("0", sp.Integer(0), "<=")
    cut = z.conclude("the off-coordinate argument <= 0")
    x = lem.chain("off-coordinate select", x_off)
    x.relu_zero("the ReLU cuts it", cut)
    lem.check("every other coordinate selects exactly 0", x.ok and x.current == 0)


def _solve_threshold(conclusion: sp.Expr, goal: sp.Expr) -> sp.Expr:
    """R with e^-sigma = 1/R turning the chain's conclusion into the goal (the proof's own scale rule)."""
    e = sp.Symbol("e", positive=True)
    sol = sp.solve(sp.Eq(conclusion.xreplace({sp.exp(-sigma): e}), goal), e)
    return sp.simplify(1 / sol[0]) if len(sol) == 1 else sp.oo


def threshold_at(lemma: Lemma, V_: int, m_: int, pointers: int = 1) -> Fraction:
    """The proved rule's threshold R at an instance, exactly (m = 0 keys leak nothing; m = 1 is conservative)."""
    R = lemma.results["scale_threshold"].subs({V: V_, m: max(m_, 1), L: pointers})
    if not R.is_Rational:
        raise ValueError(f"the scale rule of {lemma.name} does not evaluate to a rational at this instance: {R}")
    return Fraction(int(R.p), int(R.q))


def scale_meets_rule(V_: int, m_: int, sigma_: float, pointers: int = 1, lemma: Lemma | None = None) -> bool:
    """Per instance: e^sigma >= R of the PROVED rule, in arb ball arithmetic (sigma is an exact binary number)."""
    lemma = leakage_lemma() if lemma is None else lemma
    if not lemma.proved:
        return False
    return exp_at_least(sigma_, threshold_at(lemma, V_, m_, pointers))


def exp_at_least(sigma_: float, R: Fraction) -> bool:
    """e^sigma >= R, decided in arb ball arithmetic (an undecided comparison is False)."""
    import flint

    fs = Fraction(sigma_)
    arb_sigma = flint.arb(fs.numerator) / fs.denominator
    return bool(arb_sigma.exp() >= flint.arb(R.numerator) / R.denominator)
