"""Parsing what users type: targets, token lists, map specs and map files.

Every function raises `InputError` with a one-line message that says what is
wrong and how to write it instead; the CLI turns it into exit status 2.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from prefixproof.constructions.alphabet import PRINTABLE_ASCII, TokenError, encode_text, parse_tokens
from prefixproof.constructions.io import read_json

MAP_SPEC_HELP = (
    "identity | reverse | shift:K | const:T | random:SEED | SRC->DST "
    "(tr-style: SRC and DST of equal length, e.g. 'abc->xyz'; with --vocab, '0,1,2->2,0,1'); "
    "tokens not mentioned map to themselves"
)


class InputError(ValueError):
    """A user-supplied value that does not fit the vocabulary or the construction."""


_INT = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only ('²' is a digit to str.isdigit, not to int)


def parse_int(text: str, what: str, lo: int | None = None) -> int:
    """A plain decimal integer of at most 18 digits (>= `lo` when given); InputError naming `what` otherwise."""
    if not _INT.fullmatch(text):
        raise InputError(f"{what}: {text[:40]!r} is not an integer of at most 18 ASCII digits")
    value = int(text)
    if lo is not None and value < lo:
        raise InputError(f"{what}: {value} must be >= {lo}")
    return value


def tokens_of(text: str, alphabet: str | None, V: int, what: str) -> list[int]:
    """Text in the ASCII alphabet, or comma-separated integers for a plain vocabulary."""
    try:
        return encode_text(text) if alphabet == PRINTABLE_ASCII else parse_tokens(text, V)
    except TokenError as e:
        raise InputError(f"{what}: {e}") from None


def _one_token(text: str, alphabet: str | None, V: int, what: str) -> int:
    toks = tokens_of(text, alphabet, V, what)
    if len(toks) != 1:
        raise InputError(f"{what}: {text!r} is {len(toks)} tokens; a map sends one token to one token")
    return toks[0]


def parse_map_spec(spec: str, alphabet: str | None, V: int) -> list[int]:
    """A map [V] -> [V] from a --map SPEC (see MAP_SPEC_HELP)."""
    m = list(range(V))
    name, _, arg = spec.partition(":")
    if spec == "identity":
        return m
    if spec == "reverse":
        return [V - 1 - k for k in range(V)]
    if name in ("shift", "random") and "->" not in spec:
        what = "a seed >= 0" if name == "random" else "a whole number"
        try:
            K = parse_int(arg, f"--map {name}", lo=0 if name == "random" else None)
        except InputError:
            raise InputError(f"--map {spec[:40]!r} is not a map spec: {name}:K needs {what} in ASCII digits "
                             f"(at most 18), e.g. {name}:3") from None
        if name == "shift":
            return [(k + K) % V for k in range(V)]
        return [int(t) for t in np.random.default_rng(K).integers(0, V, size=V)]
    if name == "const" and arg:
        return [_one_token(arg, alphabet, V, "--map const")] * V
    L = (len(spec) - 2) // 2
    if alphabet == PRINTABLE_ASCII and len(spec) >= 4 and len(spec) % 2 == 0 and spec[L:L + 2] == "->":
        src = tokens_of(spec[:L], alphabet, V, "--map source")
        dst = tokens_of(spec[L + 2:], alphabet, V, "--map target")
    elif alphabet != PRINTABLE_ASCII and "->" in spec:
        left, right = spec.split("->", 1)
        src, dst = tokens_of(left, None, V, "--map source"), tokens_of(right, None, V, "--map target")
        if len(src) != len(dst):
            raise InputError(f"--map: {len(src)} source tokens but {len(dst)} target tokens")
    else:
        raise InputError(f"--map {spec!r} is not a map spec; use {MAP_SPEC_HELP}")
    return _apply_pairs(m, list(zip(src, dst)), "--map")


def _apply_pairs(m: list[int], pairs: list[tuple[int, int]], what: str) -> list[int]:
    seen: dict[int, int] = {}
    for s, t in pairs:
        if s in seen and seen[s] != t:
            raise InputError(f"{what}: token {s} is mapped twice (to {seen[s]} and {t})")
        seen[s] = t
        m[s] = t
    return m


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InputError(f"map file: key {k!r} appears twice")
        out[k] = v
    return out


def _read_map_file(path: str) -> Any:
    """The JSON content of a map file (never anything but JSON), with duplicate keys refused."""
    return read_json(Path(path), InputError, f"map file {path} does not exist", f"map file {path}", _no_duplicates)


def parse_map_file(path: str, alphabet: str | None, V: int) -> list[int]:
    """A map from a JSON file: an object {input: output} (unlisted inputs map to themselves), or a list of V tokens."""
    data = _read_map_file(path)
    if isinstance(data, list):
        if len(data) != V or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < V for t in data):
            raise InputError(f"map file {path}: a list map needs exactly {V} integers in 0..{V - 1}")
        return list(data)
    if not isinstance(data, dict):
        raise InputError(f"map file {path} must hold a JSON object {{input: output}} or a list of {V} tokens")
    pairs = []
    for k, v in data.items():
        if isinstance(v, int) and not isinstance(v, bool) and alphabet != PRINTABLE_ASCII:
            v = str(v)
        if not isinstance(v, str):
            want = "a one-character string" if alphabet == PRINTABLE_ASCII else "a token id"
            raise InputError(f"map file {path}: the value for {k!r} must be {want}, got {v!r}")
        pairs.append((_one_token(k, alphabet, V, f"map file key {k!r}"), _one_token(v, alphabet, V, f"map file value {v!r}")))
    return _apply_pairs(list(range(V)), pairs, f"map file {path}")


def parse_table(path: str, alphabet: str | None, V: int, L: int | None, R: int | None,
                admit: Callable[[int, int], None] | None = None) -> tuple[Any, int, int]:
    """A table from a JSON object {input: response} -> (table (V^L, R) of token ids, L, R).

    Inputs have exactly L tokens; responses at most R (padded with token 0). Unlisted inputs answer
    token 0. L and R default to the map file's key length and longest response. `admit(L, R)` is called
    before the table is allocated (the memory budget refuses sizes that do not fit).
    """
    data = _read_map_file(path)
    if not isinstance(data, dict) or not data:
        raise InputError(f"map file {path} must hold a non-empty JSON object {{input: response}}")
    pairs = []
    for k, v in data.items():
        if not isinstance(v, str):
            raise InputError(f"map file {path}: the response for {k!r} must be a string, got {v!r}")
        pairs.append((tokens_of(k, alphabet, V, f"map file key {k!r}"),
                      tokens_of(v, alphabet, V, f"map file response {v!r}") if v else []))
    lengths = {len(k) for k, _ in pairs}
    if len(lengths) != 1:
        raise InputError(f"map file {path}: inputs have different lengths {sorted(lengths)}; all need L tokens")
    L_file = lengths.pop()
    if L is not None and L != L_file:
        raise InputError(f"map file {path}: inputs have {L_file} tokens but L={L} was asked for")
    R_file = max(len(r) for _, r in pairs)
    R = R or max(R_file, 1)
    if R_file > R:
        raise InputError(f"map file {path}: a response has {R_file} tokens, more than the response length {R}")
    if admit is not None:
        admit(L_file, R)
    table = np.zeros((V ** L_file, R), dtype=np.int64)
    for k, r in pairs:
        a = 0
        for t in k:
            a = a * V + t
        table[a, :len(r)] = r
    return table, L_file, R
