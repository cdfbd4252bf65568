"""Symbolic proofs (sympy) of the prefix identities of Section 4, parametric in the sizes.

The attention of one head at one content query i, with n visible content
keys and P prefix keys, is all these lemmas need: a causal or padding mask
only decides which content keys are visible (masked keys get weight exactly
0 in the semantics, so they are dropped and the visible ones relabelled
1..n), the prefix is visible to every query, and a pre-LayerNorm or an
activation prefix only changes what the prefix scores r_p and values u_p are.
Sums have symbolic bounds n, P, d_v, H and are compared in the normal form of
`verify/symbolic/sums.py`; positivity comes from sympy's assumptions
(exp(x) > 0). What is trusted: sympy's simplifier and assumption system, and
the finite-sum rules of `canon`.
"""
from __future__ import annotations

from typing import Callable

import sympy as sp

from prefixproof.verify.symbolic.derivation import refuse_vacuous
from prefixproof.verify.symbolic.lemmas import Lemma
from prefixproof.verify.symbolic.sums import same

n, P, H, d, d_v = sp.symbols("n P H d d_v", integer=True, positive=True)
j, k, p, rho, c, h, o = sp.symbols("j k p rho c h o", integer=True, positive=True)
c_ = c  # the input coordinate of W_V (named c_ where a local chain is called c)
s = sp.IndexedBase("s", real=True)  # content scores
r = sp.IndexedBase("r", real=True)  # prefix scores
m = sp.Symbol("m", real=True)  # the softmax shift (the running maximum)


def same_step(a: sp.Expr, b: sp.Expr) -> bool:
    """An identity step between finite-sum expressions, refused (VacuousStep) when its sides are the same as built."""
    refuse_vacuous(f"{a} = {b}", a, b)
    return same(a, b)


def _softmax_parts(head: sp.Expr | None = None) -> dict[str, sp.Expr]:
    """Weights with and without the prefix for one head (indices [head, key] when `head` is given)."""
    def at(base, key):
        return base[head, key] if head is not None else base[key]

    E = sp.Sum(sp.exp(at(s, j)), (j, 1, n))
    F = sp.Sum(sp.exp(at(r, p)), (p, 1, P))
    Z = E + F
    A = sp.exp(at(s, j)) / E  # content weight j without the prefix
    A_pt = sp.exp(at(s, j)) / Z  # content weight j with it
    A_pt_prefix = sp.exp(at(r, p)) / Z  # prefix weight p
    alpha = sp.Sum(A_pt_prefix, (p, 1, P))
    return {"E": E, "F": F, "Z": Z, "A": A, "A_pt": A_pt, "A_pt_prefix": A_pt_prefix, "alpha": alpha}


def _content_score(sigma, W_Q, W_K, x_i, x_j, prefix):
    return sigma * (W_Q * x_i).T * (W_K * x_j)


def _shifted_softmax(shift):
    return sp.exp(s[j] - shift) / (sp.Sum(sp.exp(s[j] - shift), (j, 1, n)) + sp.Sum(sp.exp(r[p] - shift), (p, 1, P)))


