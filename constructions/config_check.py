"""Strict validation of a weights directory's config.json (docs/format.md, section "Validation").

Everything here runs before any array is allocated from the config: exact JSON types (a boolean is `true` or
`false`, never "false"; an integer is never a float or a boolean), enums, bounded sizes, and space sizes that
agree with the tensors actually present. Every error is a one-line `FormatError` naming the field.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

MAX_DIM = 1 << 21  # any declared dimension (vocab, n_ctx, a space's size, a tensor's shape entry)
MAX_LAYERS = 1024  # layers, heads per layer, MLP depth
MAX_ABS = 2.0 ** 64  # |weight|, |virtual-token coordinate|, |attention scale|
PROMPT_MODES = ("sequence", "per_token", "queries")
ALPHABETS = (None, "printable-ascii")
STORAGES = ("dense", "csr")
LAYER_KEYS = {"causal", "attn_residual", "mlp_residual", "layernorm_eps", "heads", "mlp_layers"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _kind(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(v), type(v).__name__)


class Checker:
    """Raises `error(message)` with the field's dotted path in every message."""

    def __init__(self, error: Callable[[str], Exception], where: str = "config.json") -> None:
        self.error, self.where = error, where

    def fail(self, field: str, want: str, value: Any) -> Exception:
        shown = repr(value) if not isinstance(value, (dict, list)) else _kind(value)
        return self.error(f"{self.where}: field {field!r} must be {want}, got {shown[:60]}")

    def get(self, obj: Mapping[str, Any], key: str, field: str) -> Any:
        if key not in obj:
            return self._missing(field)
        return obj[key]

    def _missing(self, field: str) -> Any:
        raise self.error(f"{self.where} has no field {field!r}; rebuild the directory with `prefixproof build`")

    def int(self, obj: Mapping[str, Any], key: str, field: str, lo: int = 1, hi: int = MAX_DIM) -> int:
        v = self.get(obj, key, field)
        if not _is_int(v):
            raise self.fail(field, "an integer", v)
        if not lo <= v <= hi:
            raise self.fail(field, f"an integer in {lo}..{hi}", v)
        return v

    def bool(self, obj: Mapping[str, Any], key: str, field: str) -> bool:
        v = self.get(obj, key, field)
        if not isinstance(v, bool):
            raise self.fail(field, "true or false (a JSON boolean)", v)
        return v

    def number(self, obj: Mapping[str, Any], key: str, field: str, lo: float, hi: float,
               nullable: bool = False) -> float | None:
        v = self.get(obj, key, field)
        if v is None and nullable:
            return None
        if not _is_number(v) or not math.isfinite(v) or not lo <= v <= hi:
            raise self.fail(field, f"a finite number in [{lo:g}, {hi:g}]" + (" or null" if nullable else ""), v)
        return float(v)

    def of(self, obj: Mapping[str, Any], key: str, field: str, kind: type) -> Any:
        v = self.get(obj, key, field)
        if not isinstance(v, kind):
            raise self.fail(field, {dict: "an object", list: "a list", str: "a string"}[kind], v)
        return v

    def enum(self, obj: Mapping[str, Any], key: str, field: str, choices: tuple) -> Any:
        v = self.get(obj, key, field)
        if isinstance(v, bool) or v not in choices:
            raise self.fail(field, "one of " + ", ".join("null" if c is None else repr(c) for c in choices), v)
        return v


def space_size(spec: Any, key: str, c: Checker) -> int:
    """The number of labels a space declares, checked without expanding them."""
    field = f"spaces.{key}"
    if not isinstance(spec, dict):
        raise c.fail(field, 'an object {"name": ..., "blocks": [[block, size], ...]}', spec)
    c.of(spec, "name", f"{field}.name", str)
    blocks = c.of(spec, "blocks", f"{field}.blocks", list)
    total = 0
    for i, run in enumerate(blocks):
        if not (isinstance(run, list) and len(run) == 2 and isinstance(run[0], str)):
            raise c.fail(f"{field}.blocks[{i}]", "a pair [block name, size or null]", run)
        if run[1] is None:
            total += 1
        elif _is_int(run[1]) and 1 <= run[1] <= MAX_DIM:
            total += run[1]
        else:
            raise c.fail(f"{field}.blocks[{i}] size", f"null or an integer in 1..{MAX_DIM}", run[1])
        if total > MAX_DIM:
            raise c.fail(field, f"at most {MAX_DIM} labels in all", total)
    return total


