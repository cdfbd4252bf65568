"""The packing lemmas (constructions/packing.py) as chained derivations (verify/symbolic/derivation.py).

One digit stage reads a computed value z within g/4 of the grid value z* = n + f
(0 <= f <= 1 - g), and for every threshold j computes

    A_j = (2/g)(z - j) + 3/2,     H_j = max(0, 1 - max(0, 1 - A_j)).

on:   j <= n      =>  z >= j - g/4  =>  A_j >= 1  =>  1 - A_j <= 0  =>  H_j = 1
off:  j >= n + 1  =>  z <= j - 3g/4 =>  A_j <= 0  =>  1 - A_j >= 0  =>  H_j = max(0, A_j) = 0
count: d = sum_{j=1}^{V-1} H_j = n = floor(z*)
error: x_(k+1) = V x_k - d, so with the right digit e_(k+1) = V e_k, and e_k = V^k e_0 by induction;
       stage k reads V^(k+1) e_0 <= V^(k+1) V^-D/4 = g_k/4 with g_k = V^-(D-1-k)
scale: the leak 2 m e^-sigma (leakage lemma, one pointer) <= V^-D/8 needs sigma >= ln R, R solved from
       the chain (16 m V^D); V^-D/8 < V^-D/4
select: max(0, d/V + idx - 1) = d/V at idx = 1 and 0 at idx = 0 (d <= V - 1)
"""
from __future__ import annotations

from typing import Callable

import sympy as sp

from prefixproof.verify.symbolic.lemmas import Lemma

g, V, m, D = sp.symbols("g V m D", positive=True)
z, zs, j = sp.symbols("z z_star j", real=True)
n = sp.Symbol("n", integer=True, nonnegative=True)
f = sp.Symbol("f", nonnegative=True)
k = sp.Symbol("k", integer=True, nonnegative=True)
e0, ek = sp.symbols("e_0 e_k", real=True)
sigma = sp.Symbol("sigma", positive=True)
dd, idx = sp.Symbol("d", nonnegative=True), sp.Symbol("idx", nonnegative=True)


def threshold_unit(zz: sp.Expr, jj: sp.Expr, gg: sp.Expr) -> sp.Expr:
    return (2 / gg) * (zz - jj) + sp.Rational(3, 2)


def step_unit(A: sp.Expr) -> sp.Expr:
    return sp.Max(0, 1 - sp.Max(0, 1 - A))


def digit_stage(x: sp.Expr, digit: sp.Expr, v: sp.Expr) -> sp.Expr:
    return v * x - digit


def select_unit(value: sp.Expr, flag: sp.Expr) -> sp.Expr:
    return sp.Max(0, value + flag - 1)


