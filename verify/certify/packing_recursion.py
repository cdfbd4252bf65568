"""The packing certificate's error recursion: every Dense layer of the MLP against the exact construction.

For every row (u_1..u_L) and every unit h of every MLP layer it carries two bounds (docs/certificates.md,
"The packing certificate"):

  M[h]  a bound of |ideal value|, where "ideal" is the exact construction (constructions/packing.py, exact
        rationals) evaluated on the same input with hardmax attention;
  e[h]  a bound of |actual value - ideal value|, the actual value being the model's own weights executed
        in the stated arithmetic (every weight and bias of the layer enters).

A Dense layer (W, b) against the exact (W*, b*) gives, for the pre-activation,

  e_pre[h] <= sum_i |W*_hi| e_i + |W_hi - W*_hi| (M_i + e_i) + |b_h - b*_h|
              + gamma_(n+1) (sum_i |W_hi| (M_i + e_i) + |b_h|) + (n + 1) eta      (n = non-zero W_hi)

(the last line is the executed rounding of the dot product and the bias in any order, fused or not). A ReLU
does not increase e; it makes a unit exactly 0 when the ideal pre-activation is <= p and p + e_pre < 0.
The digit stages need the saturation of the threshold pair inv_j = ReLU(..), H_j = ReLU(b - w inv_j):
  on  (V x_k >= j): the ideal inv pre-activation is <= -1/2, so inv_j is exactly 0 when e_pre < 1/2, and
      H_j's error is the generic bound with inv_j's error and magnitude 0;
  off (V x_k <= j - g_k): the ideal is >= 3/2, so inv_j >= 3/2 - e_pre, and H_j is exactly 0 when the
      executed pre-activation with the model's own w < 0, b and other inputs is below 0 there.
Anything the recursion cannot enclose raises Uncovered ("stage not covered: ...").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from fractions import Fraction
from typing import Any

import numpy as np

from prefixproof.constructions.packing import Packing
from prefixproof.verify.certify import interval as I, recorder
from prefixproof.verify.certify.interval import Exec, gamma
from prefixproof.verify.certify.interval import as_dense as iv_as_dense


class Uncovered(Exception):
    """A stage the certificate cannot enclose (reported as UNKNOWN: stage not covered)."""


@dataclass
class State:
    """Per row and unit: M bounds |ideal|, e bounds |actual - ideal| (arrays of shape (rows, units))."""

    M: np.ndarray
    e: np.ndarray


_dense = iv_as_dense  # one conversion for every certificate module (interval.as_dense)


@dataclass(frozen=True)
class ExactTensor:
    """An exact construction tensor: its Fractions, their float64 roundings, which are exact, and |F| rounded up."""

    F: np.ndarray  # object array of Fractions
    f: np.ndarray  # float64 nearest
    exact: np.ndarray  # bool: f == F
    abs_up: np.ndarray  # upper bound of |F|

    @classmethod
    def of(cls, E: Any) -> "ExactTensor":
        F = np.empty(E.shape, dtype=object)
        F[...] = Fraction(0)
        for k, v in E.entries.items():
            F[k] = Fraction(v)
        f = np.array([float(x) for x in F.ravel()], dtype=np.float64).reshape(F.shape)
        exact = np.array([Fraction(float(x)) == x for x in F.ravel()], dtype=bool).reshape(F.shape)
        return cls(F, f, exact, np.where(exact, np.abs(f), I.up(np.abs(f))))

    def dev(self, A: np.ndarray) -> np.ndarray:
        """Upper bounds of |A - F|: a float subtraction rounded up where F is a float, Fractions elsewhere."""
        out = np.where(A == self.f, 0.0, I.up(np.abs(A - self.f)))
        for k in zip(*np.nonzero(~self.exact)):
            out[k] = float(I.up(float(abs(Fraction(float(A[k])) - self.F[k]))))
        return out


@lru_cache(maxsize=8)
def exact_parts(c: Packing) -> tuple[Any, tuple[tuple[ExactTensor, ExactTensor], ...]]:
    """The exact construction (rationals) and its Dense layers as ExactTensors, computed once per size."""
    model = c.model()
    return model, tuple((ExactTensor.of(d.W), ExactTensor.of(d.b)) for d in model.layers[0].mlp)


def _mv(X: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Upper bound of X @ A.T for non-negative X (rows, n) and A (m, n), computed in float64."""
    n = max(A.shape[1], 1)
    g = gamma(n + 2)
    return I.up(I.up(X @ A.T) * (1 + 4 * g) + n * I.ETA)


