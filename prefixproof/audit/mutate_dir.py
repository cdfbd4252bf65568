"""Mechanical mutants of a weights directory, edited in the files as a user would edit them.

Every mutant is one edit of `model.safetensors`, `config.json` or
`prompt.safetensors`, after which the fingerprints (`weights_sha256` and the directory's
`fingerprint`) are refreshed, so the verifier has to reject the mutant on its reasoning, not on a
stale fingerprint. The list is generated from the directory, never written by
hand, so no tensor, bias or head can be skipped:

- every tensor and every bias: zeroed, negated, x0.5, x0.99, rows rolled
  (entries for a bias, columns for a one-row matrix), and one entry perturbed
  at four sizes: just past the size that breaks the claim (1.02 x the
  threshold), just inside it (0.98 x), benign (0.25 x), and at the float64
  edge (the largest size still correct in float64, within ~1e-11 of
  breaking: float32 execution is likely to fail there). The entry and the
  sign come from the seed; the threshold is found by geometric bisection on
  the float64 truth (prefixproof/audit/plain_truth.py);
- every head: scale / 4, scale just below the leakage rule (0.98 x the rule's
  value), and just past / just inside the smallest scale that still works;
- structure: causal mask removed, W_V or (W_Q, W_K) exchanged between the
  first head and each other head of the same shape, decode grid shifted by
  half a step;
- the stored prompt: one payload entry moved by one grid step and by a
  quarter step, a garbage payload value, a garbage value outside the payload,
  an extra virtual token, a dropped virtual token.

Edits that leave the files unchanged (zeroing a zero tensor) are dropped.
"""
from __future__ import annotations

import copy
import json
import math
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from safetensors.numpy import load_file, save_file

from prefixproof.constructions.io import refresh_fingerprint, space_from_json

PAYLOAD = {"theorem1": "target", "theorem2": "map", "long_response": "table", "multi_token": "table",
           "conditional": "table", "multi_token_packing": "pay"}
TENSOR_OPS = ("zeroed", "negated", "x0.5", "x0.99", "rows rolled")
PERTURB = (("just past the threshold", 1.02), ("just inside the threshold", 0.98), ("benign", 0.25),
           ("at the float64 edge", 0.0))  # 0.0: the largest size found correct in float64, within 1e-11 of breaking


@dataclass
class Parts:
    """The three files of a weights directory, parsed."""
    config: dict[str, Any]
    tensors: dict[str, np.ndarray]
    prompt: np.ndarray

    @classmethod
    def read(cls, d: Path) -> "Parts":
        return cls(json.loads((d / "config.json").read_text()), load_file(str(d / "model.safetensors")),
                   load_file(str(d / "prompt.safetensors"))["virtual_tokens"])

    def copy(self) -> "Parts":
        return Parts(copy.deepcopy(self.config), {k: v.copy() for k, v in self.tensors.items()}, self.prompt.copy())

    def same_as(self, other: "Parts") -> bool:
        return (self.config == other.config and np.array_equal(self.prompt, other.prompt)
                and all(np.array_equal(v, other.tensors[k]) for k, v in self.tensors.items()))

    def write(self, d: Path) -> None:
        """Write the three files and refresh the fingerprint, as a user editing the weights would."""
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        meta = {"format": "prefixproof-model"}
        save_file({k: np.ascontiguousarray(v) for k, v in self.tensors.items()}, str(d / "model.safetensors"),
                  metadata=meta)
        save_file({"virtual_tokens": np.ascontiguousarray(self.prompt)}, str(d / "prompt.safetensors"), metadata=meta)
        config = dict(self.config, prompt=dict(self.config["prompt"], virtual_tokens=int(self.prompt.shape[0])))
        (d / "config.json").write_text(json.dumps(config, indent=1))
        refresh_fingerprint(d)


@dataclass(frozen=True)
class MutantSpec:
    """One edit. `truth` says which oracle judges it: the claim over all inputs, or the stored prompt."""
    name: str
    kind: str
    target: str
    truth: str  # "claim" | "prompt"
    arg: Any = None


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _dense_names(parts: Parts) -> list[str]:
    return [n for n, e in parts.config["tensors"].items() if e.get("storage", "dense") == "dense"]


