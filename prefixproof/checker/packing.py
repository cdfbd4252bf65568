"""Version 2, step kind "error recursion": the certificate of multi_token_packing (docs/certificate-format.md,
"Version 2: the packing certificate").

Steps 1-2 (attention, first-layer forms) are version 1's. Then, per row (u_1..u_L) and hidden layer k, the claimed
M.k bounds |ideal value| and e.k bounds |executed value - ideal value|, the ideal being the exact construction
(hardmax attention, exact packed value), whose rational weights W*, b* this module rebuilds from (V, L) alone.
Each layer is checked from the previous layer's *claimed* (M, e); the decoder pair by pair from the last e.
"""
from __future__ import annotations

import numpy as np
from flint import fmpq

from prefixproof.checker import iv
from prefixproof.checker.files import Reject, Rows, stream_block

CLAIM = "multi_token_packing"
LARGEST = {"float64": 1.7976931348623157e308, "float32": 3.4028234663852886e38, "float16": 65504.0,
           "bfloat16": 3.3895313892515355e38}
MAX_DIGITS = 4096


def layout(V: int, L: int) -> list[list[str]]:
    """The labels of hidden layers 0..2D+3 of the construction (docs/certificate-format.md, "Reference")."""
    D = V ** (L - 1)
    inv, Hs, idx = [f"inv:{j}" for j in range(V - 1)], [f"H:{j}" for j in range(V - 1)], [f"idx:{i}" for i in range(D)]
    out = [[f"select:{a}" for a in range(V)] + [f"keep{l}:{b}" for l in range(2, L + 1) for b in range(V)], ["x"] + idx]
    for k in range(D):
        out.append(inv + ["x"] + idx + (["sel"] if k else []) + (["acc"] if k > 1 else []))
        out.append(Hs + ["x"] + idx + (["acc"] if k else []))
    return out + [["sel"] + (["acc"] if D > 1 else []), ["value"]]


def reference(V: int, L: int) -> list[tuple[dict, dict]]:
    """(W*, b*) of Dense layers 1..2D+3 as {(out, in): fmpq} and {out: fmpq}, built from (V, L) alone."""
    D, lay, out = V ** (L - 1), layout(V, L), []
    for ell in range(1, len(lay)):
        s, d = {n: i for i, n in enumerate(lay[ell - 1])}, {n: i for i, n in enumerate(lay[ell])}
        W: dict = {}
        b = {}

        def w(src, dst, c):
            W[(d[dst], s[src])] = fmpq(c)

        def vx(dst, f, k):  # f (V x_k): stage 0 reads x_0; stage k > 0 reads V x_(k-1) - sum_j H_j
            w("x", dst, f if k == 0 else f * V)
            for j in range(V - 1 if k else 0):
                w(f"H:{j}", dst, -f)
        stage, part = divmod(ell - 2, 2)  # the final layers are stage D: sel (part 0) and value (part 1)
        if ell == 1:  # x = sum select; idx:i = sum_l keep<l>:(digit l of i) - (L - 2)
            for a in range(V):
                w(f"select:{a}", "x", 1)
            for i in range(D):
                for l in range(2, L + 1):
                    w(f"keep{l}:{i // V ** (L - l) % V}", f"idx:{i}", 1)
                b[d[f"idx:{i}"]] = fmpq(2 - L)
        elif part == 0:  # stage a: inv_j = ReLU(-2 g (V x_k - j) - 1/2), g = V^(D-1-stage); sel_(stage-1)
            for i in range(D if stage < D else 0):
                w(f"idx:{i}", f"idx:{i}", 1)
            for j in range(1, V if stage < D else 1):
                g = V ** (D - 1 - stage)
                vx(f"inv:{j - 1}", -2 * g * V, stage)
                b[d[f"inv:{j - 1}"]] = fmpq(4 * g * j - 1, 2)
            if stage < D:
                vx("x", 1, stage)
            if stage:
                for j in range(V - 1):
                    w(f"H:{j}", "sel", fmpq(1, V))
                w(f"idx:{stage - 1}", "sel", 1)
                b[d["sel"]] = fmpq(-1)
        elif stage < D:  # stage b: H_j = ReLU(1 - inv_j)
            for i in range(D):
                w(f"idx:{i}", f"idx:{i}", 1)
            for j in range(V - 1):
                w(f"inv:{j}", f"H:{j}", -1)
                b[d[f"H:{j}"]] = fmpq(1)
            w("x", "x", 1)
            if stage:
                w("sel", "acc", 1)
        else:  # value = sel + acc
            w("sel", "value", 1)
        if stage > 1:  # the accumulator is carried (into value at the end)
            w("acc", "value" if ell == len(lay) - 1 else "acc", 1)
        out.append((W, b))
    return out


