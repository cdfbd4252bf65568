"""One module per claim: its statement, parameters and proof obligations."""
from __future__ import annotations

from prefixproof.theorems import (capacity_count, conditional, finetune_contrast, packing, prefix_bias, prefix_rescale,
                                  soft_in_prefix, theorem1, theorem2)
from prefixproof.theorems.obligations.base import Theorem

THEOREMS: dict[str, Theorem] = {t.id: t for t in (
    theorem1.THEOREM, theorem2.THEOREM, conditional.LONG_RESPONSE, conditional.MULTI_TOKEN, conditional.CONDITIONAL,
    packing.THEOREM, prefix_rescale.THEOREM, prefix_bias.THEOREM, soft_in_prefix.THEOREM, finetune_contrast.THEOREM,
    capacity_count.THEOREM,
)}
