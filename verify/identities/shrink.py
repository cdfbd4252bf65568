"""A greedy shrinker for fuzz cases found by the random engine (hypothesis shrinks its own).

It repeatedly tries simpler variants of a failing case, one field at a time,
and keeps the first that still fails: fewer layers, heads, dimensions,
positions and sequences, magnitudes towards 10^0, flags back to their
defaults, float64, and small seeds. It stops when no variant fails or after
`budget` evaluations, and returns the simplest failing case seen.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterator

from prefixproof.verify.identities.cases import FLAG_DEFAULTS, RANGES, Case, CaseError


def _variants(case: Case) -> Iterator[Case]:
    for name, (lo, _) in RANGES.items():
        value = getattr(case, name)
        if isinstance(lo, int):
            target = max(lo, 1) if name == "prefix_layers" else lo
            tries = [target, (value + target) // 2, value - 1]
            tries = [v for v in dict.fromkeys(tries) if target <= v < value]
        else:
            tries = [v for v in dict.fromkeys([0.0, round(value / 2, 2)]) if abs(v) < abs(value)]
        for v in tries:
            yield replace(case, **{name: v})
    for name, default in FLAG_DEFAULTS.items():
        if getattr(case, name) != default:
            yield replace(case, **{name: default})
    if case.dtype != "float64":
        yield replace(case, dtype="float64")
    for seed in range(min(case.seed, 4)):
        yield replace(case, seed=seed)


def shrink(case: Case, fails: Callable[[Case], bool], budget: int = 400) -> tuple[Case, int]:
    """The simplest failing case reachable greedily from `case`, and the number of evaluations used."""
    used = 0
    improved = True
    while improved and used < budget:
        improved = False
        for candidate in _variants(case):
            if used >= budget:
                break
            used += 1
            try:
                if fails(candidate):
                    case, improved = candidate, True
                    break
            except CaseError:
                continue
    return case, used
