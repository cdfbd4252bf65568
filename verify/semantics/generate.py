"""Greedy generation with a key/value cache.

Each step embeds only the newest token and runs the layers on that one
position against the cached keys and values (`forward.run_layers` with a
non-empty cache), so producing N tokens costs O(N^2 d) rather than the
O(N^3 d) of recomputing the whole prefix every step.

Why the verifier may use one teacher-forced pass instead (docs/semantics.md):
with causal attention the output at position i depends only on positions
0..i. Greedy decoding emits Y_0 iff the pass over the virtual token alone has
argmax Y_0; given that it emitted Y_0..Y_{i-1}, its context equals the
teacher-forced context, so it emits Y_i iff the teacher-forced argmax at
position i is Y_i. By induction, greedy decoding yields Y exactly when every
teacher-forced position decodes its target with a positive margin.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from prefixproof.constructions.model import Model
from prefixproof.verify.semantics.ops import NumpyOps, Ops
from prefixproof.verify.semantics.forward import Prefix, embed, new_caches, run_layers
from prefixproof.verify.parallel import default_workers, ordered_map
from prefixproof.verify.budget import Budget, current
from prefixproof.verify.estimates import generation_bytes, shape_of


BATCH_BYTES = 256 << 20  # a batch larger than this is no faster: chunks stay below it even when the budget is larger


class GenerationError(ValueError):
    """The model or request does not allow incremental greedy generation."""


@dataclass(frozen=True)
class Generation:
    tokens: np.ndarray  # (B, steps) greedy choices (argmax; ties go to the lowest id)
    margins: np.ndarray  # (B, steps) top logit minus runner-up; 0 means a tie


def top_margin(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax and top-minus-runner-up along the last axis."""
    choice = np.argmax(logits, axis=-1)
    if logits.shape[-1] < 2:
        return choice, np.full(choice.shape, np.inf)
    part = np.partition(logits, -2, axis=-1)
    return choice, part[..., -1] - part[..., -2]


def max_steps(model: Model, n_soft: int, n_prompt: int) -> int:
    """How many tokens fit: one per position from the last prompt position to the end of the context."""
    return model.n_ctx - (n_soft + n_prompt) + 1


def generate(
    model: Model,
    soft: Any = None,
    prompt: Any = None,
    steps: int | None = None,
    *,
    prefixes: Sequence[Prefix | None] | None = None,
    ops: Ops | None = None,
) -> Generation:
    """Greedily extend [virtual tokens, prompt tokens] by `steps` tokens (default: fill the context)."""
    if not all(layer.causal for layer in model.layers):
        raise GenerationError("incremental generation needs causal attention in every layer")
    ops = ops or NumpyOps()
    prompt = None if prompt is None else np.asarray(prompt, dtype=np.int64)
    n_soft = 0 if soft is None else soft.shape[1]
    n_prompt = 0 if prompt is None else prompt.shape[1]
    if n_soft + n_prompt == 0:
        raise GenerationError("generation needs at least one virtual token or prompt token to start from")
    limit = max_steps(model, n_soft, n_prompt)
    steps = limit if steps is None else steps
    if limit < 1:
        raise GenerationError(f"the input is too long: {n_soft} virtual + {n_prompt} input tokens leave no room in "
                              f"the context of {model.n_ctx} positions; give at most "
                              f"{max(model.n_ctx - n_soft, 0)} input tokens")
    if not 1 <= steps <= limit:
        raise GenerationError(f"can generate 1..{limit} tokens within the context of {model.n_ctx}, asked for {steps}")

    caches = new_caches(model, prefixes, ops)
    x = embed(model, prompt, soft, 0, ops)
    # Only the last position's logits are needed: the last layer's other queries are skipped (their keys and
    # values still enter the cache), which gives the same values (forward.run_layer, `rows`).
    logits = run_layers(model, x, caches, ops, outputs_at=np.array([x.shape[1] - 1]))[:, -1]
    tokens, margins = [], []
    for step in range(steps):
        choice, margin = top_margin(np.asarray(logits))
        tokens.append(choice)
        margins.append(margin)
        if step + 1 < steps:
            pos = n_soft + n_prompt + step
            x = embed(model, choice[:, None], None, pos, ops)
            logits = run_layers(model, x, caches, ops)[:, -1]
    return Generation(np.stack(tokens, axis=1), np.stack(margins, axis=1))


def generate_many(
    model: Model,
    soft: np.ndarray | None,
    prompt: np.ndarray | None = None,
    steps: int | None = None,
    *,
    chunk: int | None = None,
    workers: int | None = None,
    dtype: Any = np.float64,
    progress: Callable[[int, int], None] | None = None,
    budget: Budget | None = None,
) -> Generation:
    """`generate` over a large batch, streamed in chunks on `workers` threads.

    `soft` is (B, k, d), or (k, d) shared by every input (never copied B times). Without `chunk`, the chunk
    size comes from the memory budget: `generation_bytes` per input times the chunks in flight stays within
    it (OverBudget before anything is allocated when not even one input fits), at most 4096 and at most an
    even split over the workers. `progress(done, total)` is called after each chunk."""
    shared = soft is not None and soft.ndim == 2
    n_soft = 0 if soft is None else soft.shape[-2]
    n_prompt = 0 if prompt is None else prompt.shape[1]
    B = (1 if prompt is None else prompt.shape[0]) if shared or soft is None else soft.shape[0]
    workers = workers or default_workers()
    todo = max_steps(model, n_soft, n_prompt) if steps is None else steps
    if chunk is None:
        per_input = generation_bytes(shape_of(model), n_soft + n_prompt, max(todo, 1), np.dtype(dtype).itemsize)
        at_most = max(1, min(4096, BATCH_BYTES // per_input, -(-B // workers)))
        chunk = (budget or current()).batch("incremental generation (one input)", per_input, workers=workers,
                                            at_most=at_most)

    def one(lo: int) -> Generation:
        sl = slice(lo, min(lo + chunk, B))
        part = None if soft is None else (np.broadcast_to(soft, (sl.stop - lo,) + soft.shape) if shared else soft[sl])
        return generate(model, soft=part, prompt=None if prompt is None else prompt[sl], steps=steps,
                        ops=NumpyOps(dtype))

    parts, done = [], 0
    for lo, g in ordered_map(one, range(0, B, chunk), workers):
        parts.append(g)
        done += len(g.tokens)
        if progress is not None:
            progress(done, B)
    return Generation(np.concatenate([g.tokens for g in parts]), np.concatenate([g.margins for g in parts]))
