"""The structured interval certificate of a lookup claim (docs/certificates.md).

`certify_lookup` runs stage 1 (attention and first-layer forms,
cert_attention.py) and stage 2 (blocks of values through the MLP and the
decoder, cert_blocks.py). A model outside the supported class, or a budget
overrun, yields a result with `reason` set and `certified` False: UNKNOWN,
never a pass.
"""
from __future__ import annotations

import time

import numpy as np
from typing import Callable

from prefixproof.constructions.model import Model, materialize
from prefixproof.verify.certify import recorder
from prefixproof.verify.certify.attention import Unsupported, first_layer_forms
from prefixproof.verify.certify.value_blocks import BlockEvaluator, CertResult, certify_blocks
from prefixproof.verify.certify.lookup_rows import LookupRows
from prefixproof.verify.certify.float_env import check_environment
from prefixproof.verify.certify.interval import Exec, PrecisionExhausted


def certify_lookup(model: Model, claim: LookupRows, ex: Exec, *, min_margin: float = 0.0,
                   progress: Callable[[int, int], None] | None = None) -> tuple[CertResult, float]:
    """(result, seconds). The model's float weights are taken as exact; `ex` is the executed arithmetic."""
    check_environment()
    t0 = time.perf_counter()
    model = materialize(model)
    with recorder.session(claim, ex) as rec:
        try:
            first = first_layer_forms(model, claim, ex)
            recorder.note("forms", rows=first.rows, units=first.units, c_lo=first.c[0], c_hi=first.c[1],
                          b_lo=first.b[0], b_hi=first.b[1], n_units=first.n_units)
            result = certify_blocks(model, claim, first, ex, min_margin=min_margin, progress=progress)
        except (Unsupported, PrecisionExhausted) as e:
            result = CertResult(False, float("-inf"), claim.rows * claim.V, reason=str(e))
        if rec is not None:
            rec.result = result
    return result, time.perf_counter() - t0


def box_bounds(model: Model, claim: LookupRows, ex: Exec, boxes: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """Certified margin lower bound of individual boxes (row, y), each evaluated on its own."""
    model = materialize(model)
    first = first_layer_forms(model, claim, ex)
    ev = BlockEvaluator(model, claim, first, ex)
    r = np.array([b[0] for b in boxes], dtype=np.int64)
    y = np.array([b[1] for b in boxes], dtype=np.int64)
    m = ev.refine(ev.evaluate(r, y, y), r, y, y, float("inf"))
    return {box: float(v) for box, v in zip(boxes, m)}
