"""Counting behaviours: hard-prompt tokens versus one virtual token (the paper's comparison in Section 3).

Greedy generation is a function of its input, so k hard-prompt tokens select at
most V^k completions (one per prompt). One virtual token of the Theorem 1
construction reaches every Y in [V]^N. Both sides are counted here by
exhaustive generation (`prefixproof.verify.semantics.generate.generate`, incremental decoding with a
key/value cache, the forward semantics of `verify/semantics/forward.py`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from prefixproof.constructions.basis import Space
from prefixproof.constructions.model import Dense, Head, Layer, Model, Vocab
from prefixproof.verify.semantics.generate import generate

COUNT_LIMIT = 1 << 16  # inputs enumerated at most, per count


@dataclass(frozen=True)
class Count:
    inputs: int  # prompts (or virtual tokens) enumerated
    distinct: int  # distinct completions
    steps: int  # tokens generated per input


def all_sequences(V: int, k: int) -> np.ndarray:
    return np.array(list(itertools.product(range(V), repeat=k)), dtype=np.int64).reshape(-1, k)


def hard_prompt_count(model: Model, k: int, batch: int = 4096) -> Count:
    """Distinct greedy completions over all V^k hard prompts of length k (filling the context)."""
    V = model.vocab.size
    if V**k > COUNT_LIMIT:
        raise ValueError(f"V^k = {V}^{k} exceeds the exhaustive limit {COUNT_LIMIT}")
    prompts = all_sequences(V, k)
    seen = set()
    steps = model.n_ctx - k + 1
    for lo in range(0, len(prompts), batch):
        out = generate(model, prompt=prompts[lo:lo + batch], steps=steps).tokens
        seen.update(map(tuple, out.tolist()))
    return Count(len(prompts), len(seen), steps)


def virtual_token_count(model: Model, encode_batch, V: int, N: int, batch: int = 4096) -> tuple[Count, int]:
    """Distinct completions over all V^N virtual tokens encode_batch(Y); also how many reproduce their target Y."""
    if V**N > COUNT_LIMIT:
        raise ValueError(f"V^N = {V}^{N} exceeds the exhaustive limit {COUNT_LIMIT}")
    targets = all_sequences(V, N)
    seen, exact = set(), 0
    for lo in range(0, len(targets), batch):
        Y = targets[lo:lo + batch]
        out = generate(model, soft=encode_batch(Y), steps=N).tokens
        seen.update(map(tuple, out.tolist()))
        exact += int((out == Y).all(axis=1).sum())
    return Count(len(targets), len(seen), N), exact


def random_model(V: int, n_ctx: int, seed: int, d: int = 16) -> Model:
    """A seeded random one-layer, two-head model with V tokens and context n_ctx (a contrast to the construction)."""
    rng = np.random.default_rng(seed)
    s, hid = Space.anonymous("stream", d), Space.anonymous("hidden", 16)
    heads = tuple(Head(f"h{h}", rng.normal(size=(4, d)), rng.normal(size=(4, d)), rng.normal(size=(4, d)),
                       rng.normal(size=(d, 4)), 1.0) for h in range(2))
    mlp = (Dense(rng.normal(size=(16, d)), rng.normal(size=16)), Dense(rng.normal(size=(V, 16)), rng.normal(size=V)))
    layer = Layer(heads, mlp, s, (hid,), Space.anonymous("logits", V), causal=True, attn_residual=True)
    return Model(Vocab(V), s, rng.normal(size=(V, d)) * 3, rng.normal(size=(n_ctx, d)), (layer,))
