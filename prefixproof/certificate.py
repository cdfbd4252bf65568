"""Writing certificate files (docs/certificate-format.md) from what the lookup engine recorded.

`prefixproof verify ... --certificate FILE` opens a recording (verify/certify/recorder.py) around the run; when
the `decode` obligation of a lookup claim ends CERTIFIED, its session becomes one certificate: the attention
enclosures, the first-layer forms of the pairs the engine kept, every accepted block with its ReLU decisions,
and every block's decode margin. Enclosures are widened outward by a relative 2^-40 (attention 2^-44) and
margins lowered by a relative 2^-12, so that a checker which redoes each step with its own (equally sound, not
bit-identical) rounding still finds its results inside the claims. Written atomically: a temporary file beside
the target, then a rename.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from prefixproof.output import write_atomic

FORMAT, VERSION, PERBOX_VERSION = "prefixproof-certificate", 1, 2
ATTEMPTS = 6  # checker runs the writer makes to settle a draft
PERBOX_TERMS = 500_000_000  # single boxes x V the writer hands to step perbox (the checker's cost, ~64 V per box)
PAD_ATT, PAD_FORM, PAD_MARGIN = 2.0**-44, 2.0**-40, 2.0**-12


class CertificateError(Exception):
    """No certificate can be written for this run (the reason says why)."""


def _dn(x, rel):
    x = np.asarray(x, dtype=np.float64)
    return np.nextafter(x - np.abs(x) * rel - 2.0**-1060, -np.inf)


def _up(x, rel):
    x = np.asarray(x, dtype=np.float64)
    return np.nextafter(x + np.abs(x) * rel + 2.0**-1060, np.inf)


def _blocks(notes: list, n_relu: int) -> tuple[dict[str, np.ndarray], list[np.ndarray], dict[str, np.ndarray]]:
    """The accepted blocks of every evaluation batch, sorted by (row, first value), with their decisions; and the
    single boxes accepted only by the per-operation re-evaluation (step "perbox", version 2)."""
    parts: dict[str, list] = {"row": [], "ya": [], "yb": [], "margin": []}
    single: dict[str, list] = {"row": [np.zeros(0, np.int64)], "y": [np.zeros(0, np.int64)], "margin": [np.zeros(0)]}
    codes: list[list] = [[] for _ in range(n_relu)]
    pending: list[dict] = []
    for kind, a in notes:
        if kind == "relu":
            pending.append(a)
        elif kind == "blocks":
            if len(pending) != n_relu:
                raise CertificateError(f"recorded {len(pending)} ReLU layers for a batch, expected {n_relu}")
            good = a["good"] & ~a["perbox"]
            for key, src in (("row", "row"), ("y", "ya"), ("margin", "margin")):
                single[key].append(a[src][a["perbox"]])
            for key in parts:
                parts[key].append(a[key][good])
            for k, d in enumerate(pending):
                codes[k].append(np.where(d["on"], 1, np.where(d["off"], 0, 2)).astype(np.uint8)[good])
            pending = []
    out = {k: np.concatenate(v) for k, v in parts.items()}
    order = np.lexsort((out["ya"], out["row"]))
    pb = {k: np.concatenate(v) for k, v in single.items()}
    pb_order = np.lexsort((pb["y"], pb["row"]))
    return ({k: v[order] for k, v in out.items()}, [np.concatenate(c)[order] for c in codes],
            {k: v[pb_order] for k, v in pb.items()})


def build(session: Any, claim: str, params: dict[str, int], dtype: str, fingerprint: str,
          demanded: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of the certificate of one recorded, certified lookup run."""
    from prefixproof.verify.certify.value_blocks import _form_range

    res = session.result
    if res is None or not res.certified:
        raise CertificateError("the structured certificate did not certify this run; nothing to write")
    if claim == "multi_token_packing":
        return _build_packing(session, claim, params, dtype, fingerprint, demanded)
    notes = dict((k, a) for k, a in session.notes if k in ("attention", "forms"))
    f, A_all = notes["forms"], notes["attention"]["A"]
    att = {"lo": np.stack([A[0] for A in A_all]), "hi": np.stack([A[1] for A in A_all]),
           "err1": notes["attention"]["err1"]}
    rows = session.claim
    # ReLU layers per batch: the "relu" notes before the first "blocks" note
    first_blocks = next(i for i, (k, _) in enumerate(session.notes) if k == "blocks")
    n_relu = sum(1 for k, _ in session.notes[:first_blocks] if k == "relu")
    tmin, tmax = float(rows.tau_lo.min()), float(rows.tau_hi.max())
    T = (np.full(len(f["rows"]), tmin), np.full(len(f["rows"]), tmax))
    keep = _form_range((f["c_lo"], f["c_hi"]), (f["b_lo"], f["b_hi"]), T)[1] > 0
    order = np.lexsort((f["units"][keep], f["rows"][keep]))
    blk, codes, pb = _blocks(session.notes, n_relu)
    u = session.ex.u  # the executed format's unit roundoff (the margin's padding below)
    # room for the float64 rounding of the stored bounds; below float64, `settle` widens the draft to the
    # checker's own enclosures, so the executed format's rounding needs no room of its own here
    pad_att, pad_form = PAD_ATT, 2.0**-36
    settled = dtype != "float64"
    pad_margin = max(PAD_MARGIN, min(2**12 * u, 2.0**-8))  # below the margin itself in every format
    arrays = {
        "attention.lo": np.clip(_dn(att["lo"], pad_att), 0.0, 1.0), "attention.hi": np.clip(_up(att["hi"], pad_att), 0, 1),
        "forms.row": f["rows"][keep][order].astype(np.int64), "forms.unit": f["units"][keep][order].astype(np.int64),
        "blocks.row": blk["row"].astype(np.int64), "blocks.ya": blk["ya"].astype(np.int64),
        "blocks.yb": blk["yb"].astype(np.int64), "blocks.margin": _dn(blk["margin"], pad_margin),
    }
    # room for a checker's own (looser, equally sound) rounding bounds: 8 x the engine's executed-rounding bound of
    # the unit, plus 2^-36 (1 + |c|) for the float64 rounding of the composed maps W1 W_O W_V
    slack = (0 if settled else 8 * att["err1"][arrays["forms.unit"]]) + pad_form * (1 + np.abs(f["c_lo"][keep][order]))
    for name, sign in (("c_lo", -1), ("b_lo", -1), ("c_hi", 1), ("b_hi", 1)):
        x = f[name][keep][order] + (sign * slack if name[0] == "c" else 0.0)
        rel = PAD_FORM if name[0] == "c" else PAD_FORM + 2 * pad_att
        arrays[f"forms.{name}"] = _dn(x, rel) if sign < 0 else _up(x, rel)
    for k, c in enumerate(codes):
        arrays[f"relu.{k}"] = np.ascontiguousarray(c)
    if len(pb["row"]):  # version 2: the boxes certified only per operation
        arrays.update({"perbox.row": pb["row"].astype(np.int64), "perbox.y": pb["y"].astype(np.int64),
                       "perbox.margin": _dn(pb["margin"], pad_margin)})
    H, R, n = att["lo"].shape
    margins = [arrays["blocks.margin"]] + ([arrays["perbox.margin"]] if len(pb["row"]) else [])
    header = {"format": FORMAT, "version": VERSION if len(pb["row"]) == 0 else PERBOX_VERSION, "claim": claim,
              "params": dict(params),
              "execution": {"format": dtype}, "weights_fingerprint": fingerprint, "demanded_margin": float(demanded),
              "margin": float(min(m.min() for m in margins if m.size)), "rows": int(R), "values": int(rows.V),
              "heads": int(H),
              "positions": int(n), "layers": n_relu, "generator": "prefixproof structured interval certificate"}
    return header, arrays


