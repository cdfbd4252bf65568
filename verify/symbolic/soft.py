"""soft-is-prefix: a soft prompt equals a prefix, by induction over layers, with the layer modelled.

The model (docs/semantics.md): layer l maps its inputs X^l[p] to

    X^(l+1)[p] = MLP( sum_h O_h( sum_{q visible} e^{score_h(Q_h(LN x_p), K_h(LN x_q))} W_h(LN x_q)
                                 / sum_{q visible} e^{score_h(...)} ) )  (+ x_p with a residual)

with causal visibility q <= p; Q, K, W, O, score, LN and MLP are arbitrary (undefined) functions, the number
of heads H, the prompt length k, the content length and the layer index symbolic.

Soft run: positions 0..k-1 hold the virtual tokens v_m + P[m], content j sits at k + j with E[t_j] + P[k + j].
Prefix run: the model with the positional table P'[j] = P[k + j]; content j at position j; at every layer
the k prefix activations s^l_m = X^l[m] (the soft run's layer inputs at the virtual positions) give keys
and values through the layer's own maps, visible to every content query.

Derivation (verify/symbolic/derivation.py; each step consumes the previous conclusion):
  base:  Y^0[j] = E[t_j] + P'[j] = E[t_j] + P[k + j] = X^0[k + j]
  step:  the soft layer at k + j: split the causal key range 0..k+j at k and shift the content part
         (finite-sum rules), giving the virtual part + content part;
         the prefix layer at j: the induction hypothesis Y^l[q] = X^l[k + q] (every q) and the prefix
         definition s^l_m = X^l[m] turn it into exactly that expression, so Y^(l+1)[j] = X^(l+1)[k + j]
  causal: a virtual query m <= k - 1 sees only keys q <= m <= k - 1, and the virtual inputs hold no content
         token, so the prefixes do not depend on the content
Every definition is an argument, so the mutation tests can change it.
"""
from __future__ import annotations

from typing import Callable

import sympy as sp

from prefixproof.verify.symbolic.lemmas import Lemma

k = sp.Symbol("k", integer=True, positive=True)  # prompt length
j, q, lyr = sp.symbols("j q l", integer=True, nonnegative=True)
H = sp.Symbol("H", integer=True, positive=True)
hd = sp.Symbol("h", integer=True, positive=True)
X, Y, S = sp.IndexedBase("X"), sp.IndexedBase("Y"), sp.IndexedBase("s")  # soft inputs, prefix-run inputs, prefixes
E, P, tok, vt = sp.IndexedBase("E"), sp.IndexedBase("P"), sp.IndexedBase("t"), sp.IndexedBase("v")
Qf, Kf, Wf, Of, LN, MLP = (sp.Function(n) for n in ("Q", "K", "W", "O", "LN", "MLP"))
score = sp.Function("score")


