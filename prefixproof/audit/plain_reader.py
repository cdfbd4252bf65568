"""An independent reader of weights directories: the self-test's truth oracle.

Written from docs/format.md and docs/semantics.md alone, in plain numpy. It
imports nothing of prefixproof (not `prefixproof.constructions.io`, not `prefixproof.verify.semantics.forward`,
not `prefixproof.verify.semantics.generate`, not the certificates), so a bug in the shared forward
pass or in the loader cannot hide itself from the self-test
(`prefixproof/audit/selftest.py`). `tests/test_selftest.py` checks that it agrees with
`verify/semantics/generate.py` on unedited directories.

Arithmetic: every array (weights, virtual tokens, scales) is cast once to the
requested numpy dtype and every operation (matmul, add, exp, division) runs
in that dtype with numpy's own kernels: real float32 execution for float32.

Decoding is true greedy generation: at each step the whole sequence so far is
run again (no key/value cache, no teacher forcing) and the argmax of the last
position's logits is appended. A step counts as correct only when the emitted
token is the expected one with a strictly positive margin (top logit minus
runner-up); ties, NaN and overflow count as failures.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file


@dataclass
class PlainHead:
    W_Q: np.ndarray
    W_K: np.ndarray
    W_V: np.ndarray
    W_O: np.ndarray
    scale: float


@dataclass
class PlainLayer:
    heads: list[PlainHead]
    causal: bool
    attn_residual: bool
    mlp_residual: bool
    ln: tuple[np.ndarray, np.ndarray, float] | None
    mlp: list[tuple[np.ndarray, np.ndarray]]


@dataclass
class PlainModel:
    config: dict[str, Any]
    vocab: int
    n_ctx: int
    embed: np.ndarray
    pos: np.ndarray
    layers: list[PlainLayer]
    unembed: np.ndarray | None
    labels: dict[str, int]  # stream label -> column
    prompt: np.ndarray | None  # stored virtual tokens (k, d), float64

    def astype(self, dtype: Any) -> "PlainModel":
        """The same model with every array (and every scale) cast once to `dtype`."""
        def c(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.asarray(a, dtype=dtype)

        layers = [PlainLayer([PlainHead(c(h.W_Q), c(h.W_K), c(h.W_V), c(h.W_O), dtype(h.scale)) for h in L.heads],
                             L.causal, L.attn_residual, L.mlp_residual,
                             None if L.ln is None else (c(L.ln[0]), c(L.ln[1]), dtype(L.ln[2])),
                             [(c(W), c(b)) for W, b in L.mlp]) for L in self.layers]
        return PlainModel(self.config, self.vocab, self.n_ctx, c(self.embed), c(self.pos), layers, c(self.unembed),
                          self.labels, self.prompt)


def _dense(tensors: dict[str, np.ndarray], table: dict[str, Any], name: str) -> np.ndarray:
    entry = table[name]
    shape = tuple(entry["shape"])
    if entry.get("storage") == "csr":
        data, idx, ptr = (tensors[f"{name}.{p}"] for p in ("data", "indices", "indptr"))
        out = np.zeros(shape)
        for r in range(shape[0]):
            for k in range(int(ptr[r]), int(ptr[r + 1])):
                out[r, int(idx[k])] += float(data[k])
        return out
    arr = np.array(tensors[name], dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"tensor {name} has shape {arr.shape}, config says {shape}")
    return arr


def _labels(spec: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for block, size in spec["blocks"]:
        for label in ([block] if size is None else [f"{block}:{k}" for k in range(size)]):
            out[label] = len(out)
    return out


def read_dir(directory: str | Path) -> PlainModel:
    """config.json + model.safetensors (+ prompt.safetensors) as plain float64 numpy arrays."""
    d = Path(directory)
    config = json.loads((d / "config.json").read_text())
    prompt = None
    if (d / "prompt.safetensors").is_file():
        prompt = np.array(load_file(str(d / "prompt.safetensors"))["virtual_tokens"], dtype=np.float64)
    return from_parts(config, load_file(str(d / "model.safetensors")), prompt)


def from_parts(config: dict[str, Any], tensors: dict[str, np.ndarray], prompt: np.ndarray | None) -> PlainModel:
    """The model from a parsed config.json and the raw safetensors arrays (names as in docs/format.md)."""
    table = config["tensors"]
    layers = []
    for l, lc in enumerate(config["layers"]):
        pre = f"layers.{l}."
        heads = [PlainHead(*(_dense(tensors, table, f"{pre}heads.{h}.{p}") for p in ("W_Q", "W_K", "W_V", "W_O")),
                           float(hc["scale"])) for h, hc in enumerate(lc["heads"])]
        ln = None
        if lc.get("layernorm_eps") is not None:
            ln = (_dense(tensors, table, pre + "ln.gamma"), _dense(tensors, table, pre + "ln.beta"),
                  float(lc["layernorm_eps"]))
        mlp = [(_dense(tensors, table, f"{pre}mlp.{k}.W"), _dense(tensors, table, f"{pre}mlp.{k}.b"))
               for k in range(lc["mlp_layers"])]
        layers.append(PlainLayer(heads, bool(lc["causal"]), bool(lc["attn_residual"]), bool(lc["mlp_residual"]),
                                 ln, mlp))
    return PlainModel(config, int(config["vocab"]), int(config["n_ctx"]), _dense(tensors, table, "embed"),
                      _dense(tensors, table, "pos"), layers,
                      _dense(tensors, table, "unembed") if config.get("unembed") else None,
                      _labels(config["spaces"]["stream"]), prompt)


def _layer(L: PlainLayer, x: np.ndarray) -> np.ndarray:
    """One layer on rows x (B, n, d_in), as docs/semantics.md "One layer" steps 1-8."""
    dt = x.dtype.type
    h = x
    if L.ln is not None:
        gamma, beta, eps = L.ln
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        h = gamma * (x - mu) / np.sqrt(var + eps) + beta
    n = x.shape[1]
    visible = np.tril(np.ones((n, n), dtype=bool)) if L.causal else np.ones((n, n), dtype=bool)
    a = None
    for hd in L.heads:
        q, k, v = h @ hd.W_Q.T, h @ hd.W_K.T, h @ hd.W_V.T
        s = (q @ np.swapaxes(k, 1, 2)) * hd.scale
        s = np.where(visible, s, dt(-np.inf))
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        A = e / e.sum(axis=-1, keepdims=True)
        out = (A @ v) @ hd.W_O.T
        a = out if a is None else a + out
    if L.attn_residual:
        a = a + x
    z = a
    for i, (W, b) in enumerate(L.mlp):
        z = z @ W.T + b
        if i + 1 < len(L.mlp):
            z = np.maximum(z, dt(0))
    if L.mlp_residual:
        z = z + a
    return z


def logits_last(m: PlainModel, soft: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Logits at the last position of [virtual tokens soft (B, k, d), tokens (B, t)]: (B, V)."""
    k, t = soft.shape[1], tokens.shape[1]
    if k + t > m.n_ctx:
        raise ValueError(f"sequence of {k + t} positions exceeds the context of {m.n_ctx}")
    x = np.concatenate([soft, m.embed[tokens]], axis=1) + m.pos[: k + t]
    with np.errstate(over="ignore", invalid="ignore"):
        for L in m.layers:
            x = _layer(L, x)
        z = x[:, -1]
        return z @ m.unembed.T if m.unembed is not None else z


def greedy(m: PlainModel, soft: np.ndarray, prompt: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy generation of `steps` tokens: (tokens (B, steps), margins (B, steps)); NaN margin = NaN logits."""
    toks, margins = [], []
    seq = prompt
    for _ in range(steps):
        z = logits_last(m, soft, seq).astype(np.float64)
        choice = np.argmax(z, axis=-1)
        part = np.sort(z, axis=-1)
        margin = part[:, -1] - part[:, -2] if z.shape[-1] > 1 else np.full(len(z), np.inf)
        margin = np.where(np.isnan(z).any(axis=-1), np.nan, margin)
        toks.append(choice)
        margins.append(margin)
        seq = np.concatenate([seq, choice[:, None]], axis=1)
    return np.stack(toks, axis=1), np.stack(margins, axis=1)