def _build_packing(session: Any, claim: str, params: dict[str, int], dtype: str, fingerprint: str,
                   demanded: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Version 2 (docs/certificate-format.md): the widened claims the packing pass recorded
    (verify/certify/packing_record.py), as they are: attention, forms, (M, e) per layer, off decisions, pairs."""
    notes = {k: a for k, a in session.notes if k in ("claims", "decode")}
    cl, rows = notes["claims"], session.claim
    arrays = {"attention.lo": np.stack([A[0] for A in cl["A"]]), "attention.hi": np.stack([A[1] for A in cl["A"]]),
              "forms.row": cl["rows"].astype(np.int64), "forms.unit": cl["units"].astype(np.int64),
              "forms.c_lo": cl["c"][0], "forms.c_hi": cl["c"][1], "forms.b_lo": cl["b"][0], "forms.b_hi": cl["b"][1]}
    layers = [a for k, a in session.notes if k == "recursion"]
    for a in layers:
        arrays[f"recursion.M.{a['layer']}"], arrays[f"recursion.e.{a['layer']}"] = a["M"], a["e"]
        if "off" in a:
            arrays[f"recursion.off.{a['layer']}"] = a["off"].astype(np.uint8)
    V, R = int(params["V"]), int(rows.rows)
    pairs = np.array([(y, j) for y in range(V) for j in range(V) if j != y], dtype=np.int64).reshape(-1, 2)
    arrays |= {"decode.row": np.repeat(np.arange(R, dtype=np.int64), len(pairs)),
               "decode.y": np.tile(pairs[:, 0], R), "decode.j": np.tile(pairs[:, 1], R),
               "decode.margin": notes["decode"]["margin"]}
    if not float(arrays["decode.margin"].min()) > demanded:
        raise CertificateError(f"the recorded margin {float(arrays['decode.margin'].min())!r} does not exceed the "
                               f"demanded margin {demanded!r}")
    H, _, n = arrays["attention.lo"].shape
    header = {"format": FORMAT, "version": 2, "claim": claim, "params": dict(params), "execution": {"format": dtype},
              "weights_fingerprint": fingerprint, "demanded_margin": float(demanded),
              "margin": float(arrays["decode.margin"].min()), "rows": R, "values": V, "heads": int(H),
              "positions": int(n), "layers": len(layers), "generator": "prefixproof packing error recursion"}
    return header, arrays


def settle(header: dict[str, Any], arrays: dict[str, np.ndarray], weights_dir: str | Path) -> None:
    """Adjust the draft to what the independent checker can confirm, until it accepts it (at most ATTEMPTS runs).

    In low precision the checker's rounding bounds are looser than the engine's; both are sound, so the hull
    of two enclosures of the same quantity, and the smaller of two lower bounds, are too. From each run the
    writer takes what the checker computed (`seen`): attention enclosures and first-layer forms widened to
    the hull with the checker's; blocks whose decisions or margin the checker cannot confirm split into
    single-value entries of step perbox (version 2); claimed margins lowered to the checker's bounds. Raises
    CertificateError when a margin then falls to the demanded margin or below, or the checker rejects the
    draft at a step it shows nothing for.
    """
    from prefixproof.checker import files, main

    floor = max(float(header["demanded_margin"]), 0.0)
    why = "nothing"
    for _ in range(ATTEMPTS):
        got: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="prefixproof-cert-") as tmp:
            draft = Path(tmp) / "draft.cert"
            write(draft, header, arrays)
            try:
                main.check(draft, Path(weights_dir), say=lambda *_: None, seen=got.__setitem__)
                return
            except files.Reject as e:
                if not got:
                    raise CertificateError(f"the independent checker rejects the draft at step {e}") from None
                why = str(e)
        for h in range(arrays["attention.lo"].shape[0]):
            if f"attention.{h}" in got:
                lo, hi = got[f"attention.{h}"]
                arrays["attention.lo"][h] = np.minimum(arrays["attention.lo"][h], lo)
                arrays["attention.hi"][h] = np.maximum(arrays["attention.hi"][h], hi)
        if "forms" in got:
            for k, (name, mine) in enumerate(zip(("c_lo", "c_hi", "b_lo", "b_hi"), got["forms"])):
                arrays[f"forms.{name}"] = (np.minimum if k % 2 == 0 else np.maximum)(arrays[f"forms.{name}"], mine)
        if "blocks.margin" in got:
            weak = ~(got["blocks.margin"] > floor)  # blocks the checker's block step cannot confirm
            size = arrays["blocks.yb"][weak] - arrays["blocks.ya"][weak] + 1
            limit = max(1000, PERBOX_TERMS // (64 * header["values"]))
            if size.sum() + len(arrays.get("perbox.row", ())) > limit:
                raise CertificateError(f"the independent checker cannot confirm {int(size.sum())} values in blocks, "
                                       f"more than the per-box step takes at this V ({limit}; {why})")
            got["blocks.margin"] = np.where(weak, np.inf, got["blocks.margin"])
        for name in ("blocks.margin", "perbox.margin"):
            if name in got:
                m = np.minimum(arrays[name], np.nextafter(got[name] * (1 - 2.0**-30), -np.inf))
                if not np.all(m > floor):
                    raise CertificateError(f"the independent checker's margin bound {float(got[name].min())!r} "
                                           f"({name}) does not exceed the demanded margin "
                                           f"{header['demanded_margin']!r}")
                arrays[name] = m
        if "blocks.margin" in got and weak.any():
            _to_perbox(header, arrays, weak)
        if "blocks.margin" in arrays:  # a lookup certificate (a packing one's margins are its decode pairs')
            header["margin"] = float(min(arrays[k].min() for k in ("blocks.margin", "perbox.margin")
                                         if k in arrays and arrays[k].size))
    raise CertificateError(f"the independent checker still rejects the draft at step {why}")


def _to_perbox(header: dict[str, Any], arrays: dict[str, np.ndarray], move: np.ndarray) -> None:
    """Move the blocks `move` to step perbox, one entry per value with the block's claimed margin, sorted by
    (row, value)."""
    old = [arrays.get(f"perbox.{k}", np.zeros(0, dt)) for k, dt in (("row", np.int64), ("y", np.int64),
                                                                   ("margin", np.float64))]
    ya, yb = arrays["blocks.ya"][move], arrays["blocks.yb"][move]
    size = yb - ya + 1
    first = np.repeat(np.cumsum(size) - size, size)
    y = np.repeat(ya, size) + np.arange(int(size.sum())) - first
    new = [np.concatenate([o, x]) for o, x in zip(old, (np.repeat(arrays["blocks.row"][move], size), y,
                                                        np.repeat(arrays["blocks.margin"][move], size)))]
    order = np.lexsort((new[1], new[0]))
    for k, a in zip(("row", "y", "margin"), new):
        arrays[f"perbox.{k}"] = a[order]
    for k in [f"blocks.{k}" for k in ("row", "ya", "yb", "margin")] + [f"relu.{k}" for k in range(header["layers"])]:
        arrays[k] = np.ascontiguousarray(arrays[k][~move])
    header["version"] = PERBOX_VERSION


def write(path: str | Path, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """safetensors with the JSON header in its metadata, written to a temporary file and renamed."""
    from safetensors.numpy import save

    data = save({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                metadata={"certificate": json.dumps(header, sort_keys=True, allow_nan=False)})
    write_atomic(path, data)  # beside the path, fsynced, renamed over it
