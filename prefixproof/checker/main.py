"""`prefixproof check FILE --weights DIR`: the steps in order; the first that fails is named (exit 1)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import ml_dtypes
import numpy as np
import scipy.sparse as sp

from prefixproof.checker import TRUSTED, iv, packing, perbox
from prefixproof.checker.attention import Inputs, dense, scores, softmax
from prefixproof.checker.blocks import blocks, coverage
from prefixproof.checker.files import Reject, Unusable, claim_rows, fingerprint, read_certificate, read_weights
from prefixproof.checker.forms import composed, exec_error, forms


def _arr(arrays, name, shape, kind):
    a = arrays[name]
    if a.shape != shape or a.dtype.kind != kind or (kind == "f" and not np.isfinite(a).all()):
        raise Reject("arrays", f"{name} has shape {a.shape} and dtype {a.dtype}; the header needs {shape} "
                               f"({'finite float64' if kind == 'f' else 'integer'})")
    return a.astype(np.float64) if kind == "f" else a.astype(np.int64)


def check(cert: Path, weights: Path, say=print, seen=lambda *_: None) -> float:
    """Re-verify the certificate against the weights; return its margin. Raises Reject or Unusable."""
    iv.check_environment()
    head, arrays = read_certificate(cert)
    w = read_weights(weights)
    got = fingerprint(w)
    if head["weights_fingerprint"] != got:
        raise Reject("fingerprint", f"the certificate is for weights {str(head['weights_fingerprint'])[:16]}…, "
                                    f"these files are {got[:16]}…")
    fmt = head["execution"].get("format") if isinstance(head["execution"], dict) else None
    if fmt not in iv.FORMATS or set(head["execution"]) != {"format"}:
        raise Reject("format", f"execution {head['execution']!r} is not one of the formats {list(iv.FORMATS)}")
    u, eta, exp_u = iv.FORMATS[fmt]
    cfg, layers = w.config, w.config["layers"]
    pk = head["claim"] == packing.CLAIM  # version 2, the error recursion (packing.py)
    params = head["params"] if isinstance(head["params"], dict) else {}
    rows = packing.rows(head, arrays, cfg) if pk else claim_rows(head["claim"], params, cfg)
    if len(layers) != 1 or not layers[0]["causal"] or layers[0]["attn_residual"] or layers[0]["mlp_residual"] \
            or layers[0]["layernorm_eps"] is not None or layers[0]["mlp_layers"] < 2:
        raise Reject("claim", "the weights are outside the certified class (one causal layer, no residual, no "
                              "LayerNorm, at least two Dense layers)")
    F = ml_dtypes.bfloat16 if fmt == "bfloat16" else np.dtype(fmt)

    def t(name):  # the weight rounded to the execution format, as float64
        x = w.tensors[name]
        y = (x.data if hasattr(x, "tocsr") else x).astype(F).astype(np.float64)
        if not np.isfinite(y).all():  # NaN would make every comparison below pass
            raise Reject("weights", f"{name} has an entry that is NaN or infinite in {fmt}")
        return sp.csr_array((y, x.indices, x.indptr), shape=x.shape) if hasattr(x, "tocsr") else y
    H, R, V, n = len(layers[0]["heads"]), len(rows.own), int(cfg["vocab"]), rows.n_positions
    mlp = [(t(f"layers.0.mlp.{k}.W"), dense(t(f"layers.0.mlp.{k}.b")).ravel()) for k in range(layers[0]["mlp_layers"])]
    tail = mlp[1:] + ([(t("unembed"), np.zeros(V))] if cfg["unembed"] else [])
    middle = [(dense(W), b) for W, b in tail[:-1]]
    want = {"rows": R, "values": V, "heads": H, "positions": n, "layers": 1 + len(middle)}
    if any(head[k] != v for k, v in want.items()):
        raise Reject("claim", f"the header's sizes {({k: head[k] for k in want})} differ from the claim's {want}")
    if not (isinstance(head["demanded_margin"], (int, float)) and head["demanded_margin"] >= 0):
        raise Reject("claim", "demanded_margin must be a number >= 0")
    if n > cfg["n_ctx"]:
        raise Reject("claim", f"the claim needs {n} positions, the weights have {cfg['n_ctx']}")
    tau = (np.arange(V) / V).astype(F).astype(np.float64)
    tlo, thi = (0.0, packing.box(V, len(rows.fixed_pos), F, u)[0]) if pk else (float(tau[0]), float(tau[-1]))
    say(f"claim {head['claim']} {head['params']}, execution {fmt}, fingerprint {got[:16]}… matches")

    # Step 1: attention enclosures (each must contain the checker's own), then used as given.
    inp = Inputs(t("embed"), dense(t("pos"))[:n], rows, tlo, thi, u, eta)
    A = (_arr(arrays, "attention.lo", (H, R, n), "f"), _arr(arrays, "attention.hi", (H, R, n), "f"))
    visible = np.arange(n)[None, :] <= rows.query_pos[:, None]
    first = None  # every head is enclosed (and shown to the writer) before the first failing one is named
    for h, hd in enumerate(layers[0]["heads"]):
        WQ, WK = t(f"layers.0.heads.{h}.W_Q"), t(f"layers.0.heads.{h}.W_K")
        mine = softmax(scores((WQ, WK, float(hd["scale"])), inp, rows, u, eta), visible, u, eta, exp_u)
        seen(f"attention.{h}", mine)  # the writer may widen its claims to the checker's enclosures
        bad = ~((mine[0] >= A[0][h]) & (mine[1] <= A[1][h]))  # NaN (an unbounded softmax) fails
        if bad.any() and first is None:
            r, p = np.argwhere(bad)[0]
            first = Reject(f"attention[head {h}, row {r}, position {p}]", f"claimed [{A[0][h, r, p]!r}, "
                           f"{A[1][h, r, p]!r}] does not contain the checker's [{mine[0][r, p]!r}, {mine[1][r, p]!r}]")
    if first is not None:
        raise first
    say(f"  attention: {H * R * n} enclosures contain the checker's")

    # Step 2: first-layer forms from the claimed attention; every dropped pair dead.
    W1, b1 = mlp[0]
    P = len(arrays["forms.row"])
    listed = [_arr(arrays, f"forms.{k}", (P,), "i") for k in ("row", "unit")] + \
             [_arr(arrays, f"forms.{k}", (P,), "f") for k in ("c_lo", "c_hi", "b_lo", "b_hi")]
    hidden = W1.shape[0]
    key = listed[0] * hidden + listed[1]
    if P and (listed[0].min() < 0 or listed[0].max() >= R or listed[1].min() < 0 or listed[1].max() >= hidden
              or np.any(np.diff(key) <= 0)):
        raise Reject("forms", "pairs must be (row, unit) in range, sorted by row then unit, without repeats")
    heads_VO = [(t(f"layers.0.heads.{h}.W_V"), t(f"layers.0.heads.{h}.W_O")) for h in range(H)]
    xmag = np.max([iv.mag(x) for x in inp.xe.values()] + [iv.up(inp.emag + np.abs(inp.P[p]))
                                                          for p in rows.fixed_pos], axis=0)
    asum = [float(iv.safe(A[1][h].sum(axis=1).max(), n)) for h in range(H)]
    err1 = exec_error(heads_VO, W1, b1, iv.up(xmag * (1 + u) + eta), asum, n, u, eta)
    G = [composed(W1, WO, WV) for WV, WO in heads_VO]
    forms(inp, rows, A, G, b1, err1, tlo, thi, listed, seen)
    say(f"  forms: {P} (row, unit) forms contain the checker's; every other pair is dead")
    if pk:
        return packing.check(head, arrays, rows, mlp, fmt, F, listed, say)

    # Steps 3-4: blocks, ReLU decisions, decode inequalities; coverage.
    K = len(arrays["blocks.row"])
    for k in ("row", "ya", "yb", "margin"):
        arrays[f"blocks.{k}"] = _arr(arrays, f"blocks.{k}", (K,), "f" if k == "margin" else "i")
    pb = "perbox.row" in arrays  # version 2: single boxes certified per operation (perbox.py)
    for k, kind in (("row", "i"), ("y", "i"), ("margin", "f")) if pb else ():
        arrays[f"perbox.{k}"] = _arr(arrays, f"perbox.{k}", (len(arrays["perbox.row"]),), kind)
    coverage(*(perbox.merged(arrays, V) if pb else (arrays["blocks.row"], arrays["blocks.ya"], arrays["blocks.yb"])),
             R, V)
    counts = np.bincount(listed[0], minlength=R)
    A_max = max(int(counts.max(initial=0)), 1)
    slot = np.arange(P) - np.repeat(np.cumsum(counts) - counts, counts)
    U, C, B = np.full((R, A_max), -1), np.zeros((2, R, A_max)), np.zeros((2, R, A_max))
    U[listed[0], slot] = listed[1]
    C[:, listed[0], slot], B[:, listed[0], slot] = listed[2:4], listed[4:6]
    margin = blocks((U, C, B), middle, tail[-1], tau, arrays, float(head["demanded_margin"]), u, eta, seen)
    if pb:
        margin = min(margin, perbox.check(arrays, t, rows, cfg, fmt, tau, float(head["demanded_margin"]), say, seen))
    if head["margin"] != margin:
        raise Reject("margin", f"the header's margin {head['margin']!r} is not the smallest block margin {margin!r}")
    say(f"  blocks: {K} blocks{' and the per-box entries' if pb else ''} cover {R} rows x {V} values; every ReLU "
        "decision and decode inequality holds")
    return margin


def run(cert: Path, weights: Path) -> int:
    print("trusted: " + "; ".join(TRUSTED))
    t0 = time.perf_counter()
    try:
        margin = check(cert, weights)
    except Unusable as e:
        print(f"prefixproof: error: {e}", file=sys.stderr)
        return 2
    except Reject as e:
        print(f"REJECTED at step {e}")
        return 1
    except Exception as e:  # noqa: BLE001 - a certificate the checker cannot follow is rejected, never accepted
        print(f"REJECTED: the checker could not follow the certificate ({type(e).__name__}: {str(e)[:200]})")
        return 1
    print(f"ACCEPTED: every input decodes with margin >= {margin:.6g} ({time.perf_counter() - t0:.2f} s)")
    return 0
