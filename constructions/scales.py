"""Attention scales derived from the leakage bound (docs/constructions.md, "Leakage").

Lemma (leakage). At a query whose intended key scores ``sigma`` more than each
of the ``m`` other visible keys, the attention mass off the intended key is

    leak(m, sigma) = m e^-sigma / (1 + m e^-sigma)      (exact when the others tie)

Payload lookup (Theorems 1 and 2). A "fetch" head copies the payload t in
[0, (V-1)/V]^K from the virtual token, a "pointer" head copies a one-hot e_k,
and the MLP computes x = ReLU(fetched_k + pointer_k - 1). With leaks eps_f,
eps_p < 1/V every other coordinate is cut by the ReLU, and

    t_k - delta <= x <= t_k,   delta = eps_f * (V-1)/V + eps_p.

Grid decoding. logit_j = (2j/V) x - (j/V)^2, so for the target y

    logit_y - logit_j = ((y-j)/V) * (2x - (y+j)/V),

which is ((y-j)/V)^2 at x = y/V, and at worst (1/V) * (1/V - 2 delta) once x
sits delta below y/V. Requiring delta <= 1/(4V) keeps at least half of the
ideal margin 1/V^2, and delta <= 2 leak(m, sigma) < 2 m e^-sigma gives

    sigma >= ln(8 V m).

`lookup_scale` returns the smallest multiple of 1/16 at or above that value, so
the scale is an exact binary float (no rounding in the weights) and is derived,
never tuned.

The threshold 4 V (L+1) m is not a constant chosen here: the leakage lemma
(verify/symbolic/leakage.py) derives it from the softmax definition, in both
directions, and the verifier evaluates the lemma's own threshold at each
instance. `leakage_threshold` is the same formula for this layer (which may not
import verify/); tests/test_lemma_mutations.py checks that the two agree, so a
change in the derivation must be followed here.
"""
from __future__ import annotations

import math

SCALE_GRID = 16  # scales are multiples of 1/16: exact in every binary float format


def leak(m: int, sigma: float) -> float:
    """Attention mass off the intended key when m other keys score sigma less."""
    if m <= 0:
        return 0.0
    r = m * math.exp(-sigma)
    return r / (1.0 + r)


def leakage_threshold(V: int, m: int, pointers: int = 1) -> int:
    """R in the rule e^sigma >= R: 4 V (L+1) m, as the leakage lemma derives it (m = 0 is treated as 1)."""
    return 4 * V * (pointers + 1) * max(m, 1)


def lookup_scale(V: int, m: int, pointers: int = 1) -> float:
    """Scale for a payload-lookup construction with vocabulary V, m competing keys and L pointer heads.

    The selected value falls delta <= leak t + L leak <= (L+1) m e^-sigma short;
    (L+1) m e^-sigma <= 1/(4V) needs sigma >= ln(4 V (L+1) m), which is
    ln(8 V m) for the single pointer of Theorems 1 and 2.
    """
    if V < 2:
        raise ValueError(f"vocabulary size must be >= 2, got {V}")
    target = math.log(leakage_threshold(V, m, pointers))
    return math.ceil(target * SCALE_GRID) / SCALE_GRID


def lookup_delta(V: int, m: int, sigma: float, pointers: int = 1) -> float:
    """Worst shortfall delta of the selected value below t_k (see module docstring)."""
    eps = leak(m, sigma)
    return eps * (V - 1) / V + pointers * eps


def lookup_margin_bound(V: int, m: int, sigma: float, pointers: int = 1) -> float:
    """Guaranteed decode margin (1/V)(1/V - 2 delta); correct decoding needs it > 0.

    For one pointer the bound is attained: the query with m competitors and
    payload (V-1)/V has exactly this margin, so it is also the predicted
    minimum margin. With several pointers it is a lower bound.
    """
    return (1.0 / V) * (1.0 / V - 2.0 * lookup_delta(V, m, sigma, pointers))
