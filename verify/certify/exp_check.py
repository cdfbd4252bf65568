"""Start-up measurement of exp's accuracy in each format (docs/certificates.md, "Execution classes").

The certificate assumes that the executed exp of format F (numpy's exp on an
array of dtype F; bfloat16 through ml_dtypes) satisfies

    |exp_F(x) - e^x| <= EXP_BOUND_U[F] * u_F * e^x + eta_F

with EXP_BOUND_U = 8 (4 ulp of the format) for float64 and float32, whose exp
is a native approximation (numpy's float32 kernel is a SIMD polynomial,
measured at 2.8 u here and 3.5 u on another machine), and 2 (1 ulp) for
float16 and bfloat16, whose exp numpy and ml_dtypes compute in float32 and
round once to the format (error <= u + a float32 error, about 0.98 u measured),

for every x the softmax feeds it: values of F in [ln(eta_F / 2), 0] (the
scores minus their row maximum; below that e^x rounds to 0 and the bound's eta
term covers it). numpy documents no accuracy for exp, and its float32 kernels
are SIMD approximations, so the bound is *measured* here, once per format and
process, before any certificate in F is built (`prefixproof.verify.certify.interval.exec_for`):

- float16 and bfloat16: every value of the format in that range;
- float32: 2^18 values evenly spread over the bit patterns of the range, plus
  2^16 random ones (seeded);
- float64: 2^14 values, against arb balls (128 bits).

The reference for float32 and below is numpy's float64 exp, itself checked
against arb (`float_env.check_environment`, within 4 ulp of float64): its error
adds at most 2^-50 relative, which the measurement adds to every sample's
error. The worst samples are re-checked against arb. A measurement above the
bound raises `EnvironmentError_`, which every obligation reports as ERROR.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from prefixproof.verify.semantics.formats import REGISTRY, np_dtype
from prefixproof.verify.certify.float_env import check_environment
from prefixproof.verify.certify.interval import EnvironmentError_

# per format (verify/semantics/formats.py REGISTRY): the executed exp's relative error bound in units of u
# (8 u = 4 ulp, 2 u = 1 ulp), the unit roundoff and the smallest subnormal
EXP_BOUND_U = {name: f.exp_bound_u for name, f in REGISTRY.items()}
UNIT = {name: f.u for name, f in REGISTRY.items()}
ETA = {name: f.eta for name, f in REGISTRY.items()}
_REF = np.exp  # float64 reference, bound at import (a monkeypatched np.exp is measured, not trusted)
_REF_REL = 4 * 2.0**-52  # its checked accuracy
_MEASURED: dict[str, dict[str, Any]] = {}
_FAILED: dict[str, Exception] = {}


class ExpAccuracyError(EnvironmentError_):
    """exp in a format is less accurate than the certificate assumes."""


def _samples(fmt: str) -> np.ndarray:
    """Values of the format in [ln(eta/2), 0], as an array of that dtype."""
    dt = np_dtype(fmt)
    lo = math.log(ETA[fmt]) - math.log(2)
    if fmt in ("float16", "bfloat16"):
        bits = np.arange(1 << 16, dtype=np.uint16)
        vals = bits.view(dt)
        with np.errstate(invalid="ignore"):
            v64 = vals.astype(np.float64)
        keep = np.isfinite(v64) & (v64 <= 0) & (v64 >= lo)
        return vals[keep]
    if fmt == "float32":
        top = np.array([lo], dtype=np.float32).view(np.uint32)[0]  # bit patterns 0x80000000 (-0) .. top
        spread = np.linspace(0x80000000, int(top), 1 << 18).astype(np.uint32)
        rand = np.random.default_rng(0).integers(0x80000000, int(top), 1 << 16, dtype=np.uint32)
        return np.concatenate([spread, rand]).view(np.float32)
    return np.concatenate([np.linspace(lo, 0.0, 1 << 13), -np.geomspace(1e-300, -lo, 1 << 13)])


def measure(fmt: str) -> dict[str, Any]:
    """The worst error of numpy's exp in `fmt` over the sample: in units of u relative (normal results),
    and the largest ratio |error| / (bound u e^x + eta) of the assumed model (<= 1 means within bound)."""
    x = _samples(fmt)
    with np.errstate(under="ignore", over="ignore"):
        got = np.exp(x).astype(np.float64)
        x64 = x.astype(np.float64)
    u, eta = UNIT[fmt], ETA[fmt]
    if fmt == "float64":
        err, true = _arb_errors(x64, got)
    else:
        with np.errstate(under="ignore"):
            true = _REF(x64)
        err = np.abs(got - true) + _REF_REL * true
    tiny = float(np.finfo(np.float64).tiny) if fmt == "float64" else float(np.finfo(np_dtype(fmt)).tiny)
    normal = true >= tiny
    rel_u = float(np.max(err[normal] / (u * true[normal]))) if normal.any() else 0.0
    bound = EXP_BOUND_U[fmt]
    ratio = err / (bound * u * true + eta)
    worst = int(np.argmax(ratio))
    if fmt != "float64":  # confirm the worst samples against arb (independent of numpy's float64 exp)
        top = np.argsort(ratio)[-32:]
        arb_err, _ = _arb_errors(x64[top], got[top])
        ratio[top] = np.maximum(ratio[top], arb_err / (bound * u * true[top] + eta))
    return {"format": fmt, "samples": int(x.size), "max_error_u": rel_u, "bound_u": bound,
            "worst_ratio": float(ratio.max()), "worst_x": float(x64[worst])}


def _arb_errors(x: np.ndarray, got: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper bounds on |got - e^x| from arb balls (128 bits), and e^x's lower end."""
    import flint

    old = flint.ctx.prec
    flint.ctx.prec = 128
    try:
        errs, trues = np.empty(x.size), np.empty(x.size)
        for i, (xi, gi) in enumerate(zip(x.tolist(), got.tolist())):
            t = flint.arb(xi).exp()
            errs[i] = float(abs(flint.arb(gi) - t).upper()) * (1 + 2.0**-50)
            trues[i] = float(t.lower())
    finally:
        flint.ctx.prec = old
    return errs, trues


