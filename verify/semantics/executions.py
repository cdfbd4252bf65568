"""The executions a low-precision verdict names (docs/certificates.md, "Execution classes").

A verdict "in format F" covers a class of executions; the numeric checker runs
two members of it, and says CHECKED only when both pass:

- `NativeOps`: numpy arrays of dtype F with numpy's own kernels. An affine map
  is `x @ W.T` (numpy's matmul: BLAS for float32; for float16 numpy forms the
  exact products and accumulates them in float32, then rounds once; for
  bfloat16 ml_dtypes' matmul accumulates in float32 and returns float32, which
  is rounded to bfloat16), then `+ b` as a separate rounded addition. Scores
  are (q @ k.T) * scale with the scale rounded to F (numpy's rule for a Python
  scalar); the softmax subtracts the row maximum, takes numpy's exp, sums and
  divides, each in F. Sparse weights, which scipy supports only in float32 and
  float64, are multiplied in float32 for float16 and bfloat16 and the result
  rounded once: the same accumulation as numpy's dense float16 kernel.
- `EmulatedOps` (verify/semantics/formats.py): the *fused* execution, float64 arithmetic
  with each operation's result rounded once to F; an affine map x W + b is
  rounded once, as a fused multiply-add chain would.

float64 runs natively (numpy float64 is both).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from prefixproof.constructions.model import Model, materialize
from prefixproof.verify.semantics.ops import NumpyOps
from prefixproof.verify.semantics.formats import EmulatedOps, np_dtype, round_model


class NativeOps(NumpyOps):
    """numpy arithmetic in one format (float32, float16, bfloat16): every result is an array of that dtype."""

    def __init__(self, name: str) -> None:
        super().__init__(np_dtype(name))
        self.name = name
        self._sparse_dtype = self.dtype if self.dtype in (np.float32, np.float64) else np.dtype(np.float32)

    def _a(self, x: Any) -> np.ndarray:
        return np.asarray(x).astype(self.dtype, copy=False)

    def _w(self, W: Any) -> Any:
        if sp.issparse(W):  # scipy has no float16/bfloat16: weights of the format are exact in float32
            return W if W.dtype == self._sparse_dtype else W.astype(self._sparse_dtype)
        return W if W.dtype == self.dtype else np.asarray(W, dtype=np.float64).astype(self.dtype)

    def gather_rows(self, E, tokens):
        return self._a(super().gather_rows(E, tokens))

    def rows(self, P, start, stop):
        return self._a(super().rows(P, start, stop))

    def add(self, a, b):
        return self._a(self._a(a) + self._a(b))

    def concat(self, parts: Sequence[Any], axis: int) -> np.ndarray:
        return super().concat([self._a(p) for p in parts], axis)

    def linear(self, x, W):
        x = self._a(x)
        W = self._w(W)
        if sp.issparse(W):
            flat = x.reshape(-1, x.shape[-1]).astype(W.dtype)
            out = np.asarray(W @ flat.T).T.reshape(x.shape[:-1] + (W.shape[0],))
        else:
            out = x @ W.T
        return self._a(out)

    def linears(self, x, Ws):
        """One product per matrix (stacking would mix dense weights of the format into a scipy matrix)."""
        return [self.linear(x, W) for W in Ws]

    def affine(self, x, W, b):
        return self._a(self.linear(x, W) + self._a(b))  # matmul (rounded), then the bias add (rounded)

    def relu(self, x):
        return np.maximum(self._a(x), self.dtype.type(0))

    def scores(self, q, k, scale):
        dots = self._a(self._a(q) @ np.swapaxes(self._a(k), -1, -2))
        return self._a(dots * self.dtype.type(scale))

    def softmax(self, scores, visible):
        s = np.where(visible, self._a(scores), self.dtype.type(-np.inf))
        top = np.max(s, axis=-1, keepdims=True)
        top = np.where(np.isfinite(top), top, self.dtype.type(0))
        e = self._a(np.exp(self._a(s - top)))
        total = self._a(e.sum(axis=-1, keepdims=True))
        return self._a(e / np.where(total > 0, total, self.dtype.type(1)))

    def mix(self, A, v):
        return self._a(self._a(A) @ self._a(v))

    def layernorm(self, x, ln):
        return self._a(super().layernorm(self._a(x), ln))


@dataclass(frozen=True)
class Execution:
    """One named execution: the model as that execution holds it, and the arithmetic that runs it."""

    name: str
    model: Model
    ops: NumpyOps
    diagnostic: bool = False  # reported, but its failures do not decide the verdict


def native_name(dtype: str) -> str:
    return f"numpy {dtype} (matmul, then add)"


def fused_name(dtype: str) -> str:
    return f"fused {dtype} (rounded once per affine map)"


def executions(model: Model, dtype: str) -> list[Execution]:
    """The executions of format `dtype` the numeric checker runs; a verdict needs all of them to pass."""
    if dtype == "float64":
        return [Execution("numpy float64", materialize(model), NumpyOps(np.float64))]
    rounded = round_model(model, dtype)  # the weights a framework holds after casting (values as float64)
    return [Execution(native_name(dtype), rounded, NativeOps(dtype)),
            Execution(fused_name(dtype), rounded, EmulatedOps(dtype))]


def describe(execs: list[Execution]) -> str:
    return "executions: " + "; ".join(e.name + (" [diagnostic]" if e.diagnostic else "") for e in execs)
