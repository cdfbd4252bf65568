"""`prefixproof crosscheck`: our semantics and the prefix identities against PyTorch, Hugging Face, PEFT and MiniLM.

Targets:
  constructions  exported construction weights in a PyTorch module vs our numpy evaluator (docs/crosscheck.md)
  gpt2           prefix_rescale / prefix_bias on Hugging Face GPT-2 (random init), every layer and head
  peft           the same on PEFT prefix-tuning's injected keys and values
  minilm         the same on all-MiniLM-L6-v2 (real pretrained weights), prefix from a real text
  all            all four

Needs the `torch` extra; without it, one line naming the install command and exit status 2.
"""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Callable, Sequence

from prefixproof.verify import optional as extras
from prefixproof.output import write_json
from prefixproof.report import EXIT_USAGE
from prefixproof.verify.verdict import Record, Verdict

TARGETS = ("constructions", "gpt2", "peft", "minilm")
IDENTITY_DTYPES = ("float32", "float64")

METHODS = {
    "gpt2": "HF GPT2LMHeadModel, random init, eager; prefix DynamicCache via cache=, position_ids=arange(T)",
    "peft": "PEFT PrefixTuningConfig/get_peft_model on GPT-2; keys/values from get_prompt; "
            "baseline position_ids=arange(T)+P",
    "minilm": "BertModel all-MiniLM-L6-v2 (pretrained), eager, bidirectional; prefix = own K/V projections "
              "of a real text via cache=",
}


def _targets(names: Sequence[str]) -> list[str]:
    from prefixproof.usage import UsageError

    chosen: list[str] = []
    for n in names or ["all"]:
        if n == "all":
            chosen += TARGETS
        elif n in TARGETS:
            chosen.append(n)
        else:
            raise UsageError(f"unknown crosscheck target {n!r}; choose from {', '.join(TARGETS)}, all")
    return list(dict.fromkeys(chosen))


def _dtypes(args: argparse.Namespace, targets: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """(identity dtypes, construction formats below float64)."""
    from prefixproof.usage import UsageError

    asked = list(dict.fromkeys(args.dtype or []))
    ident = [d for d in asked if d in IDENTITY_DTYPES] if asked else list(IDENTITY_DTYPES)
    if asked and not ident and any(t != "constructions" for t in targets):
        raise UsageError("the identity checks (gpt2, peft, minilm) run in float32 or float64; add --dtype float32 "
                         "or --dtype float64")
    low = tuple(d for d in asked if d != "float64") if asked else ("float32", "float16", "bfloat16")
    return ident, low


def _identity_target(name: str, collect: Callable[[str], list], dtypes: list[str]) -> list[Record]:
    """Rows at every layer and head, per dtype; a failure is confirmed against a run in the other dtype."""
    from prefixproof.verify.crosscheck.rows import identity_rows

    arrays = {dt: collect(dt) for dt in dtypes}
    rows: list[Record] = []
    for dt in dtypes:
        layer_rows = [identity_rows(name, METHODS[name], dt, l, a) for l, a in enumerate(arrays[dt])]
        if any(r.verdict is Verdict.UNKNOWN for rs in layer_rows for r in rs):
            other = "float32" if dt == "float64" else "float64"
            if other not in arrays:
                arrays[other] = collect(other)
            layer_rows = [identity_rows(name, METHODS[name], dt, l, a, (arrays[other][l], other))
                          for l, a in enumerate(arrays[dt])]
        rows += [r for rs in layer_rows for r in rs]
    return rows


def run_target(name: str, ident: list[str], low: tuple[str, ...], weights: list[str]) -> list[Record]:
    if name == "constructions":
        from prefixproof.crosscheck.constructions import construction_rows

        dirs = [(Path(w).name or w, Path(w)) for w in weights]
        return construction_rows(dirs or None, low)
    if name in ("gpt2", "peft"):
        from prefixproof.verify.crosscheck.gpt2 import Gpt2Shape, gpt2_arrays, peft_arrays
        from prefixproof.verify.crosscheck.rows import rescale_control

        shape = Gpt2Shape()
        collect = (lambda dt: gpt2_arrays(shape, dt)) if name == "gpt2" else (lambda dt: peft_arrays(shape, dt))
        rows = _identity_target(name, collect, ident)
        if name == "peft":
            for dt in ident:
                unshifted = peft_arrays(shape, dt, shift_positions=False)[0]
                rows.append(rescale_control("peft", METHODS["peft"], dt, 0, unshifted,
                                            "baseline at position_ids=arange(T), without the +P shift"))
        return rows
    from prefixproof.verify.crosscheck.minilm import minilm_arrays

    return _identity_target("minilm", minilm_arrays, ident)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("torch", "transformers", "peft", "numpy"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = "not installed"
    return out


def cmd_crosscheck(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from prefixproof.usage import check_writable

    targets = _targets(args.targets)
    ident, low = _dtypes(args, targets)
    if args.weights and "constructions" not in targets:
        from prefixproof.usage import UsageError

        raise UsageError("--weights goes with the constructions target")
    check_writable(args.json)
    try:
        extras.torch()
        extras.transformers()
        if "peft" in targets:
            extras.peft()
        if "minilm" in targets:
            extras.minilm_dir()
    except extras.MissingExtra as e:
        print(f"prefixproof: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from prefixproof.crosscheck.report import exit_status, render, summary

    records: list[Record] = []
    for name in targets:
        if not args.quiet:
            print(f"== {name}: {METHODS.get(name, 'torch module vs numpy evaluator, every exported construction')}",
                  file=sys.stderr, flush=True)
        rows = run_target(name, ident, low, args.weights or [])
        print(f"{name}: {summary(rows)}" if args.quiet else f"\n## {name}\n{render(rows)}\n{name}: {summary(rows)}")
        records += rows
    status = exit_status(records)
    print(f"{'' if args.quiet else chr(10)}all: {summary(records)}; exit status {status}")
    if args.json:
        from prefixproof.report import provenance

        used = [r.dtype for r in records if r.dtype] or [*ident, *low]
        doc = {"format": "prefixproof-crosscheck", "format_version": 1, **provenance(["prefixproof", *argv], used),
               "frameworks": _versions(), "exit_status": status, "targets": targets,
               "rows": [r.to_json() for r in records]}
        write_json(args.json, doc, indent=1)
    return status