@dataclass(frozen=True)
class DenseBounds:
    """One Dense layer: the model's weights and the bounds against the exact construction's."""

    W: np.ndarray  # actual (m, n)
    b: np.ndarray  # actual (m,)
    absW: np.ndarray
    absWx: np.ndarray  # upper bound of |W*|
    dW: np.ndarray  # upper bound of |W - W*|
    db: np.ndarray  # upper bound of |b - b*|
    g: np.ndarray  # per unit: gamma_(n+1) of the executed dot product with its bias
    n: np.ndarray  # per unit: non-zero weights + 1

    @classmethod
    def of(cls, W: Any, b: Any, We: ExactTensor, be: ExactTensor, ex: Exec) -> "DenseBounds":
        W, b = _dense(W), np.asarray(b, dtype=np.float64)
        if W.shape != We.F.shape or b.shape != be.F.shape:
            raise Uncovered(f"stage not covered: a Dense layer has shape {W.shape} where the packing construction "
                            f"has {We.F.shape}")
        n = np.count_nonzero(W, axis=1) + 1
        g = np.array([ex.dot(int(k)) for k in n])
        return cls(W, b, np.abs(W), We.abs_up, We.dev(W), be.dev(b), g, n)

    def pre_error(self, s: State, ex: Exec) -> np.ndarray:
        """Bound of |actual pre-activation - ideal pre-activation| per row and unit."""
        Me = I.up(s.M + s.e)
        mag = I.up(_mv(Me, self.absW) + np.abs(self.b))
        if not np.all(mag < ex.max_value / 4):
            raise Uncovered("stage not covered: an MLP pre-activation may overflow the format")
        rounding = I.up(I.up(self.g * mag) * (1 + 4 * I.U) + self.n * ex.eta)
        out = I.up(_mv(s.e, self.absWx) + _mv(Me, self.dW))
        return I.up(I.up(out + self.db) + rounding)


def relu_error(e_pre: np.ndarray, pre_hi: np.ndarray | None) -> np.ndarray:
    """Error after the ReLU: e_pre (1-Lipschitz), or 0 / (pre_hi + e_pre) where the ideal is 0 with pre <= pre_hi."""
    if pre_hi is None:
        return e_pre
    zero_side = np.maximum(0.0, np.minimum(e_pre, I.up(pre_hi + e_pre)))
    return np.where(np.isfinite(pre_hi), zero_side, e_pre)


def h_off_upper(d: DenseBounds, h: int, p: int, inv_lo: np.ndarray, s: State, ex: Exec) -> np.ndarray:
    """Upper bound (per row) of H_h's executed pre-activation when its partner inv_p >= inv_lo > 0.

    fl(sum) <= sum + gamma sum|terms|; the partner's term w inv (1 - gamma) (w < 0) is largest at inv_lo,
    every other input lies in [0, M + e] (outputs of a ReLU)."""
    w, g = float(d.W[h, p]), float(d.g[h])
    q = I.down(I.down(inv_lo) * I.down(1.0 - g))
    own = I.up(w * np.maximum(q, 0.0))
    others = np.delete(np.arange(d.W.shape[1]), p)
    coef = I.up(np.maximum(d.W[h, others], 0.0) + I.up(g * d.absW[h, others]))
    rest = _mv(I.up(s.M[:, others] + s.e[:, others]), coef[None, :])[:, 0]
    bias = I.up(d.b[h] + I.up(g * abs(d.b[h])))
    return I.up(I.up(I.up(own + rest) + bias) + d.n[h] * ex.eta)


