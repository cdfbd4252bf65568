"""The fingerprint of a whole weights directory (docs/format.md, section "Fingerprint").

It covers every field of config.json (except the fingerprint itself), every tensor of model.safetensors and,
when config.json describes a prompt, every tensor of prompt.safetensors. It is computed from the parsed
objects that loading actually uses, so what is checked is what runs. The recipe is deliberately plain
(sha256, canonical JSON, little-endian C-order bytes) so that anyone can recompute it without prefixproof.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import numpy as np

VERSION = 1
FIELD = "fingerprint"
PARTS = ("config.json", "model.safetensors", "prompt.safetensors")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII only, no NaN: the bytes every digest of a JSON value is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def config_digest(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of config.json without its "fingerprint" field."""
    return hashlib.sha256(canonical_json({k: v for k, v in config.items() if k != FIELD})).hexdigest()


def tensors_digest(tensors: Mapping[str, np.ndarray]) -> str:
    """sha256 over the tensors in sorted name order: a header line, then the little-endian C-order bytes."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        le = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        h.update(canonical_json([name, le.dtype.str, list(le.shape)]) + b"\n")
        h.update(le.tobytes())
    return h.hexdigest()


def fingerprint(config: Mapping[str, Any], model_tensors: Mapping[str, np.ndarray],
                prompt_tensors: Mapping[str, np.ndarray] | None) -> dict[str, Any]:
    """The "fingerprint" object config.json records: one digest per part, and `sha256` over them all."""
    parts: dict[str, Any] = {"version": VERSION, "config.json": config_digest(config),
                             "model.safetensors": tensors_digest(model_tensors)}
    if prompt_tensors is not None:
        parts["prompt.safetensors"] = tensors_digest(prompt_tensors)
    return {**parts, "sha256": hashlib.sha256(canonical_json(parts)).hexdigest()}


def differences(recorded: Any, config: Mapping[str, Any], part: str, tensors: Mapping[str, np.ndarray]) -> list[str]:
    """What disagrees with the recorded fingerprint: the config itself (always checked) and one tensor file.

    Returns human-readable names of the parts that differ (empty when all agree); raises ValueError when the
    recorded object is not a fingerprint at all."""
    required = {"version", "sha256", "config.json", "model.safetensors"}
    if not isinstance(recorded, dict) or recorded.get("version") != VERSION or not required <= set(recorded) or \
            not set(recorded) <= required | {"prompt.safetensors"} or \
            not all(isinstance(v, str) for k, v in recorded.items() if k != "version"):
        raise ValueError(f"it must be an object with version {VERSION} and the sha256 strings "
                         f"{', '.join(sorted(required - {'version'}))}[, prompt.safetensors]")
    out = []
    if recorded["sha256"] != hashlib.sha256(canonical_json({k: v for k, v in recorded.items()
                                                            if k != "sha256"})).hexdigest():
        out.append("the fingerprint's own sha256")
    if recorded["config.json"] != config_digest(config):
        out.append("config.json (a field was edited after the build)")
    if part not in recorded:
        out.append(f"{part} (not part of the build)")
    elif recorded[part] != tensors_digest(tensors):
        out.append(f"{part} (replaced or edited after the build)")
    return out
