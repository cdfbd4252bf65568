"""Reading: the certificate file, the weights directory, the fingerprint, and the claim's rows.

Only JSON and safetensors are read, never pickle. Everything here follows docs/format.md and
docs/certificate-format.md, not the generator's code.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from safetensors import safe_open

FORMAT, VERSION = "prefixproof-certificate", 1
HEADER = {"format", "version", "claim", "params", "execution", "weights_fingerprint", "demanded_margin", "margin",
          "rows", "values", "heads", "positions", "layers", "generator"}
ARRAYS = {"attention.lo", "attention.hi", "forms.row", "forms.unit", "forms.c_lo", "forms.c_hi", "forms.b_lo",
          "forms.b_hi", "blocks.row", "blocks.ya", "blocks.yb", "blocks.margin"}
TABLE_CLAIMS = ("long_response", "multi_token", "conditional")
VERSIONS = {1: set(), 2: {"perbox.row", "perbox.y", "perbox.margin"}}  # the arrays each version adds to version 1


class Reject(Exception):
    """The certificate is rejected at `step` (exit 1)."""

    def __init__(self, step: str, why: str) -> None:
        why = re.sub(r"np\.(?:float|int)\d+\(([^()]*)\)", r"\1", why)  # numpy scalars' repr, as plain numbers
        super().__init__(f"{step}: {why}")
        self.step = step


class Unusable(Exception):
    """Bad usage or an unreadable weights directory (exit 2)."""


def read_certificate(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    if not path.is_file():
        raise Unusable(f"certificate {path} does not exist")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
        head = json.loads(meta["certificate"])
    except Exception as e:  # any parse failure: the file is not a certificate
        raise Reject("file", f"not a readable certificate ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise Reject("header", f"format is not {FORMAT!r}")
    if type(head.get("version")) is not int or head["version"] not in VERSIONS:
        raise Reject("header", f"version {head.get('version')!r}; this checker reads versions {sorted(VERSIONS)}")
    packed = head.get("claim") == "multi_token_packing"  # version 2 only: the error recursion (checker/packing.py)
    if packed and head["version"] != 2:
        raise Reject("header", f"version {head['version']}; a multi_token_packing certificate is version 2")
    if set(head) != HEADER:
        extra, missing = sorted(set(head) - HEADER), sorted(HEADER - set(head))
        raise Reject("header", f"fields differ from version {VERSION}: extra {extra}, missing {missing}")
    layers = head["layers"] if isinstance(head["layers"], int) else -1
    want = ARRAYS | VERSIONS[head["version"]] | {f"relu.{k}" for k in range(max(layers, 0))}
    if set(arrays) != want and not packed:  # packing's arrays: checker/packing.py rows()
        raise Reject("arrays", f"array names differ: extra {sorted(set(arrays) - want)}, "
                               f"missing {sorted(want - set(arrays))}")
    return head, arrays


@dataclass(frozen=True)
class Weights:
    config: dict
    tensors: dict  # name -> float64 ndarray or CSR matrix


def read_weights(directory: Path) -> Weights:
    if not directory.is_dir():
        raise Unusable(f"weights directory {directory} does not exist")
    try:
        config = json.loads((directory / "config.json").read_text())
        with safe_open(str(directory / "model.safetensors"), framework="np") as f:
            raw = {k: f.get_tensor(k) for k in f.keys()}
        tensors = {name: sp.csr_array((raw[f"{name}.data"].astype(np.float64), raw[f"{name}.indices"],
                                       raw[f"{name}.indptr"]), shape=tuple(e["shape"])) if e["storage"] == "csr"
                   else raw[name].astype(np.float64).reshape(e["shape"]) for name, e in config["tensors"].items()}
    except Exception as e:
        raise Unusable(f"weights directory {directory} is unreadable ({type(e).__name__}: {str(e)[:160]})") from None
    return Weights(config, tensors)


def fingerprint(w: Weights) -> str:
    """The weights' fingerprint, computed from the files alone (docs/format.md, "Fingerprint").

    The one place that knows the recipe: sha256 over the architecture numbers (JSON, sorted keys) and every
    tensor by name, shape and canonical bytes (CSR: duplicates summed, zeros dropped, indices sorted).
    """
    c = w.config
    arch = {"vocab": c["vocab"], "n_ctx": c["n_ctx"], "unembed": bool(c["unembed"]), "layers": [
        {k: layer[k] for k in ("causal", "attn_residual", "mlp_residual", "layernorm_eps", "mlp_layers")}
        | {"heads": [{"name": h["name"], "scale": h["scale"]} for h in layer["heads"]]} for layer in c["layers"]]}
    h = hashlib.sha256(json.dumps(arch, sort_keys=True).encode())
    names = ["embed", "pos"] + [f"layers.{l}.{part}" for l, layer in enumerate(c["layers"]) for part in
                                 [f"heads.{i}.{p}" for i in range(len(layer["heads"])) for p in ("W_Q", "W_K", "W_V", "W_O")]
                                 + [f"mlp.{k}.{p}" for k in range(layer["mlp_layers"]) for p in ("W", "b")]
                                 + (["ln.gamma", "ln.beta"] if layer["layernorm_eps"] is not None else [])]
    for name in names + (["unembed"] if c["unembed"] else []):
        x = w.tensors[name]
        h.update(name.encode() + str(tuple(x.shape)).encode())
        if sp.issparse(x):
            m = sp.csr_array(x, dtype=np.float64)
            m.sum_duplicates()
            m.eliminate_zeros()
            m.sort_indices()
            parts = [("indptr", m.indptr.astype("<i8")), ("indices", m.indices.astype("<i8")), ("data", m.data.astype("<f8"))]
        else:
            parts = [("dense", np.ascontiguousarray(x, dtype="<f8"))]
        for part, arr in parts:
            h.update(part.encode() + arr.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Rows:
    """The claim's decisions (docs/certificates.md): row r queries position query_pos[r] and must decode the
    value of payload coordinate own[r] of the virtual token at own_pos[r]."""

    payload: np.ndarray
    query_pos: np.ndarray
    own: np.ndarray
    own_pos: np.ndarray
    n_positions: int
    virtual: int
    fixed_pos: tuple
    fixed_tok: np.ndarray  # (R, len(fixed_pos))

    @property
    def free_pos(self) -> list[int]:
        return [p for p in range(self.virtual, self.n_positions) if p not in self.fixed_pos]


def stream_block(config: dict, block: str) -> np.ndarray:
    out, i = [], 0
    for name, size in config["spaces"]["stream"]["blocks"]:
        n = 1 if size is None else int(size)
        if name == block:
            out = list(range(i, i + n))
        i += n
    if not out:
        raise Reject("claim", f"the weights' stream has no block {block!r}")
    return np.array(out)


def claim_rows(claim: str, params: dict, config: dict) -> Rows:
    """Derive the rows of `claim` from its parameters and the weights' labels; any mismatch rejects."""
    V, n_ctx = int(config["vocab"]), int(config["n_ctx"])
    if params.get("V") != V:
        raise Reject("claim", f"parameter V={params.get('V')} but the weights have {V} tokens")
    none = np.zeros((0,), dtype=np.int64)
    if claim == "theorem1":
        pay = stream_block(config, "target")
        N = len(pay)
        if params != {"V": V, "N": N} or N > n_ctx:
            raise Reject("claim", f"theorem1 parameters {params} do not match the weights (V={V}, N={N})")
        i = np.arange(N)
        return Rows(pay, i, i, 0 * i, N, 1, (), none.reshape(N, 0))
    if claim == "theorem2":
        pay = stream_block(config, "map")
        if params != {"V": V} or len(pay) != V or n_ctx < 2:
            raise Reject("claim", f"theorem2 parameters {params} do not match the weights")
        u = np.arange(V)
        return Rows(pay, np.ones(V, dtype=np.int64), u, 0 * u, 2, 1, (1,), u[:, None])
    if claim in TABLE_CLAIMS:
        pay = stream_block(config, "table")
        L = max(1, round(np.log(len(pay)) / np.log(V)))
        R = (n_ctx - L + 1) // 2
        if V ** L != len(pay) or any(params.get(k, v) != v for k, v in (("L", L), ("R", R))) \
                or set(params) - {"V", "L", "R"}:
            raise Reject("claim", f"{claim} parameters {params} do not match the weights (V={V}, L={L}, R={R})")
        K = V ** L
        a, r = np.tile(np.arange(K), R), np.repeat(np.arange(R), K)
        digits = np.stack([(a // V ** (L - 1 - l)) % V for l in range(L)], axis=1)
        return Rows(pay, R + L - 1 + r, a, r, 2 * R + L - 1, R, tuple(range(R, R + L)), digits)
    raise Reject("claim", f"claim {claim!r} has no certificate format in version {VERSION}")
