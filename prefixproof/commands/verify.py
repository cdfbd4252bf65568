"""The subcommands behind `prefixproof verify | build | generate`."""
from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any, Sequence

import numpy as np

from prefixproof.constructions.alphabet import render
from prefixproof.constructions.io import CONFIG, PROMPT, FormatError, load_model, load_prompt, read_json, weights_sha256
from prefixproof.constructions.peft_adapter import has_adapter, read_peft_adapter
from prefixproof.theorems import THEOREMS
from prefixproof.verify.certify import recorder
from prefixproof.theorems.obligations.base import LEVELS as BASE_LEVELS, RunContext
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.usage import UsageError, check_writable, default_alphabet
from prefixproof.verify.admission import admit_construction, admit_directory
from prefixproof.verify.semantics.generate import generate, generate_many
from prefixproof.output import write_json as write_doc
from prefixproof.progress import progress_printer
from prefixproof.report import ClaimResult, exit_status, table, write_json
from prefixproof.theorems.obligations.runner import run_theorem, skipped
from prefixproof.userinput import InputError, tokens_of

DEFAULT_SAMPLES = {"theorem1": 2000, "theorem2": 100}


# --level: which kinds of method run (theorems.base.LEVELS); quick also skips obligations slow at the size
LEVELS = {"quick": {"symbolic", "certify"}, **{kind: {kind} for kind in BASE_LEVELS}, "all": set(BASE_LEVELS)}


# The lookup claims' constructions and their parameters, admitted against the memory budget before building.
ADMIT = {"theorem1": "theorem1", "theorem2": "theorem2", "long_response": "conditional", "multi_token": "conditional",
         "conditional": "conditional", "multi_token_packing": "multi_token_packing"}
ADMIT_PARAMS = {"theorem1": ("V", "N"), "theorem2": ("V",), "conditional": ("V", "L", "R"),
                "multi_token_packing": ("V", "L")}


def _weights_plan(args: argparse.Namespace) -> tuple[list, Any, str]:
    """(plans, model, sha) for `verify --weights DIR --claim C`: parameters come from the weights."""
    if not args.claim:
        raise UsageError(f"--weights needs --claim ({'|'.join(WEIGHTS_BLOCK)})")
    if args.claims and args.claims != [args.claim]:
        raise UsageError("with --weights, name the claim with --claim only")
    if args.vocab or args.length:
        raise UsageError("with --weights, V and N come from the weights; drop --vocab/--length")
    admit_directory(args.weights)  # what config.json declares, before the loader allocates it
    model = load_model(args.weights)
    params = weights_params(args.claim, model)
    return [(THEOREMS[args.claim], params)], model, weights_sha256(model)


# the claims a weights directory can be checked against, with the payload block its labels must carry
WEIGHTS_BLOCK = {t.id: t.payload_block for t in THEOREMS.values() if t.payload_block is not None}


def weights_params(claim: str, model: Any) -> dict[str, int]:
    """The claim's parameters as the weights' labels and shapes fix them (V from the vocabulary)."""
    from prefixproof.theorems.conditional import shape_of

    enc = LookupEncoding.of(model, WEIGHTS_BLOCK[claim])
    V = model.vocab.size
    if claim == "theorem1":
        if model.n_ctx < enc.K:
            raise FormatError(f"the weights have {model.n_ctx} positions but {enc.K} target coordinates")
        return {"V": V, "N": enc.K}
    if claim == "theorem2":
        return {"V": V}
    if claim == "multi_token_packing":
        return {"V": V, "L": model.n_ctx - 1}
    try:
        _, L, R = shape_of(enc)
    except ValueError as e:
        raise FormatError(f"the weights do not have the {claim} layout: {e}") from None
    if (claim == "long_response" and L != 1) or (claim == "multi_token" and R != 1):
        raise FormatError(f"the weights condition on L={L} tokens with R={R} response tokens: check them with "
                          f"--claim conditional")
    return {"long_response": {"V": V, "R": R}, "multi_token": {"V": V, "L": L}}.get(claim, {"V": V, "L": L, "R": R})


def _has_prompt(directory: str | None) -> bool:
    """A weights directory that stores a prompt (the stored-prompt obligation then checks it)."""
    if not directory:
        return False
    from pathlib import Path

    d = Path(directory)
    if (d / PROMPT).is_file():
        return True
    try:
        return "prompt" in read_json(d / CONFIG, FormatError, "")
    except FormatError:
        return False


