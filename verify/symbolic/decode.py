"""The nearest-grid decode lemma as chained derivations (verify/symbolic/derivation.py).

logit_j(x) = (2j/V) x - (j/V)^2. With x = y/V + e and |e| <= a:

  difference: logit_y - logit_j = ((y-j)/V)(2x - (y+j)/V)
  below/above: at j = y -+ k the difference is k^2/V^2 +- 2ke/V >= h(k) = k^2/V^2 - 2ka/V
  neighbours: for a <= 3/(2V) and k >= 2, h(k) >= h(1) = (1/V)(1/V - 2a)
  far:        for a <= 5/(2V) and k >= 3, h(k) >= h(2) = 4/V^2 - 4a/V   (the bound verify/certify/decoder.py uses)
  sign:       h(1) > 0 iff a < 1/(2V)

Every definition and constant is an argument, so the mutation tests can change them.
"""
from __future__ import annotations

from typing import Callable

import sympy as sp

from prefixproof.verify.symbolic.lemmas import Lemma

V = sp.Symbol("V", positive=True)
x, y, j, e = sp.symbols("x y j e", real=True)
k = sp.Symbol("k", integer=True, positive=True)
a = sp.Symbol("a", nonnegative=True)  # a bound on |e|


def grid_logit(jj: sp.Expr, xx: sp.Expr, v: sp.Expr) -> sp.Expr:
    return 2 * jj / v * xx - (jj / v) ** 2


def decode_lemma(logit: Callable = grid_logit, near: sp.Expr | None = None, far: sp.Expr | None = None,
                 threshold: sp.Expr | None = None) -> Lemma:
    near = sp.Rational(3, 2) / V if near is None else near
    far = sp.Rational(5, 2) / V if far is None else far
    threshold = 1 / (2 * V) if threshold is None else threshold
    lem = Lemma(
        "decode-lemma",
        "for logit_j(x) = (2j/V)x - (j/V)^2: logit_y - logit_j = ((y-j)/V)(2x - (y+j)/V); with e = x - y/V and "
        "|e| <= 3/(2V) the smallest difference over j != y is (1/V)(1/V - 2|e|) (neighbours j = y +- 1), "
        "for |e| <= 5/(2V) every k = |y - j| >= 2 gives at least 4/V^2 - 4|e|/V, so y wins with a positive "
        "margin iff |e| < 1/(2V)",
        "V (any V >= 2), y, j and x symbolic",
    )
    at_x = lem.assume("x = y/V + e", x, "=", y / V + e)
    e_lo = lem.assume("e >= -a", e, ">=", -a)
    e_hi = lem.assume("e <= a", e, "<=", a)
    k2 = lem.assume("k >= 2 (integer)", k, ">=", sp.Integer(2))
    k3 = lem.assume("k >= 3 (integer)", k, ">=", sp.Integer(3))
    a_near = lem.assume(f"a <= {near}", a, "<=", near)
    a_far = lem.assume(f"a <= {far}", a, "<=", far)

    diff = lem.chain("difference", logit(y, x, V) - logit(j, x, V))
    diff.equals("((y-j)/V)(2x - (y+j)/V)", ((y - j) / V) * (2 * x - (y + j) / V))
    diff.use("x = y/V + e", at_x)
    d_fact = diff.conclude("logit_y - logit_j at x = y/V + e", (j,))

    h = k**2 / V**2 - 2 * k * a / V
    for name, side, sign, bound in (("below", y - k, 1, e_lo), ("above", y + k, -1, e_hi)):
        c = lem.chain(name, d_fact.at({j: side}).rhs)
        c.equals(f"k^2/V^2 {'+' if sign > 0 else '-'} 2ke/V", k**2 / V**2 + sign * 2 * k * e / V)
        c.at_least("h(k) = k^2/V^2 - 2ka/V", h, given=(bound,))
        lem.check(f"the {name} chain ends at h(k)", c.current == h and c.ok)
        c.conclude(f"difference at j = {side} >= h(k)")

    h1, h2 = h.subs(k, 1), h.subs(k, 2)
    nb = lem.chain("neighbours", h)
    nb.at_least("h(1)", h1, given=(k2, a_near))
    nb.equals("(1/V)(1/V - 2a)", (1 / V) * (1 / V - 2 * a))
    nb.conclude("h(k) >= (1/V)(1/V - 2a) for k >= 2")
    fr = lem.chain("far", h)
    fr.at_least("h(2) = 4/V^2 - 4a/V", h2, given=(k3, a_far))
    fr.conclude("h(k) >= 4/V^2 - 4a/V for k >= 3")
    w = sp.Symbol("w", positive=True)
    lem.check("h(1) > 0 for a = threshold - w (w > 0)", bool(sp.simplify(h1.subs(a, threshold - w)).is_positive))
    lem.check("h(1) <= 0 for a = threshold + w (w >= 0)",
              bool(sp.simplify(h1.subs(a, threshold + w)).is_nonpositive))
    lem.results["margin"] = nb.current
    return lem
