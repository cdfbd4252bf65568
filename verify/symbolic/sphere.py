"""The rotation example (Sections 5-6): fine-tuning can rotate, a prefix can only scale and shift.

Proved with sympy matrix expressions of symbolic size d >= 1 (`MatrixSymbol`),
so the lemma covers every dimension at once:

* a rotation R (R^T R = I) keeps every unit vector on the unit sphere;
* no translation x -> x + b with b != 0 does: the unit vector b/|b| goes to
  a point at distance 1 + |b| from the origin;
* neither does the prefix map x -> (1 - alpha) x + b with 0 < alpha < 1 (the
  head output under a prefix of constant mass alpha, prefix_bias): the unit
  vectors u and -u would need <u, b> = 0 for every u, so b = 0, and then
  |(1 - alpha) u| = 1 - alpha < 1.
"""
from __future__ import annotations

from typing import Callable

import sympy as sp

from prefixproof.verify.symbolic.lemmas import Lemma


def _scalar(e: sp.Expr, subs: dict) -> sp.Expr:
    """A 1x1 matrix expression as a scalar, after replacing the given 1x1 products by scalars."""
    e = sp.expand(e)
    for prod, val in subs.items():
        e = e.subs(prod, sp.Matrix([[val]]))
    return sp.simplify(sp.Matrix(e.as_explicit())[0, 0]) if hasattr(e, "as_explicit") else sp.simplify(e)


def rotation_lemma(gram: Callable | None = None, unit_point: Callable = lambda b, beta: b / beta,
                   claimed_shift: Callable = lambda beta: (1 + beta) ** 2,
                   prefix_map: Callable = lambda kappa, u, b: kappa * u + b,
                   claimed_diff: Callable = lambda kappa, w: 4 * kappa * w,
                   claimed_gap: Callable = lambda alpha: alpha * (2 - alpha)) -> Lemma:
    """Every definition and claimed form is an argument (injection points for the mutation tests)."""
    d = sp.Symbol("d", integer=True, positive=True)
    R, x, b, u = (sp.MatrixSymbol(name, d, rows) for name, rows in (("R", d), ("x", 1), ("b", 1), ("u", 1)))
    beta = sp.Symbol("beta", positive=True)  # |b| > 0
    alpha = sp.Symbol("alpha", positive=True)  # prefix mass, with 1 - alpha = kappa > 0
    kappa = sp.Symbol("kappa", positive=True)
    w = sp.Symbol("w", real=True)  # <u, b>
    lem = Lemma(
        "rotation-sphere",
        "for every dimension d >= 1: a rotation R (R^T R = I) maps the unit sphere into itself; for every b != 0 "
        "the translation x -> x + b maps the unit vector b/|b| to norm 1 + |b| > 1; for 0 < alpha < 1 and any b the "
        "prefix map x -> (1 - alpha) x + b sends some unit vector off the sphere",
        "the dimension d (sympy MatrixSymbol of symbolic size), R, b, alpha symbolic",
    )
    orth = lem.assume("R^T R = I", R.T * R, "=", sp.Identity(d) if gram is None else gram(d))
    unit = lem.assume("x^T x = 1", x.T * x, "=", sp.Identity(1))
    c = lem.chain("rotation", (R * x).T * (R * x))  # sympy builds it as x^T R^T R x
    c.use("R^T R = I", orth)
    c.use("x unit", unit)
    lem.check("rotation: |R x|^2 = 1 for every unit x", c.ok and c.current == sp.Identity(1))
    c.conclude("|R x|^2 = 1")
    x_star = unit_point(b, beta)
    bb = {b.T * b: beta**2}
    lem.identity("x* = b/|b| is a unit vector: x*^T x* = b^T b / |b|^2 = 1", x_star.T * x_star, sp.Integer(1),
                 equal=lambda lhs, rhs: sp.simplify(_scalar(lhs, bb) - rhs) == 0)
    shifted = (x_star + b).T * (x_star + b)
    lem.identity("|x* + b|^2 = (1 + |b|)^2", shifted, claimed_shift(beta),
                 equal=lambda lhs, rhs: sp.simplify(_scalar(lhs, bb) - rhs) == 0)
    lem.check("(1 + |b|)^2 - 1 = |b|(2 + |b|) > 0 for |b| > 0, so x* + b is off the sphere",
              bool(sp.factor(claimed_shift(beta) - 1).is_positive))
    f_plus = prefix_map(kappa, u, b).T * prefix_map(kappa, u, b)
    f_minus = prefix_map(kappa, -u, b).T * prefix_map(kappa, -u, b)
    sub = {u.T * b: w, b.T * u: w, u.T * u: 1, b.T * b: beta**2}
    lem.identity("prefix map with kappa = 1 - alpha > 0: |f(u)|^2 - |f(-u)|^2 = 4 kappa <u, b>, so both on the "
                 "sphere forces <u, b> = 0 for every unit u", f_plus - f_minus, claimed_diff(kappa, w),
                 equal=lambda lhs, rhs: sp.simplify(_scalar(sp.expand(lhs), sub) - rhs) == 0)
    lem.check("taking u = b/|b| gives <u, b> = |b| > 0, so b = 0",
              bool(_scalar(x_star.T * b, bb).is_positive))
    zero_b = {u.T * b: 0, b.T * u: 0, u.T * u: 1, b.T * b: 0}
    y = sp.Symbol("y", positive=True)  # alpha = y / (1 + y) ranges over (0, 1)
    lem.identity("then |f(u)|^2 = (1 - alpha)^2 (kappa = 1 - alpha, b = 0)", f_plus, (1 - alpha) ** 2,
                 equal=lambda lhs, rhs: sp.simplify(_scalar(sp.expand(lhs), zero_b).subs(kappa, 1 - alpha) - rhs) == 0)
    gap = 1 - (1 - alpha) ** 2
    lem.identity("1 - (1 - alpha)^2 = alpha (2 - alpha)", gap, claimed_gap(alpha))
    lem.check("alpha (2 - alpha) > 0 for 0 < alpha < 1 (alpha = y/(1+y), y > 0)",
              bool(sp.simplify(claimed_gap(alpha).subs(alpha, y / (1 + y))).is_positive))
    return lem