@dataclass(frozen=True)
class Digits:
    """Per-row facts of the ideal computation: the selected digit index and the packing parameters."""

    c: Packing
    istar: np.ndarray  # (rows,) index of (u_2..u_L) in base V: the digit stage the row reads

    @property
    def V(self) -> int:
        return self.c.V


def _unit_facts(label: str, stage: int | None, dg: Digits) -> tuple[np.ndarray, np.ndarray | None]:
    """Ideal post-activation magnitude M (rows,) and, where the ideal is 0, an upper bound of the ideal
    pre-activation (rows,; inf where it is not 0). Derived from constructions/packing.py's wiring."""
    R, V = len(dg.istar), dg.V
    ones, vmax = np.ones(R), float(I.up((V - 1) / V))
    if label == "x":  # x_k in [0, 1)
        return ones, None
    if label.startswith("idx:"):  # one-hot of the digit index; an off unit's ideal pre-activation is <= 0
        on = dg.istar == int(label.split(":")[1])
        return on.astype(float), np.where(on, np.inf, 0.0)
    if label == "sel":  # sel_(k') = ReLU(d/V + idx:k' - 1): d/V on the read stage, pre <= -1/V elsewhere
        on = dg.istar == stage
        return np.where(on, vmax, 0.0), np.where(on, np.inf, -float(I.down(1.0 / V)))
    if label in ("acc", "value"):  # partial sums of the sel units: 0 or d/V
        return np.full(R, vmax), None
    raise Uncovered(f"stage not covered: no ideal semantics for unit {label!r}")


def _stage_of(name: str) -> tuple[str, int | None]:
    m = re.fullmatch(r"mlp\.stage(\d+)([ab])", name)
    if m:
        return m.group(2), int(m.group(1))
    return name, None


def run_hidden(layer: Any, dg: Digits, s: State, ex: Exec, pad: Any = None) -> tuple[State, dict[str, Any]]:
    """Carry (M, e) from the first MLP layer's outputs through every hidden Dense layer after it.

    Returns the state of the last hidden layer (the value unit) and the largest threshold error of any stage.
    `pad` (the certificate pass, packing_record.py) widens each layer's state before the next layer uses it;
    each layer's state and off decisions are noted for the recorder (a no-op outside a recording session)."""
    V, D = dg.V, dg.c.D
    exact, tensors = exact_parts(dg.c)
    exact_layer = exact.layers[0]
    worst: list[float] = []
    inv_err: np.ndarray | None = None  # e_pre of the previous a-layer's inv units (rows, V-1)
    for ell in range(1, len(exact_layer.mlp) - 1):
        space = exact_layer.hidden[ell]
        d = DenseBounds.of(layer.mlp[ell].W, layer.mlp[ell].b, *tensors[ell], ex)
        kind, k = _stage_of(space.name)
        labels = space.labels
        e_pre = d.pre_error(s, ex)
        M_new, e_new = np.zeros_like(e_pre), np.zeros_like(e_pre)
        if kind == "a":
            g_inv = V ** (D - 1 - k)
            inv = [labels.index(f"inv:{j - 1}") for j in range(1, V)]
            eps = e_pre[:, inv]
            if not np.all(eps < 0.5):
                raise Uncovered(f"stage not covered: digit stage {k}: the threshold argument may move by "
                                f"{float(eps.max()):.3g} >= 1/2")
            worst.append(float(eps.max()))
            inv_err = eps
            for j in range(1, V):
                M_new[:, inv[j - 1]] = max(0.0, float(I.up(I.up(2.0 * g_inv * j) - 0.5)))
                e_new[:, inv[j - 1]] = eps[:, j - 1]
            rest = [h for h in range(len(labels)) if h not in inv]
            sel_stage = k - 1
        elif kind == "b":
            if inv_err is None:
                raise Uncovered(f"stage not covered: digit stage {k}'s second layer has no first layer")
            prev = exact_layer.hidden[ell - 1].labels
            Hs = [labels.index(f"H:{j}") for j in range(V - 1)]
            off = np.zeros((len(dg.istar), V - 1), dtype=np.uint8)
            for j, h in enumerate(Hs):
                p = prev.index(f"inv:{j}")
                # on: inv_j is exactly 0 (inv_err < 1/2 was checked), so its error and magnitude are 0
                s_on = State(s.M.copy(), s.e.copy())
                s_on.M[:, p], s_on.e[:, p] = 0.0, 0.0
                e_on = d.pre_error(s_on, ex)[:, h]
                # off: inv_j >= 3/2 - inv_err; H_j is exactly 0 when its executed pre-activation stays below 0
                if d.W[h, p] < 0:
                    hi = h_off_upper(d, h, p, I.down(1.5 - inv_err[:, j]), s, ex)
                else:
                    hi = np.full(len(dg.istar), np.inf)
                e_off = np.where(hi < 0, 0.0, e_pre[:, h])
                off[:, j] = hi < 0
                M_new[:, h] = 1.0
                e_new[:, h] = np.maximum(e_on, e_off)
            rest = [h for h in range(len(labels)) if h not in Hs]
            sel_stage = None
        else:
            rest = list(range(len(labels)))
            sel_stage = D - 1
        for h in rest:
            M, pre_hi = _unit_facts(labels[h], sel_stage, dg)
            M_new[:, h] = M
            e_new[:, h] = relu_error(e_pre[:, h], pre_hi)
        s = State(M_new, I.up(e_new))
        if pad is not None:
            s = pad(s)
            if kind == "a":  # the off case then reads the widened threshold error, as a checker of the claims does
                inv_err = s.e[:, inv]
        recorder.note("recursion", layer=ell, M=s.M, e=s.e, **({"off": off} if kind == "b" else {}))
    return s, {"worst_threshold_error": max(worst) if worst else 0.0}


