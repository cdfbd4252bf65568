"""Ground truth for the self-test: exhaustive greedy generation over every input of a lookup claim.

Uses only `prefixproof/audit/plain_reader.py` (plain numpy, no prefixproof code) and the
claims' encodings as docs/constructions.md states them:

| claim | inputs | virtual tokens |
|---|---|---|
| theorem1 (V, N) | every target Y in [V]^N | `target:k = Y_k / V` |
| theorem2 (V) | every map m: [V] -> [V], every user token u | `map:u = m(u) / V` |
| long_response, multi_token, conditional | every table T: [V]^L -> [V]^R, every u | `table:a = T[a,r]/V` (r) |
| multi_token_packing (V, L) | every map T: [V]^L -> [V], every input u | `pay:a = sum_i T[a D + i] V^-(i+1)` |

with D = V^(L-1).

Here a = index(u) = sum_l u_l V^(L-1-l). Payload values are computed exactly
(fractions), rounded to float64, then cast to the execution dtype.

A directory is *correct* for a claim when greedy generation reproduces the
expected tokens with a positive margin on every input; otherwise it is
*broken*, with a count of wrong inputs and one example.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterator

import numpy as np

from prefixproof.audit.plain_reader import PlainModel, greedy, read_dir

CHUNK = 16384


@dataclass
class Truth:
    broken: bool
    inputs: int
    wrong: int
    min_margin: float
    example: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        if not self.broken:
            return f"correct on all {self.inputs} inputs (min margin {self.min_margin:.3g})"
        return f"broken: {self.wrong} of {self.inputs} inputs wrong, e.g. {self.example}"


def _digits(codes: np.ndarray, base: int, width: int) -> np.ndarray:
    """Base-`base` digits of `codes`, most significant first: (len(codes), width)."""
    return (codes[:, None] // base ** np.arange(width - 1, -1, -1)) % base


def _shape(claim: str, params: dict[str, int]) -> tuple[int, int, int]:
    """(V, L, R) of a claim; theorem1 is L=0 with R=N, theorem2 is L=1, R=1."""
    V = params["V"]
    if claim == "theorem1":
        return V, 0, params["N"]
    if claim == "theorem2":
        return V, 1, 1
    if claim == "long_response":
        return V, 1, params["R"]
    if claim in ("multi_token", "multi_token_packing"):
        return V, params["L"], 1
    return V, params["L"], params["R"]


def _payloads(claim: str, m: PlainModel, V: int, L: int, tables: np.ndarray) -> np.ndarray:
    """Virtual tokens (T, R, d) in float64 for tables (T, rows, R) of tokens."""
    T, rows, R = tables.shape
    d = m.embed.shape[1]
    if claim == "multi_token_packing":  # numerator < V^D <= 2^53 here, so num / V^D is correctly rounded
        D = V ** (L - 1)
        if V ** D > 2 ** 53:
            raise ValueError(f"packing truth needs V^D <= 2^53, got V={V}, D={D}")
        out = np.zeros((T, 1, d))
        for a in range(V):
            num = sum(tables[:, a * D + i, 0].astype(np.int64) * V ** (D - 1 - i) for i in range(D))
            out[:, 0, m.labels[f"pay:{a}"]] = num.astype(np.float64) / float(V ** D)
        return out
    block = {"theorem1": "target", "theorem2": "map"}.get(claim, "table")
    cols = [m.labels[f"{block}:{a}"] for a in range(rows)]
    grid = np.array([float(Fraction(y, V)) for y in range(V)])
    out = np.zeros((T, R, d))
    out[:, :, cols] = np.swapaxes(grid[tables], 1, 2)
    return out


def claim_cases(claim: str, params: dict[str, int],
                m: PlainModel) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every (virtual tokens (B, R, d), user tokens (B, L), expected (B, R)) of the claim, in chunks."""
    V, L, R = _shape(claim, params)
    if claim == "theorem1":
        rows, n_tables, inputs = 1, V ** R, np.zeros((1, 0), dtype=np.int64)
    else:
        rows = V ** L
        n_tables = V ** (rows * R)
        inputs = _digits(np.arange(V ** L), V, L)
    per = max(1, CHUNK // len(inputs))
    for lo in range(0, n_tables, per):
        codes = np.arange(lo, min(n_tables, lo + per))
        if claim == "theorem1":  # one "table" per target: N rows of one response token each
            Y = _digits(codes, V, R)
            yield _payloads(claim, m, V, L, Y[:, :, None]), np.zeros((len(codes), 0), dtype=np.int64), Y
            continue
        tables = _digits(codes, V, rows * R).reshape(len(codes), rows, R)
        soft = _payloads(claim, m, V, L, tables)
        a = np.arange(len(inputs))
        yield (np.repeat(soft, len(inputs), axis=0), np.tile(inputs, (len(codes), 1)),
               tables[:, a, :].reshape(len(codes) * len(inputs), R))


def claim_truth(source: Any, claim: str, params: dict[str, int], dtype: Any = np.float64,
                cases: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> Truth:
    """Exhaustive greedy generation over every input of `claim` (module docstring) in `dtype`.

    `source` is a weights directory or a `PlainModel` already read.
    `cases` may pass `list(claim_cases(...))` computed once: the inputs depend only on the stream labels.
    """
    m64 = source if isinstance(source, PlainModel) else read_dir(source)
    m = m64.astype(dtype)
    R = _shape(claim, params)[2]
    total, wrong, low, example = 0, 0, np.inf, {}
    for soft, prompt, expected in (cases if cases is not None else claim_cases(claim, params, m64)):
        toks, margins = greedy(m, soft.astype(dtype), prompt, R)
        ok = ((toks == expected) & (margins > 0)).all(axis=1)
        total += len(ok)
        wrong += int((~ok).sum())
        with np.errstate(invalid="ignore"):
            low = min(low, float(np.nanmin(np.where(toks == expected, margins, -np.inf))))
        if not example and not ok.all():
            i = int(np.argmin(ok))
            example = {"input": prompt[i].tolist(), "expected": expected[i].tolist(), "got": toks[i].tolist(),
                       "margins": [float(x) for x in margins[i]]}
            if claim == "theorem1":
                example["input"] = f"target {expected[i].tolist()}"
    return Truth(wrong > 0, total, wrong, low, example)


def stored_generation(directory: Any, dtype: Any = np.float64) -> np.ndarray | None:
    """What greedy generation from the stored prompt gives, per the config's prompt mode; None if it cannot run.

    sequence: one row, tokens until the context is full; per_token: one row per user token u, [v, u] -> 1 token;
    queries: one row per input of `inputs` tokens (index order), `steps` tokens each.
    """
    m64 = read_dir(directory)
    m = m64.astype(dtype)
    info = m64.config.get("prompt", {})
    soft = m64.prompt.astype(dtype)[None]
    k, V = soft.shape[1], m64.vocab
    try:
        if info.get("mode") == "sequence":
            steps = m.n_ctx - k + 1
            if steps < 1:
                return None
            toks, margins = greedy(m, soft, np.zeros((1, 0), dtype=np.int64), steps)
        else:
            L, R = (1, 1) if info.get("mode") == "per_token" else (int(info["inputs"]), int(info["steps"]))
            inputs = _digits(np.arange(V ** L), V, L)
            toks, margins = greedy(m, np.repeat(soft, len(inputs), axis=0), inputs, R)
    except ValueError:  # the stored prompt does not fit in the context
        return None
    return np.where(margins > 0, toks, -1)  # a tie or NaN is no answer


def recorded_output(directory: Any) -> np.ndarray | None:
    """What config.json records the stored prompt generates, in the layout of `stored_generation`; None if it
    records nothing usable (queries mode stores no table today; a table must be a list of rows of token ids)."""
    info = read_dir(directory).config.get("prompt", {})
    if "target_tokens" in info:
        return np.array([info["target_tokens"]])
    if "map_tokens" in info:
        return np.array(info["map_tokens"])[:, None]
    table = info.get("table")
    if isinstance(table, list) and table and all(isinstance(r, list) and r and all(isinstance(t, int) for t in r)
                                                 for r in table) and len({len(r) for r in table}) == 1:
        return np.array(table)
    return None


def stored_prompt_truth(directory: Any, reference: np.ndarray, dtype: Any = np.float64) -> Truth:
    """Whether generation from the directory's stored prompt reproduces `reference` (recorded output)."""
    got = stored_generation(directory, dtype)
    n = len(reference)
    if got is None:
        return Truth(True, n, n, float("nan"), {"got": "the stored prompt does not fit in the context"})
    if got.shape[0] != reference.shape[0] or got.shape[1] < reference.shape[1]:
        return Truth(True, n, n, float("nan"), {"got": got.tolist(), "expected": reference.tolist()})
    got = got[:, : reference.shape[1]]
    bad = ~(got == reference).all(axis=1)
    example = {} if not bad.any() else {"row": int(np.argmax(bad)), "got": got[np.argmax(bad)].tolist(),
                                        "expected": reference[np.argmax(bad)].tolist()}
    return Truth(bool(bad.any()), n, int(bad.sum()), float("nan"), example)