def _param_overrides(items: list[str] | None) -> dict[str, int]:
    """--param NAME=VALUE (repeatable) for claims with parameters beyond V and N."""
    out = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        if not eq or not name.isidentifier():
            raise UsageError(f"--param {item!r}: write NAME=VALUE, e.g. --param R=10")
        try:
            out[name] = int(value)
        except ValueError:
            raise UsageError(f"--param {item!r}: {value!r} is not an integer") from None
    return out


def cmd_verify(args: argparse.Namespace, argv: Sequence[str]) -> int:
    check_writable(args.json)
    if not (args.min_margin >= 0 and np.isfinite(args.min_margin)):
        raise UsageError("--min-margin must be a finite number >= 0")
    model, sha = None, None
    extra: dict[str, Any] = {}
    if args.weights:
        plans, model, sha = _weights_plan(args)
        alphabet = model.vocab.alphabet
        if _has_prompt(args.weights):
            extra["weights_dir"] = args.weights
        if has_adapter(args.weights):  # a PEFT prompt-tuning adapter next to the base: validated now (exit 2)
            read_peft_adapter(args.weights, model.d_model)
            extra["adapter_dir"] = args.weights
    else:
        if args.claim:
            raise UsageError("--claim goes with --weights; to pick claims, name them: prefixproof verify theorem1")
        claims = args.claims or list(THEOREMS)
        unknown = [c for c in claims if c not in THEOREMS]
        if unknown:
            raise UsageError(f"unknown claim {unknown[0]!r}; known claims: {', '.join(THEOREMS)}")
        plans = []
        for cid in dict.fromkeys(claims):
            theorem = THEOREMS[cid]
            given = {"V": args.vocab, "N": args.length, **_param_overrides(args.param)}
            names = {p.name for p in theorem.params}
            unused = [k for k in given if given[k] is not None and k not in names and k not in ("V", "N")]
            if unused and len(claims) == 1:
                raise UsageError(f"{cid} has no parameter {unused[0]!r}; its parameters: {', '.join(sorted(names))}")
            try:
                params = theorem.resolve({n: given.get(n) for n in names})
            except ValueError as e:
                raise UsageError(f"{cid}: {e}") from None
            if theorem.id in ADMIT:  # the construction must fit the memory budget before anything is built
                admit_construction(ADMIT[theorem.id], {k: params.get(k, 1) for k in ADMIT_PARAMS[ADMIT[theorem.id]]})
            plans.append((theorem, params))
        alphabet = None
    if args.certificate and len(plans) != 1:
        raise UsageError("--certificate writes one claim's certificate: name exactly one claim")
    check_writable(args.certificate)
    results = []
    for theorem, params in plans:
        claim_alphabet = alphabet if args.weights else default_alphabet(params.get("V"))[1]
        ctx = RunContext(params=params, samples=args.samples or DEFAULT_SAMPLES.get(theorem.id, 1000),
                         seed=args.seed, dtype=args.dtype, alphabet=claim_alphabet,
                         progress=None if args.quiet else progress_printer(),
                         levels=frozenset(LEVELS[args.level]), quick=args.level == "quick",
                         min_margin=args.min_margin, model=model, weights_sha256=sha,
                         extra=extra)
        with recorder.recording() if args.certificate else contextlib.nullcontext([]) as sessions:  # only to write one
            records = run_theorem(theorem, ctx)
        results.append(ClaimResult(theorem, params, records, tuple(ob.id for ob in skipped(theorem, ctx))))
    print(table(results, quiet=args.quiet))
    if args.certificate:
        _write_certificate(args.certificate, results[0].records, sessions, args.weights)
    if args.json:
        write_json(args.json, results, ["prefixproof", *argv], args.dtype, args.seed)
    return exit_status(results)


