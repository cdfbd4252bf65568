"""Rows of the cross-check report: the prefix identities per layer and head, negative controls, the table.

Every row is a `prefixproof.verify.verdict.Record`. `details` always carries:
target, layer, head, max_error, tolerance, alpha_min, alpha_max, control, note.

Verdicts:
- CHECKED: the comparison held on the whole finite set compared (every content
  query and key of this input, at this layer and head; or every input of a
  construction).
- FALSIFIED: a real check failed on a counterexample confirmed by a second
  evaluator (see the row's `counterexample`); for a negative control,
  FALSIFIED is the expected outcome: the planted fault was caught.
- UNKNOWN(reason): a failure that could not be confirmed.
- ERROR(reason): the cross-check itself is broken: two implementations of the
  same semantics disagree beyond the derived tolerance, or a negative control
  was not flagged (the check could not have failed). Never a pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from prefixproof.verify.identities.residuals import residuals, tolerance
from prefixproof.verify.verdict import Record, Verdict


def row(claim: str, target: str, obligation: str, verdict: Verdict, method: str, dtype: str, *,
        layer: int | None = None, head: int | None = None, max_error: float | None = None,
        tol: float | None = None, alpha: tuple[float, float] | None = None, control: bool = False,
        note: str = "", reason: str | None = None, counterexample: dict[str, Any] | None = None,
        seconds: float = 0.0, min_margin: float | None = None, extra: dict[str, Any] | None = None) -> Record:
    details = {"target": target, "layer": layer, "head": head, "max_error": max_error, "tolerance": tol,
               "alpha_min": None if alpha is None else alpha[0], "alpha_max": None if alpha is None else alpha[1],
               "control": control, "note": note, **(extra or {})}
    return Record(claim=claim, obligation=obligation, verdict=verdict, method=method, arithmetic=f"torch {dtype}",
                  params={}, min_margin=min_margin, seconds=seconds, dtype=dtype, reason=reason,
                  counterexample=counterexample, details=details)


@dataclass(frozen=True)
class LayerArrays:
    """One layer of a prefixed run and its prefix-free baseline, heads on axis 1 (numpy, framework dtype).

    A (B, H, T, T) and t (B, H, T, d_v): baseline attention and head outputs (before W_O);
    A_pt (B, H, T, P + T) and t_pt: the same with the prefix; values (B, H, P + T, d_v): prefix values
    first, then the content values, as the framework's cache holds them.
    """

    A: np.ndarray
    t: np.ndarray
    A_pt: np.ndarray
    t_pt: np.ndarray
    values: np.ndarray
    P: int
    baseline: str  # how A and t were obtained

    def __post_init__(self) -> None:
        B, H, T, _ = self.A.shape
        if self.A_pt.shape != (B, H, T, self.P + T):
            raise ValueError(f"A_pt has shape {self.A_pt.shape}, expected {(B, H, T, self.P + T)}")
        if self.values.shape[:3] != (B, H, self.P + T):
            raise ValueError(f"values have shape {self.values.shape}, expected (B, H, P + T, d_v)")


def _worst_query(A: np.ndarray, A_pt: np.ndarray, P: int) -> dict[str, int]:
    alpha = A_pt[..., :P].sum(-1)
    err = np.abs(A_pt[..., P:] - (1 - alpha)[..., None] * A)
    b, q, k = np.unravel_index(int(np.argmax(err)), err.shape)
    return {"batch": int(b), "query": int(q), "key": int(k)}


def identity_rows(target: str, method: str, dtype: str, layer: int, arrays: LayerArrays,
                  confirm: tuple[LayerArrays, str] | None = None) -> list[Record]:
    """prefix_rescale and prefix_bias at every head of one layer, then the negative controls.

    `confirm` (the same layer from a run in another dtype, and that dtype) confirms a failure: FALSIFIED only
    if the identity also fails there; without it a failure is UNKNOWN.
    """
    a = arrays
    out: list[Record] = []
    for h in range(a.A.shape[1]):
        res, tol_r, tol_b = _head_residuals(a, h, dtype)
        alpha = (res.alpha_min, res.alpha_max)
        for claim, err, tol in (("prefix_rescale", res.rescale, tol_r), ("prefix_bias", res.bias, tol_b)):
            verdict, reason, ce = Verdict.CHECKED, None, None
            if not (err <= tol):
                ce = {"layer": layer, "head": h, "error": err, "tolerance": tol,
                      **_worst_query(a.A[:, h], a.A_pt[:, h], a.P)}
                verdict, reason = _confirm(claim, confirm, h, ce)
            out.append(row(claim, target, f"L{layer} H{h}", verdict, method, dtype, layer=layer, head=h,
                           max_error=err, tol=tol, alpha=alpha, reason=reason, counterexample=ce,
                           note=a.baseline))
    out += controls(target, method, dtype, layer, a)
    return out


def _head_residuals(a: LayerArrays, h: int, dtype: str) -> tuple[Any, float, float]:
    """Residuals of head h and the documented tolerances (verify/identities/residuals.py) in `dtype`."""
    v = a.values[:, h].astype(np.float64)
    res = residuals(a.A[:, h], a.A_pt[:, h], a.P, a.t[:, h], a.t_pt[:, h], v[:, : a.P])
    n_keys = a.A_pt.shape[-1]
    return res, tolerance(np.dtype(dtype), n_keys), tolerance(np.dtype(dtype), n_keys, float(np.abs(v).max()))


def _confirm(claim: str, confirm: tuple[LayerArrays, str] | None, h: int,
             ce: dict[str, Any]) -> tuple[Verdict, str | None]:
    if confirm is None:
        return Verdict.UNKNOWN, "exceeds the tolerance; not confirmed by a run in another dtype"
    arrays, dtype = confirm
    res, tol_r, tol_b = _head_residuals(arrays, h, dtype)
    err, tol = (res.rescale, tol_r) if claim == "prefix_rescale" else (res.bias, tol_b)
    ce["confirmation"] = {"method": f"the same check on a {dtype} run", "error": err, "tolerance": tol}
    if err > tol:
        return Verdict.FALSIFIED, None
    return Verdict.UNKNOWN, f"exceeds the tolerance here but holds in {dtype}"


def control_row(claim: str, target: str, method: str, dtype: str, layer: int, what: str,
                errs: np.ndarray, tols: np.ndarray) -> Record:
    """A negative control: FALSIFIED (expected) when flagged at every head, ERROR otherwise."""
    flagged = errs > tols
    worst = int(np.argmin(errs / tols))
    H = len(errs)
    ce = {"layer": layer, "head": worst, "error": float(errs[worst]), "tolerance": float(tols[worst]),
          "heads_flagged": int(flagged.sum()), "heads": H}
    ok = bool(flagged.all())
    return row(claim, target, f"L{layer} control: {what}", Verdict.FALSIFIED if ok else Verdict.ERROR, method,
               dtype, layer=layer, max_error=float(errs[worst]), tol=float(tols[worst]), control=True,
               note="smallest error over heads; must exceed the tolerance at every head",
               reason=None if ok else f"negative control flagged at only {int(flagged.sum())} of {H} heads",
               counterexample=ce)


def controls(target: str, method: str, dtype: str, layer: int, a: LayerArrays) -> list[Record]:
    """Negative controls that the identity checks must flag at every head.

    - prefix values rolled across heads (head h predicted with head h+1's v_p): prefix_bias must fail;
    - baseline attention rolled across heads: prefix_rescale must fail.
    With one head there is nothing to roll; the values are negated instead and the baseline's queries reversed.
    """
    H = a.A.shape[1]
    v = a.values.astype(np.float64)
    vp_wrong = np.roll(v[:, :, : a.P], 1, axis=1) if H > 1 else -v[:, :, : a.P]
    A_wrong = np.roll(a.A, 1, axis=1) if H > 1 else a.A[..., ::-1, :]
    bias_err, resc_err, bias_tol, resc_tol = [], [], [], []
    for h in range(H):
        _, tol_r, tol_b = _head_residuals(a, h, dtype)
        bias_err.append(residuals(a.A[:, h], a.A_pt[:, h], a.P, a.t[:, h], a.t_pt[:, h], vp_wrong[:, h]).bias)
        resc_err.append(residuals(A_wrong[:, h], a.A_pt[:, h], a.P).rescale)
        bias_tol.append(tol_b)
        resc_tol.append(tol_r)
    return [control_row("prefix_bias", target, method, dtype, layer, "prefix values rolled across heads",
                        np.array(bias_err), np.array(bias_tol)),
            control_row("prefix_rescale", target, method, dtype, layer, "baseline attention rolled across heads",
                        np.array(resc_err), np.array(resc_tol))]


def rescale_control(target: str, method: str, dtype: str, layer: int, a: LayerArrays, what: str) -> Record:
    """A control whose baseline is wrong by construction (e.g. unshifted positions): prefix_rescale must fail."""
    errs, tols = [], []
    for h in range(a.A.shape[1]):
        res, tol_r, _ = _head_residuals(a, h, dtype)
        errs.append(res.rescale)
        tols.append(tol_r)
    return control_row("prefix_rescale", target, method, dtype, layer, what, np.array(errs), np.array(tols))