def specs_for(parts: Parts, claim: str) -> list[MutantSpec]:
    """Every mutant of the directory (module docstring), in a fixed order."""
    out: list[MutantSpec] = []
    for name in _dense_names(parts):
        a = parts.tensors[name]
        out += [MutantSpec(f"{name} {op}", op, name, "claim") for op in TENSOR_OPS
                if not np.array_equal(_tensor_op(op, a), a)]
        out += [MutantSpec(f"{name} one entry perturbed, {label}", f"perturbed {label}", name, "claim", f)
                for label, f in PERTURB]
    for l, layer in enumerate(parts.config["layers"]):
        for h, head in enumerate(layer["heads"]):
            t = f"layers.{l}.heads.{h}"
            out += [MutantSpec(f"{t} ({head['name']}) scale / 4", "scale / 4", t, "claim", 0.25),
                    MutantSpec(f"{t} ({head['name']}) scale just below the leakage rule", "scale below rule", t,
                               "claim", "rule"),
                    MutantSpec(f"{t} ({head['name']}) scale just past the breaking scale", "scale past threshold", t,
                               "claim", 0.98),
                    MutantSpec(f"{t} ({head['name']}) scale just inside the breaking scale",
                               "scale inside threshold", t, "claim", 1.02)]
            if h:
                for parts_ in (("W_V",), ("W_Q", "W_K")):
                    out.append(MutantSpec(f"heads 0 and {h} of layer {l} exchange {'/'.join(parts_)}",
                                          "heads exchanged", f"layers.{l}", "claim", (h, parts_)))
        out.append(MutantSpec(f"layers.{l} causal mask removed", "causal mask removed", f"layers.{l}", "claim"))
    out.append(MutantSpec("decode grid shifted by half a step", "grid shifted", "decoder", "claim"))
    for kind in ("payload moved one grid step", "payload moved a quarter step", "payload garbage value",
                 "garbage outside the payload", "extra virtual token", "virtual token dropped"):
        out.append(MutantSpec(f"prompt: {kind}", f"prompt {kind}", "prompt", "prompt"))
    return out


def _tensor_op(op: str, a: np.ndarray) -> np.ndarray:
    if op == "rows rolled":  # entries of a bias, columns of a one-row matrix
        return np.roll(a, 1, axis=1 if a.ndim == 2 and a.shape[0] == 1 else 0)
    return a * {"zeroed": 0.0, "negated": -1.0, "x0.5": 0.5, "x0.99": 0.99}[op]


def rule_scale(claim: str, params: dict[str, int]) -> float:
    """The leakage rule's lower bound on the scale (docs/constructions.md), before rounding up to 1/16."""
    V = params["V"]
    if claim == "theorem1":
        return math.log(8 * V * max(params["N"] - 1, 1))
    if claim == "theorem2":
        return math.log(8 * V)
    if claim == "multi_token_packing":
        L = params["L"]
        return math.log(16 * L * V ** (V ** (L - 1)))
    L = params.get("L", 1)
    R = params.get("R", 1)
    return math.log(4 * V * (L + 1) * max(2 * R + L - 2, 1))


def _smallest(breaks: Callable[[float], bool], start: float, floor: float, cap: float,
              steps: int = 10) -> tuple[float, float] | None:
    """Geometric search for the edge in [floor, cap]: (lo, hi) with breaks(hi) and not breaks(lo), hi/lo =
    8^(2^-steps); None when nothing up to `cap` breaks (assumes breaks is monotone near the edge)."""
    t = start
    if breaks(t):
        while t > floor and breaks(t / 8):
            t /= 8
        lo, hi = t / 8, t
    else:
        while t < cap and not breaks(t * 8):
            t *= 8
        if t >= cap:
            return None
        lo, hi = t, t * 8
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if breaks(mid) else (mid, hi)
    return lo, hi


_THRESHOLDS: dict[tuple[str, str, int], tuple[float, float | None]] = {}


