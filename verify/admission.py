"""Sizes admitted before anything is allocated: a usage over the memory budget is refused with the estimate
and the largest size that fits (the command line prints it as one line, exit 2).

- `admit_construction(name, params, inputs)`: building a construction (exact weights and their float64
  copy), its table of answers, and generating for one input per worker (the build self-check, `generate`).
- `admit_directory(path)`: what a weights directory's config.json declares (tensor shapes, label blocks),
  before the loader allocates any of it.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

from prefixproof.constructions.config_check import Checker, check_config
from prefixproof.constructions.io import FormatError
from prefixproof.verify.budget import Budget, OverBudget, current
from prefixproof.verify.estimates import LABEL, build_bytes, construction_shape, generation_bytes
from prefixproof.verify.parallel import default_workers

CONFIG_READ_LIMIT = 64 << 20  # a config.json larger than this is not read here (the loader reports it)
SEARCH_TOP = 1 << 62  # sizes searched for "the largest that fits"


def construction_bytes(name: str, params: dict[str, int], workers: int = 1) -> int:
    """Building `name` at `params`, its table of answers, and `workers` inputs generating at once."""
    shape = construction_shape(name, params)
    V = int(params["V"])
    L = int(params.get("L", 1)) if name != "theorem1" else 0
    R = int(params.get("R", 1)) if name != "theorem1" else int(params["N"])
    inputs = 1 if name == "theorem1" else V ** L
    table = 3 * 8 * inputs * (L + R + 2)
    start = 1 + (1 if name == "theorem2" else L)
    steps = R if name != "theorem2" else 1
    return build_bytes(shape) + table + workers * generation_bytes(shape, start, steps)


def _fits_text(name: str, params: dict[str, int], budget: Budget, workers: int) -> str | None:
    """For each parameter above its minimum: the largest value that fits with the others held."""
    parts = []
    for key, value in params.items():
        low = 2 if key == "V" or (name == "multi_token_packing" and key == "L") else 1
        if value <= low:
            continue

        def need(x: int, key: str = key) -> int:
            return construction_bytes(name, {**params, key: x}, workers)

        best = _largest(need, budget, low, value)
        held = ", ".join(f"{k}={v}" for k, v in params.items() if k != key)
        if best is not None:
            parts.append(f"{key}={best}" + (f" (at {held})" if held else ""))
    return " or ".join(parts) if parts else None


def _largest(need, budget: Budget, low: int, high: int) -> int | None:
    if not budget.fits(need(low)):
        return None
    while high - low > 1:  # need() grows with the size; exponential sizes (V^L) keep this short
        mid = (low + high) // 2
        low, high = (mid, high) if budget.fits(need(mid)) else (low, mid)
    return low


def admit_construction(name: str, params: dict[str, int], budget: Budget | None = None,
                       workers: int | None = None) -> None:
    """OverBudget (with the largest sizes that fit) unless building and running `name` at `params` fits."""
    budget = budget or current()
    workers = workers or default_workers()
    params = {k: int(v) for k, v in params.items()}
    needed = construction_bytes(name, params, workers)
    if not budget.fits(needed):
        what = f"{name} at " + ", ".join(f"{k}={v}" for k, v in params.items())
        raise OverBudget(what, needed, budget, _fits_text(name, params, budget, workers))


def declared_bytes(config: Any) -> int:
    """float64 bytes that a config.json's tensor table and label blocks declare (dense tensors in full;
    CSR tensors are bounded by the weights file itself). Entries of the wrong type count 0: the loader
    rejects them with its own message."""
    total = 0
    if not isinstance(config, dict):
        return 0
    tensors = config.get("tensors")
    for entry in (tensors.values() if isinstance(tensors, dict) else ()):
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if isinstance(shape, list) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            rows = shape[0] if shape else 1
            total += 8 * (math.prod(shape) if entry.get("storage") != "csr" else rows + 1)
    spaces = config.get("spaces")
    for spec in (spaces.values() if isinstance(spaces, dict) else ()):
        blocks = spec.get("blocks") if isinstance(spec, dict) else None
        for block in (blocks if isinstance(blocks, list) else ()):
            size = block[1] if isinstance(block, list) and len(block) == 2 else None
            total += LABEL * (size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 1)
    return total


def admit_directory(directory: str | os.PathLike, budget: Budget | None = None) -> None:
    """OverBudget when the weights directory's config.json declares more than the budget holds."""
    path = os.path.join(os.fspath(directory), "config.json")
    try:
        if os.path.getsize(path) > CONFIG_READ_LIMIT:
            return
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError, RecursionError):
        return  # unreadable or malformed: the loader says what is wrong
    if not isinstance(config, dict):
        return
    # a field out of its documented range is named first (docs/format.md, "Validation"); only a config that is
    # valid in every field is then measured against the budget
    check_config(config, Checker(FormatError, path))
    needed = declared_bytes(config)
    (budget or current()).require(f"loading {os.fspath(directory)} (its config.json declares tensors and labels "
                                  f"of this size)", needed)