def rescale_lemma(parts: Callable = _softmax_parts, factor: Callable = lambda q: 1 - q["alpha"],
                  alpha_form: Callable = lambda q: q["F"] / q["Z"], keep_form: Callable = lambda q: q["E"] / q["Z"],
                  content_score: Callable = _content_score, shifted_softmax: Callable = _shifted_softmax) -> Lemma:
    """Every definition and claimed form is an argument (injection points for the mutation tests)."""
    lem = Lemma(
        "rescale-lemma",
        "at every content query i, with n visible content keys and P prefix keys: "
        "A_pt[i,j] = (1 - alpha_i) A[i,j] for every content key j, where alpha_i = sum_p A_pt[i,p]; "
        "1 - alpha_i > 0, so ratios A[i,j]/A[i,k], the ranking and the argmax of the content attention are unchanged "
        "(a query with no visible content key has A = A_pt[content] = 0 on both sides)",
        "n (visible content keys) >= 1 and P (prefix keys) >= 1 symbolic; the scores, the shift and the dimensions "
        "d, d_k symbolic; per head and per query, so any number of heads, layers and queries, any causal or padding "
        "mask, with or without pre-LayerNorm, for activation and raw prefixes",
    )
    # the content score reads only the layer input: no prefix symbol occurs in it
    dk = sp.Symbol("d_k", integer=True, positive=True)
    W_Q, W_K = sp.MatrixSymbol("W_Q", dk, d), sp.MatrixSymbol("W_K", dk, d)
    x_i, x_j, s_p = sp.MatrixSymbol("x_i", d, 1), sp.MatrixSymbol("x_j", d, 1), sp.MatrixSymbol("s_p", d, 1)
    k_raw = sp.MatrixSymbol("k_p", dk, 1)
    sigma = sp.Symbol("sigma", real=True)
    score = content_score(sigma, W_Q, W_K, x_i, x_j, s_p)
    lem.check("the content score sigma <W_Q x_i, W_K x_j> contains no prefix symbol (s_p, k_p): it is the same with "
              "and without the prefix, given the same layer input",
              not ({s_p, k_raw} & score.free_symbols))
    q = parts()
    shifted = shifted_softmax(m)
    c = lem.chain("alpha", q["alpha"])
    c.equals("F / (E + F), with E = sum_j e^{s_j} and F = sum_p e^{r_p}", alpha_form(q))
    alpha_fact = c.conclude("alpha = F / (E + F)")
    c = lem.chain("keep", factor(q))
    c.use("alpha = F / (E + F)", alpha_fact)
    c.equals("E / (E + F)", keep_form(q))
    keep_fact = c.conclude("1 - alpha = E / (E + F)")
    lem.check("1 - alpha = E / (E + F) > 0", c.ok and bool(keep_fact.rhs.is_positive))
    c = lem.chain("rescale", shifted)
    c.equals("the evaluated softmax exp(s - m) / sum exp(s - m) is exp(s) / sum exp(s) for any shift m", q["A_pt"])
    c.equals("(1 - alpha) A[j]", factor(q) * q["A"])
    c.use("1 - alpha = E / (E + F)", keep_fact)
    lem.check("rescale: A_pt[j] = (1 - alpha) A[j] with 1 - alpha = E/(E + F)", c.ok and c.current == keep_fact.rhs * q["A"])
    rescale = c.conclude("A_pt[j] = (1 - alpha) A[j]", (j,))
    # ratios: A_pt[j]/A_pt[k] = A[j]/A[k] is not a step of its own -- sympy cancels both sides to e^(s_j - s_k) as
    # it builds them (a vacuous step); it follows from A_pt = (1 - alpha) A with 1 - alpha > 0 (the steps above)
    A_k = q["A"].subs(j, k)
    c = lem.chain("order", rescale.rhs - rescale.rhs.subs(j, k))
    c.equals("(1 - alpha)(A[j] - A[k]), a positive multiple, so the ranking and the argmax are unchanged",
             keep_fact.rhs * (q["A"] - A_k))
    c.conclude("A_pt[j] - A_pt[k] = (1 - alpha)(A[j] - A[k])")
    return lem