def packing_lemma(unit: Callable = threshold_unit, step: Callable = step_unit, stage: Callable = digit_stage,
                  select: Callable = select_unit, tolerance: sp.Expr | None = None, leak: sp.Expr | None = None,
                  rule: Callable | None = None) -> Lemma:
    """The chained packing lemma: the digit stages decide exactly within V^-D/4, and the derived scale rule keeps
    the packed value there. Longer than 60 lines on purpose: one derivation chain, each step consuming the
    previous conclusion."""
    tolerance = g / 4 if tolerance is None else tolerance  # how far the computed z may sit from z*
    leak = 2 * m * sp.exp(-sigma) if leak is None else leak  # the leakage lemma's bound, one pointer head
    lem = Lemma(
        "packing-lemmas",
        "with A = (2/g)(z - j) + 3/2 and H = ReLU(1 - ReLU(1 - A)): H = 1 when the grid value z* >= j and "
        "H = 0 when z* <= j - g, for any computed z within g/4 of z*; so d = sum_j H_j = floor(V x) on the "
        "grid, the error of x_k grows by V per stage, and every stage decides correctly when the packed value "
        "is within V^-D/4 of its grid point, which sigma >= ln(16 m V^D) guarantees (delta <= V^-D/8)",
        "V, D, g, j, the grid value and the error symbolic",
    )
    z_lo = lem.assume("the computed z >= z* - g/4", z, ">=", zs - tolerance)
    z_hi = lem.assume("the computed z <= z* + g/4", z, "<=", zs + tolerance)
    grid = lem.assume("z* = n + f", zs, "=", n + f)
    f_top = lem.assume("f <= 1 - g (z* on the grid of spacing g)", f, "<=", 1 - g)
    j_on = lem.assume("j <= n", j, "<=", n)
    j_off = lem.assume("j >= n + 1", j, ">=", n + 1)

    c = lem.chain("on: z", z)
    c.use("z >= z* - g/4", z_lo)
    c.use("z* = n + f", grid)
    c.at_least("j - g/4", j - g / 4, given=(j_on,))
    z_on = c.conclude("z >= j - g/4 for j <= n")
    c = lem.chain("on: A", unit(z, j, g))
    c.use("z >= j - g/4", z_on)
    c.reach("1", sp.Integer(1), ">=")
    a_on = c.conclude("A_j >= 1")
    c = lem.chain("on: 1 - A", 1 - unit(z, j, g))
    c.use("A_j >= 1", a_on)
    c.reach("0", sp.Integer(0), "<=")
    one_minus = c.conclude("1 - A_j <= 0")
    c = lem.chain("on: H", step(unit(z, j, g)))
    c.relu_zero("the inner ReLU", one_minus)
    lem.check("on: H_j = 1", c.current == 1 and c.ok)
    c.conclude("H_j = 1 for j <= n")

    c = lem.chain("off: z", z)
    c.use("z <= z* + g/4", z_hi)
    c.use("z* = n + f", grid)
    c.at_most("j - 3g/4", j - 3 * g / 4, given=(j_off, f_top))
    z_off = c.conclude("z <= j - 3g/4 for j >= n + 1")
    c = lem.chain("off: A", unit(z, j, g))
    c.use("z <= j - 3g/4", z_off)
    c.reach("0", sp.Integer(0), "<=")
    a_off = c.conclude("A_j <= 0")
    c = lem.chain("off: 1 - A", 1 - unit(z, j, g))
    c.use("A_j <= 0", a_off)
    c.reach("0", sp.Integer(0), ">=")
    inner = c.conclude("1 - A_j >= 0")
    c = lem.chain("off: H", step(unit(z, j, g)))
    c.relu_keep("the inner ReLU", inner)
    c.relu_zero("the outer ReLU", a_off) if c.current != 0 else None
    lem.check("off: H_j = 0", c.current == 0 and c.ok)
    c.conclude("H_j = 0 for j >= n + 1")

    c = lem.chain("count", sp.Sum(1, (j, 1, n)) + sp.Sum(0, (j, n + 1, V - 1)))
    c.equals("n: H = 1 at j = 1..n and 0 above", n, check=lambda a, b: sp.simplify(a.doit() - b) == 0)
    c.conclude("d = n = floor(z*)")

    c = lem.chain("error", stage(zs + ek, n, V) - stage(zs, n, V))
    c.equals("V e_k (the right digit cancels)", V * ek)
    step_fact = c.conclude("e_(k+1) = V e_k")
    hyp = lem.assume("induction hypothesis e_k = V^k e_0", ek, "=", V**k * e0)
    c = lem.chain("induction", step_fact.rhs)
    c.use("e_k = V^k e_0", hyp)
    lem.check("induction: e_(k+1) = V^(k+1) e_0", sp.simplify(c.current - V ** (k + 1) * e0) == 0 and c.ok)
    grown = c.conclude("e_(k+1) = V^(k+1) e_0")

    e_top = lem.assume("|e_0| <= V^-D/4", sp.Abs(e0), "<=", V ** (-D) / 4)
    gk = V ** (-(D - 1 - k))
    c = lem.chain("tolerance", sp.Abs(grown.rhs))  # the error stage k reads: |e_(k+1)|
    c.use("|e_0| <= V^-D/4", e_top)
    c.reach("g_k/4", tolerance.subs(g, gk), "<=")
    lem.check("tolerance: stage k reads within g_k/4", c.current == gk / 4 and c.ok)
    c.conclude("|e| read by stage k <= g_k/4")

    goal = V ** (-D) / 8
    c = lem.chain("scale", leak)
    R = _solve(leak, goal) if rule is None else sp.sympify(rule(V, m, D))
    scale = lem.assume("the scale rule sigma >= ln R", sigma, ">=", sp.log(R))
    c.use("the scale rule", scale)
    c.reach("V^-D/8", goal, "<=")
    c.at_most("V^-D/4", V ** (-D) / 4)
    lem.check("scale: the packed value stays within V^-D/4", c.current == V ** (-D) / 4 and c.ok)
    c.conclude("delta <= V^-D/4")
    lem.results["scale_threshold"] = R

    d_top = lem.assume("d <= V - 1", dd, "<=", V - 1)
    on = lem.assume("idx = 1", idx, "=", sp.Integer(1))
    c = lem.chain("select on", select(dd / V, idx))
    c.use("idx = 1", on)
    lem.check("select: idx = 1 passes d/V", c.current == dd / V and c.ok)
    c = lem.chain("select off: argument", dd / V - 1)
    c.use("d <= V - 1", d_top)
    c.reach("0", sp.Integer(0), "<=")
    arg = c.conclude("d/V - 1 <= 0")
    c = lem.chain("select off", select(dd / V, sp.Integer(0)))
    c.relu_zero("d/V - 1 <= 0", arg)
    lem.check("select: idx = 0 blocks", c.current == 0 and c.ok)
    return lem


def _solve(expr: sp.Expr, goal: sp.Expr) -> sp.Expr:
    e = sp.Symbol("e", positive=True)
    sol = sp.solve(sp.Eq(expr.xreplace({sp.exp(-sigma): e}), goal), e)
    return sp.simplify(1 / sol[0]) if len(sol) == 1 else sp.oo
