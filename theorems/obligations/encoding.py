"""How a claim writes its inputs into the residual stream, read from the weights' own labels.

Theorem 1 encodes Y_k / V into direction `target:k`; Theorem 2 encodes
m(k) / V into `map:k`. For a construction the directions come from its
stream; for a user's weights directory, from the labels in its config.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prefixproof.constructions.model import Model, ModelError


@dataclass(frozen=True)
class LookupEncoding:
    V: int  # vocabulary size (values 0..V-1, encoded as y / V)
    payload: np.ndarray  # stream index of each payload coordinate
    d: int  # stream width
    alphabet: str | None
    n_ctx: int = 0  # the model's context length

    @classmethod
    def of(cls, model: Model, block: str) -> "LookupEncoding":
        try:
            payload = np.array(model.stream.block(block))
        except KeyError:
            raise ModelError(f"the weights have no residual-stream block {block!r}; this claim encodes its input "
                             f"as {block}:k = value / V, so the stream must label those directions") from None
        return cls(model.vocab.size, payload, model.d_model, model.vocab.alphabet, model.n_ctx)

    @property
    def K(self) -> int:
        return len(self.payload)

    def encode_batch(self, values: np.ndarray) -> np.ndarray:
        """(B, K) token values -> (B, 1, d) float64 virtual tokens (value / V in the payload directions)."""
        values = np.asarray(values)
        out = np.zeros((values.shape[0], 1, self.d))
        out[:, 0, self.payload] = values / self.V
        return out
