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
from typing import Any, Iterable

import numpy as np
import scipy.sparse as sp
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from prefixproof.constructions import hf_config
from prefixproof.constructions.basis import ExactArray, Space
from prefixproof.constructions.config_check import (Checker, check_config, check_prompt_info, check_space_sizes,
                                                    check_values)
from prefixproof.constructions.files import read_json
from prefixproof.constructions.fingerprint import FIELD as FINGERPRINT, differences, fingerprint
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
    """Write config.json, model.safetensors and (with `prompt`) prompt.safetensors into `directory` (created if
    missing; `prefixproof build` passes a fresh staging directory, see prefixproof/outdir.py); returns the
    model's weights_sha256. config.json records the whole directory's fingerprint (docs/format.md)."""
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
        check_values(tensors.get(name, tensors.get(f"{name}.data")), f"tensor {name!r}", FormatError)
    spaces = {"stream": space_to_json(model.stream)}
    for l, layer in enumerate(model.layers):
        spaces[f"layers.{l}.attn_out"] = space_to_json(layer.attn_out)
        for k, s in enumerate(layer.hidden):
            spaces[f"layers.{l}.hidden.{k}"] = space_to_json(s)
        spaces[f"layers.{l}.out"] = space_to_json(layer.out)
    sha = weights_sha256(model)
    config: dict[str, Any] = {
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
    prompt_tensors = None
    if prompt is not None:
        prompt = np.asarray(prompt, dtype=np.float64)
        if prompt.ndim != 2 or prompt.shape[1] != model.d_model:
            raise FormatError(f"prompt must have shape (k, {model.d_model}), got {prompt.shape}")
        check_values(prompt, "the prompt", FormatError)
        prompt_tensors = {"virtual_tokens": np.ascontiguousarray(prompt)}
        config["prompt"] = {"file": PROMPT, "virtual_tokens": int(prompt.shape[0]), **(prompt_info or {})}
    config = json.loads(json.dumps(config))  # exactly the values a reader parses back
    config[FINGERPRINT] = fingerprint(config, tensors, prompt_tensors)
    save_file(tensors, str(out / WEIGHTS), metadata={"format": FORMAT})
    if prompt_tensors is not None:
        save_file(prompt_tensors, str(out / PROMPT), metadata={"format": FORMAT})
    (out / CONFIG).write_text(json.dumps(config, indent=1) + "\n")
    return sha


def refresh_fingerprint(directory: str | Path) -> None:
    """Recompute weights_sha256 and the fingerprint of a directory edited by hand (as the self-test's mutants
    and tests do), so that loading judges the edit on its content rather than refusing a stale fingerprint."""
    d = Path(directory)
    config = _read_json(d / CONFIG)
    config["weights_sha256"] = weights_sha256(load_model(d, check_sha=False))
    prompt = _read_tensors(d / PROMPT) if "prompt" in config and (d / PROMPT).is_file() else None
    config[FINGERPRINT] = fingerprint(config, _read_tensors(d / WEIGHTS), prompt)
    (d / CONFIG).write_text(json.dumps(config, indent=1) + "\n")


# ---------------------------------------------------------------- load

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
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(f"{path} is not a readable safetensors file (truncated or corrupt?): {detail}") from None


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
        if indptr.ndim != 1 or len(indptr) != shape[0] + 1:
            raise FormatError(f"CSR tensor {name!r}: indptr has {len(indptr)} entries, shape {shape} needs {shape[0] + 1}")
        if not (np.issubdtype(indptr.dtype, np.integer) and np.issubdtype(indices.dtype, np.integer)) or \
                indices.ndim != 1 or data.ndim != 1:
            raise FormatError(f"CSR tensor {name!r}: indptr and indices must be 1-d integer arrays, data 1-d")
        if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(data) or len(indices) != len(data):
            raise FormatError(f"CSR tensor {name!r} has an inconsistent indptr/indices/data structure")
        if len(indices) and (indices.min() < 0 or indices.max() >= shape[1]):
            raise FormatError(f"CSR tensor {name!r} has a column index outside 0..{shape[1] - 1}")
        arr = data
        check_values(arr, f"tensor {name!r}", FormatError)
        value = sp.csr_array((data.astype(np.float64), indices, indptr), shape=shape)
    else:
        if name not in tensors:
            raise FormatError(f"{WEIGHTS} has no tensor {name!r}")
        arr = value = tensors.pop(name)
        if tuple(arr.shape) != shape:
            raise FormatError(f"tensor {name!r} has shape {tuple(arr.shape)} but {CONFIG} says {shape}")
        check_values(arr, f"tensor {name!r}", FormatError)
    return value if sp.issparse(value) else value.astype(np.float64)


def _check_shapes(tensors: dict[str, np.ndarray], table: dict[str, Any]) -> None:
    """Every declared shape against the data actually stored, before anything is built from the config."""
    for name, entry in table.items():
        shape = tuple(entry["shape"])
        if entry["storage"] == "dense" and name in tensors and tuple(tensors[name].shape) != shape:
            raise FormatError(f"tensor {name!r} has shape {tuple(tensors[name].shape)} but {CONFIG} says {shape}")
        indptr = tensors.get(f"{name}.indptr")
        if entry["storage"] == "csr" and indptr is not None and (indptr.ndim != 1 or len(indptr) != shape[0] + 1):
            raise FormatError(f"CSR tensor {name!r}: indptr has {indptr.size} entries, shape {shape} needs "
                              f"{shape[0] + 1}")


def _declared(table: dict[str, Any], name: str, axis: int) -> int | None:
    shape = table.get(name, {}).get("shape", [])
    return shape[axis] if len(shape) > axis else None


def _check_header(config: dict[str, Any], path: Path) -> None:
    if config.get("format") != FORMAT:
        raise FormatError(f"{path} is not a {FORMAT} config (format={config.get('format')!r})")
    version = config.get("format_version")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise FormatError(f"{path} has format_version {version!r}; this prefixproof reads version {FORMAT_VERSION}")


def load_model(directory: str | Path, check_sha: bool = True) -> Model:
    """Read a weights directory back into a (float64) model description.

    With `check_sha` (the default) the recorded weights_sha256 and the whole-directory fingerprint are
    checked too (the prompt's part only when prompt.safetensors is present; `load_prompt` requires it)."""
    d = Path(directory)
    if not d.is_dir():
        raise FormatError(f"weights directory {d} does not exist")
    config = _read_json(d / CONFIG)
    _check_header(config, d / CONFIG)
    checker = Checker(FormatError, str(d / CONFIG))
    check_config(config, checker)
    tensors = _read_tensors(d / WEIGHTS)
    stored = dict(tensors)  # what the fingerprint covers: exactly the arrays read
    table = config["tensors"]
    _check_shapes(tensors, table)
    check_space_sizes(config, lambda name: _declared(table, name, 0), _declared(table, "pos", 1), checker)
    spaces = config["spaces"]

    def space(key: str) -> Space:
        return space_from_json(key, spaces[key])

    try:
        layers = []
        for l, spec in enumerate(config["layers"]):
            heads = []
            for h, hspec in enumerate(spec["heads"]):
                parts = {p: _tensor(tensors, table, f"layers.{l}.heads.{h}.{p}") for p in ("W_Q", "W_K", "W_V", "W_O")}
                heads.append(Head(hspec["name"], scale=float(hspec["scale"]), **parts))
            n_mlp = spec["mlp_layers"]
            mlp = tuple(Dense(_tensor(tensors, table, f"layers.{l}.mlp.{k}.W"),
                              _tensor(tensors, table, f"layers.{l}.mlp.{k}.b")) for k in range(n_mlp))
            eps = spec["layernorm_eps"]
            ln = None if eps is None else LayerNorm(_tensor(tensors, table, f"layers.{l}.ln.gamma"),
                                                    _tensor(tensors, table, f"layers.{l}.ln.beta"), float(eps))
            hidden = tuple(space(f"layers.{l}.hidden.{k}") for k in range(max(n_mlp - 1, 0)))
            layers.append(Layer(tuple(heads), mlp, space(f"layers.{l}.attn_out"), hidden, space(f"layers.{l}.out"),
                                causal=spec["causal"], attn_residual=spec["attn_residual"],
                                mlp_residual=spec["mlp_residual"], ln=ln))
        unembed = _tensor(tensors, table, "unembed") if config["unembed"] else None
        model = Model(
            Vocab(config["vocab"], config["alphabet"]),
            space("stream"), _tensor(tensors, table, "embed"), _tensor(tensors, table, "pos"),
            tuple(layers), unembed, dict(config["construction"]),
        )
    except ModelError as e:
        raise FormatError(f"{d}: {e}") from None
    if tensors:
        raise FormatError(f"{WEIGHTS} has tensors that {CONFIG} does not describe: {sorted(tensors)[:3]}")
    if model.n_ctx != config["n_ctx"]:
        raise FormatError(f"{CONFIG} says n_ctx={config['n_ctx']} but the positional table has {model.n_ctx} rows")
    hf_problem = hf_config.check(config, model)
    if hf_problem:
        raise FormatError(hf_problem)
    if check_sha:
        recorded = config["weights_sha256"]
        actual = weights_sha256(model)
        if recorded != actual:
            raise FormatError(f"{CONFIG} records weights_sha256 {str(recorded)[:12]}... but the files hash to "
                              f"{actual[:12]}...: config and tensors do not belong together")
        _check_fingerprint(d, config, WEIGHTS, stored)
        if "prompt" in config and (d / PROMPT).is_file():
            prompt = _read_tensors(d / PROMPT)
            _check_prompt_tensors(d, config["prompt"], prompt, model.d_model)  # named before a stale fingerprint
            _check_fingerprint(d, config, PROMPT, prompt)
    return model


def _check_fingerprint(d: Path, config: dict[str, Any], part: str, tensors: dict[str, np.ndarray]) -> None:
    """One-line FormatError naming what differs from the fingerprint config.json recorded at build time."""
    if FINGERPRINT not in config:
        raise FormatError(f"{d / CONFIG} records no fingerprint (written by an older prefixproof or by hand); "
                          f"rebuild the directory with `prefixproof build --force`")
    try:
        diffs = differences(config[FINGERPRINT], config, part, tensors)
    except ValueError as e:
        raise FormatError(f"{d / CONFIG}: field 'fingerprint' is malformed ({e}); rebuild the directory") from None
    if diffs:
        raise FormatError(f"{d}: fingerprint mismatch in {' and '.join(diffs)}: the files do not come from one "
                          f"build; rebuild the directory with `prefixproof build --force`")


def _check_prompt_tensors(d: Path, info: dict[str, Any], tensors: dict[str, np.ndarray], width: int) -> np.ndarray:
    """prompt.safetensors holds exactly `virtual_tokens`: (k, width), finite, in range, k as config.json says."""
    vt = tensors.get("virtual_tokens")
    if vt is None or vt.ndim != 2 or vt.shape[1] != width:
        shape = None if vt is None else vt.shape
        raise FormatError(f"{d / PROMPT}: virtual_tokens must have shape (k, {width}), got {shape}")
    if set(tensors) != {"virtual_tokens"}:
        raise FormatError(f"{d / PROMPT} must hold only virtual_tokens, it also has {sorted(tensors)[:3]}")
    check_values(vt, f"{d / PROMPT}: virtual_tokens", FormatError)
    count = info.get("virtual_tokens")
    if count is not None and vt.shape[0] != count:  # load_prompt requires the count (check_prompt_info)
        raise FormatError(f"{d / CONFIG} says {count} virtual tokens, {PROMPT} has {vt.shape[0]}")
    return vt


def load_prompt(directory: str | Path, model: Model) -> tuple[np.ndarray, dict[str, Any]]:
    """The virtual tokens (k, d) of a weights directory and the config's prompt description.

    Checks that config.json is the one `model` was loaded with (its weights_sha256) and that
    prompt.safetensors is the file the fingerprint recorded."""
    d = Path(directory)
    config = _read_json(d / CONFIG)
    info = config.get("prompt")
    if not isinstance(info, dict):
        raise FormatError(f"{d / CONFIG} describes no prompt; build the directory with `prefixproof build`")
    check_prompt_info(info, model.vocab.size, Checker(FormatError, str(d / CONFIG)))
    tensors = _read_tensors(d / PROMPT)
    vt = _check_prompt_tensors(d, info, tensors, model.d_model)
    if config.get("weights_sha256") != weights_sha256(model):
        raise FormatError(f"{d / CONFIG} is not the config the model was loaded with (weights_sha256 differs); "
                          f"the directory changed while it was read, or the files do not belong together")
    _check_fingerprint(d, config, PROMPT, tensors)
    return vt.astype(np.float64), info


def exact_prompt(vec: ExactArray) -> np.ndarray:
    """A construction's exact virtual token as the (1, d) float64 array files hold."""
    return np.asarray(vec.to_float())[None, :]

