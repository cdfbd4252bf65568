"""Hypothesis strategies for fuzz cases (needs the optional `hypothesis` package).

`cases()` draws every field of `prefixproof.verify.identities.cases.Case` within `RANGES`.
Hypothesis shrinks towards small models, one layer, float64, unit magnitudes
and the default flags, so a shrunk counterexample is as simple as the failure
allows. Draws are kept few (they dominate the cost of an example): the six
flags are one bitmask (a set bit flips a flag from its default), and the
magnitudes are integers in hundredths of a decade. `limits` narrows a range
(name=(lo, hi)) or fixes a value (name=value).
"""
from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from prefixproof.verify.identities.cases import FLAG_DEFAULTS, FLAGS, RANGES, Case


def _flag_mask(limits: dict[str, Any]) -> st.SearchStrategy[dict[str, bool]]:
    fixed = {name: bool(limits[name]) for name in FLAGS if name in limits}
    free = [name for name in FLAGS if name not in fixed]

    def decode(mask: int) -> dict[str, bool]:
        flags = dict(fixed)
        for bit, name in enumerate(free):
            flags[name] = FLAG_DEFAULTS[name] != bool(mask >> bit & 1)
        return flags

    return st.integers(0, (1 << len(free)) - 1).map(decode) if free else st.just(fixed)


def cases(**limits: Any) -> st.SearchStrategy[Case]:
    """Cases with every range of `RANGES`, narrowed by `limits` (name=(lo, hi)) or fixed (name=value)."""
    unknown = set(limits) - set(RANGES) - set(FLAGS) - {"dtype"}
    if unknown:
        raise ValueError(f"unknown case field(s) {sorted(unknown)}")
    fields: dict[str, st.SearchStrategy] = {}
    fixed: dict[str, Any] = {}
    for name, (lo, hi) in RANGES.items():
        lim = limits.get(name)
        if lim is not None and not isinstance(lim, tuple):
            fixed[name] = lim  # not drawn at all: draws are what an example costs
            continue
        lo, hi = lim if lim is not None else (lo, hi)
        if isinstance(lo, int):
            fields[name] = st.integers(lo, hi)
        else:  # hundredths of a decade; shrinks towards 0 (unit magnitude) when 0 is in range
            fields[name] = st.integers(round(lo * 100), round(hi * 100)).map(lambda k: k / 100)
    dtype = st.just(limits["dtype"]) if "dtype" in limits else st.sampled_from(("float64", "float32"))
    seed, flags = st.integers(0, 2**32 - 1), _flag_mask(limits)

    @st.composite
    def draw(data: st.DataObject) -> Case:
        values = {name: data(s) for name, s in fields.items()}
        return Case(seed=data(seed), dtype=data(dtype), **fixed, **values, **data(flags))

    return draw()
