"""Real margins of concrete inputs in one certificate box, shared by the certificate soundness tests."""
from __future__ import annotations

import numpy as np

from prefixproof.verify.numeric.decoding import decode_margins
from prefixproof.verify.semantics.executions import executions
from prefixproof.verify.semantics.forward import forward


def point_margins(model, problem, row, y, rng, count, dtype="float64"):
    """Float margins of concrete inputs in box (row, y), at the row's own decision: the smaller over the format's
    executions (numpy's own kernels in the format, and the fused execution)."""
    batch = problem.batch_of(problem.box_inputs(row, y, rng, count))
    col = list(batch.positions).index(row) if len(batch.positions) > 1 else 0
    out = None
    for e in executions(model, dtype):
        logits = forward(e.model, batch.tokens, batch.soft, ops=e.ops, outputs_at=batch.positions).logits
        margins = decode_margins(np.asarray(logits, dtype=np.float64), batch.expected)[:, col]
        out = margins if out is None else np.minimum(out, margins)
    return out