def apply(spec: MutantSpec, base: Parts, claim: str, params: dict[str, int], seed: int,
          broken: Callable[[Parts], bool]) -> tuple[Parts, str]:
    """The mutated files and a note on the exact edit; `broken` is the float64 claim truth (for thresholds).

    Longer than 60 lines on purpose: one short case per mutation kind, read side by side with `specs_for`."""
    p = base.copy()
    t = spec.target
    if spec.kind in TENSOR_OPS:
        p.tensors[t] = _tensor_op(spec.kind, p.tensors[t])
        return p, spec.kind
    if spec.kind.startswith("perturbed"):
        a = p.tensors[t]
        rng = _rng(seed, claim, t)
        nz = np.flatnonzero(a)
        flat = int(rng.choice(nz)) if len(nz) else int(rng.integers(a.size))
        sign = float(rng.choice([-1.0, 1.0]))
        idx = np.unravel_index(flat, a.shape)

        def with_delta(d: float) -> Parts:
            q = base.copy()
            q.tensors[t] = q.tensors[t].copy()
            q.tensors[t][idx] += sign * d
            return q

        cap = 1e4 * (1 + float(np.abs(a).max()))
        key = (claim, t, seed)
        if key not in _THRESHOLDS:  # the smallest breaking size, trying the seeded sign first, then the other
            edge = _smallest(lambda d: broken(with_delta(d)), 1e-4, 1e-12, cap, steps=40)
            if edge is None:
                sign = -sign
                edge = _smallest(lambda d: broken(with_delta(d)), 1e-4, 1e-12, cap, steps=40)
            _THRESHOLDS[key] = (sign, edge)
        sign, edge = _THRESHOLDS[key]
        where = ",".join(map(str, idx))
        if edge is None:
            d = cap if spec.arg > 1 else 1e-4 * max(spec.arg, 1.0)
            note = f"[{where}] {sign * d:+.6g} (no breaking size up to {cap:.3g} in either sign)"
        elif spec.arg == 0.0:
            d = edge[0]
            note = f"[{where}] {sign * d:+.17g} (largest size correct in float64; {sign * edge[1]:+.17g} breaks)"
        else:
            d = edge[1] * spec.arg
            note = f"[{where}] {sign * d:+.6g} ({spec.arg} x the breaking size {edge[1]:.4g})"
        return with_delta(d), note
    if spec.kind.startswith("scale"):
        l, h = int(t.split(".")[1]), int(t.split(".")[3])
        s0 = float(p.config["layers"][l]["heads"][h]["scale"])

        def with_scale(s: float) -> Parts:
            q = base.copy()
            q.config["layers"][l]["heads"][h]["scale"] = s
            return q

        if spec.arg == "rule":
            s = 0.98 * rule_scale(claim, params)
        elif isinstance(spec.arg, float) and spec.kind == "scale / 4":
            s = s0 * spec.arg
        else:
            found = _smallest(lambda c: broken(with_scale(s0 / c)), 1.0, 1.0, 4096.0)  # smallest cut that breaks
            if found is None:
                return with_scale(s0 / 4096), f"{s0} -> {s0 / 4096:.6g} (no cut up to 4096 breaks it)"
            s = s0 / found[1] * spec.arg  # s0 / found[1] is the largest scale found broken
        return with_scale(s), f"{s0} -> {s:.6g}"
    if spec.kind == "heads exchanged":
        l, (h, names) = int(t.split(".")[1]), spec.arg
        for n in names:
            a, b = f"{t}.heads.0.{n}", f"{t}.heads.{h}.{n}"
            if p.tensors[a].shape != p.tensors[b].shape:
                return base, "shapes differ"
            p.tensors[a], p.tensors[b] = base.tensors[b].copy(), base.tensors[a].copy()
        return p, "exchanged"
    if spec.kind == "causal mask removed":
        p.config["layers"][int(t.split(".")[1])]["causal"] = False
        return p, "causal: false"
    if spec.kind == "grid shifted":
        last = f"layers.{len(p.config['layers']) - 1}.mlp.{p.config['layers'][-1]['mlp_layers'] - 1}.b"
        V = int(p.config["vocab"])
        if p.tensors[last].shape != (V,):
            return base, "no grid decoder"
        p.tensors[last] = p.tensors[last] + np.arange(V) / V ** 2
        return p, f"{last} += j/V^2"
    return _prompt_edit(spec, p, claim, params, seed)


def _prompt_edit(spec: MutantSpec, p: Parts, claim: str, params: dict[str, int], seed: int) -> tuple[Parts, str]:
    labels = _stream_labels(p.config)
    block = PAYLOAD[claim]
    pay = [c for lab, c in labels.items() if lab.startswith(block + ":")]
    other = [c for lab, c in labels.items() if not lab.startswith(block + ":")]
    rng = _rng(seed, claim, spec.kind)
    V = params["V"]
    step = 1.0 / V if claim != "multi_token_packing" else float(V) ** -(V ** (params["L"] - 1))
    top = (V - 1) / V if claim != "multi_token_packing" else 1.0 - step
    r, c = int(rng.integers(p.prompt.shape[0])), int(rng.choice(pay))
    kind = spec.kind.removeprefix("prompt ")
    if kind.startswith("payload moved"):
        s = step if "grid" in kind else step / 4
        s = s if p.prompt[r, c] + s <= top + step / 8 else -s
        p.prompt[r, c] += s
        return p, f"virtual token {r}, column {c}: {p.prompt[r, c] - s:.6g} -> {p.prompt[r, c]:.6g}"
    if kind == "payload garbage value":
        p.prompt[r, c] = float(rng.uniform(1.5, 9.5))
        return p, f"virtual token {r}, column {c} = {p.prompt[r, c]:.6g}"
    if kind == "garbage outside the payload":
        c = int(rng.choice(other))
        p.prompt[r, c] = float(rng.uniform(0.3, 2.0))
        return p, f"virtual token {r}, column {c} = {p.prompt[r, c]:.6g}"
    if kind == "extra virtual token":
        p.prompt = np.concatenate([p.prompt, p.prompt[-1:]])
        return p, f"{p.prompt.shape[0]} virtual tokens (a copy of the last)"
    if p.prompt.shape[0] < 2:
        return p, "only one virtual token"
    p.prompt = p.prompt[:-1]
    return p, f"{p.prompt.shape[0]} virtual tokens"


def _stream_labels(config: dict[str, Any]) -> dict[str, int]:
    """Label -> index of the residual stream, read as constructions.io reads it."""
    return {label: i for i, label in enumerate(space_from_json("stream", config["spaces"]["stream"]).labels)}