def check_config(config: Mapping[str, Any], c: Checker) -> None:
    """Types, enums and bounds of every field loading reads (the tensors are checked against it later)."""
    c.int(config, "vocab", "vocab")
    c.int(config, "n_ctx", "n_ctx")
    c.enum(config, "alphabet", "alphabet", ALPHABETS)
    c.bool(config, "unembed", "unembed")
    c.of(config, "construction", "construction", dict)
    c.of(config, "weights_sha256", "weights_sha256", str)
    layers = c.of(config, "layers", "layers", list)
    if not 1 <= len(layers) <= MAX_LAYERS:
        raise c.fail("layers", f"a list of 1..{MAX_LAYERS} layers", f"{len(layers)} layers")
    for l, spec in enumerate(layers):
        f = f"layers[{l}]"
        if not isinstance(spec, dict):
            raise c.fail(f, "an object", spec)
        extra = sorted(set(spec) - LAYER_KEYS)
        if extra:
            raise c.error(f"{c.where}: field {f} has the unknown key {extra[0]!r}; known: {', '.join(sorted(LAYER_KEYS))}")
        for flag in ("causal", "attn_residual", "mlp_residual"):
            c.bool(spec, flag, f"{f}.{flag}")
        c.number(spec, "layernorm_eps", f"{f}.layernorm_eps", 1e-300, 1.0, nullable=True)
        c.int(spec, "mlp_layers", f"{f}.mlp_layers", 1, MAX_LAYERS)
        heads = c.of(spec, "heads", f"{f}.heads", list)
        if not 1 <= len(heads) <= MAX_LAYERS:
            raise c.fail(f"{f}.heads", f"a list of 1..{MAX_LAYERS} heads", f"{len(heads)} heads")
        for h, head in enumerate(heads):
            if not isinstance(head, dict):
                raise c.fail(f"{f}.heads[{h}]", 'an object {"name": ..., "scale": ...}', head)
            c.of(head, "name", f"{f}.heads[{h}].name", str)
            c.number(head, "scale", f"{f}.heads[{h}].scale", -MAX_ABS, MAX_ABS)
    spaces = c.of(config, "spaces", "spaces", dict)
    for key, spec in spaces.items():
        space_size(spec, key, c)
    if "prompt" in config:
        check_prompt_info(config["prompt"], config["vocab"], c, require=False)
    table = c.of(config, "tensors", "tensors", dict)
    for name, entry in table.items():
        f = f"tensors.{name}"
        if not isinstance(entry, dict) or set(entry) != {"shape", "storage"}:
            raise c.fail(f, 'an object {"shape": [...], "storage": "dense" or "csr"}', entry)
        c.enum(entry, "storage", f"{f}.storage", STORAGES)
        shape = entry["shape"]
        if not (isinstance(shape, list) and 1 <= len(shape) <= 2 and all(_is_int(s) and 0 <= s <= MAX_DIM
                                                                          for s in shape)):
            raise c.fail(f"{f}.shape", f"a list of 1 or 2 integers in 0..{MAX_DIM}", shape)
        if entry["storage"] == "csr" and len(shape) != 2:
            raise c.fail(f"{f}.shape", "two integers (a CSR tensor is a matrix)", shape)


def check_space_sizes(config: Mapping[str, Any], rows: Callable[[str], int | None], width: int, c: Checker) -> None:
    """Each space's declared size against the tensor it labels, before any label list is built.

    `rows(name)` is the number of rows tensor `name` really has (None when absent); `width` is the number of
    columns of `pos`, the stream's width."""
    spaces = config["spaces"]

    def expect(key: str, n: int | None, what: str) -> None:
        if key not in spaces:
            raise c.error(f"{c.where} has no space {key!r}; rebuild the directory with `prefixproof build`")
        got = space_size(spaces[key], key, c)
        if n is not None and got != n:
            raise c.error(f"{c.where}: space {key!r} declares {got} labels but {what} has {n}; labels and shapes "
                          f"must agree")

    expect("stream", width, "the positional table (columns of pos)")
    for l, spec in enumerate(config["layers"]):
        expect(f"layers.{l}.attn_out", rows(f"layers.{l}.heads.0.W_O"), f"layers.{l}.heads.0.W_O (rows)")
        n = spec["mlp_layers"]
        for k in range(n - 1):
            expect(f"layers.{l}.hidden.{k}", rows(f"layers.{l}.mlp.{k}.W"), f"layers.{l}.mlp.{k}.W (rows)")
        expect(f"layers.{l}.out", rows(f"layers.{l}.mlp.{n - 1}.W"), f"layers.{l}.mlp.{n - 1}.W (rows)")


def check_values(arr: np.ndarray, what: str, error: Callable[[str], Exception]) -> None:
    """Finite floating-point values within +-MAX_ABS."""
    if not np.issubdtype(arr.dtype, np.floating):
        raise error(f"{what} has dtype {arr.dtype}; it must be floating point")
    if arr.size:
        if not np.isfinite(arr).all():
            raise error(f"{what} contains NaN or infinity; values must be finite")
        big = float(np.abs(arr).max())
        if big > MAX_ABS:
            raise error(f"{what} holds a value of magnitude {big:.3g}, outside the allowed range +-2^64 "
                        f"(docs/format.md, Validation)")


def check_prompt_info(info: Any, V: int, c: Checker, require: bool = True) -> None:
    """The prompt description: file name, counts, the mode enum and its mode's fields. With `require=False`
    (loading the model, before `load_prompt`) only the fields present are checked."""
    if not isinstance(info, dict):
        raise c.fail("prompt", "an object", info)

    def has(key: str) -> bool:
        return require or key in info

    if info.get("file", "prompt.safetensors") != "prompt.safetensors":
        raise c.fail("prompt.file", '"prompt.safetensors"', info.get("file"))
    if has("virtual_tokens"):
        c.int(info, "virtual_tokens", "prompt.virtual_tokens", 0, MAX_DIM)
    mode = c.enum(info, "mode", "prompt.mode", PROMPT_MODES) if has("mode") else None
    for key in ("inputs", "steps"):
        if (mode == "queries" and require) or key in info:
            c.int(info, key, f"prompt.{key}", 1, MAX_DIM)
    for key in ("target_tokens", "map_tokens"):
        if key in info:
            toks = info[key]
            if not (isinstance(toks, list) and all(_is_int(t) and 0 <= t < V for t in toks)):
                raise c.fail(f"prompt.{key}", f"a list of token ids in 0..{V - 1}", toks)