def check_exp(fmt: str) -> dict[str, Any]:
    """Measure exp in `fmt` once per process; raise ExpAccuracyError when it exceeds the certificate's bound.

    The float64 reference exp is itself checked first (float_env.check_environment), and a failed measurement is
    remembered: it is raised again, not re-measured, on every later call."""
    if fmt in _FAILED:
        raise _FAILED[fmt]
    if fmt not in _MEASURED:
        check_environment()
        _check_subnormals(fmt)
        m = measure(fmt)
        if not m["worst_ratio"] <= 1.0:
            _FAILED[fmt] = ExpAccuracyError(
                f"numpy's exp in {fmt} errs by {m['max_error_u']:.3g} u (worst at x = {m['worst_x']!r}, "
                f"{m['worst_ratio']:.3g} x the bound); the certificate assumes <= {m['bound_u']:g} u + eta. "
                f"Certificates in {fmt} are not valid on this machine")
            raise _FAILED[fmt]
        _MEASURED[fmt] = m
    return _MEASURED[fmt]


def _check_subnormals(fmt: str) -> None:
    """Gradual underflow in the format's own kernels (matmul, add, exp): the class has no flush to zero."""
    dt = np_dtype(fmt)
    tiny = np.array([[ETA[fmt]]]).astype(dt)
    one = np.ones((1, 1), dtype=dt)
    with np.errstate(under="ignore"):
        checks = {"stored": tiny[0, 0], "matmul": (tiny @ one)[0, 0], "add": (tiny + tiny)[0, 0],
                  "exp": np.exp(np.array([math.log(ETA[fmt]) + 0.5]).astype(dt))[0]}
    flushed = [k for k, v in checks.items() if not float(v) > 0]
    if flushed:
        raise ExpAccuracyError(f"{fmt} subnormals are flushed to zero in {', '.join(flushed)}: outside the "
                               "execution class the certificate models (docs/certificates.md)")


def reset() -> None:
    """Forget the measurements (tests that patch exp)."""
    _MEASURED.clear()
    _FAILED.clear()
