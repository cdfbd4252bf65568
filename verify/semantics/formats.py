"""Low-precision formats: rounding values and weights, and emulated execution.

float16 and float32 come from numpy, bfloat16 from ml_dtypes. `round_model`
gives the model a framework would run after casting its weights (the float64
values of the rounded weights). `EmulatedOps` is the *fused* execution: the
forward pass in float64 with every operation's result rounded to the format
once (an affine map x W + b is rounded once, like a fused multiply-add chain).
It is one of the two executions the numeric checker runs; the other runs
numpy's own kernels in the format (verify/semantics/executions.py). Both are members of
the format's execution class (docs/certificates.md, "Execution classes").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from prefixproof.constructions.model import Model, map_weights, materialize
from prefixproof.verify.semantics.ops import NumpyOps


@dataclass(frozen=True)
class Format:
    """A binary floating-point format with round to nearest and gradual underflow: the one place its
    constants live. `u` is the unit roundoff (2^-p), `eta` the smallest subnormal, `largest` the largest
    finite value, `exp_bound_u` the relative error of numpy's exp in it that the certificate assumes, in
    units of u (docs/certificates.md, "Execution classes"; measured at start-up by
    verify/certify/exp_check.py)."""

    name: str
    bits: int  # precision p, the significand's bits including the implicit one
    eta: float
    largest: float
    exp_bound_u: float

    @property
    def u(self) -> float:
        return 2.0 ** -self.bits

    @property
    def eps(self) -> float:
        """The spacing of the format at 1 (2u)."""
        return 2.0 * self.u

    @property
    def dtype(self) -> np.dtype:
        if self.name == "bfloat16":
            import ml_dtypes

            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(self.name)


REGISTRY: dict[str, Format] = {f.name: f for f in (
    Format("float64", 53, 2.0**-1074, float(np.finfo(np.float64).max), 8.0),
    Format("float32", 24, 2.0**-149, float(np.finfo(np.float32).max), 8.0),
    Format("float16", 11, 2.0**-24, 65504.0, 2.0),
    Format("bfloat16", 8, 2.0**-133, 3.3895313892515355e38, 2.0),
)}
FORMATS = tuple(REGISTRY)  # the names, widest first: the CLI's --dtype choices


def format_of(name: str) -> Format:
    """The registered format called `name`; a clear error for any other name."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose from {', '.join(FORMATS)}") from None


def np_dtype(name: str) -> np.dtype:
    return format_of(name).dtype


def round_to(x: Any, name: str) -> np.ndarray:
    """Round float64 values to the format (round to nearest even), returned in that format."""
    return np.asarray(x, dtype=np.float64).astype(np_dtype(name))


def _round64(x: Any, name: str) -> Any:
    if sp.issparse(x):
        out = sp.csr_array(x, dtype=np.float64, copy=True)
        out.data = round_to(out.data, name).astype(np.float64)
        return out
    return round_to(x, name).astype(np.float64)


def round_model(model: Model, name: str) -> Model:
    """The model with every weight rounded to the format (values kept as float64)."""
    model = materialize(model)
    if name == "float64":
        return model
    return map_weights(model, lambda w: _round64(w, name))


class EmulatedOps(NumpyOps):
    """The fused execution of a low-precision format: float64 arithmetic, each result rounded to the format once."""

    def __init__(self, name: str) -> None:
        super().__init__(np.float64)
        self.name = name

    def _r(self, x: np.ndarray) -> np.ndarray:
        return _round64(x, self.name)

    def gather_rows(self, E, tokens):
        return self._r(super().gather_rows(E, tokens))

    def add(self, a, b):
        return self._r(super().add(a, b))

    def linear(self, x, W):
        return self._r(super().linear(self._r(x), W))

    def affine(self, x, W, b):
        return self._r(super().linear(self._r(x), W) + b)

    def scores(self, q, k, scale):
        return self._r(self._r(q @ np.swapaxes(k, -1, -2)) * scale)

    def softmax(self, scores, visible):
        s = np.where(visible, scores, -np.inf)
        top = np.max(s, axis=-1, keepdims=True)
        top = np.where(np.isfinite(top), top, 0)
        e = self._r(np.exp(self._r(s - top)))
        total = self._r(e.sum(axis=-1, keepdims=True))
        return self._r(e / np.where(total > 0, total, 1))

    def mix(self, A, v):
        return self._r(A @ v)