def _write_certificate(path: str, records: list, sessions: list, weights_dir: str | None) -> None:
    """The certificate of the CERTIFIED decode record (docs/certificate-format.md), or a one-line error."""
    from prefixproof import certificate

    rec = next((r for r in records if r.obligation == "decode"), None)
    done = [s for s in sessions if s.result is not None and s.result.certified]
    if rec is None or rec.verdict.name != "CERTIFIED" or not done:
        why = "no decode obligation" if rec is None else f"decode is {rec.verdict_text}"
        if rec is not None and rec.verdict.name == "CERTIFIED":
            why = next((s.result.reason for s in sessions if getattr(s.result, "reason", None)),
                       "this claim's certificate engine has no certificate format yet")
        raise UsageError(f"--certificate: nothing certified to write ({why})")
    try:
        header, arrays = certificate.build(done[-1], rec.claim, rec.params, rec.dtype, rec.weights_sha256,
                                           rec_margin(rec))
        if rec.dtype != "float64":
            if not weights_dir:
                raise UsageError(f"--certificate in {rec.dtype} needs --weights DIR: the writer confirms its margins "
                                 "with the independent checker against those files")
            certificate.settle(header, arrays, weights_dir)
    except certificate.CertificateError as e:
        raise UsageError(f"--certificate: {e}") from None
    certificate.write(path, header, arrays)
    what = f"{len(arrays['blocks.row'])} blocks" if "blocks.row" in arrays else f"{header['layers']} layers"
    print(f"wrote certificate {path}: {what}, margin >= {header['margin']:.6g}; "
          f"check it with: prefixproof check {path} --weights DIR")


def rec_margin(rec) -> float:
    d = rec.details.get("certificate") or rec.details.get("packing_certificate") or {}
    return float(d.get("demanded_margin", 0.0))


def cmd_generate(args: argparse.Namespace) -> int:
    admit_directory(args.dir)  # what config.json declares, before the loader allocates it
    model = load_model(args.dir)
    soft, info = load_prompt(args.dir, model)
    alphabet = model.vocab.alphabet
    prompt = None if args.input is None else tokens_of(args.input, alphabet, model.vocab.size, "--input")
    if info.get("mode") == "per_token":
        if not prompt:
            raise InputError("this model answers one user token at a time; give --input (e.g. --input abc)")
        gen = generate_many(model, soft, np.array(prompt)[:, None], steps=1,
                            progress=progress_printer()("generate"))  # streamed within the memory budget
        out, margins = gen.tokens[:, 0], gen.margins[:, 0]
    elif info.get("mode") == "queries":
        L, R = int(info.get("inputs", 1)), int(info.get("steps", 1))
        if not prompt or len(prompt) % L:
            raise InputError(f"this model answers inputs of {L} tokens; give --input with a multiple of {L} tokens")
        queries = np.array(prompt).reshape(-1, L)
        gen = generate_many(model, soft, queries, steps=R, progress=progress_printer()("generate"))
        for row in gen.tokens:
            print(render(row, alphabet))
        if args.verbose:
            print(f"min margin {gen.margins.min():.3g}", file=sys.stderr)
        return 0
    else:
        gen = generate(model, soft=soft[None], prompt=None if prompt is None else np.array([prompt]))
        out, margins = gen.tokens[0], gen.margins[0]
    print(render(out, alphabet))
    if args.verbose:
        print(f"min margin {margins.min():.3g}; ties or negative margins: {int((~(margins > 0)).sum())}",
              file=sys.stderr)
    return 0


def cmd_precision(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:

    from prefixproof.audit.precision import precision_report, render

    check_writable(args.json)
    dtypes = list(dict.fromkeys(args.dtype or ["float64", "float32", "float16", "bfloat16"]))
    say = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    report = precision_report(args.theorem, dtypes, say)
    print(render(args.theorem, report, quiet=args.quiet))
    if args.json:
        from prefixproof.audit.precision import to_json as precision_json

        write_doc(args.json, precision_json(args.theorem, report, ["prefixproof", *argv]))
    return 0


def cmd_selftest(args: argparse.Namespace, argv: Sequence[str] = ()) -> int:
    """Exit 0 only when no truly broken mutant passes and every control behaves; 1 otherwise."""

    from prefixproof.audit.selftest import CLAIMS, render, run_selftest, to_json

    check_writable(args.json)
    say = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    result = run_selftest(args.claim or tuple(CLAIMS), quick=args.quick, seed=args.seed,
                          workers=args.workers or (1 if args.quick else 2), say=say)
    print(render(result, quiet=args.quiet))
    if args.json:
        write_doc(args.json, to_json(result, args.quick, args.seed, ["prefixproof", *argv]), indent=1)
    return 0 if result.ok else 1