def decode_margin(W: Any, b: Any, e_value: float, V: int, ex: Exec) -> float:
    """Lower bound of min over y and j != y of the executed logit difference l_y - l_j, for a value
    v in [y/V - e, y/V + e], with the decoder's own weights (every entry of W and b)."""
    m = float(pair_bounds(W, b, e_value, V, ex).min())
    return float(I.down(m - 2 * I.U * abs(m)))  # the margin itself is a float subtraction of the two logits


def pair_bounds(W: Any, b: Any, e_value: float, V: int, ex: Exec) -> np.ndarray:
    """(V, V) lower bounds of l_y - l_j (rows y, columns j; inf on the diagonal), as decode_margin."""
    W, b = _dense(W), np.asarray(b, dtype=np.float64)
    if W.shape != (V, 1) or b.shape != (V,):
        raise Uncovered(f"stage not covered: the decoder has shape {W.shape}, expected ({V}, 1)")
    y = np.arange(V, dtype=np.float64)
    v = (I.down(I.down(y / V) - e_value), I.up(I.up(y / V) + e_value))  # y/V is enclosed by the two roundings
    w = W[:, 0]
    vmag = I.mag(v)
    g = ex.dot(2)
    err = I.up(I.up(g * I.up(np.abs(w)[None, :] * vmag[:, None] + np.abs(b)[None, :])) + 2 * ex.eta)  # (y, j)
    dw = (I.down(w[:, None] - w[None, :]), I.up(w[:, None] - w[None, :]))
    prod = I.mul(dw, (np.broadcast_to(v[0][:, None], (V, V)), np.broadcast_to(v[1][:, None], (V, V))))
    diff = I.add(prod, (I.down(b[:, None] - b[None, :]), I.up(b[:, None] - b[None, :])))
    lower = I.down(diff[0] - I.up(np.diag(err)[:, None] + err))
    lower[np.arange(V), np.arange(V)] = np.inf
    return lower
