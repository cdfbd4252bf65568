"""Virtual tokens as a PEFT prompt-tuning adapter: adapter_config.json + adapter_model.safetensors.

The files are exactly what peft 0.21.2 writes for `PromptTuningConfig(task_type="CAUSAL_LM")` (same JSON keys,
same tensor name `prompt_embeddings` of shape (num_virtual_tokens, token_dim), safetensors metadata
{"format": "pt"}); only the dtype differs: prefixproof writes the construction's float64 values, where PEFT writes
its prompt encoder's dtype (float32 by default). docs/huggingface.md says what PEFT does with them.

Pure data: JSON and safetensors only, no torch, never pickle. `write_peft_adapter` is called by `prefixproof build`
with the directory it is writing; `read_peft_adapter` validates an adapter (a user's, trained with PEFT, or ours)
and returns its virtual tokens as exact float64 values plus what the file said about them.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from prefixproof.constructions.io import FormatError

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
TENSOR = "prompt_embeddings"
PEFT_VERSION = "0.21.2"
# safetensors dtype codes a prompt may be stored in, and the numpy dtype that reads them
DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
          "BF16": np.dtype(ml_dtypes.bfloat16)}
NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
MAX_HEADER = 1 << 20


class AdapterError(FormatError):
    """An adapter that cannot be used as it is (one line: what is wrong and how to fix it; the CLI's exit 2)."""


def adapter_config(num_virtual_tokens: int, token_dim: int, num_layers: int, num_attention_heads: int,
                   base_model_name_or_path: str | None = None) -> dict[str, Any]:
    """adapter_config.json as peft 0.21.2 writes it for a CAUSAL_LM prompt-tuning adapter with RANDOM init."""
    return {
        "auto_mapping": None,
        "base_model_name_or_path": base_model_name_or_path,
        "inference_mode": True,
        "modules_to_save": None,
        "num_attention_heads": int(num_attention_heads),
        "num_layers": int(num_layers),
        "num_transformer_submodules": 1,
        "num_virtual_tokens": int(num_virtual_tokens),
        "peft_type": "PROMPT_TUNING",
        "peft_version": PEFT_VERSION,
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "revision": None,
        "task_type": "CAUSAL_LM",
        "token_dim": int(token_dim),
        "tokenizer_kwargs": None,
        "tokenizer_name_or_path": None,
    }


def write_peft_adapter(directory: str | Path, virtual_tokens: np.ndarray, num_layers: int,
                       num_attention_heads: int, base_model_name_or_path: str | None = None) -> None:
    """Write the (k, d) virtual tokens into `directory` (which must exist) as a PEFT prompt-tuning adapter, in
    float64. The caller makes the directory appear atomically (build writes into a temporary directory)."""
    vt = np.asarray(virtual_tokens, dtype=np.float64)
    if vt.ndim != 2 or not vt.shape[0] or not np.isfinite(vt).all():
        raise AdapterError(f"virtual tokens must be a finite (k, d) array with k >= 1, got shape {vt.shape}")
    out = Path(directory)
    save_file({TENSOR: np.ascontiguousarray(vt)}, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    config = adapter_config(vt.shape[0], vt.shape[1], num_layers, num_attention_heads, base_model_name_or_path)
    (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class Adapter:
    """A validated prompt-tuning adapter: its virtual tokens as exact float64 values and their stored format."""

    virtual_tokens: np.ndarray  # (k, d) float64, each value exactly the stored one
    stored_dtype: str  # "float64", "float32", "float16" or "bfloat16"
    config: dict[str, Any]

    @property
    def num_virtual_tokens(self) -> int:
        return int(self.virtual_tokens.shape[0])


def has_adapter(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / ADAPTER_CONFIG).is_file() or (d / ADAPTER_WEIGHTS).is_file()


def _read_tensor(path: Path) -> tuple[np.ndarray, str]:
    """The one tensor `prompt_embeddings` of a safetensors file, parsed from its header (never pickle)."""
    if not path.is_file():
        others = sorted(p.name for p in path.parent.glob("adapter_model.*"))
        hint = f" ({others[0]} is not read: only safetensors, never pickle)" if others else ""
        raise AdapterError(f"{path} is missing{hint}; save the adapter with safe_serialization (PEFT's default)")
    raw = path.read_bytes()
    what = f"{path} is not a readable safetensors file (truncated or corrupt; a pickle is never unpickled)"
    if len(raw) < 8:
        raise AdapterError(what)
    (n,) = struct.unpack("<Q", raw[:8])
    if n > min(MAX_HEADER, len(raw) - 8):
        raise AdapterError(what)
    try:
        header = json.loads(raw[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AdapterError(what) from None
    if not isinstance(header, dict):
        raise AdapterError(what)
    names = sorted(k for k in header if k != "__metadata__")
    if names != [TENSOR]:
        raise AdapterError(f"{path} holds {names[:3]}; a PEFT prompt-tuning adapter holds exactly {TENSOR!r}")
    entry = header[TENSOR]
    code, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if code not in DTYPES:
        raise AdapterError(f"{path}: {TENSOR} has dtype {code}; virtual tokens must be F64, F32, F16 or BF16")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise AdapterError(f"{path}: {TENSOR} has shape {shape}; it must be (num_virtual_tokens, token_dim)")
    dt = DTYPES[code]
    start, end = (offsets if isinstance(offsets, list) and len(offsets) == 2 else (None, None))
    size = shape[0] * shape[1] * dt.itemsize
    if not (isinstance(start, int) and isinstance(end, int) and end - start == size and 0 <= start
            and 8 + n + end <= len(raw)):
        raise AdapterError(f"{path}: {TENSOR}'s data offsets {offsets} do not fit its shape and the file "
                           f"(truncated?)")
    body = raw[8 + n + start: 8 + n + end]
    return np.frombuffer(body, dtype=dt).reshape(shape), NAMES[code]


def read_peft_adapter(directory: str | Path, token_dim: int) -> Adapter:
    """Read and validate `directory`'s PEFT prompt-tuning adapter for a model whose stream has `token_dim` dims:
    peft_type PROMPT_TUNING, task CAUSAL_LM, one transformer submodule, num_virtual_tokens and token_dim as in
    the tensor's shape, a float tensor with finite values. Raises AdapterError (one line)."""
    d = Path(directory)
    path = d / ADAPTER_CONFIG
    if not path.is_file():
        raise AdapterError(f"{path} is missing; a PEFT adapter needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AdapterError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise AdapterError(f"{path} must hold a JSON object")
    if config.get("peft_type") != "PROMPT_TUNING":
        raise AdapterError(f"{path}: peft_type is {config.get('peft_type')!r}; only PROMPT_TUNING adapters (soft "
                           f"prompts) are virtual tokens that prefixproof can check")
    if config.get("task_type") not in (None, "CAUSAL_LM"):
        raise AdapterError(f"{path}: task_type is {config.get('task_type')!r}; prefixproof models are CAUSAL_LM")
    if config.get("num_transformer_submodules", 1) not in (None, 1):
        raise AdapterError(f"{path}: num_transformer_submodules must be 1 for a causal LM")
    k, dim = config.get("num_virtual_tokens"), config.get("token_dim")
    for key, value in (("num_virtual_tokens", k), ("token_dim", dim)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise AdapterError(f"{path}: {key} must be a positive integer, got {value!r}")
    if dim != token_dim:
        raise AdapterError(f"{path}: token_dim is {dim} but the model's stream has {token_dim} dimensions")
    vt, stored = _read_tensor(d / ADAPTER_WEIGHTS)
    if vt.shape != (k, dim):
        raise AdapterError(f"{d / ADAPTER_WEIGHTS}: {TENSOR} has shape {vt.shape} but {ADAPTER_CONFIG} says "
                           f"num_virtual_tokens={k}, token_dim={dim}")
    values = vt.astype(np.float64)  # exact: every F32/F16/BF16 value is a float64
    if not np.isfinite(values).all():
        raise AdapterError(f"{d / ADAPTER_WEIGHTS}: {TENSOR} holds NaN or infinity")
    return Adapter(values, stored, config)