def bias_lemma(parts: Callable = _softmax_parts,
               claimed: Callable = lambda q, t, added: (1 - q["alpha"]) * t + added,
               claimed_one: Callable = lambda alpha1, u1, t: alpha1 * (u1 - t),
               activation_g: Callable = lambda q, hp: sp.Sum(q["A_pt_prefix"] * hp[p, c_], (p, 1, P)),
               head_keep: Callable = lambda al: 1 - al[h]) -> Lemma:
    """Every definition and claimed form is an argument (injection points for the mutation tests)."""
    lem = Lemma(
        "bias-lemma",
        "t_pt[i] = (1 - alpha_i) t[i] + sum_p A_pt[i,p] v_p; with one prefix position t_pt[i] - t[i] = "
        "alpha_i (v_1 - t[i]), a point of the segment from t[i] to v_1 (0 < alpha_i < 1); for activation "
        "prefixes (v_p = W_V h_p) the added term is W_V g with g = sum_p A_pt[i,p] h_p, in range(W_V); with H "
        "heads and output projections, the layer's attention output is sum_h (1 - alpha^h) W_O^h t^h plus "
        "sum_h W_O^h sum_p A^h_pt[p] v^h_p, which lies in sum_h W_O^h span{v^h_p}",
        "n, P, the value width d_v, the input width d, the number of heads H and every score, value and weight "
        "symbolic (coordinates rho, c, o arbitrary); per query, for any mask, layer and pre-LayerNorm",
    )
    q = parts()
    u, v = sp.IndexedBase("u", real=True), sp.IndexedBase("v", real=True)  # prefix and content values
    t = sp.Sum(q["A"] * v[j, rho], (j, 1, n))
    added = sp.Sum(q["A_pt_prefix"] * u[p, rho], (p, 1, P))
    t_pt = added + sp.Sum(q["A_pt"] * v[j, rho], (j, 1, n))
    c = lem.chain("bias", t_pt)
    c.equals("coordinate rho: (1 - alpha) t + sum_p A_pt[p] u_p", claimed(q, t, added))
    main = c.conclude("t_pt = (1 - alpha) t + sum_p A_pt[p] u_p", (rho,))
    one = lem.assume("one prefix position", P, "=", sp.Integer(1))
    c = lem.chain("one prefix", main.lhs - t)
    c.use("the bias identity", main)
    c.use("P = 1", one)
    alpha1 = q["alpha"].subs(P, 1).doit()
    c.equals("alpha (u_1 - t)", claimed_one(alpha1, u[1, rho], t), check=lambda a, b: same(a.doit(), b.doit()))
    c.conclude("one prefix position: t_pt - t = alpha (u_1 - t)")
    lem.check("one prefix position: 0 < alpha < 1 (a point strictly inside the segment)",
              bool(sp.simplify(alpha1.doit()).is_positive) and bool(sp.simplify((1 - alpha1).doit()).is_positive))
    W, hp = sp.IndexedBase("W_V", real=True), sp.IndexedBase("h", real=True)
    act = lem.assume("activation prefixes: u_p = W_V h_p", u[p, rho], "=", sp.Sum(W[rho, c_] * hp[p, c_], (c_, 1, d)),
                     (p,))
    c = lem.chain("activation", added)
    c.use_forall("u_p = W_V h_p", act, p)
    c.equals("(W_V g)_rho with g = sum_p A_pt[p] h_p", sp.Sum(W[rho, c_] * activation_g(q, hp), (c_, 1, d)))
    c.conclude("the added term is W_V g, in range(W_V)")
    # heads are independent: the bias identity holds for every head h, with its own alpha^h, weights a^h and values
    T_pt, T, al, cf, uh = (sp.IndexedBase(name, real=True) for name in ("t_pt", "t", "alpha", "a", "u"))
    Wo = sp.IndexedBase("W_O", real=True)
    per_head = lem.assume("the bias identity for head h (as proved above, with head h's weights)", T_pt[h, rho], "=",
                          (1 - al[h]) * T[h, rho] + sp.Sum(cf[h, p] * uh[h, p, rho], (p, 1, P)), (h, rho))
    kept = sp.Sum(head_keep(al) * Wo[h, o, rho] * T[h, rho], (h, 1, H), (rho, 1, d_v))
    bias = sp.Sum(cf[h, p] * sp.Sum(Wo[h, o, rho] * uh[h, p, rho], (rho, 1, d_v)), (h, 1, H), (p, 1, P))
    c = lem.chain("heads", sp.Sum(Wo[h, o, rho] * T_pt[h, rho], (h, 1, H), (rho, 1, d_v)))
    c.use_forall("each head's bias identity", per_head, (h, rho))
    c.equals("sum_h (1 - alpha^h) W_O^h t^h + sum_h sum_p a^h_p (W_O^h u^h_p) (coordinate o)", kept + bias)
    c.conclude("the layer's attention output: kept part plus a bias in sum_h W_O^h span{u^h_p}")
    return lem


def soft_prefix_lemma(**definitions) -> Lemma:
    """The layer-by-layer induction (verify/symbolic/soft.py); keyword arguments inject definitions."""
    from prefixproof.verify.symbolic.soft import soft_prefix_lemma as derive

    return derive(**definitions)
