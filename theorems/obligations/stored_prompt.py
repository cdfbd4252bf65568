"""The `stored-prompt` obligation: a weights directory's verdict covers its own prompt.safetensors.

`verify --weights DIR --claim C` certifies the weights for every prompt of the claim; this obligation
checks the one prompt the directory ships, exactly as `generate DIR` uses it:

  1. it has the claim's number of virtual tokens (and the number config.json states);
  2. its payload sits exactly on the grid of the stored format (theorems/obligations/prompt_layouts.py), with
     exact zeros in every other labelled direction;
  3. the payload is the encoding of the table config.json records (prompt.target_tokens, map_tokens,
     table_tokens);
  4. real incremental generation (verify/semantics/generate.py, key/value cache) from the stored prompt, in the
     run's arithmetic, reproduces the recorded table on every user input with a positive margin.

Any mismatch is FALSIFIED, and the reason shows both sides (recorded vs stored / generated). All checks
passing is CHECKED (every user input evaluated). No stored prompt, or no recorded table with nothing
else wrong: UNKNOWN(reason).

A failure of step 4 on a prompt that passed steps 1-2 is also a counterexample to the `decode`
statement (that prompt is one of the claim's inputs). It is confirmed by a teacher-forced pass on the
same input and then marked `details["about"]`, which lets the claim-level agreement rule
(theorems/obligations/agreement.py) turn "decode CERTIFIED" next to it into ERROR.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from prefixproof.constructions.alphabet import render
from prefixproof.constructions.io import CONFIG, PROMPT, FormatError, load_prompt, read_json
from prefixproof.theorems.obligations.base import RunContext
from prefixproof.theorems.obligations.prompt_layouts import RECORD_KEY, Layout
from prefixproof.verify.numeric.decoding import ROUNDING_AGREEMENT, batch_size_for, decode_margins
from prefixproof.verify.semantics.executions import executions
from prefixproof.verify.semantics.formats import format_of, round_to
from prefixproof.verify.semantics.forward import forward
from prefixproof.verify.semantics.generate import GenerationError, generate, max_steps
from prefixproof.verify.parallel import default_workers, ordered_map
from prefixproof.verify.verdict import Coverage, Record, Verdict

SHOWN = 3  # mismatching inputs quoted in a reason


class _Unreadable(Exception):
    """config.json or prompt.safetensors cannot be read at all (the obligation is then FALSIFIED)."""


def _read(directory: Path) -> tuple[dict[str, Any] | None, np.ndarray | None]:
    """(config's prompt description, the stored virtual tokens in their stored dtype); None where absent."""
    config = read_json(directory / CONFIG, _Unreadable, f"{directory / CONFIG} is missing")
    info = config.get("prompt") if isinstance(config, dict) else None
    path = directory / PROMPT
    if not path.is_file():
        return info, None
    try:
        vt = load_file(str(path)).get("virtual_tokens")
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise _Unreadable(f"{path} is not a readable safetensors file: {str(e).splitlines()[0] if str(e) else e}")
    if vt is None:
        raise _Unreadable(f"{path} holds no tensor 'virtual_tokens'")
    return (info if isinstance(info, dict) else None), vt


def _mode_problem(info: dict[str, Any], lay: Layout) -> str | None:
    """How `generate DIR` would run this prompt (config.json prompt.mode, inputs, steps) against the claim's layout."""
    mode = info.get("mode")
    if lay.claim == "theorem1":
        want: dict[str, Any] = {"mode": "sequence"}
    elif lay.claim == "theorem2":
        want = {"mode": "per_token"}
    else:
        want = {"mode": "queries", "inputs": lay.L, "steps": lay.R}
    got = {k: info.get(k) for k in want}
    if got != want:
        return (f"config.json prompt {got} makes `generate DIR` answer differently from the claim's layout {want}"
                + ("" if mode in ("sequence", "per_token", "queries") else f" (unknown mode {mode!r})"))
    return None


def _generate_all(model, ops_type, dtype: str, soft: np.ndarray, prompts: np.ndarray | None, steps: int,
                  progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy generation for every input, in chunks on the default workers. Memory is bounded before anything
    is allocated: the chunk size comes from the checker's activation budget (prefixproof.verify.numeric.decoding.batch_size_for)
    divided among the workers, so a V=32000 theorem2 directory runs in chunks of a few dozen inputs."""
    B = 1 if prompts is None else len(prompts)
    n = soft.shape[0] + (0 if prompts is None else prompts.shape[1]) + steps
    workers = default_workers()
    chunk = max(1, min(B, batch_size_for(model, n, workers)))

    def one(lo: int):
        b = min(chunk, B - lo)
        return generate(model, soft=np.broadcast_to(soft, (b,) + soft.shape),
                        prompt=None if prompts is None else prompts[lo:lo + b], steps=steps,
                        ops=ops_type(dtype))  # a fresh arithmetic object per chunk (it caches stacked weights)

    parts = []
    for _, g in ordered_map(one, range(0, B, chunk), workers):
        parts.append(g)
        if progress is not None:
            progress(sum(len(p.tokens) for p in parts), B)
    return np.concatenate([g.tokens for g in parts]), np.concatenate([g.margins for g in parts])


def _teacher_forced(model, ops, soft: np.ndarray, prompt: np.ndarray | None,
                    answer: np.ndarray) -> tuple[np.ndarray, float]:
    """Margins of the prescribed answer at each answer position in one teacher-forced pass, and max |logit|."""
    k, L = soft.shape[0], 0 if prompt is None else len(prompt)
    tokens = np.concatenate([[] if prompt is None else prompt, answer[:-1]]).astype(np.int64)[None]
    at = np.arange(len(answer)) + k + L - 1
    logits = np.asarray(forward(model, tokens, soft[None], ops=ops, outputs_at=at).logits, dtype=np.float64)
    return decode_margins(logits, answer[None])[0], float(np.abs(logits).max())


def _wrong(tokens: np.ndarray, margins: np.ndarray, expected: np.ndarray, min_margin: float = 0.0) -> np.ndarray:
    """Inputs whose generation differs from the expected answer (or is shorter), or has a margin <= 0 or below
    the demanded margin (as the numeric checker counts them)."""
    if tokens.shape != expected.shape:
        return np.arange(len(expected))
    return np.flatnonzero((tokens != expected).any(axis=1) | ~(margins > 0).all(axis=1)
                          | (margins < min_margin).any(axis=1))


def _input_text(lay: Layout, prompts: np.ndarray | None, i: int) -> str:
    return "the virtual token alone" if prompts is None else f"input {render(prompts[i], lay.enc.alphabet)}"


def run_stored_prompt(claim: str, ctx: RunContext) -> Record:
    """The `stored-prompt` obligation: count, grid, recorded table, then generation on every input. Longer than 60
    lines on purpose: its four checks in the order they are reported, each turning into FALSIFIED with both
    sides."""
    t0 = time.perf_counter()
    arith = f"exact; numpy {ctx.dtype}"
    common: dict[str, Any] = dict(claim=claim, obligation="stored-prompt", method="stored prompt vs grid and "
                                  "config.json; greedy generation on every input",
                                  arithmetic=arith, params=dict(ctx.params), dtype=ctx.dtype,
                                  weights_sha256=ctx.weights_sha256)

    def done(verdict: Verdict, reason: str | None = None, **kw: Any) -> Record:
        return Record(verdict=verdict, reason=reason, seconds=time.perf_counter() - t0, **kw, **common)

    where = ctx.extra.get("weights_dir")
    if not where or ctx.model is None:
        return done(Verdict.UNKNOWN, "no weights directory given: there is no stored prompt to check")
    lay = Layout.of(claim, ctx.model)
    try:
        info, vt = _read(Path(where))
    except _Unreadable as e:
        return done(Verdict.FALSIFIED, f"the stored prompt cannot be read: {e}")
    if vt is None and info is None:
        return done(Verdict.UNKNOWN, f"the directory stores no prompt ({PROMPT} and config.json prompt absent): "
                                     "the verdict covers the weights only")
    problems: list[str] = []
    if vt is None:
        return done(Verdict.FALSIFIED, f"config.json describes a prompt but {PROMPT} is missing")
    info = info or {}
    try:  # exactly what `generate DIR` reads: a prompt it refuses is not a working prompt
        load_prompt(where, ctx.model)
    except FormatError as e:
        problems.append(f"`generate DIR` refuses the stored prompt: {e}")
    mode = _mode_problem(info, lay)
    if mode:
        problems.append(mode)
    stored = vt.dtype
    details: dict[str, Any] = {"stored": {"virtual_tokens": int(vt.shape[0]) if vt.ndim == 2 else None,
                                          "dtype": str(stored)}, "claim_virtual_tokens": lay.virtual}
    if vt.ndim != 2 or vt.shape[1] != lay.enc.d or not np.issubdtype(stored, np.floating):
        return done(Verdict.FALSIFIED, f"virtual_tokens has shape {vt.shape} and dtype {stored}; the weights need "
                                       f"floating-point (k, {lay.enc.d})", details=details)
    if not np.isfinite(vt).all():
        return done(Verdict.FALSIFIED, "virtual_tokens holds NaN or infinity", details=details)
    if info.get("virtual_tokens") != vt.shape[0]:
        problems.append(f"config.json says {info.get('virtual_tokens')} virtual tokens, {PROMPT} has {vt.shape[0]}")
    if vt.shape[0] != lay.virtual:
        problems.append(f"{PROMPT} has {vt.shape[0]} virtual token(s); {claim} with these weights uses {lay.virtual}")
    try:
        recorded = lay.recorded(info)
    except ValueError as e:
        problems.append(str(e))
        recorded = None
    alpha = lay.enc.alphabet
    member = None  # the table whose exact encoding the prompt is (when it is one of the claim's inputs)
    if vt.shape[0] == lay.virtual:
        payload = vt[:, lay.enc.payload].astype(np.float64)
        rest = np.ones(lay.enc.d, dtype=bool)
        rest[lay.enc.payload] = False
        stray = np.argwhere(vt[:, rest] != 0)
        if len(stray):
            r, c = stray[0]
            label = ctx.model.stream.labels[int(np.flatnonzero(rest)[c])]
            problems.append(f"{len(stray)} non-zero value(s) outside the payload, e.g. virtual token {r} at "
                            f"{label} = {float(vt[r, np.flatnonzero(rest)[c]])!r} (the encoder writes 0)")
        decoded, off = lay.decode(payload, stored)
        if off:
            problems.append(f"{len(off)} payload value(s) off the {stored} grid, e.g. {off[0]}")
        if recorded is not None:
            want = lay.encode(recorded, stored)
            if not np.array_equal(want, payload):
                shown = render(decoded, alpha) if decoded is not None and decoded.ndim == 1 else \
                    ("off the grid" if decoded is None else f"table {decoded.tolist()}")
                rec_text = render(recorded, alpha) if recorded.ndim == 1 else f"table {recorded.tolist()}"
                bad = np.argwhere(want != payload)[0]
                problems.append(f"config.json records {RECORD_KEY[claim]} {rec_text!r} but {PROMPT} encodes "
                                f"{shown!r} (first difference at {lay.label(*map(int, bad))}: recorded value "
                                f"{float(want[tuple(bad)])!r}, stored {float(payload[tuple(bad)])!r})")
        if not stray.size and decoded is not None:
            candidate = recorded if recorded is not None and np.array_equal(lay.encode(recorded, stored), payload) \
                else decoded
            # a `decode` input of this run is the table's encoding rounded to the run's format: only then does a
            # failure (or success) here speak about `decode` in this dtype
            run_enc = round_to(lay.encode(candidate, np.float64), ctx.dtype)
            if np.array_equal(run_enc, round_to(payload, ctx.dtype)):
                member = candidate
    # Generation, as `generate DIR` runs it, in the run's arithmetic.
    prompts = lay.prompts()
    expected = None if (recorded if recorded is not None else member) is None else \
        lay.answers(recorded if recorded is not None else member)
    soft = round_to(vt.astype(np.float64), ctx.dtype).astype(np.float64)
    steps = min(lay.R, max_steps(ctx.model, soft.shape[0], lay.L))
    tokens = margins = None
    model = ops = None
    # every execution the numeric checker names for this format (numpy's kernels, and the fused one below float64)
    for ex in executions(ctx.model, ctx.dtype):
        try:
            t, m = _generate_all(ex.model, type(ex.ops), ctx.dtype, soft, prompts, steps,
                                 ctx.reporter(f"{claim} stored prompt ({ex.name})"))
        except GenerationError as e:
            problems.append(f"generation from the stored prompt is impossible: {e}")
            break
        wrong_here = expected is not None and _wrong(t, m, expected, ctx.min_margin).size
        if tokens is None or wrong_here:
            tokens, margins, model, ops = t, m, ex.model, ex.ops
            details.setdefault("executions", []).append(ex.name)
        if wrong_here:
            details["failing_execution"] = ex.name
            break
    coverage = Coverage(lay.K, lay.K, str(lay.K))
    min_margin = None if margins is None else float(np.min(margins)) if margins.size else math.inf
    counterexample = None
    if tokens is not None and expected is not None:
        wrong = _wrong(tokens, margins, expected, ctx.min_margin)
        details["generation"] = {"inputs": lay.K, "wrong_inputs": int(wrong.size), "min_margin": min_margin}
        if wrong.size:
            side = "config.json records" if recorded is not None else "the stored prompt encodes"
            quoted = "; ".join(f"{_input_text(lay, prompts, i)}: generated {render(tokens[i], alpha)!r} "
                               f"(margin of its choice {float(margins[i].min()):.3g}), {side} {render(expected[i], alpha)!r}"
                               for i in wrong[:SHOWN])
            problems.append(f"generation from {PROMPT} is wrong on {wrong.size} of {lay.K} input(s): {quoted}")
            i = int(wrong[0])
            counterexample = {"input": None if prompts is None else prompts[i].tolist(),
                              "generated": render(tokens[i], alpha), "expected": render(expected[i], alpha),
                              "expected_from": side, "generation_margins": margins[i].tolist()}
            if member is not None:
                _confirm_decode_counterexample(model, ops, soft, prompts, lay.answers(member), tokens, margins,
                                               ctx.dtype, details, counterexample, lay)
    if problems:
        return done(Verdict.FALSIFIED, "; ".join(problems), coverage=coverage, min_margin=min_margin,
                    counterexample=counterexample or {"mismatch": problems[0]}, details=details)
    if recorded is None:
        return done(Verdict.UNKNOWN, f"config.json records no prompt.{RECORD_KEY[claim]}, so the stored prompt "
                    f"cannot be compared with what the directory was built for (it is on the grid and generation "
                    f"reproduces the table it encodes on all {lay.K} input(s))", coverage=coverage,
                    min_margin=min_margin, details=details)
    # This table is one input of `decode` and generation reproduces it on every user input.
    details["about"] = {"statement": "decode", "dtype": ctx.dtype, "holds_for": np.asarray(recorded).ravel().tolist(),
                        "evaluators": "incremental generation on every user input",
                        "text": f"the stored table generates correctly on all {lay.K} input(s) (min margin "
                                f"{min_margin:.3g})"}
    return done(Verdict.CHECKED, coverage=coverage, min_margin=min_margin, details=details)


def _confirm_decode_counterexample(model, ops, soft, prompts, member_answers, tokens, margins, dtype, details,
                                   counterexample, lay: Layout) -> None:
    """An on-grid prompt whose generation misses the table it encodes is a counterexample to `decode`:
    confirm it with a teacher-forced pass on the same input and record it under details['about']."""
    wrong = _wrong(tokens, margins, member_answers)
    if not wrong.size or tokens.shape != member_answers.shape:
        return
    i = int(wrong[0])
    tf, scale = _teacher_forced(model, ops, soft, None if prompts is None else prompts[i], member_answers[i])
    eps = format_of(dtype).eps
    counterexample["teacher_forced_margins"] = tf.tolist()
    # Confirmed only when the teacher-forced pass fails too, clearly beyond rounding (16 eps |logit|): a near-tie
    # that flips with the order of operations is an outcome of the format, not a contradiction of `decode`.
    if float(tf.min()) < -ROUNDING_AGREEMENT * eps * max(1.0, scale):
        details["about"] = {"statement": "decode", "dtype": dtype,
                            "evaluators": "incremental generation and a teacher-forced pass",
                            "input": _input_text(lay, prompts, i),
                            "text": f"the stored prompt (on the grid), {_input_text(lay, prompts, i)}, generates "
                                    f"{render(tokens[i], lay.enc.alphabet)!r}, not "
                                    f"{render(member_answers[i], lay.enc.alphabet)!r} (generation margin "
                                    f"{float(margins[i].min()):.3g}, teacher-forced margin {float(tf.min()):.3g})"}


def stored_prompt_obligation(claim: str):
    """The obligation as the lookup theorems list it (runs only with --weights DIR, at every level)."""
    from prefixproof.theorems.obligations.base import Obligation

    return Obligation("stored-prompt", "the directory's prompt.safetensors has the claim's virtual tokens, sits on "
                      "the grid with zeros elsewhere, encodes the table config.json records, and generates it on "
                      "every user input", ("symbolic", "certify", "numeric"), "prefixproof.theorems.obligations.stored_prompt.run_stored_prompt",
                      lambda ctx: run_stored_prompt(claim, ctx), needs_directory=True)
