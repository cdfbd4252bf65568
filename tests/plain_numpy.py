"""Plain numpy execution of an exported weights directory, independent of verify/.

Reads config.json and model.safetensors and runs greedy generation with numpy arrays of one dtype:
x @ W.T, then + b (numpy's own matmul and add), scores (q @ k.T) * scale, softmax as max-subtraction,
exp, sum and division in that dtype. Used by the regression tests as the truth about real low-precision
execution; it shares no code with the checker or the certificate.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


def load(directory: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    d = Path(directory)
    return json.loads((d / "config.json").read_text()), load_file(str(d / "model.safetensors"))


def logits(cfg: dict, w: dict[str, np.ndarray], soft: np.ndarray, tokens: np.ndarray, dtype) -> np.ndarray:
    """Logits (B, n, V) of the teacher-forced pass: virtual tokens `soft` (B, k, d), then `tokens` (B, m)."""
    t = lambda a: np.asarray(a, dtype=np.float64).astype(dtype)
    x = np.concatenate([t(soft), t(w["embed"])[tokens]], axis=1)
    n = x.shape[1]
    x = x + t(w["pos"])[:n]
    assert len(cfg["layers"]) == 1, "plain runner: one layer"
    layer = cfg["layers"][0]
    causal = np.tril(np.ones((n, n), dtype=bool))
    total = None
    for h, head in enumerate(layer["heads"]):
        p = f"layers.0.heads.{h}."
        q, k, v = x @ t(w[p + "W_Q"]).T, x @ t(w[p + "W_K"]).T, x @ t(w[p + "W_V"]).T
        s = (q @ np.swapaxes(k, -1, -2)) * np.dtype(dtype).type(head["scale"])
        s = np.where(causal, s, -np.inf)
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        A = e / e.sum(axis=-1, keepdims=True)
        out = (A @ v) @ t(w[p + "W_O"]).T
        total = out if total is None else total + out
    z = total
    for i in range(layer["mlp_layers"]):
        z = z @ t(w[f"layers.0.mlp.{i}.W"]).T + t(w[f"layers.0.mlp.{i}.b"])
        if i < layer["mlp_layers"] - 1:
            z = np.maximum(z, np.dtype(dtype).type(0))
    return z


def theorem1_outputs(cfg: dict, w: dict[str, np.ndarray], targets: np.ndarray, dtype) -> np.ndarray:
    """Greedy argmax at every position of the teacher-forced pass over each target (B, N): (B, N) tokens."""
    V = cfg["vocab"]
    payload = [i for i, lab in enumerate(_labels(cfg)) if lab.startswith("target:")]
    soft = np.zeros((len(targets), 1, w["embed"].shape[1]))
    soft[:, 0, payload] = targets / V
    return logits(cfg, w, soft, targets[:, :-1], dtype).argmax(axis=-1)


def theorem2_outputs(cfg: dict, w: dict[str, np.ndarray], maps: np.ndarray, dtype) -> np.ndarray:
    """Greedy answer to every user token u for each map (B, V): (B, V) tokens."""
    V = cfg["vocab"]
    payload = [i for i, lab in enumerate(_labels(cfg)) if lab.startswith("map:")]
    B = len(maps)
    soft = np.zeros((B, 1, w["embed"].shape[1]))
    soft[:, 0, payload] = maps / V
    out = np.empty((B, V), dtype=np.int64)
    for u in range(V):
        out[:, u] = logits(cfg, w, soft, np.full((B, 1), u), dtype)[:, 1].argmax(axis=-1)
    return out


def _labels(cfg: dict) -> list[str]:
    labels = []
    for name, size in cfg["spaces"]["stream"]["blocks"]:
        labels += [name] if size is None else [f"{name}:{i}" for i in range(size)]
    return labels
