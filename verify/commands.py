"""The subcommands behind `prefixproof verify | build | generate`."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import numpy as np

from constructions.alphabet import PRINTABLE_ASCII, render
from constructions.io import FormatError, exact_prompt, load_model, load_prompt, save_model, weights_sha256
from constructions.model import Model, materialize
from constructions.theorem1 import Theorem1
from constructions.theorem2 import Theorem2
from theorems import THEOREMS
from theorems.base import RunContext
from theorems.encoding import LookupEncoding
from verify.cli import UsageError, check_writable, default_alphabet
from verify.generate import generate
from verify.progress import progress_printer
from verify.report import ClaimResult, exit_status, table, write_json
from verify.runner import run_theorem
from verify.userinput import InputError, parse_map_file, parse_map_spec, tokens_of

DEFAULT_SAMPLES = {"theorem1": 2000, "theorem2": 100}


LEVELS = {"quick": {"symbolic", "certify"}, "symbolic": {"symbolic"}, "certify": {"certify"},
          "numeric": {"numeric"}, "all": {"symbolic", "certify", "numeric"}}


def _weights_plan(args: argparse.Namespace) -> tuple[list, Any, str]:
    """(plans, model, sha) for `verify --weights DIR --claim C`: parameters come from the weights."""
    if not args.claim:
        raise UsageError("--weights needs --claim theorem1|theorem2")
    if args.claims and args.claims != [args.claim]:
        raise UsageError("with --weights, name the claim with --claim only")
    if args.vocab or args.length:
        raise UsageError("with --weights, V and N come from the weights; drop --vocab/--length")
    model = load_model(args.weights)
    enc = LookupEncoding.of(model, "target" if args.claim == "theorem1" else "map")
    params = {"V": model.vocab.size} | ({"N": enc.K} if args.claim == "theorem1" else {})
    if args.claim == "theorem1" and model.n_ctx < enc.K:
        raise FormatError(f"the weights have {model.n_ctx} positions but {enc.K} target coordinates")
    return [(THEOREMS[args.claim], params)], model, weights_sha256(model)


def cmd_verify(args: argparse.Namespace, argv: Sequence[str]) -> int:
    check_writable(args.json)
    if not (args.min_margin >= 0 and np.isfinite(args.min_margin)):
        raise UsageError("--min-margin must be a finite number >= 0")
    model, sha = None, None
    if args.weights:
        plans, model, sha = _weights_plan(args)
        alphabet = model.vocab.alphabet
    else:
        if args.claim:
            raise UsageError("--claim goes with --weights; to pick claims, name them: prefixproof verify theorem1")
        claims = args.claims or list(THEOREMS)
        unknown = [c for c in claims if c not in THEOREMS]
        if unknown:
            raise UsageError(f"unknown claim {unknown[0]!r}; known claims: {', '.join(THEOREMS)}")
        V, alphabet = default_alphabet(args.vocab)
        plans = []
        for cid in dict.fromkeys(claims):
            theorem = THEOREMS[cid]
            given = {"V": args.vocab, "N": args.length}  # only what was given: other claims keep their defaults
            try:
                params = theorem.resolve({p.name: given.get(p.name) for p in theorem.params})
            except ValueError as e:
                raise UsageError(f"{cid}: {e}") from None
            plans.append((theorem, params))
    results = []
    for theorem, params in plans:
        ctx = RunContext(params=params, samples=args.samples or DEFAULT_SAMPLES.get(theorem.id, 1000),
                         seed=args.seed, dtype=args.dtype, alphabet=alphabet, progress=progress_printer(),
                         levels=frozenset(LEVELS[args.level]), min_margin=args.min_margin, model=model,
                         weights_sha256=sha)
        results.append(ClaimResult(theorem, params, run_theorem(theorem, ctx)))
    print(table(results))
    if args.json:
        write_json(args.json, results, ["prefixproof", *argv])
    return exit_status(results)


def _self_check(model: Model, soft: np.ndarray, prompts: np.ndarray | None, expected: np.ndarray) -> float:
    """Generate from the freshly built files' content; returns the minimum margin (raises if wrong)."""
    n = 1 if prompts is None else len(prompts)
    gen = generate(model, soft=np.repeat(soft[None], n, axis=0), prompt=prompts)
    ok = (gen.tokens == expected) & (gen.margins > 0)
    if not ok.all():
        raise RuntimeError("the built model does not reproduce its target; this is a bug in the construction")
    return float(gen.margins.min())


