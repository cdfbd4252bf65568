"""Weights directories: config.json + model.safetensors (+ prompt.safetensors).

The format is documented in docs/format.md. Loading reads JSON and safetensors
only (never pickle), checks every tensor against the config (names, shapes,
dtype, finiteness, CSR structure) and checks the recorded fingerprint, and
raises `FormatError` with a one-line message on any mismatch.

Longer than 300 lines on purpose: export and import of one file format, kept together so that what is written
and what is checked on reading cannot drift apart.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import scipy.sparse as sp
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from prefixproof.constructions import hf_config
from prefixproof.constructions.basis import ExactArray, Space
from prefixproof.constructions.model import Dense, Head, Layer, LayerNorm, Model, ModelError, Vocab, materialize

FORMAT = "prefixproof-model"
FORMAT_VERSION = 1
CONFIG, WEIGHTS, PROMPT = "config.json", "model.safetensors", "prompt.safetensors"


class FormatError(ValueError):
    """A weights directory that cannot be loaded as it is."""


# ---------------------------------------------------------------- spaces

def space_to_json(space: Space) -> dict[str, Any]:
    """{"name": ..., "blocks": [[block, size], ...]}: block:0..size-1 runs, [label, null] for other labels."""
    out: list[list[Any]] = []
    for label in space.labels:
        block, _, k = label.partition(":")
        if k.isdigit() and out and out[-1][0] == block and out[-1][1] is not None and int(k) == out[-1][1]:
            out[-1][1] += 1
        elif k == "0":
            out.append([block, 1])
        else:
            out.append([label, None])
    return {"name": space.name, "blocks": out}


def space_from_json(key: str, spec: Any) -> Space:
    runs = spec.get("blocks") if isinstance(spec, dict) else None
    name = spec.get("name", key) if isinstance(spec, dict) else key
    if not isinstance(runs, list) or not all(isinstance(r, list) and len(r) == 2 for r in runs):
        raise FormatError(f"config space {key!r} must be {{\"name\": ..., \"blocks\": [[block, size], ...]}}")
    labels: list[str] = []
    for block, size in runs:
        if size is None:
            labels.append(str(block))
        elif isinstance(size, int) and size >= 1:
            labels.extend(f"{block}:{k}" for k in range(size))
        else:
            raise FormatError(f"config space {key!r}: block {block!r} has invalid size {size!r}")
    try:
        return Space(str(name), tuple(labels))
    except ValueError as e:
        raise FormatError(f"config space {key!r}: {e}") from None


# ---------------------------------------------------------------- fingerprint

def _architecture(model: Model) -> dict[str, Any]:
    return {
        "vocab": model.vocab.size,
        "n_ctx": model.n_ctx,
        "layers": [
            {
                "causal": layer.causal,
                "attn_residual": layer.attn_residual,
                "mlp_residual": layer.mlp_residual,
                "layernorm_eps": None if layer.ln is None else layer.ln.eps,
                "heads": [{"name": h.name, "scale": h.scale} for h in layer.heads],
                "mlp_layers": len(layer.mlp),
            }
            for layer in model.layers
        ],
        "unembed": model.unembed is not None,
    }


def _canonical(w: Any) -> Iterable[tuple[str, np.ndarray]]:
    """The arrays that define a weight, in a storage-independent canonical form."""
    if sp.issparse(w):
        c = sp.csr_array(w, dtype=np.float64)
        c.sum_duplicates()
        c.eliminate_zeros()
        c.sort_indices()
        yield "indptr", c.indptr.astype("<i8")
        yield "indices", c.indices.astype("<i8")
        yield "data", c.data.astype("<f8")
    else:
        yield "dense", np.ascontiguousarray(w, dtype="<f8")


def weights_sha256(model: Model) -> str:
    """sha256 over the architecture numbers (scales, flags) and every float64 weight.

    Dense and CSR storage of the same matrix hash differently; the fingerprint
    identifies the exact files a report talks about.
    """
    model = materialize(model)
    h = hashlib.sha256()
    h.update(json.dumps(_architecture(model), sort_keys=True).encode())
    for name, w in model.tensors():
        h.update(name.encode())
        h.update(str(tuple(w.shape)).encode())
        for part, arr in _canonical(w):
            h.update(part.encode())
            h.update(arr.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- save

def save_model(model: Model, directory: str | Path, prompt: np.ndarray | None = None,
               prompt_info: dict[str, Any] | None = None) -> str:
    """Write config.json, model.safetensors and (with `prompt`) prompt.safetensors; returns the sha256."""
    model = materialize(model)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    table: dict[str, Any] = {}
    for name, w in model.tensors():
        if sp.issparse(w):
            c = sp.csr_array(w, dtype=np.float64)
            c.sort_indices()
            tensors[f"{name}.data"] = np.ascontiguousarray(c.data)
            tensors[f"{name}.indices"] = c.indices.astype(np.int64)
            tensors[f"{name}.indptr"] = c.indptr.astype(np.int64)
            table[name] = {"shape": list(w.shape), "storage": "csr"}
        else:
            tensors[name] = np.ascontiguousarray(w, dtype=np.float64)
            table[name] = {"shape": list(w.shape), "storage": "dense"}
    spaces = {"stream": space_to_json(model.stream)}
    for l, layer in enumerate(model.layers):
        spaces[f"layers.{l}.attn_out"] = space_to_json(layer.attn_out)
        for k, s in enumerate(layer.hidden):
            spaces[f"layers.{l}.hidden.{k}"] = space_to_json(s)
        spaces[f"layers.{l}.out"] = space_to_json(layer.out)
    sha = weights_sha256(model)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **_architecture(model),
        "alphabet": model.vocab.alphabet,
        "construction": dict(model.info),
        "spaces": spaces,
        "tensors": table,
        "weights_sha256": sha,
        **hf_config.hf_fields(model),  # what transformers.AutoConfig reads (docs/huggingface.md)
    }
    save_file(tensors, str(out / WEIGHTS), metadata={"format": FORMAT})
    if prompt is not None:
        prompt = np.asarray(prompt, dtype=np.float64)
        if prompt.ndim != 2 or prompt.shape[1] != model.d_model:
            raise FormatError(f"prompt must have shape (k, {model.d_model}), got {prompt.shape}")
        save_file({"virtual_tokens": np.ascontiguousarray(prompt)}, str(out / PROMPT), metadata={"format": FORMAT})
        config["prompt"] = {"file": PROMPT, "virtual_tokens": int(prompt.shape[0]), **(prompt_info or {})}
    (out / CONFIG).write_text(json.dumps(config, indent=1) + "\n")
    return sha


# ---------------------------------------------------------------- load

def read_json(path: Path, error: type[Exception], missing: str, label: str | None = None,
              object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None) -> Any:
    """The JSON content of `path` (JSON only, never pickle); `error(missing)` when there is no such file and a
    one-line `error` naming `label` (default: the path) when the bytes are not UTF-8 JSON."""
    if not path.is_file():
        raise error(missing)
    try:
        return json.loads(path.read_text(), object_pairs_hook=object_pairs_hook)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{label or path} is not valid JSON ({e})") from None


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json(path, FormatError, f"{path} is missing; a weights directory needs {CONFIG} and {WEIGHTS}")
    if not isinstance(data, dict):
        raise FormatError(f"{path} must hold a JSON object")
    return data


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FormatError(f"{path} is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(f"{path} is not a readable safetensors file (truncated or corrupt?): {detail}") from None


def _field(config: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = CONFIG) -> Any:
    if key not in config:
        raise FormatError(f"{where} has no {key!r} entry")
    value = config[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FormatError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _tensor(tensors: dict[str, np.ndarray], table: dict[str, Any], name: str) -> Any:
    entry = table.get(name)
    if not isinstance(entry, dict) or "shape" not in entry:
        raise FormatError(f"{CONFIG} lists no tensor {name!r} with a shape")
    shape = tuple(entry["shape"])
    if entry.get("storage") == "csr":
        parts = {p: tensors.pop(f"{name}.{p}", None) for p in ("data", "indices", "indptr")}
        missing = [p for p, v in parts.items() if v is None]
        if missing:
            raise FormatError(f"{WEIGHTS} lacks {name}.{missing[0]} (CSR tensor {name!r})")
        data, indices, indptr = parts["data"], parts["indices"], parts["indptr"]
        if len(shape) != 2 or indptr.ndim != 1 or len(indptr) != shape[0] + 1:
            raise FormatError(f"CSR tensor {name!r}: indptr has {len(indptr)} entries, shape {shape} needs {shape[0] + 1}")
        if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(data) or len(indices) != len(data):
            raise FormatError(f"CSR tensor {name!r} has an inconsistent indptr/indices/data structure")
        if len(indices) and (indices.min() < 0 or indices.max() >= shape[1]):
            raise FormatError(f"CSR tensor {name!r} has a column index outside 0..{shape[1] - 1}")
        arr = data
        value = sp.csr_array((data.astype(np.float64), indices, indptr), shape=shape)
    else:
        if name not in tensors:
            raise FormatError(f"{WEIGHTS} has no tensor {name!r}")
        arr = value = tensors.pop(name)
        if tuple(arr.shape) != shape:
            raise FormatError(f"tensor {name!r} has shape {tuple(arr.shape)} but {CONFIG} says {shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise FormatError(f"tensor {name!r} has dtype {arr.dtype}; weights must be floating point")
    if arr.size and not np.isfinite(arr).all():
        raise FormatError(f"tensor {name!r} contains NaN or infinity")
    return value if sp.issparse(value) else value.astype(np.float64)


def load_model(directory: str | Path, check_sha: bool = True) -> Model:
    """Read a weights directory back into a (float64) model description."""
    d = Path(directory)
    if not d.is_dir():
        raise FormatError(f"weights directory {d} does not exist")
    config = _read_json(d / CONFIG)
    if config.get("format") != FORMAT:
        raise FormatError(f"{d / CONFIG} is not a {FORMAT} config (format={config.get('format')!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise FormatError(f"{d / CONFIG} has format_version {config.get('format_version')!r}; "
                          f"this prefixproof reads version {FORMAT_VERSION}")
    tensors = _read_tensors(d / WEIGHTS)
    table = _field(config, "tensors", dict)
    spaces = _field(config, "spaces", dict)

    def space(key: str) -> Space:
        if key not in spaces:
            raise FormatError(f"{CONFIG} has no space {key!r}")
        return space_from_json(key, spaces[key])

    try:
        layers = []
        for l, spec in enumerate(_field(config, "layers", list)):
            if not isinstance(spec, dict):
                raise FormatError(f"{CONFIG}: layers[{l}] must be an object")
            heads = []
            for h, hspec in enumerate(_field(spec, "heads", list, f"layers[{l}]")):
                scale = _field(hspec, "scale", (int, float), f"layers[{l}].heads[{h}]")
                parts = {p: _tensor(tensors, table, f"layers.{l}.heads.{h}.{p}") for p in ("W_Q", "W_K", "W_V", "W_O")}
                heads.append(Head(str(hspec.get("name", f"h{h}")), scale=float(scale), **parts))
            n_mlp = _field(spec, "mlp_layers", int, f"layers[{l}]")
            mlp = tuple(Dense(_tensor(tensors, table, f"layers.{l}.mlp.{k}.W"),
                              _tensor(tensors, table, f"layers.{l}.mlp.{k}.b")) for k in range(n_mlp))
            eps = spec.get("layernorm_eps")
            ln = None if eps is None else LayerNorm(_tensor(tensors, table, f"layers.{l}.ln.gamma"),
                                                    _tensor(tensors, table, f"layers.{l}.ln.beta"), float(eps))
            hidden = tuple(space(f"layers.{l}.hidden.{k}") for k in range(max(n_mlp - 1, 0)))
            layers.append(Layer(tuple(heads), mlp, space(f"layers.{l}.attn_out"), hidden, space(f"layers.{l}.out"),
                                causal=bool(spec.get("causal", True)), attn_residual=bool(spec.get("attn_residual")),
                                mlp_residual=bool(spec.get("mlp_residual")), ln=ln))
        unembed = _tensor(tensors, table, "unembed") if config.get("unembed") else None
        model = Model(
            Vocab(_field(config, "vocab", int), config.get("alphabet")),
            space("stream"), _tensor(tensors, table, "embed"), _tensor(tensors, table, "pos"),
            tuple(layers), unembed, dict(config.get("construction") or {}),
        )
    except ModelError as e:
        raise FormatError(f"{d}: {e}") from None
    if tensors:
        raise FormatError(f"{WEIGHTS} has tensors that {CONFIG} does not describe: {sorted(tensors)[:3]}")
    if model.n_ctx != config.get("n_ctx"):
        raise FormatError(f"{CONFIG} says n_ctx={config.get('n_ctx')} but the positional table has {model.n_ctx} rows")
    hf_problem = hf_config.check(config, model)
    if hf_problem:
        raise FormatError(hf_problem)
    if check_sha:
        recorded = config.get("weights_sha256")
        actual = weights_sha256(model)
        if recorded != actual:
            raise FormatError(f"{CONFIG} records weights_sha256 {str(recorded)[:12]}... but the files hash to "
                              f"{actual[:12]}...: config and tensors do not belong together")
    return model


def load_prompt(directory: str | Path, model: Model) -> tuple[np.ndarray, dict[str, Any]]:
    """The virtual tokens (k, d) of a weights directory and the config's prompt description."""
    d = Path(directory)
    info = _read_json(d / CONFIG).get("prompt")
    if not isinstance(info, dict):
        raise FormatError(f"{d / CONFIG} describes no prompt; build the directory with `prefixproof build`")
    tensors = _read_tensors(d / PROMPT)
    vt = tensors.get("virtual_tokens")
    if vt is None or vt.ndim != 2 or vt.shape[1] != model.d_model:
        shape = None if vt is None else vt.shape
        raise FormatError(f"{d / PROMPT}: virtual_tokens must have shape (k, {model.d_model}), got {shape}")
    if not np.issubdtype(vt.dtype, np.floating) or not np.isfinite(vt).all():
        raise FormatError(f"{d / PROMPT}: virtual_tokens must be finite floating-point numbers")
    if vt.shape[0] != info.get("virtual_tokens"):
        raise FormatError(f"{d / CONFIG} says {info.get('virtual_tokens')} virtual tokens, {PROMPT} has {vt.shape[0]}")
    return vt.astype(np.float64), info


def exact_prompt(vec: ExactArray) -> np.ndarray:
    """A construction's exact virtual token as the (1, d) float64 array files hold."""
    return np.asarray(vec.to_float())[None, :]

