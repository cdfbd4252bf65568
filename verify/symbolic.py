"""Symbolic lemmas (sympy), parametric in V, N and the scale.

Each lemma is a list of steps. Every step is a sympy identity (an expression
that simplifies to exactly 0) or a sign fact that sympy's assumption system
decides from declared assumptions (positive V, nonnegative offsets). A lemma
is PROVED only when every step checks. What is trusted: sympy's simplifier and
assumption system, and the standard facts quoted in a step's text
(monotonicity of exp).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import sympy as sp


@dataclass
class Lemma:
    name: str
    statement: str
    parametric: str  # what the proof is parametric in
    steps: list[tuple[str, bool]] = field(default_factory=list)

    def check(self, text: str, ok: bool | None) -> None:
        self.steps.append((text, ok is True))

    @property
    def proved(self) -> bool:
        return bool(self.steps) and all(ok for _, ok in self.steps)

    def failed_steps(self) -> list[str]:
        return [text for text, ok in self.steps if not ok]


def _zero(expr: sp.Expr) -> bool:
    return sp.simplify(expr) == 0


def decode_lemma() -> Lemma:
    """Nearest-grid decoding: logit_j(x) = (2j/V) x - (j/V)^2."""
    V = sp.Symbol("V", positive=True)
    x, y, j = sp.symbols("x y j", real=True)
    e = sp.Symbol("e", real=True)
    k = sp.Symbol("k", integer=True, positive=True)
    a = sp.Symbol("a", nonnegative=True)  # |e|
    lem = Lemma(
        "decode-lemma",
        "for logit_j(x) = (2j/V)x - (j/V)^2: logit_y - logit_j = ((y-j)/V)(2x - (y+j)/V), which is ((y-j)/V)^2 at "
        "x = y/V; with e = x - y/V and |e| <= 3/(2V) the smallest difference over j != y is (1/V)(1/V - 2|e|) "
        "(neighbours j = y +- 1), so y wins with a positive margin iff |e| < 1/(2V)",
        "V (any V >= 2), y, j and x symbolic",
    )

    def logit(jj):
        return 2 * jj / V * x - (jj / V) ** 2

    diff = logit(y) - logit(j)
    lem.check("logit_y - logit_j = ((y-j)/V)(2x - (y+j)/V)", _zero(diff - (y - j) / V * (2 * x - (y + j) / V)))
    lem.check("at x = y/V the difference is ((y-j)/V)^2", _zero(diff.subs(x, y / V) - ((y - j) / V) ** 2))
    at_e = diff.subs(x, y / V + e)
    lem.check("with j = y - k: difference = k^2/V^2 + 2ke/V", _zero(at_e.subs(j, y - k) - (k**2 / V**2 + 2 * k * e / V)))
    lem.check("with j = y + k: difference = k^2/V^2 - 2ke/V", _zero(at_e.subs(j, y + k) - (k**2 / V**2 - 2 * k * e / V)))
    h = k**2 / V**2 - 2 * k * a / V  # the worse side, |e| = a
    step = sp.expand(h.subs(k, k + 1) - h)
    lem.check("h(k+1) - h(k) = (2k+1)/V^2 - 2|e|/V", _zero(step - ((2 * k + 1) / V**2 - 2 * a / V)))
    worst = step.subs(a, sp.Rational(3, 2) / V)
    lem.check("for |e| <= 3/(2V): h(k+1) - h(k) >= (2k-2)/V^2 >= 0 for k >= 1, so k = 1 is the minimum",
              _zero(worst - (2 * k - 2) / V**2) and (2 * (k - 1) / V**2).is_nonnegative)
    worst2 = step.subs(a, sp.Rational(5, 2) / V).subs(k, k + 1)
    lem.check("for |e| <= 5/(2V): h(k+1) - h(k) >= (2k-2)/V^2 >= 0 for k >= 2, so h(k) >= h(2) = 4/V^2 - 4|e|/V "
              "for every k >= 2 (the bound used for non-neighbours)",
              _zero(worst2 - 2 * (k - 1) / V**2) and _zero(h.subs(k, 2) - (4 / V**2 - 4 * a / V)))
    lem.check("h(1) = (1/V)(1/V - 2|e|), positive iff |e| < 1/(2V)",
              _zero(h.subs(k, 1) - (1 / V) * (1 / V - 2 * a)) and _zero(h.subs({k: 1, a: 1 / (2 * V)})))
    return lem


def leakage_lemma() -> Lemma:
    """The softmax leak and the scale rule sigma >= ln(4 V (L+1) m), for L pointer heads (L = 1: ln(8 V m))."""
    V, m, E, L = sp.symbols("V m E L", positive=True)  # E = e^-sigma
    w = sp.Symbol("w", nonnegative=True)
    t = sp.Symbol("t", nonnegative=True)  # a payload value, t <= (V-1)/V
    lem = Lemma(
        "leakage-bound",
        "at a query whose intended key scores sigma above m others, the leak off it is "
        "leak = m e^-sigma / (1 + m e^-sigma) < m e^-sigma; with L pointer heads the selected value sits "
        "delta <= leak t + L leak < (L+1) m e^-sigma below the payload, and sigma >= ln(4 V (L+1) m) gives "
        "delta <= 1/(4V), so the decode margin stays >= 1/(2V^2), half the ideal 1/V^2",
        "V, m (competing keys), L (pointer heads) and sigma symbolic",
    )
    leak = m * E / (1 + m * E)
    lem.check("m e^-sigma - leak = (m e^-sigma)^2 / (1 + m e^-sigma) > 0",
              _zero(m * E - leak - (m * E) ** 2 / (1 + m * E)) and ((m * E) ** 2 / (1 + m * E)).is_positive)
    fetched = (1 - leak) * t  # the fetch head keeps 1 - leak of the payload
    selected = fetched + L * (1 - leak) - L  # select = fetched + sum of L pointers - L, each 1 - leak at its key
    lem.check("selected value = t - (leak t + L leak)", _zero(selected - (t - (leak * t + L * leak))))
    # delta <= (L+1) m e^-sigma when t <= 1: write t = 1 - s (s >= 0)
    s = sp.Symbol("s", nonnegative=True)
    gap = (L + 1) * m * E - (leak * (1 - s) + L * leak)
    slack = (L + 1) * (m * E) ** 2 / (1 + m * E) + leak * s
    lem.check("delta = leak t + L leak <= (L+1) m e^-sigma for t <= 1 "
              "(the gap is (L+1)(m e^-sigma)^2/(1+m e^-sigma) + leak (1-t))",
              _zero(gap - slack) and slack.is_nonnegative)
    # e^sigma = 4 V (L+1) m (1 + w) with w >= 0 (exp is increasing, e^0 = 1)
    E_rule = 1 / (4 * V * (L + 1) * m * (1 + w))
    lem.check("sigma >= ln(4 V (L+1) m) gives (L+1) m e^-sigma <= 1/(4V)",
              _zero(1 / (4 * V) - (L + 1) * m * E_rule - w / (4 * V * (1 + w))) and (w / (4 * V * (1 + w))).is_nonnegative)
    d = sp.Symbol("d", nonnegative=True)  # delta = 1/(4V) - d
    margin = (1 / V) * (1 / V - 2 * (1 / (4 * V) - d))
    lem.check("delta <= 1/(4V) gives margin (1/V)(1/V - 2 delta) >= 1/(2V^2)",
              _zero(margin - 1 / (2 * V**2) - 2 * d / V) and (2 * d / V).is_nonnegative)
    return lem


def scale_meets_rule(V: int, m: int, sigma: float, pointers: int = 1) -> bool:
    """Per instance: e^sigma >= 4 V (L+1) m, decided in arb ball arithmetic (sigma is an exact binary number)."""
    import flint

    s = Fraction(sigma)
    arb_sigma = flint.arb(s.numerator) / s.denominator
    return bool(arb_sigma.exp() >= 4 * V * (pointers + 1) * max(m, 1))


def packing_lemma() -> Lemma:
    """Digit extraction by saturated ReLU steps, its error tolerance, and the packing scale rule."""
    g, V, m = sp.symbols("g V m", positive=True)
    z, j = sp.symbols("z j", real=True)
    w, s, f = sp.symbols("w s f", nonnegative=True)
    n = sp.Symbol("n", integer=True, nonnegative=True)
    A = (2 / g) * (z - j) + sp.Rational(3, 2)
    lem = Lemma(
        "packing-lemmas",
        "with A = (2/g)(z - j) + 3/2 and H = ReLU(1 - ReLU(1 - A)): H = 1 when the grid value z* >= j and "
        "H = 0 when z* <= j - g, for any computed z within g/4 of z*; so d = sum_j H_j = floor(V x) on the "
        "grid, the error of x_k grows by V per stage, and every stage decides correctly when the packed value "
        "is within V^-D/4 of its grid point, which sigma >= ln(16 m V^D) guarantees (delta <= V^-D/8)",
        "V, D, g, j, the grid value and the error symbolic",
    )
    lem.check("z >= j - g/4 gives A >= 1", _zero(A.subs(z, j - g / 4 + w) - 1 - 2 * w / g) and (2 * w / g).is_nonnegative)
    lem.check("z <= j - 3g/4 gives A <= 0", _zero(A.subs(z, j - 3 * g / 4 - w) + 2 * w / g))
    Aon, Aoff = 1 + w, -w
    H = lambda a: sp.Max(0, 1 - sp.Max(0, 1 - a))  # noqa: E731
    lem.check("A >= 1 saturates H to exactly 1, A <= 0 to exactly 0 (no cancellation)",
              sp.simplify(H(Aon) - 1) == 0 and sp.simplify(H(Aoff)) == 0)
    lem.check("on the grid, z* = n + f with f <= 1 - g: every j <= n has z* >= j",
              (f + w).is_nonnegative and _zero((n + f) - (n - w) - (f + w)))
    lem.check("... and every j >= n + 1 has z* <= j - g, so d = sum_j H_j = n = floor(z*)",
              _zero((n + (1 - g - s)) - (n + 1 + w) - (-g - s - w)) and (-s - w).is_nonpositive)
    k, D = sp.symbols("k D", positive=True)
    lem.check("with the right digit, x_(k+1) - x*_(k+1) = V (x_k - x*_k): the error after k stages is V^k e_0",
              _zero(V * (z + w) - n - (V * z - n) - V * w))
    lem.check("V^(k+1) V^-D / 4 = g_k / 4 with g_k = V^-(D-1-k): one bound e_0 < V^-D/4 serves every stage",
              _zero(V ** (k + 1) * V ** (-D) / 4 - V ** (-(D - 1 - k)) / 4))
    gap = V ** (-D) * w / (8 * (1 + w))
    lem.check("sigma = ln(16 m V^D) + s' gives delta <= 2 m e^-sigma <= V^-D / 8 < V^-D / 4",
              _zero(2 * m / (16 * m * V ** D * (1 + w)) - V ** (-D) / (8 * (1 + w))) and
              _zero(V ** (-D) / 8 - V ** (-D) / (8 * (1 + w)) - gap) and gap.is_nonnegative)
    lem.check("selection: ReLU(d/V + idx - 1) is d/V at idx = 1 and 0 at idx = 0 (d <= V - 1)",
              _zero((n / V + 1 - 1) - n / V) and sp.simplify(sp.Max(0, (V - 1 - s) / V - 1)) == 0)
    return lem
