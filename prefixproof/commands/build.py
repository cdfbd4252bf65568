"""`prefixproof build CONSTRUCTION ...`: write a construction's weights and its virtual tokens to a directory.

Every build re-runs the written model through incremental generation on its whole input set before
reporting success, so a directory that `build` wrote always reproduces what it was built for.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from prefixproof.constructions.alphabet import ASCII_SIZE, PRINTABLE_ASCII, render
from prefixproof.constructions.conditional import Conditional
from prefixproof.constructions.io import exact_prompt, save_model
from prefixproof.constructions.model import Model, materialize
from prefixproof.constructions.packing import Packing
from prefixproof.constructions.peft_adapter import write_peft_adapter
from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.constructions.theorem2 import Theorem2
from prefixproof.outdir import check_out_dir, publish, staging_dir
from prefixproof.usage import UsageError, default_alphabet
from prefixproof.progress import progress_printer
from prefixproof.verify.admission import admit_construction
from prefixproof.verify.numeric.selfcheck import reproduce
from prefixproof.userinput import (MAP_SPEC_HELP, InputError, parse_int, parse_map_file, parse_map_spec, parse_table,
                                  tokens_of)

TABLE_HELP = ("JSON object {input: response}: inputs of exactly L tokens (text for ASCII, '3,1' with --vocab), "
              "responses of at most R tokens; unlisted inputs answer token 0 (a space in ASCII) and shorter responses "
              "are padded with it")


def add_build_parser(sub: Any, positive: Callable[[str], int], parser_class: type) -> None:
    b = sub.add_parser("build", help="write construction weights and the virtual tokens to a directory")
    bsub = b.add_subparsers(dest="theorem", required=True, parser_class=parser_class)
    b1 = bsub.add_parser("theorem1", help="unconditional generation of a target")
    g = b1.add_mutually_exclusive_group(required=True)
    g.add_argument("--target", help="printable-ASCII text to generate")
    g.add_argument("--tokens", help="comma-separated token ids (with --vocab)")
    b1.add_argument("--vocab", type=positive, help="vocabulary size for --tokens")
    b1.add_argument("--length", type=positive, help="N (default: the target's length; shorter targets are "
                    "padded with token 0, which is a space in ASCII)")
    _add_out(b1)
    b2 = bsub.add_parser("theorem2", help="a token-to-token map")
    g = b2.add_mutually_exclusive_group(required=True)
    g.add_argument("--map", help=MAP_SPEC_HELP)
    g.add_argument("--map-file", help="JSON object {input: output} (unlisted inputs map to themselves) "
                   "or a list of V tokens")
    b2.add_argument("--vocab", type=positive, help=f"vocabulary size (default {ASCII_SIZE}: printable ASCII)")
    _add_out(b2)
    for name, helptext, has_L, has_R in (
            ("long_response", "a response of up to R tokens to each user token (R virtual tokens)", False, True),
            ("multi_token", "one token for each input of L user tokens (precision-robust)", True, False),
            ("conditional", "a response of up to R tokens to each input of L user tokens", True, True),
            ("multi_token_packing", "the paper's packing: one virtual token of packed digits, L user tokens", True,
             False)):
        p = bsub.add_parser(name, help=helptext)
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--map-file", help=TABLE_HELP)
        g.add_argument("--map", help="random:SEED (a seeded random table)")
        p.add_argument("--vocab", type=positive, help=f"vocabulary size (default {ASCII_SIZE}: printable ASCII)")
        if has_L:
            p.add_argument("--inputs", type=positive, help="L, user tokens per input (default: from the map file, "
                           "else 2)")
        if has_R:
            p.add_argument("--length", type=positive, help="R, response length (default: the longest response, "
                           "else 1)")
        _add_out(p)


def _add_out(p: Any) -> None:
    p.add_argument("--out", required=True, help="output directory: new, empty, or (with --force) a directory an "
                   "earlier build wrote; written beside it and renamed into place, never half-written")
    p.add_argument("--force", action="store_true", help="replace --out when it already holds a prefixproof model")


def cmd_build(args: argparse.Namespace) -> int:
    out = check_out_dir(args.out, args.force)  # before any work: refuse an --out that would lose data
    if args.theorem == "theorem1":
        model, soft, info, what, margin = _theorem1(args)
    elif args.theorem == "theorem2":
        model, soft, info, what, margin = _theorem2(args)
    else:
        model, soft, info, what, margin = _table(args)
    with staging_dir(out) as tmp:
        sha = write_model_dir(tmp, model, soft, info)
        publish(tmp, out, args.force)
    print(f"wrote {args.out}: {what}; generation reproduces it (min margin {margin:.3g}); weights sha256 {sha[:16]}")
    return 0


def write_model_dir(tmp: Path, model: Model, soft: np.ndarray, info: dict[str, Any]) -> str:
    """Write every file of the model directory into the fresh staging directory `tmp` (renamed into place by
    `publish` once complete); returns the weights sha256. Everything a build writes goes through here."""
    sha = save_model(model, tmp, soft, info)
    write_peft_adapter(tmp, soft, len(model.layers), max(len(layer.heads) for layer in model.layers))
    return sha


def _theorem1(args: argparse.Namespace):
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
    admit_construction("theorem1", {"V": V, "N": N})  # before anything of size V or N is allocated
    if len(Y) < N:
        print(f"note: target padded with {N - len(Y)} x token 0 to N={N}", file=sys.stderr)
        Y = Y + [0] * (N - len(Y))
    c = Theorem1(V, N, alphabet)
    model = materialize(c.model())
    soft = exact_prompt(c.encode(Y))
    margin = _self_check(model, soft, None, np.array([Y]))
    info = {"mode": "sequence", "target_tokens": Y, "target": render(Y, alphabet)}
    return model, soft, info, f"theorem1 V={V} N={N}, target {render(Y, alphabet)!r}; scale {c.scale}", margin


def _theorem2(args: argparse.Namespace):
    V, alphabet = default_alphabet(args.vocab)
    admit_construction("theorem2", {"V": V})  # before anything of size V is allocated
    m = parse_map_spec(args.map, alphabet, V) if args.map is not None else parse_map_file(args.map_file, alphabet, V)
    c = Theorem2(V, alphabet)
    model = materialize(c.model())
    soft = exact_prompt(c.encode(m))
    margin = _self_check(model, soft, np.arange(V)[:, None], np.array(m)[:, None])
    moved = sum(1 for k, t in enumerate(m) if k != t)
    info = {"mode": "per_token", "map_tokens": m}
    return model, soft, info, f"theorem2 V={V}, map moving {moved} of {V} tokens; scale {c.scale}", margin


def _table(args: argparse.Namespace):
    V, alphabet = default_alphabet(args.vocab)
    name = args.theorem
    def admit(L: int, R: int) -> None:  # the memory budget, before the table or the model is allocated
        admit_construction(*(("multi_token_packing", {"V": V, "L": L}) if name == "multi_token_packing"
                             else ("conditional", {"V": V, "L": L, "R": R})))

    L_given = getattr(args, "inputs", None) if name != "long_response" else 1
    R_given = getattr(args, "length", None) if name in ("long_response", "conditional") else 1
    if args.map is not None:
        kind, _, seed = args.map.partition(":")
        if kind != "random":
            raise InputError(f"--map {args.map!r}: only random:SEED is accepted here; give a --map-file otherwise")
        L, R = L_given or 2, R_given or 1
        admit(L, R)
        table = np.random.default_rng(parse_int(seed, "--map random", lo=0)).integers(0, V, size=(V ** L, R))
    else:
        table, L, R = parse_table(args.map_file, alphabet, V, L_given, R_given, admit)
    if name == "multi_token_packing":
        c = Packing(V, L)
        model = materialize(c.model())
        soft = c.encode(table[:, 0])
    else:
        c = Conditional(V, L, R, alphabet)
        model = materialize(c.model())
        soft = c.encode(table)
    inputs = np.array([[(a // V ** (L - 1 - l)) % V for l in range(L)] for a in range(V ** L)])
    try:
        margin = _self_check(model, soft, inputs, table)
    except RuntimeError:
        if name != "multi_token_packing":
            raise
        raise InputError(f"the packing of {c.D} base-{V} digits into one float64 loses digits, so the built model "
                         f"answers some inputs wrongly (see `prefixproof precision multi_token_packing`); use a "
                         f"smaller V or the multi_token construction") from None
    info = {"mode": "queries", "inputs": L, "steps": R, "table_tokens": np.asarray(table).tolist()}
    return model, soft, info, f"{name} V={V} L={L} R={R} ({V ** L} inputs); scale {model.layers[0].heads[0].scale}", \
        margin


def _self_check(model: Model, soft: np.ndarray, prompts: np.ndarray | None, expected: np.ndarray) -> float:
    """Generate from the freshly built model on every input, streamed within the memory budget
    (prefixproof.verify.numeric.selfcheck); returns the minimum margin (raises if wrong)."""
    return reproduce(model, soft, prompts, expected, progress=progress_printer()("build self-check"))
