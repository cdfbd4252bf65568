"""Hypothesis strategies for fuzz cases (needs the optional `hypothesis` package).

`cases()` draws every field of `verify.fuzz_case.Case` within `RANGES`;
hypothesis shrinks towards small models, one layer, float64 and unit
magnitudes, so a shrunk counterexample is as simple as the failure allows.
`limits` narrows a range (the small-model benchmark, a test that wants
several heads).
"""
from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from verify.arith import DTYPES
from verify.fuzz_case import RANGES, Case

FLAGS = ("raw", "prefix_batched", "causal", "layernorm", "residual", "padding")


def cases(**limits: Any) -> st.SearchStrategy[Case]:
    """Cases with every range of `RANGES`, narrowed by `limits` (name=(lo, hi)) or fixed (name=value)."""
    kw: dict[str, st.SearchStrategy] = {}
    for name, (lo, hi) in RANGES.items():
        lim = limits.get(name)
        if lim is not None and not isinstance(lim, tuple):
            kw[name] = st.just(lim)
            continue
        lo, hi = lim if lim is not None else (lo, hi)
        if isinstance(lo, int):
            kw[name] = st.integers(lo, hi)
        else:  # shrink towards 0 (unit magnitudes) when 0 is in range
            kw[name] = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    for name in FLAGS:
        kw[name] = st.just(limits[name]) if name in limits else st.booleans()
    kw["dtype"] = st.just(limits["dtype"]) if "dtype" in limits else st.sampled_from(sorted(DTYPES, reverse=True))
    unknown = set(limits) - set(kw)
    if unknown:
        raise ValueError(f"unknown case field(s) {sorted(unknown)}")
    return st.builds(Case, seed=st.integers(0, 2**32 - 1), **kw)