def _q_up(q) -> float:
    """An upper bound of the rational |q| as a float (int division is correctly rounded)."""
    q = abs(q)
    f = int(q.p) / int(q.q)
    return f if fmpq(*f.as_integer_ratio()) == q else float(iv.up(f))


def _dev(A: np.ndarray, ref: dict) -> tuple[np.ndarray, np.ndarray]:
    """Upper bounds of |ref| and |A - ref| (exact in fmpq, rounded up once) for a float array A."""
    absref, dev = np.zeros(A.shape), np.abs(A)
    for k, q in ref.items():
        absref[k], dev[k] = _q_up(q), _q_up(fmpq(*float(A[k]).as_integer_ratio()) - q)
    return absref, dev


def rows(head: dict, arrays: dict, config: dict) -> Rows:
    """The claim's rows (every input u_1..u_L), after checking the params and the version-2 array names."""
    V, params = int(config["vocab"]), head["params"]
    L = params.get("L") if isinstance(params, dict) else None
    if head["version"] != 2 or params != {"V": V, "L": L} or type(L) is not int or not 2 <= L <= 64 \
            or V ** (L - 1) > MAX_DIGITS or config["n_ctx"] < L + 1 or len(stream_block(config, "pay")) != V:
        raise Reject("claim", f"{CLAIM} parameters {params} (version {head['version']}) do not match the weights "
                              f"(V={V}; needs version 2, L >= 2, V^(L-1) <= {MAX_DIGITS}, a 'pay' block of V)")
    lay = layout(V, L)
    offs = [k for k in range(3, len(lay) - 2, 2)]  # the stage-b layers
    want = {"attention.lo", "attention.hi", "decode.row", "decode.y", "decode.j", "decode.margin"} | \
        {f"forms.{k}" for k in ("row", "unit", "c_lo", "c_hi", "b_lo", "b_hi")}
    for k in range(len(lay)):
        for name in [f"recursion.M.{k}", f"recursion.e.{k}"] + ([f"recursion.off.{k}"] if k in offs else []):
            if name not in arrays:
                raise Reject(f"coverage[layer {k}]", f"the certificate has no {name}")
            want.add(name)
    if set(arrays) != want:
        raise Reject("arrays", f"array names differ: extra {sorted(set(arrays) - want)}, "
                               f"missing {sorted(want - set(arrays))}")
    a = np.arange(V ** L)
    digits = np.stack([(a // V ** (L - 1 - l)) % V for l in range(L)], axis=1)
    return Rows(stream_block(config, "pay"), np.full(len(a), L), digits[:, 0], 0 * a, L + 1, 1, tuple(range(1, L + 1)),
                digits)


def box(V: int, L: int, F, u: float) -> tuple[float, float]:
    """(tmax, enc): the largest stored packed value fl_F(fl64((V^D - 1)/V^D)), and a bound of |t - r|."""
    D = V ** (L - 1)
    tmax = float(np.float64((V ** D - 1) / V ** D).astype(F).astype(np.float64))
    return tmax, u / 2 + (0.0 if F == np.float64 else 2.0**-54)


def _mv(X, A):
    """Upper bound of X @ A.T, X and A non-negative."""
    return iv.safe(X @ A.T, max(A.shape[1], 1))


def _claim(arrays, name, shape, step, kind="f"):
    a = arrays[name]
    if a.shape[:1] != shape[:1]:
        raise Reject(step, f"{name} has {a.shape[0]} rows; the claim has {shape[0]} (every row needs its bounds)")
    if a.shape != shape or a.dtype.kind != ("f" if kind == "f" else "u") or (kind == "f" and not np.isfinite(a).all()):
        raise Reject("arrays", f"{name} has shape {a.shape} and dtype {a.dtype}; needs {shape}, finite")
    return a.astype(np.float64)


def check(head: dict, arrays: dict, rows: Rows, mlp: list, fmt: str, F, listed: list, say) -> float:
    """Layers 0..2D+3 of the error recursion, then the decoder. Returns the margin; raises Reject."""
    u, eta = iv.FORMATS[fmt][:2]
    V, L = int(head["params"]["V"]), int(head["params"]["L"])
    D, R, lay = V ** (L - 1), len(rows.own), layout(V, L)
    tmax, enc = box(V, L, F, u)
    istar = rows.fixed_tok[:, 1:] @ (V ** np.arange(L - 2, -1, -1))  # the digit index of (u_2..u_L)
    vmax = _q_up(fmpq(V - 1, V))
    if len(mlp) != len(lay) + 1 or mlp[-1][0].shape != (V, 1) or mlp[-1][1].shape != (V,) or any(
            W.shape != (len(lay[k]), len(lay[k - 1]) if k else W.shape[1]) or b.shape != (len(lay[k]),)
            for k, (W, b) in enumerate(mlp[:-1])):
        raise Reject("claim", f"the MLP's shapes differ from the {CLAIM} construction at V={V}, L={L}")

    def claims(k, ideal_M, e_own):  # claimed M >= the checker's, e >= the checker's; then the claims are used
        M, e = (_claim(arrays, f"recursion.{x}.{k}", (R, len(lay[k])), f"coverage[layer {k}]") for x in "Me")
        for name, mine, theirs in (("M", ideal_M, M), ("e", e_own, e)):
            bad = np.argwhere(~(mine <= theirs))
            if bad.size:
                r, h = bad[0]
                raise Reject(f"recursion[layer {k}, row {r}, unit {lay[k][h]}]", f"claimed {name} {theirs[r, h]!r} "
                             f"is below the checker's {mine[r, h]!r}")
        return M, e

    # Layer 0: the ideal is select:u_1 = r, keep<l>:b = [u_l = b]; listed pairs from their forms, others are 0.
    ideal = np.zeros((R, len(lay[0])))
    for l in range(2, L + 1):
        ideal[np.arange(R), (l - 1) * V + rows.fixed_tok[:, l - 1]] = 1.0
    M0 = ideal.copy()
    M0[np.arange(R), rows.own] = 1.0
    e0 = M0.copy()
    r_, h_ = listed[0], listed[1]
    c, b = (listed[2], listed[3]), (listed[4], listed[5])
    pre = iv.add(c, iv.mul(b, (np.zeros(len(r_)), np.full(len(r_), tmax))))
    other = np.maximum(iv.up(np.abs(np.maximum(pre[0], 0) - ideal[r_, h_])),
                       iv.up(np.abs(np.maximum(pre[1], 0) - ideal[r_, h_])))
    at_max = iv.add(c, iv.mul((iv.dn(b[0] - 1), iv.up(b[1] - 1)), (tmax, tmax)))
    own = iv.up(iv.up(np.maximum(iv.mag(c), iv.mag(at_max))) + enc)
    e0[r_, h_] = np.where(h_ == rows.own[r_], own, other)
    M, e = claims(0, M0, e0)

    off_stage = float(iv.up(-float(iv.dn(1.0 / V))))  # >= -1/V: the ideal sel pre-activation off its stage
    for k, (ref, (W, bias)) in enumerate(zip(reference(V, L), mlp[1:-1]), start=1):
        W = np.asarray(W.toarray() if hasattr(W, "toarray") else W, dtype=np.float64)
        (absWx, dW), db = _dev(W, ref[0]), _dev(bias, ref[1])[1]
        n = np.count_nonzero(W, axis=1) + 1
        g = iv.gamma(n, u)  # gamma_(nnz + 1): the products and the bias

        def pre_err(M, e, drop=None):
            Me = iv.up(M + e)
            if drop is not None:
                Me[:, drop], e = 0.0, np.where(np.arange(e.shape[1]) == drop, 0.0, e)
            mag = iv.up(_mv(Me, np.abs(W)) + np.abs(bias))
            if not np.all(mag < LARGEST[fmt] / 4):
                raise Reject(f"recursion[layer {k}]", "a pre-activation may overflow the format")
            rnd = iv.up(iv.up(g * mag) + n * eta)
            return iv.up(iv.up(iv.up(_mv(e, absWx) + _mv(Me, dW)) + db) + rnd)
        ep = pre_err(M, e)
        labels, Mk, ek = lay[k], np.zeros_like(ep), ep.copy()
        stage, part = divmod(k - 2, 2) if 2 <= k < 2 * D + 2 else (None, None)  # digit stage, a (0) or b (1)
        sel_stage = stage - 1 if part == 0 else (D - 1 if k == 2 * D + 2 else None)
        for h, lab in enumerate(labels):
            kind = lab.split(":")[0]
            if kind in ("x", "acc", "value"):
                Mk[:, h] = 1.0 if kind == "x" else vmax
            elif kind == "idx":
                Mk[:, h] = istar == int(lab[4:])
            elif kind == "sel":
                on = istar == sel_stage
                Mk[:, h] = np.where(on, vmax, 0.0)
                ek[:, h] = np.where(on, ep[:, h], np.maximum(0.0, np.minimum(ep[:, h], iv.up(off_stage + ep[:, h]))))
            elif kind == "inv":
                Mk[:, h] = max(0.0, _q_up(fmpq(4 * V ** (D - 1 - stage) * (int(lab[4:]) + 1) - 1, 2)))
        if part == 1:  # stage b: H_j on (inv_j exactly 0) or off (H_j exactly 0 when shown)
            off = _claim(arrays, f"recursion.off.{k}", (R, V - 1), f"coverage[layer {k}]", "u")
            if not np.isin(off, (0, 1)).all():
                raise Reject(f"saturation[layer {k}]", "decisions must be 0 or 1")
            for j in range(V - 1):
                h, p = labels.index(f"H:{j}"), lay[k - 1].index(f"inv:{j}")
                e_on = pre_err(M, e, drop=p)[:, h]
                lo = iv.dn(iv.dn(iv.dn(1.5 - e[:, p])) * iv.dn(1 - g[h]))
                others = np.delete(np.arange(W.shape[1]), p)
                coef = iv.up(np.maximum(W[h, others], 0.0) + iv.up(g[h] * np.abs(W[h, others])))
                rest = _mv(iv.up(M[:, others] + e[:, others]), coef[None, :])[:, 0]
                hi = iv.up(iv.up(iv.up(iv.up(W[h, p] * np.maximum(lo, 0.0)) + rest)
                                 + iv.up(bias[h] + iv.up(g[h] * abs(bias[h])))) + n[h] * eta)
                bad = np.flatnonzero((off[:, j] == 1) & ~((W[h, p] < 0) & (hi < 0)))
                if bad.size:
                    raise Reject(f"saturation[layer {k}, row {bad[0]}, H:{j}]", f"the off case is not shown exactly 0 "
                                 f"(weight {W[h, p]!r}, pre-activation upper bound {hi[bad[0]]!r})")
                Mk[:, h] = 1.0
                ek[:, h] = np.maximum(e_on, np.where(off[:, j] == 1, 0.0, ep[:, h]))
        M, e = claims(k, Mk, ek)
        if part == 0:  # stage a: every inv_j must saturate (claimed error < 1/2)
            bad = np.argwhere(~(e[:, :V - 1] < 0.5))
            if bad.size:
                raise Reject(f"saturation[layer {k}, row {bad[0][0]}, inv:{bad[0][1]}]",
                             f"threshold error {e[bad[0][0], bad[0][1]]!r} is not below 1/2")
    say(f"  recursion: {len(lay)} layers x {R} rows: every M, e and saturation decision holds (trusted: the lemmas "
        "of the exact construction, docs/certificate-format.md 'Version 2')")
    return _decode(head, arrays, e[:, 0], mlp[-1], V, u, eta, say)


def _decode(head, arrays, e, dec, V, u, eta, say) -> float:
    """decode[row r, y, j]: the executed logit of y minus that of j, for the value in [y/V - e_r, y/V + e_r]."""
    R, Q = len(e), len(e) * V * (V - 1)
    r, y, j = np.repeat(np.arange(R), V * (V - 1)), np.tile(np.repeat(np.arange(V), V - 1), R), \
        np.tile([k for a in range(V) for k in range(V) if k != a], R)
    got = [arrays[f"decode.{k}"] for k in ("row", "y", "j")]
    if any(a.ndim != 1 or a.dtype.kind not in "iu" for a in got):
        raise Reject("arrays", "decode.row, decode.y and decode.j must be one-dimensional integer arrays")
    n = min(Q, *(len(a) for a in got))
    miss = np.flatnonzero((got[0][:n] != r[:n]) | (got[1][:n] != y[:n]) | (got[2][:n] != j[:n]))
    if miss.size or any(len(a) != Q for a in got + [arrays["decode.margin"]]):
        i = int(miss[0]) if miss.size else n
        where = f"row {r[i]}, y {y[i]}, j {j[i]}" if i < Q else "the end"
        raise Reject("coverage[decode]", f"the pairs must be every (row, y, j != y) in order; differs at {where}")
    claimed = _claim(arrays, "decode.margin", (Q,), "coverage[decode]")
    w, c = np.asarray(dec[0].toarray() if hasattr(dec[0], "toarray") else dec[0])[:, 0], dec[1]
    g = iv.gamma(2, u)
    yv = (iv.dn(y / V), iv.up(y / V))
    v = (iv.dn(yv[0] - e[r]), iv.up(yv[1] + e[r]))
    vm = iv.mag(v)
    err = [iv.up(iv.up(g * iv.up(np.abs(w[k]) * vm + np.abs(c[k]))) + 2 * eta) for k in (y, j)]
    diff = iv.add(iv.mul((iv.dn(w[y] - w[j]), iv.up(w[y] - w[j])), v), (iv.dn(c[y] - c[j]), iv.up(c[y] - c[j])))
    mine = iv.dn(diff[0] - iv.up(err[0] + err[1]))
    demanded = float(head["demanded_margin"])  # a number >= 0 (main.check)
    bad = np.flatnonzero(~((claimed <= mine) & (claimed > demanded) & (claimed > 0)))
    if bad.size:
        i = bad[0]
        raise Reject(f"decode[row {r[i]}, y {y[i]}, j {j[i]}]", f"claimed margin {claimed[i]!r}; the checker's "
                     f"bound is {mine[i]!r}, demanded {demanded!r}")
    margin = float(claimed.min())
    if head["margin"] != margin:
        raise Reject("margin", f"the header's margin {head['margin']!r} is not the smallest pair margin {margin!r}")
    say(f"  decode: {Q} (row, y, j) inequalities hold")
    return margin
