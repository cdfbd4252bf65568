"""The prefix identities of Section 4, as residuals that any evaluator's attention can be checked against.

With P prefix positions before the content, at every content query i

    alpha_i          = sum_p A_pt[i, p]                                    (mass on the prefix)
    prefix_rescale:  A_pt[i, P + j] = (1 - alpha_i) A[i, j]                for every content key j
    prefix_bias:     t_pt[i] = (1 - alpha_i) t[i] + sum_p A_pt[i, p] v_p   (head output before W_O)

where A, t are the attention weights and head output without the prefix, and
v_p the prefix values. `residuals` measures how far given arrays are from
these identities; `tolerance` is the documented bound on what floating-point
evaluation can explain (docs/identities.md):

    tol = c * eps * (n_keys + 3 * D * (1 + S)) * M

with eps the dtype's machine epsilon, c = 8, n_keys = P + n_content (the
softmax normaliser and the mix each accumulate n_keys rounded terms), D the
longest inner product on the path (max of d_in, d_k, d_v), S the score
magnitude sigma * max_ij sum_r (|W_Q| |h_i|)_r (|W_K| |h_j|)_r (it bounds both
the scores and their rounding errors; raw prefix keys enter as |k_p|) and M
the magnitude of what is compared: 1 for attention weights (they lie in
[0, 1]), max(|W_V| |h|, |v_p|) for head outputs (convex combinations of the
values), times the largest row sum of |W_O| after the output projection.
With D = S = 0 this is the older c * eps * n_keys * M.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SAFETY = 8.0


@dataclass(frozen=True)
class Residuals:
    rescale: float  # max |A_pt_content - (1 - alpha) A|
    bias: float | None  # max |t_pt - predicted| (None when outputs were not given)
    alpha_min: float
    alpha_max: float


def prefix_mass(A_pt: np.ndarray, P: int) -> np.ndarray:
    """alpha: attention mass on the P prefix keys, shape (..., n_q)."""
    return A_pt[..., :P].sum(axis=-1)


def residuals(A: np.ndarray, A_pt: np.ndarray, P: int, t: np.ndarray | None = None,
              t_pt: np.ndarray | None = None, v_prefix: np.ndarray | None = None) -> Residuals:
    """Distances from the identities. A: (..., n_q, n_c); A_pt: (..., n_q, P + n_c); t, t_pt: (..., n_q, d_v);
    v_prefix: (..., P, d_v) (broadcast over the query axis)."""
    A = np.asarray(A, dtype=np.float64)
    A_pt = np.asarray(A_pt, dtype=np.float64)
    if A_pt.shape[-1] != A.shape[-1] + P:
        raise ValueError(f"A_pt has {A_pt.shape[-1]} keys; expected {A.shape[-1]} content keys + {P} prefix keys")
    alpha = prefix_mass(A_pt, P)
    rescale = float(np.abs(A_pt[..., P:] - (1 - alpha)[..., None] * A).max(initial=0.0))
    bias = None
    if t is not None and t_pt is not None and v_prefix is not None:
        predicted = (1 - alpha)[..., None] * np.asarray(t, dtype=np.float64) + \
            np.asarray(A_pt[..., :P], dtype=np.float64) @ np.asarray(v_prefix, dtype=np.float64)
        bias = float(np.abs(np.asarray(t_pt, dtype=np.float64) - predicted).max(initial=0.0))
    return Residuals(rescale, bias, float(alpha.min(initial=np.inf)), float(alpha.max(initial=-np.inf)))


def tolerance(dtype: Any, n_keys: int, value_scale: float = 1.0, *, depth: int = 0,
              score_scale: float = 0.0) -> float:
    """The bound on floating-point residuals for the identities (see module docstring).

    `depth` is D (longest inner product), `score_scale` is S, `value_scale` is M.
    """
    eps = float(np.finfo(np.dtype(dtype)).eps) if np.dtype(dtype).kind == "f" else float(dtype)
    terms = max(n_keys, 1) + 3.0 * depth * (1.0 + score_scale)
    return SAFETY * eps * terms * max(value_scale, 1e-300)


def bias_span_residual(delta: np.ndarray, directions: np.ndarray) -> float:
    """Distance of output changes `delta` (..., d) from span(directions) (k, d), relative to |delta|.

    prefix_bias also says the change t_pt - t lies in span{t, v_p}; with the
    query's own t removed, in span{v_p}. This returns max over rows of
    |delta - proj(delta)| / max(|delta|, tiny).
    """
    D = np.asarray(directions, dtype=np.float64).reshape(-1, directions.shape[-1])
    Q, _ = np.linalg.qr(D.T)
    d = np.asarray(delta, dtype=np.float64).reshape(-1, delta.shape[-1])
    rest = d - (d @ Q) @ Q.T
    norms = np.maximum(np.linalg.norm(d, axis=-1), 1e-300)
    return float((np.linalg.norm(rest, axis=-1) / norms).max(initial=0.0))