def cmd_build(args: argparse.Namespace) -> int:
    check_writable(args.out)
    if args.theorem == "theorem1":
        if args.target is not None:
            if args.vocab not in (None, 95):
                raise UsageError("--target is printable-ASCII text (V=95); use --tokens with --vocab for other vocabularies")
            V, alphabet = 95, PRINTABLE_ASCII
            Y = tokens_of(args.target, alphabet, V, "--target")
        else:
            if args.vocab is None:
                raise UsageError("--tokens needs --vocab V")
            V, alphabet = args.vocab, None
            Y = tokens_of(args.tokens, None, V, "--tokens")
        if not Y:
            raise InputError("--target is empty; give at least one character")
        N = args.length or len(Y)
        if len(Y) > N:
            raise InputError(f"the target has {len(Y)} tokens but --length is {N}; the target must fit in N")
        if len(Y) < N:
            print(f"note: target padded with {N - len(Y)} x token 0 to N={N}", file=sys.stderr)
            Y = Y + [0] * (N - len(Y))
        c = Theorem1(V, N, alphabet)
        model = materialize(c.model())
        soft = exact_prompt(c.encode(Y))
        info: dict[str, Any] = {"mode": "sequence", "target_tokens": Y, "target": render(Y, alphabet)}
        margin = _self_check(model, soft, None, np.array([Y]))
        what = f"theorem1 V={V} N={N}, target {render(Y, alphabet)!r}"
    else:
        V, alphabet = default_alphabet(args.vocab)
        m = parse_map_spec(args.map, alphabet, V) if args.map is not None else parse_map_file(args.map_file, alphabet, V)
        c2 = Theorem2(V, alphabet)
        model = materialize(c2.model())
        soft = exact_prompt(c2.encode(m))
        info = {"mode": "per_token", "map_tokens": m}
        margin = _self_check(model, soft, np.arange(V)[:, None], np.array(m)[:, None])
        moved = sum(1 for k, t in enumerate(m) if k != t)
        what = f"theorem2 V={V}, map moving {moved} of {V} tokens"
    sha = save_model(model, args.out, soft, info)
    scale = model.layers[0].heads[0].scale
    print(f"wrote {args.out}: {what}; scale {scale}; generation reproduces it (min margin {margin:.3g}); "
          f"weights sha256 {sha[:16]}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    model = load_model(args.dir)
    soft, info = load_prompt(args.dir, model)
    alphabet = model.vocab.alphabet
    prompt = None if args.input is None else tokens_of(args.input, alphabet, model.vocab.size, "--input")
    if info.get("mode") == "per_token":
        if not prompt:
            raise InputError("this model answers one user token at a time; give --input (e.g. --input abc)")
        gen = generate(model, soft=np.repeat(soft[None], len(prompt), axis=0), prompt=np.array(prompt)[:, None],
                       steps=1)
        out, margins = gen.tokens[:, 0], gen.margins[:, 0]
    else:
        gen = generate(model, soft=soft[None], prompt=None if prompt is None else np.array([prompt]))
        out, margins = gen.tokens[0], gen.margins[0]
    print(render(out, alphabet))
    if args.verbose:
        print(f"min margin {margins.min():.3g}; ties or negative margins: {int((~(margins > 0)).sum())}",
              file=sys.stderr)
    return 0


def cmd_precision(args: argparse.Namespace) -> int:
    import json

    from verify.precision import precision_report, render

    check_writable(args.json)
    dtypes = list(dict.fromkeys(args.dtype or ["float64", "float32", "float16", "bfloat16"]))
    report = precision_report(args.theorem, dtypes, lambda line: print(line, file=sys.stderr, flush=True))
    print(render(args.theorem, report))
    if args.json:
        doc = {"format": "prefixproof-precision", "theorem": args.theorem,
               "formats": {d: [f.to_json() for f in fs] for d, fs in report.items()}}
        from pathlib import Path
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 0
