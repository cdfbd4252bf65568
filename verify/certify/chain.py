"""Enclosure of an exact chain of weight products (W_1 W_2 ... W_k), used by the attention stage for the
composed value-to-MLP maps; a float product plus an a-priori gamma_n error bound (verify/certify/interval.py)."""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from prefixproof.verify.certify.interval import _abs, _row_len, gamma, up


def chain_product(mats: list[Any]) -> tuple[Any, Any]:
    """Enclosure (centre, radius) of the exact product mats[0] @ mats[1] @ ... (dense or CSR factors).

    The float product has error <= gamma_n |M_1| |M_2| ... with n the total
    inner length; the radius bounds that. Entries small enough for products to
    underflow are refused (they never occur in real weights).
    """
    for M in mats:
        data = M.data if sp.issparse(M) else np.asarray(M).ravel()
        nz = np.abs(data[data != 0])
        if nz.size and nz.min() < 2.0**-300:
            raise ValueError("weights below 2^-300 in magnitude: products could underflow")
    centre, absprod, n = mats[0], _abs(mats[0]), 0
    for M in mats[1:]:
        n += max(_row_len(centre), 1)
        centre = centre @ M
        absprod = absprod @ _abs(M)
    g = gamma(max(n, 1))
    radius = absprod * (g * (1 + 4 * g) ** 2)
    if sp.issparse(radius):  # an entry whose |product| is exactly 0 has no term, hence no error
        radius = sp.csr_array(radius)
        radius.eliminate_zeros()
        radius.data = up(radius.data)
        centre = sp.csr_array(centre)
    else:
        radius = np.where(absprod == 0, 0.0, up(radius))
    return centre, radius
