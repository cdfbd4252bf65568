"""A minimal reader of prefixproof weights directories, written from docs/format.md (its pseudo-code) and
docs/semantics.md only. Plain numpy and the standard library; imports nothing from prefixproof.
`python tests/reference_reader.py DIR [--input TEXT]` prints what `prefixproof generate` prints."""
from __future__ import annotations

import json
import struct
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """8-byte little-endian header length, a JSON header, then raw little-endian data."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        begin, end = spec["data_offsets"]
        arr = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype=DTYPES[spec["dtype"]]).reshape(spec["shape"])
        out[name] = arr.astype(np.float64 if spec["dtype"].startswith("F") else np.int64)
    return out


class Reader:
    def __init__(self, directory: str | Path) -> None:
        d = Path(directory)
        self.cfg = json.loads((d / "config.json").read_text())
        self.T = read_safetensors(d / "model.safetensors")
        self.prompt = self.cfg["prompt"]
        self.virtual = read_safetensors(d / self.prompt["file"])["virtual_tokens"]
        self.E, self.Pos = self.tensor("embed"), self.tensor("pos")
        self.U = self.tensor("unembed") if self.cfg.get("unembed") else None
        self.layers = []  # (spec, heads, mlp, layernorm) per layer
        for l, spec in enumerate(self.cfg["layers"]):
            heads = [tuple(self.tensor(f"layers.{l}.heads.{h}.{w}") for w in ("W_Q", "W_K", "W_V", "W_O"))
                     + (h_spec["scale"],) for h, h_spec in enumerate(spec["heads"])]
            mlp = [(self.tensor(f"layers.{l}.mlp.{k}.W"), self.tensor(f"layers.{l}.mlp.{k}.b"))
                   for k in range(spec["mlp_layers"])]
            ln = None if spec.get("layernorm_eps") is None else \
                (self.tensor(f"layers.{l}.ln.gamma"), self.tensor(f"layers.{l}.ln.beta"), spec["layernorm_eps"])
            self.layers.append((spec, heads, mlp, ln))

    def tensor(self, name: str) -> np.ndarray:
        entry = self.cfg["tensors"][name]
        if entry["storage"] == "dense":
            return self.T[name]
        rows, cols = entry["shape"]
        M = np.zeros((rows, cols))
        indptr, indices, data = self.T[f"{name}.indptr"], self.T[f"{name}.indices"], self.T[f"{name}.data"]
        for r in range(rows):
            for e in range(indptr[r], indptr[r + 1]):
                M[r, indices[e]] += data[e]
        return M

    def labels(self) -> list[str]:
        """[b, n] stands for b:0..b:n-1, [b, null] for the single label b."""
        return [x for b, n in self.cfg["spaces"]["stream"]["blocks"]
                for x in ([b] if n is None else [f"{b}:{i}" for i in range(n)])]

    def encode(self) -> np.ndarray:
        """The virtual tokens the config's record asks for, by the label encoder of docs/format.md."""
        index = {label: i for i, label in enumerate(self.labels())}
        V, p, d = self.cfg["vocab"], self.prompt, len(index)
        if "target_tokens" in p:
            v = np.zeros((1, d))
            for i, y in enumerate(p["target_tokens"]):
                v[0, index[f"target:{i}"]] = y / V
        elif "map_tokens" in p:
            v = np.zeros((1, d))
            for u, y in enumerate(p["map_tokens"]):
                v[0, index[f"map:{u}"]] = y / V
        elif any(label.startswith("pay:") for label in index):
            T = [row[0] for row in p["table_tokens"]]
            D = V ** (p["inputs"] - 1)
            v = np.zeros((1, d))
            for a in range(V):
                v[0, index[f"pay:{a}"]] = float(sum(Fraction(T[a * D + i], V ** (i + 1)) for i in range(D)))
        else:
            v = np.zeros((p["steps"], d))
            for a, row in enumerate(p["table_tokens"]):
                for r, y in enumerate(row):
                    v[r, index[f"table:{a}"]] = y / V
        return v

    def forward(self, X: np.ndarray) -> np.ndarray:
        for spec, heads, mlp, ln in self.layers:
            H = X
            if ln is not None:
                g, b, eps = ln
                H = g * (X - X.mean(-1, keepdims=True)) / np.sqrt(X.var(-1, keepdims=True) + eps) + b
            n = X.shape[0]
            A_out = 0.0
            for WQ, WK, WV, WO, s in heads:
                S = s * ((H @ WQ.T) @ (H @ WK.T).T)
                if spec["causal"]:
                    S = np.where(np.tril(np.ones((n, n), dtype=bool)), S, -np.inf)
                A = np.exp(S - S.max(-1, keepdims=True))
                A = A / A.sum(-1, keepdims=True)
                A_out = A_out + (A @ (H @ WV.T)) @ WO.T
            Z = A_out = A_out + X if spec.get("attn_residual") else A_out
            for k, (W, b) in enumerate(mlp):
                Z = Z @ W.T + b
                if k < len(mlp) - 1:
                    Z = np.maximum(Z, 0.0)
            if spec.get("mlp_residual"):
                Z = Z + A_out
            X = Z
        return X if self.U is None else X @ self.U.T

    def greedy(self, tokens: list[int], steps: int) -> list[int]:
        k = len(self.virtual)
        X = [v + self.Pos[p] for p, v in enumerate(self.virtual)] + \
            [self.E[t] + self.Pos[k + i] for i, t in enumerate(tokens)]
        out = []
        for step in range(steps):
            t = int(np.argmax(self.forward(np.array(X))[-1]))  # argmax: lowest id on ties
            out.append(t)
            if step + 1 < steps:
                X.append(self.E[t] + self.Pos[len(X)])
        return out

    def text_tokens(self, text: str) -> list[int]:
        if self.cfg.get("alphabet") == "printable-ascii":
            return [ord(c) - 32 for c in text]
        return [int(t) for t in text.split(",")]

    def render(self, tokens: list[int]) -> str:
        if self.cfg.get("alphabet") == "printable-ascii":
            return "".join(chr(32 + t) for t in tokens)
        return ",".join(str(t) for t in tokens)

    def generate(self, text: str | None = None) -> list[str]:
        """The lines `prefixproof generate DIR [--input TEXT]` prints."""
        mode, inp = self.prompt["mode"], [] if text is None else self.text_tokens(text)
        if mode == "sequence":
            return [self.render(self.greedy(inp, self.cfg["n_ctx"] - len(self.virtual) - len(inp) + 1))]
        if mode == "per_token":
            return [self.render([self.greedy([u], 1)[0] for u in inp])]
        L, R = self.prompt["inputs"], self.prompt["steps"]
        return [self.render(self.greedy(inp[i:i + L], R)) for i in range(0, len(inp), L)]


if __name__ == "__main__":
    text = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--input" else None
    print("\n".join(Reader(sys.argv[1]).generate(text)))
