"""Start-up checks of the float environment the interval certificate assumes (verify/certify/interval.py).

Once per process: subnormal float64 numbers exist (no flush-to-zero), also through the BLAS matrix product, and
numpy's exp is within `EXP_ULPS` ulp of arb's on a spread of arguments (a spot check, not a proof; exp_check.py
measures the formats' exp per run). A failure raises `EnvironmentError_`, which every obligation reports as ERROR.
"""
from __future__ import annotations

import numpy as np

from prefixproof.verify.certify.interval import ETA, EXP_ULPS, EnvironmentError_

_CHECKED = False


def check_environment() -> None:
    """Verify the float environment assumptions once per process; raise if they fail."""
    global _CHECKED
    if _CHECKED:
        return
    tiny = np.nextafter(0.0, 1.0)
    if not tiny > 0 or not (np.finfo(np.float64).tiny / 2) > 0:
        raise EnvironmentError_("subnormal float64 numbers are flushed to zero; interval bounds would be unsound")
    prod = np.array([[1e-310, 0.0], [0.0, 1.0]]) @ np.array([[1.0, 0.0], [0.0, 1.0]])
    if not prod[0, 0] > 0:
        raise EnvironmentError_("the BLAS matrix product flushes subnormals to zero")
    _check_exp()
    _CHECKED = True


def _check_exp() -> None:
    """Spot-check np.exp against arb balls on a spread of arguments (a sanity check, not a proof)."""
    import flint

    xs = np.concatenate([np.linspace(-745.0, 0.0, 4001), np.linspace(-1.0, 1.0, 2001), np.linspace(0.0, 709.0, 2001)])
    ys = np.exp(xs)
    old = flint.ctx.prec
    flint.ctx.prec = 120
    try:
        for x, y in zip(xs[::7], ys[::7]):
            true = flint.arb(float(x)).exp()
            err = abs(flint.arb(float(y)) - true)
            ulp = float(np.spacing(y)) if y > 0 else ETA
            if not err <= flint.arb(EXP_ULPS * ulp):
                raise EnvironmentError_(f"np.exp({x!r}) is off by more than {EXP_ULPS} ulp on this machine")
    finally:
        flint.ctx.prec = old