def model_kv(h: sp.Expr, x: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    """The layer's key and value of an activation x (the map a prefix given as activations goes through)."""
    return Kf(h, LN(x)), Wf(h, LN(x))


def attention(query: sp.Expr, parts: list[tuple[sp.Expr, sp.Expr, tuple]], h: sp.Expr) -> sp.Expr:
    """Softmax attention of one head; parts: (key, value, limits) with the key/value of position `q`."""
    qv = Qf(h, LN(query))
    num = sum(sp.Sum(sp.exp(score(qv, key)) * val, lim) for key, val, lim in parts)
    den = sum(sp.Sum(sp.exp(score(qv, key)), lim) for key, _, lim in parts)
    return num / den


def layer_out(query: sp.Expr, parts_of: Callable[[sp.Expr], list], residual: bool) -> sp.Expr:
    heads = sp.Sum(Of(hd, attention(query, parts_of(hd), hd)), (hd, 1, H))
    return MLP(heads) + (query if residual else 0)


def soft_prefix_lemma(prefix_kv: Callable = model_kv, shifted_pos: Callable | None = None,
                      prefix_source: Callable | None = None, prefix_len: sp.Expr = k,
                      soft_visible_hi: Callable | None = None, residual: tuple[bool, ...] = (False, True)) -> Lemma:
    shifted_pos = shifted_pos or (lambda jj: P[k + jj])
    prefix_source = prefix_source or (lambda layer, m: X[layer, m])
    soft_visible_hi = soft_visible_hi or (lambda p: p)  # causal: keys 0..p
    lem = Lemma(
        "soft-is-prefix",
        "a soft prompt of k vectors before the content gives, at every content position and every layer, the same "
        "layer inputs (hence outputs) as the prefixes s^l_m = X^l[m] (the soft run's layer-l inputs at the virtual "
        "positions m < k) on the model whose positional table is shifted by k (P'[j] = P[k + j]); by induction "
        "over layers with causal attention, any number of heads, arbitrary score/key/value/output maps, "
        "LayerNorm and MLP; the prefixes do not depend on the content",
        "k, the content position j, the layer l, the number of heads H and every weight map symbolic "
        f"(the step is derived {' and '.join('with' if r else 'without' for r in residual)} a residual connection)",
    )
    # base case: the layer-0 inputs
    pos_def = lem.assume("the shifted table P'[j]", sp.Function("Pshift")(j), "=", shifted_pos(j))
    base = lem.chain("base", E[tok[j]] + sp.Function("Pshift")(j))
    base.use("P'[j] by definition", pos_def)
    soft_in = E[tok[j]] + P[k + j]
    lem.check("base: Y^0[j] = X^0[k + j] = E[t_j] + P[k + j]", base.ok and base.current == soft_in)
    base.conclude("Y^0[j] = X^0[k + j]", (j,))

    ih = lem.assume("induction hypothesis Y^l[q] = X^l[k + q] for every q", Y[lyr, q], "=", X[lyr, k + q], (q,))
    src = lem.assume("the prefix s^l_m is the soft run's layer input at m", S[lyr, q], "=", prefix_source(lyr, q),
                     (q,))
    for res in residual:
        _induction_step(lem, ih, src, prefix_kv, prefix_len, soft_visible_hi, res)
    # causal: a virtual query sees only virtual keys, and the virtual inputs hold no content token
    m = sp.Symbol("m", integer=True, nonnegative=True)
    m_top = lem.assume("a virtual position m <= k - 1", m, "<=", k - 1)
    virt = layer_out(X[lyr, m], lambda h: [(*model_kv(h, X[lyr, q]), (q, 0, soft_visible_hi(m)))], False)
    hi = [s.limits[0][2] for s in virt.atoms(sp.Sum) if s.limits[0][0] == q]
    c = lem.chain("causal", hi[0] if hi else sp.oo)
    c.at_most("k - 1: a virtual query sees no content key", k - 1, given=(m_top,)) if hi and hi[0] != k - 1 else None
    lem.check("causal: every key a virtual query sees is virtual", bool(hi) and len(set(hi)) == 1 and c.ok
              and (c.current == k - 1))
    virtual_in = vt[m] + P[m]
    lem.check("causal: the virtual inputs v_m + P[m] contain no content token",
              not (virtual_in.free_symbols & {tok, j}) and not virtual_in.has(tok))
    return lem


def _induction_step(lem: Lemma, ih, src, prefix_kv: Callable, prefix_len: sp.Expr, soft_visible_hi: Callable,
                    residual: bool) -> None:
    """Y^(l+1)[j] = X^(l+1)[k + j] from the induction hypothesis and the prefix definition."""
    tag = "residual" if residual else "no residual"

    def soft_parts(h: sp.Expr) -> list:
        kx, vx = model_kv(h, X[lyr, q])
        return [(kx, vx, (q, 0, soft_visible_hi(k + j)))]

    soft = lem.chain(f"soft layer, {tag}", layer_out(X[lyr, k + j], soft_parts, residual))
    soft.split_shift("split the keys at k; content keys q = k + q'", q, k)
    soft_fact = soft.conclude("X^(l+1)[k + j], keys split at k")

    def prefix_parts(h: sp.Expr) -> list:
        kp, vp = prefix_kv(h, S[lyr, q])
        kc, vc = model_kv(h, Y[lyr, q])
        return [(kp, vp, (q, 0, prefix_len - 1)), (kc, vc, (q, 0, j))]

    pre = lem.chain(f"prefix layer, {tag}", layer_out(Y[lyr, j], prefix_parts, residual))
    pre.use_forall("the induction hypothesis", ih, q)
    pre.use_forall("the prefix definition", src, q)
    lem.check(f"step ({tag}): the prefix layer at j is the soft layer at k + j (Y^(l+1)[j] = X^(l+1)[k + j])",
              pre.ok and soft.ok and pre.current == soft_fact.rhs)
    pre.conclude("Y^(l+1)[j] = X^(l+1)[k + j]")
