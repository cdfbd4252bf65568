"""The `prefixproof` command line.

Exit status: 0 nothing falsified, 1 something FALSIFIED, 2 bad usage or input, a file or permission problem, or
not enough memory (one line naming the fix, never a traceback), 3 the verifier itself failed (ERROR, or an
internal error: one line, the traceback with --debug), 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import traceback
from typing import Sequence

from prefixproof.constructions.alphabet import TokenError
from prefixproof.constructions.io import FormatError
from prefixproof.constructions.model import ModelError, ParameterError
from prefixproof.verify.semantics.generate import GenerationError
from prefixproof.report import EXIT_ERROR, EXIT_USAGE
from prefixproof.audit.precision import SWEEPS
from prefixproof.commands.verify import LEVELS, WEIGHTS_BLOCK
from prefixproof.theorems import THEOREMS
from prefixproof.usage import UsageError, check_json_target
from prefixproof.verify.semantics.formats import FORMATS
from prefixproof.userinput import InputError
from prefixproof.verify.budget import Budget, OverBudget, default_budget, human, install, parse_size

USER_ERRORS = (InputError, FormatError, TokenError, ModelError, ParameterError, GenerationError, OverBudget)
_REFUSALS = (UsageError, *USER_ERRORS)  # built once: an except clause must not allocate after a MemoryError


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


def _memory(text: str) -> Budget:
    try:
        return Budget(parse_size(text), f"--max-memory {text}")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_memory_option(parser: argparse.ArgumentParser, default: Budget) -> None:
    """--max-memory on every command (and every build construction): the budget of prefixproof.verify.budget."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        where = default.source.removeprefix("default: ").replace("%", "%%")
        parser.add_argument("--max-memory", type=_memory, metavar="SIZE", default=default,
                            help=f"memory budget, e.g. 4G, 500M or bytes (default here {human(default.bytes)}: "
                                 f"{where}); larger sizes are refused before anything is allocated, proof "
                                 "obligations over it are UNKNOWN(budget)")
    for action in subs:
        for child in dict.fromkeys(action.choices.values()):
            _add_memory_option(child, default)


@functools.lru_cache(maxsize=1)  # built once per process: the self-test runs `main` thousands of times
def build_parser() -> argparse.ArgumentParser:
    """The whole command line in one place (longer than 60 lines on purpose): every command, option and help text,
    so `--help` and this function read the same."""
    from prefixproof import __version__

    p = _Parser(prog="prefixproof", description="Verify constructive proofs about prompting and prefix-tuning "
                "(Petrov, Torr & Bibi, ICLR 2024).", epilog="Global flags, anywhere on the line: --debug shows "
                "the traceback of an internal error (exit status 3). Exit status: 0 nothing falsified, "
                "1 FALSIFIED, 2 bad usage or input, 3 internal error or ERROR, 130 interrupted.")
    p.add_argument("--version", action="version", version=f"prefixproof {__version__}")
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
    v.add_argument("--certificate", metavar="FILE", help="write the certificate of the (one) claim's CERTIFIED "
                   "decode obligation to FILE (docs/certificate-format.md); check it with `prefixproof check`")
    ck = sub.add_parser("check", help="re-verify a certificate file with the small independent checker")
    ck.add_argument("certificate", metavar="FILE", help="a certificate written by verify --certificate")
    ck.add_argument("--weights", metavar="DIR", required=True, help="the weights directory it speaks about")

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
    _add_memory_option(p, default_budget())
    _add_quiet(sub)
    return p


QUIET_HELP = {
    "verify": "print only one plain sentence per claim (no table, no progress)",
    "precision": "print only one sentence per format and sweep (no table, no progress)",
    "crosscheck": "print only one summary line per target and the overall summary (no tables, no progress)",
    "fuzz": "print only one line per property and one for the negative controls (no tables, no progress)",
    "selftest": "no progress lines on stderr; print only the summary lines (no table)",
    "build": "accepted for uniformity: build already prints one summary line",
    "generate": "accepted for uniformity: generate prints only the generated text unless --verbose",
    "plot": "print only the list of files written",
    "check": "accepted for uniformity: check prints what it trusts, one line per kind of step and the verdict",
    "experiment": "no progress bars on stderr",
}


