"""One module per claim: its statement, parameters and proof obligations."""
from __future__ import annotations

from theorems import conditional, packing, theorem1, theorem2
from theorems.base import Theorem

THEOREMS: dict[str, Theorem] = {t.id: t for t in (
    theorem1.THEOREM, theorem2.THEOREM, conditional.LONG_RESPONSE, conditional.MULTI_TOKEN, conditional.CONDITIONAL,
    packing.THEOREM,
)}
