"""The `adapter-prompt` obligation: the directory's PEFT prompt-tuning adapter makes the weights answer what
config.json records, on every user input.

`verify --weights DIR --claim C` runs it when DIR holds adapter_config.json / adapter_model.safetensors (written by
`prefixproof build`, or trained with PEFT by the user and put next to the base). The adapter was validated before
the run (`prefixproof.constructions.peft_adapter.read_peft_adapter`: shape, dtype, finite, num_virtual_tokens;
a bad one is a one-line error, exit 2). This obligation then checks:

  1. it has the claim's number of virtual tokens;
  2. whether it is the construction's own encoding of the recorded table (payload on the stored format's grid,
     zeros elsewhere). That is reported, not demanded: a prompt trained with PEFT is not on the grid, and only
     then does the weights' `decode` certificate speak about it;
  3. greedy generation (verify/semantics/generate.py, key/value cache) on every user input reproduces the table
     config.json records (prompt.target_tokens / map_tokens / table_tokens) with a positive margin, in every
     execution of the run's format, for the values as stored and, when they are stored wider than float32, also
     rounded to float32: peft 0.21.2 holds a prompt-tuning adapter in a float32 nn.Embedding whatever the base
     model's dtype, so that is what `PeftModel.from_pretrained(base, DIR)` runs.

Verdicts: a wrong answer as stored, or a wrong count, is FALSIFIED (with the input and both sides); all right, in
both variants, is CHECKED (every user input evaluated). Right as stored but wrong once rounded to float32 is
UNKNOWN(reason, with the count and an example): the adapter is correct, PEFT's default loading is not (measured: the
count equals what PeftModel.generate gets wrong; tests/test_hf.py). No recorded table is UNKNOWN(reason).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from prefixproof.constructions.alphabet import render
from prefixproof.constructions.io import CONFIG, FormatError, read_json
from prefixproof.constructions.peft_adapter import read_peft_adapter
from prefixproof.theorems.obligations.base import RunContext
from prefixproof.theorems.obligations.prompt_layouts import RECORD_KEY, Layout
from prefixproof.theorems.obligations.stored_prompt import SHOWN, _generate_all, _wrong
from prefixproof.verify.semantics.executions import executions
from prefixproof.verify.semantics.formats import round_to
from prefixproof.verify.semantics.generate import GenerationError, max_steps
from prefixproof.verify.verdict import Coverage, Record, Verdict

NUMPY = {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32), "float16": np.dtype(np.float16),
         "bfloat16": np.dtype(ml_dtypes.bfloat16)}


def _variants(values: np.ndarray, stored: str) -> list[tuple[str, np.ndarray]]:
    """The prompts to run: as stored, and as PEFT holds them (float32) when that rounds them."""
    out = [(f"as stored ({stored})", values)]
    if stored == "float64":
        held = values.astype(np.float32).astype(np.float64)
        if not np.array_equal(held, values):
            out.append(("as PEFT holds it (float32)", held))
    return out


def run_adapter_prompt(claim: str, ctx: RunContext) -> Record:
    """The `adapter-prompt` obligation (module docstring). Longer than 60 lines on purpose: its three checks in
    the order they are reported."""
    t0 = time.perf_counter()
    where = ctx.extra.get("adapter_dir")
    common: dict[str, Any] = dict(claim=claim, obligation="adapter-prompt", params=dict(ctx.params),
                                  method="PEFT adapter vs config.json; greedy generation on every input",
                                  dtype=ctx.dtype, weights_sha256=ctx.weights_sha256)

    def done(verdict: Verdict, reason: str | None = None, arithmetic: str = f"numpy {ctx.dtype}",
             **kw: Any) -> Record:
        return Record(verdict=verdict, reason=reason, seconds=time.perf_counter() - t0, arithmetic=arithmetic,
                      **kw, **common)

    if not where or ctx.model is None:
        return done(Verdict.UNKNOWN, "no adapter directory given: there is no PEFT adapter to check")
    try:
        adapter = read_peft_adapter(where, ctx.model.d_model)
    except FormatError as e:
        return done(Verdict.FALSIFIED, f"the adapter cannot be used: {e}")
    lay = Layout.of(claim, ctx.model)
    stored = adapter.stored_dtype
    variants = _variants(adapter.virtual_tokens, stored)
    arith = f"numpy {ctx.dtype}; adapter stored in {stored}" + \
        ("; also rounded to float32 as PEFT holds it" if len(variants) > 1 else "")
    details: dict[str, Any] = {"adapter": {"virtual_tokens": adapter.num_virtual_tokens, "dtype": stored},
                               "claim_virtual_tokens": lay.virtual}
    if adapter.num_virtual_tokens != lay.virtual:
        return done(Verdict.FALSIFIED, f"the adapter has {adapter.num_virtual_tokens} virtual token(s); {claim} with "
                    f"these weights uses {lay.virtual}", arith, details=details)
    config = read_json(Path(where) / CONFIG, FormatError, f"{Path(where) / CONFIG} is missing")
    info = config.get("prompt") if isinstance(config, dict) and isinstance(config.get("prompt"), dict) else {}
    try:
        recorded = lay.recorded(info)
    except ValueError as e:
        return done(Verdict.FALSIFIED, str(e), arith, details=details)
    vt = adapter.virtual_tokens
    if recorded is not None:
        rest = np.ones(lay.enc.d, dtype=bool)
        rest[lay.enc.payload] = False
        details["construction_encoding"] = bool(
            np.array_equal(lay.encode(recorded, NUMPY[stored]), vt[:, lay.enc.payload]) and not vt[:, rest].any())
    prompts = lay.prompts()
    steps = min(lay.R, max_steps(ctx.model, vt.shape[0], lay.L))
    expected = None if recorded is None else lay.answers(recorded)
    alpha = lay.enc.alphabet
    runs, lowest, failures = [], math.inf, {}
    for name, values in variants:
        soft = round_to(values, ctx.dtype).astype(np.float64)
        for ex in executions(ctx.model, ctx.dtype):
            try:
                tokens, margins = _generate_all(ex.model, type(ex.ops), ctx.dtype, soft, prompts, steps,
                                                ctx.reporter(f"{claim} adapter {name} ({ex.name})"))
            except GenerationError as e:
                return done(Verdict.FALSIFIED, f"generation from the adapter is impossible: {e}", arith,
                            details=details)
            runs.append(f"{name}, {ex.name}")
            lowest = min(lowest, float(margins.min()) if margins.size else math.inf)
            if expected is None:
                continue
            wrong = _wrong(tokens, margins, expected, ctx.min_margin)
            if wrong.size and name not in failures:
                quoted = "; ".join(
                    f"{'the virtual tokens alone' if prompts is None else 'input ' + render(prompts[i], alpha)}: "
                    f"generated {render(tokens[i], alpha)!r} (margin {float(margins[i].min()):.3g}), config.json "
                    f"records {render(expected[i], alpha)!r}" for i in wrong[:SHOWN])
                failures[name] = (f"the adapter {name} in {ex.name} answers {wrong.size} of {lay.K} input(s) wrongly: "
                           f"{quoted}", {"variant": name, "execution": ex.name, "wrong_inputs": int(wrong.size),
                                         "input": None if prompts is None else prompts[int(wrong[0])].tolist(),
                                         "generated": render(tokens[int(wrong[0])], alpha),
                                         "expected": render(expected[int(wrong[0])], alpha)})
    details["runs"] = runs
    coverage = Coverage(lay.K, lay.K, str(lay.K))
    stored_name = variants[0][0]
    if stored_name in failures:
        reason, example = failures[stored_name]
        return done(Verdict.FALSIFIED, reason, arith, coverage=coverage, min_margin=lowest, counterexample=example,
                    details=details)
    if failures:  # right as stored, wrong as PEFT holds it by default: a fact about PEFT's float32 prompt encoder
        (reason, example), = failures.values()
        details["peft_float32"] = example
        return done(Verdict.UNKNOWN, f"right as stored on all {lay.K} input(s), but {reason}; PEFT holds "
                    f"prompt-tuning adapters in float32 unless created under torch.set_default_dtype(torch.float64) "
                    f"(docs/huggingface.md)", arith, coverage=coverage, min_margin=lowest, details=details)
    if expected is None:
        return done(Verdict.UNKNOWN, f"config.json records no prompt.{RECORD_KEY[claim]}, so there is nothing to "
                    f"compare the adapter's answers with", arith, coverage=coverage, min_margin=lowest,
                    details=details)
    return done(Verdict.CHECKED, None, arith, coverage=coverage, min_margin=lowest, details=details)


def adapter_prompt_obligation(claim: str):
    """The obligation as the lookup theorems list it (runs only with --weights DIR holding a PEFT adapter)."""
    from prefixproof.theorems.obligations.base import Obligation

    return Obligation("adapter-prompt", "the directory's PEFT prompt-tuning adapter has the claim's virtual tokens "
                      "and generates the table config.json records on every user input, as stored and as PEFT "
                      "holds it", ("symbolic", "certify", "numeric"),
                      "prefixproof.theorems.obligations.adapter_prompt.run_adapter_prompt",
                      lambda ctx: run_adapter_prompt(claim, ctx), needs_adapter=True)
