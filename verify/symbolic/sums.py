"""A normal form for finite sums with symbolic bounds, so sympy can decide identities between them.

`canon` distributes sums over addition, pulls out factors free of the
summation index, merges nested sums into one multi-index sum and orders the
indices by name (exchanging finite sums). These are the rules of finite
summation (linearity, Fubini for finite sums); they need every bound to be
free of the other indices, which `canon` checks. Two expressions are equal
when `sympy.simplify(canon(a) - canon(b)) == 0`.
"""
from __future__ import annotations

import sympy as sp
from sympy import Add, Mul, Pow, Sum


class SumFormError(ValueError):
    """A sum outside what `canon` handles: bounds depending on another summation index, or nested sums that
    reuse an index name (merging them would capture the variable)."""


def canon(e: sp.Expr) -> sp.Expr:
    e = sp.expand(e)
    if isinstance(e, Add):
        return Add(*[canon(a) for a in e.args])
    if isinstance(e, Mul):
        return Mul(*[canon(a) for a in e.args])
    if isinstance(e, Pow):
        return Pow(canon(e.base), e.exp)
    if isinstance(e, Sum):
        return _canon_sum(e)
    return e


def _canon_sum(e: Sum) -> sp.Expr:
    out = []
    for term in Add.make_args(sp.expand(canon(e.function))):
        outside, inside, limits = [], [], list(e.limits)
        factors = Mul.make_args(term)
        for fac in factors:
            if isinstance(fac, Sum):
                _refuse_capture(fac, limits, [g for g in factors if g is not fac])
                inside.append(fac.function)
                limits += list(fac.limits)
            elif any(lim[0] in fac.free_symbols for lim in limits):
                inside.append(fac)
            else:
                outside.append(fac)
        indices = {lim[0] for lim in limits}
        for var, lo, hi in limits:
            if (sp.sympify(lo).free_symbols | sp.sympify(hi).free_symbols) & indices:
                raise SumFormError(f"the bounds of {var} depend on another summation index")
        # a factor that depends on no index of the merged sum moves out (it may have entered from a nested sum)
        keep = [f for f in inside if f.free_symbols & indices]
        outside += [f for f in inside if not f.free_symbols & indices]
        out.append(Mul(*outside) * Sum(Mul(*keep), *sorted(limits, key=lambda lim: str(lim[0]))))
    return Add(*out)


def _refuse_capture(inner: Sum, limits: list, others: list) -> None:
    """Merging `inner` into the enclosing sum is sound only if its indices are fresh: not an index of the
    enclosing sum (Sum_j a_j (Sum_j b_j) is not Sum_j Sum_j a_j b_j) and not free in the other factors."""
    taken = {lim[0] for lim in limits}
    free = set().union(*(g.free_symbols for g in others)) if others else set()
    for var, *_ in inner.limits:
        if var in taken or var in free:
            raise SumFormError(f"nested sums reuse the index {var} ({inner} inside a sum over "
                               f"{', '.join(str(v) for v in sorted(taken, key=str))}); merging them would capture "
                               f"the variable: rename the inner index (e.g. {var} -> {var}_2) before comparing")


def same(a: sp.Expr, b: sp.Expr) -> bool:
    """a == b as an identity of finite sums (see module docstring).

    After `canon`, every sum is in normal form, so the sums are compared as opaque atoms: each distinct sum
    becomes a fresh symbol and sympy decides the remaining algebraic identity. Sums that are equal but not
    identical in normal form are then reported unequal (a refusal to prove, never a false pass); this also
    keeps sympy's own sum simplifier, which can recurse without end on false identities, out of the check.
    """
    d = canon(a) - canon(b)
    atoms = sorted(d.atoms(Sum), key=sp.default_sort_key)
    d = d.xreplace({t: sp.Dummy(f"sum{i}") for i, t in enumerate(atoms)})
    try:
        return sp.cancel(sp.together(d)) == 0 or sp.simplify(d) == 0
    except RecursionError:
        return False
