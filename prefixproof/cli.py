"""The `prefixproof` command line.

Exit status: 0 nothing falsified, 1 something FALSIFIED, 2 bad usage or input
(one-line message, never a traceback), 3 the verifier itself failed (ERROR).
"""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Sequence

from prefixproof.constructions.alphabet import TokenError
from prefixproof.constructions.io import FormatError
from prefixproof.constructions.model import ModelError, ParameterError
from prefixproof.verify.semantics.generate import GenerationError
from prefixproof.report import EXIT_ERROR, EXIT_USAGE
from prefixproof.audit.precision import SWEEPS
from prefixproof.commands.verify import LEVELS, WEIGHTS_BLOCK
from prefixproof.theorems import THEOREMS
from prefixproof.usage import UsageError
from prefixproof.verify.semantics.formats import FORMATS
from prefixproof.userinput import InputError

USER_ERRORS = (InputError, FormatError, TokenError, ModelError, ParameterError, GenerationError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse would print the usage too)
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError("seed must be >= 0")
    return value


@functools.lru_cache(maxsize=1)  # built once per process: the self-test runs `main` thousands of times
def build_parser() -> argparse.ArgumentParser:
    """The whole command line in one place (longer than 60 lines on purpose): every command, option and help text,
    so `--help` and this function read the same."""
    p = _Parser(prog="prefixproof", description="Verify constructive proofs about prompting and prefix-tuning "
                "(Petrov, Torr & Bibi, ICLR 2024).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = sub.add_parser("verify", help="check claims and print a verdict table")
    v.add_argument("claims", nargs="*", metavar="CLAIM",
                   help=f"claim ids (default: all {len(THEOREMS)}: {', '.join(THEOREMS)})")
    v.add_argument("--vocab", type=_positive, help="vocabulary size V (default: each claim's own, 95 = printable "
                   "ASCII for Theorems 1 and 2)")
    v.add_argument("--length", type=_positive, help="Theorem 1 response length N (default 20)")
    v.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="set another claim parameter, e.g. --param R=10 (long_response) or --param L=3 (multi_token)")
    v.add_argument("--samples", type=_positive,
                   help="K: targets for theorem1 (default 2000), maps for theorem2 (default 100); "
                        "input sets of at most 2^20 inputs are checked exhaustively instead")
    v.add_argument("--seed", type=_seed, default=0, help="sampling seed (default 0)")
    v.add_argument("--dtype", choices=FORMATS, default="float64",
                   help="the arithmetic the model is executed (and certified) in")
    v.add_argument("--level", choices=tuple(LEVELS), default="quick",
                   help="which methods run: quick = symbolic + certify (numeric sampling runs inside certify "
                        "as a cross-check); all adds the full numeric run")
    v.add_argument("--weights", metavar="DIR", help="check this weights directory (docs/format.md) against --claim")
    v.add_argument("--claim", choices=tuple(WEIGHTS_BLOCK), help="the claim to check --weights against")
    v.add_argument("--min-margin", type=float, default=0.0, metavar="X",
                   help="demand a decode margin of at least X (sanity mode: more than achievable must not certify)")
    v.add_argument("--json", metavar="PATH", help="also write the report as JSON (docs/report.md)")

    from prefixproof.commands.build import add_build_parser

    add_build_parser(sub, _positive, _Parser)

    pr = sub.add_parser("precision", help="largest sizes certified in each floating-point format")
    pr.add_argument("theorem", choices=tuple(SWEEPS))
    pr.add_argument("--dtype", choices=FORMATS, action="append",
                    help="format(s) to report (repeatable; default: all four)")
    pr.add_argument("--json", metavar="PATH", help="also write the report as JSON")

    st = sub.add_parser("selftest", help="run the verifier against mechanical mutants of every lookup claim's "
                        "weights, judged by an independent exhaustive reader")
    st.add_argument("--quick", action="store_true", help="a deterministic subset: two mutants of every tensor kind "
                    "per claim (the default test run uses it)")
    st.add_argument("--seed", type=_seed, default=0, help="seed for the perturbed entries and the quick subset "
                    "(default 0)")
    st.add_argument("--claim", action="append", choices=("theorem1", "theorem2", "long_response", "multi_token",
                                                         "conditional", "multi_token_packing"),
                    help="restrict to this claim (repeatable; default all six)")
    st.add_argument("--workers", type=_positive, help="processes (default: 2 for the full run, 1 with --quick)")
    st.add_argument("--json", metavar="PATH", help="also write every mutant's truth and verdict as JSON")
    st.add_argument("--quiet", action="store_true", help="no progress lines on stderr")

    xc = sub.add_parser("crosscheck", help="cross-check against PyTorch, Hugging Face GPT-2, PEFT and MiniLM "
                        "(needs the torch extra)")
    xc.add_argument("targets", nargs="*", metavar="TARGET", help="constructions, gpt2, peft, minilm or all (default)")
    xc.add_argument("--dtype", choices=FORMATS, action="append",
                    help="repeatable; identities run in float32/float64 (default both), constructions report "
                         "the formats below float64 (default float32, float16, bfloat16)")
    xc.add_argument("--weights", metavar="DIR", action="append", help="cross-check this weights directory "
                    "(repeatable; default: four constructions built on the fly)")
    xc.add_argument("--json", metavar="PATH", help="also write every row as JSON")

    pl = sub.add_parser("plot", help="attention heatmaps with and without a prefix (needs the plot extra)")
    pl.add_argument("--source", choices=("numpy", "gpt2", "minilm"), default="numpy",
                    help="numpy: our evaluator on a small random model (default); gpt2, minilm: the torch extra")
    pl.add_argument("--layer", type=int, default=0, help="layer to plot (default 0)")
    pl.add_argument("--out", default="attention-plots", help="output directory for the PNGs")

    from prefixproof.commands.fuzz import add_parser as add_fuzz_parser
    add_fuzz_parser(sub, _positive, _seed)

    from prefixproof.commands.experiment import add_parser as add_experiment_parser
    add_experiment_parser(sub, _positive)

    gen = sub.add_parser("generate", help="load a weights directory and print what the model generates")
    gen.add_argument("dir", help="directory written by `prefixproof build`")
    gen.add_argument("--input", help="user tokens: text for ASCII models, comma-separated ids otherwise")
    gen.add_argument("--verbose", action="store_true", help="also print the decode margins")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "verify":
            from prefixproof.commands.verify import cmd_verify
            return cmd_verify(args, argv)
        if args.command == "build":
            from prefixproof.commands.build import cmd_build
            return cmd_build(args)
        if args.command == "selftest":
            from prefixproof.commands.verify import cmd_selftest
            return cmd_selftest(args)

        if args.command == "fuzz":
            from prefixproof.commands.fuzz import cmd_fuzz
            return cmd_fuzz(args, argv)
        if args.command == "precision":
            from prefixproof.commands.verify import cmd_precision
            return cmd_precision(args)
        if args.command == "crosscheck":
            from prefixproof.commands.crosscheck import cmd_crosscheck
            return cmd_crosscheck(args, argv)
        if args.command == "experiment":
            from prefixproof.commands.experiment import cmd_experiment
            return cmd_experiment(args)
        if args.command == "plot":
            from prefixproof.commands.plot import cmd_plot
            return cmd_plot(args)
        from prefixproof.commands.verify import cmd_generate
        return cmd_generate(args)
    except UsageError as e:
        print(f"prefixproof: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except USER_ERRORS as e:
        print(f"prefixproof: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("prefixproof: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - never a traceback; an internal failure is ERROR, not a pass
        print(f"prefixproof: internal error (a bug in prefixproof): {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
