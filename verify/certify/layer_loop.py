"""A sound enclosure of the logits of every float64 execution of the semantics on given inputs.

This is the derived tolerance of the PyTorch cross-check of the constructions
(docs/crosscheck.md). Two float64 implementations of docs/semantics.md (numpy
here, torch's matmul and `scaled_dot_product_attention` there) round
differently: different summation orders and blockings, FMA, q and k scaled by
sqrt(scale) before the product, a softmax normalised before or after the
mixing, a different `exp`. Instead of a bare atol, we enclose every execution
in which

    each elementary operation has relative error <= u' = 4 u   (u = 2^-53),
    each length-n dot product has error <= gamma_n(u') * sum |a_i b_i|   (any order, blocking or FMA),
    exp has relative error <= exp_ulps * u' = 16 u                    (8 ulp),

plus 4 * 2^-1074 absolute per operation for underflow. The factor 4 covers
the extra roundings of the variants above (the sqrt(scale) pre-scaling adds
two per product term; normalising after mixing adds one per output). The
interval evaluation itself is outward-rounded (verify/certify/interval.py), so the
enclosure [lo, hi] of each logit contains the exact real value and every such
execution. The cross-check requires both implementations' logits to lie in it;
hence |torch - numpy| <= hi - lo, the tolerance that is reported.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from prefixproof.constructions.model import Model, materialize
from prefixproof.verify.certify import interval as iv
from prefixproof.verify.certify.interval_ops import EnclosureUnsupported, IntervalOps
from prefixproof.verify.semantics.forward import forward

TORCH_FLOAT64 = iv.Exec("float64 with 4x unit roundoff (any float64 implementation)", 4 * 2.0**-53,
                        4 * 2.0**-1074, 4.0, float(np.finfo(np.float64).max))


def logits_enclosure(model: Model, tokens: np.ndarray | None, soft: np.ndarray | None,
                     ex: iv.Exec = TORCH_FLOAT64) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (B, n, V): encloses the logits of every execution allowed by `ex`.

    tokens (B, n_tok) and soft (B, k, d) or (k, d): the same inputs as `forward`, which this runs with
    interval arithmetic (`IntervalOps`): the layer loop is the one forward semantics.
    """
    model = materialize(model)
    if any(layer.ln is not None for layer in model.layers):
        raise EnclosureUnsupported("the logit enclosure does not cover LayerNorm layers")
    if soft is not None:
        soft = np.asarray(soft, dtype=np.float64)
        soft = soft if soft.ndim == 3 else soft[None]
    tokens = None if tokens is None or not np.asarray(tokens).shape[-1] else np.asarray(tokens)
    out = forward(model, tokens, soft, ops=IntervalOps(ex)).logits
    return out.lo, out.hi


def inside(values: Any, lo: np.ndarray, hi: np.ndarray) -> bool:
    values = np.asarray(values, dtype=np.float64)
    return bool(np.all((lo <= values) & (values <= hi)))