def _add_quiet(sub: argparse._SubParsersAction) -> None:
    """`--quiet` on every command: the summary only."""
    for name, parser in sub.choices.items():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        # build CONSTRUCTION ... / experiment ACTION ...: the option goes after the nested command's name
        for target in (nested[0].choices.values() if nested else [parser]):
            _quiet_option(target, QUIET_HELP.get(name, "summary only"))


def _quiet_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    existing = next((a for a in parser._actions if "--quiet" in a.option_strings), None)
    if existing is None:
        parser.add_argument("--quiet", action="store_true", help=help_text)
    else:
        existing.help = help_text


INPUTS = ("weights", "map_file", "replay", "dir")  # argument names whose paths a run reads


def _inputs(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for name in INPUTS:
        value = getattr(args, name, None)
        out += [value] if isinstance(value, str) else list(value or [])
    return out


PATHS = {"out": "--out", "json": "--json", "failures": "--failures", "weights": "--weights", "dir": "DIR",
         "map_file": "--map-file", "replay": "--replay"}


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse an empty path (it would mean the current directory) and a plot --out that is a file."""
    for attr, flag in PATHS.items():
        value = getattr(args, attr, None)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and not v.strip():
                raise UsageError(f"{flag} is empty; give a path")
    if args.command == "plot" and os.path.lexists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out} is an existing file; plot writes PNG files into a directory")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (module docstring). `--debug` may appear anywhere."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        args = build_parser().parse_args(argv)
        _check_paths(args)
        check_json_target(getattr(args, "json", None), _inputs(args))  # before the run, never after it
        install(args.max_memory)  # the budget of this command (prefixproof.verify.budget)
        return _dispatch(args, argv)
    except SystemExit as e:  # --help and --version
        return e.code if isinstance(e.code, int) else 0
    except _REFUSALS as e:
        return _fail(str(e), EXIT_USAGE)
    except KeyboardInterrupt:
        from prefixproof import entry

        if not entry.reported:
            print(entry.LINE, file=sys.stderr)
        return 130
    except MemoryError as e:
        _release(e)  # free the frames (and what they were building) before reporting
        del e
        return _fail("out of memory: the run needs more memory than is available; use smaller sizes (--vocab, "
                     "--length, --samples) or set a memory budget (--max-memory)", EXIT_USAGE)
    except OSError as e:  # the file system refused: a path, a permission, a full disk
        where = f" {e.filename}" if e.filename else ""
        return _fail(f"cannot access{where}: {e.strerror or e}; check the path, its permissions and free space",
                     EXIT_USAGE)
    except Exception as e:  # noqa: BLE001 - never a traceback unless asked; an internal failure is ERROR, not a pass
        if debug:
            traceback.print_exc()
        detail = " ".join(str(e).split())[:300]
        return _fail(f"internal error (a bug in prefixproof): {type(e).__name__}: {detail}" +
                     ("" if debug else "; re-run with --debug for the traceback"), EXIT_ERROR)


def _release(e: BaseException | None) -> None:
    """Drop the tracebacks of an exception and of every exception it happened during, clearing their frames."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if e.__traceback__ is not None:
            traceback.clear_frames(e.__traceback__)
            e.__traceback__ = None
        e = e.__context__ or e.__cause__


def _fail(message: str, status: int) -> int:
    print(f"prefixproof: error: {' '.join(message.split())}", file=sys.stderr)
    return status


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    if args.command == "verify":
        from prefixproof.commands.verify import cmd_verify
        return cmd_verify(args, argv)
    if args.command == "check":
        from pathlib import Path

        from prefixproof.checker.main import run as run_check
        return run_check(Path(args.certificate), Path(args.weights))
    if args.command == "build":
        from prefixproof.commands.build import cmd_build
        return cmd_build(args)
    if args.command == "selftest":
        from prefixproof.commands.verify import cmd_selftest
        return cmd_selftest(args, argv)
    if args.command == "fuzz":
        from prefixproof.commands.fuzz import cmd_fuzz
        return cmd_fuzz(args, argv)
    if args.command == "precision":
        from prefixproof.commands.verify import cmd_precision
        return cmd_precision(args, argv)
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


if __name__ == "__main__":
    from prefixproof.entry import run

    run()
