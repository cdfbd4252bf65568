"""`prefixproof fuzz`: the prefix identities at scale, with negative controls, saved and replayable failures.

Exit status: 0 no counterexample and every negative control flagged; 1 a
counterexample (shrunk, saved, replayable); 2 bad usage; 3 the harness failed
(a negative control was not flagged, or hypothesis itself failed).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from prefixproof.output import json_safe, render_table, write_json
from prefixproof.report import EXIT_ERROR, EXIT_FALSIFIED, EXIT_OK

FAILURE_FORMAT = "prefixproof-fuzz-failure"
REPORT_FORMAT = "prefixproof-fuzz"


def add_parser(sub: Any, positive: Any, seed: Any) -> None:
    from prefixproof.verify.identities.properties import PROPERTIES
    from prefixproof.verify.parallel import default_workers

    f = sub.add_parser("fuzz", help="fuzz the prefix identities (hypothesis) with negative controls",
                       description="Fuzz the prefix identities on random transformers through the forward pass. "
                       "Prints examples/s and the worst error as a fraction of its tolerance per property, then the "
                       "negative controls (each must be flagged). A counterexample is shrunk, saved and replayable. "
                       "Exit status: 0 clean, 1 counterexample, 2 bad usage, 3 harness failure.")
    f.add_argument("--property", action="append", choices=sorted(PROPERTIES), metavar="NAME",
                   help=f"property to fuzz (repeatable; default all: {', '.join(PROPERTIES)})")
    f.add_argument("--examples", type=positive, metavar="N",
                   help="examples per property (default 2000 unless --seconds; with both, whichever ends first)")
    f.add_argument("--seconds", type=float, metavar="S",
                   help="time budget for the properties, split evenly between them (the controls run after)")
    f.add_argument("--seed", type=seed, default=0, help="seed of the run (default 0)")
    f.add_argument("--workers", type=positive, default=default_workers(),
                   help="worker processes (default: PREFIXPROOF_WORKERS, or the number of cores up to 4)")
    f.add_argument("--size", choices=("default", "small"), default="default",
                   help="model sizes drawn: default (up to 3 layers, 3 heads, width 8) or small (1 layer, width <= 4)")
    f.add_argument("--engine", choices=("hypothesis", "random"), default="hypothesis",
                   help="hypothesis (targeting, hypothesis shrinking; default) or random (numpy-seeded cases, greedy "
                        "shrinking, no per-example hypothesis overhead)")
    f.add_argument("--no-controls", action="store_true", help="skip the negative controls")
    f.add_argument("--failures", metavar="DIR", default=".", help="directory for saved counterexamples (default .)")
    f.add_argument("--json", metavar="PATH", help="also write the run as JSON")
    f.add_argument("--replay", metavar="FILE", help="re-run a saved counterexample instead of fuzzing")
    f.add_argument("--shards", type=positive, default=1, metavar="K",
                   help="split the campaign into K independent shards (seeds seed..seed+K-1) on the job runner: "
                        "--workers shards at a time locally, or --backend ray (prefixproof.jobs.fuzz_shards)")
    f.add_argument("--backend", choices=("process", "ray"), default="process", help="where shards run")
    f.add_argument("--address", metavar="ADDR", help="Ray cluster address (with --backend ray)")


def hypothesis_home() -> Path:
    """Where hypothesis keeps its files during `fuzz`: $HYPOTHESIS_STORAGE_DIRECTORY when set, else
    $XDG_CACHE_HOME/prefixproof/hypothesis (an absolute $XDG_CACHE_HOME only), else
    ~/.cache/prefixproof/hypothesis. Never the working directory (hypothesis's own default is ./.hypothesis)."""
    given = os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY")
    if given:
        return Path(given)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return cache / "prefixproof" / "hypothesis"


def _hypothesis_available() -> None:
    """Import hypothesis with its storage under the cache directory; the fuzz runs use no example database
    (verify/identities/runner.py), but hypothesis also caches constants it finds in the code under test."""
    from prefixproof.usage import UsageError

    home = hypothesis_home()
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(home)  # inherited by the worker processes
    try:
        from hypothesis.configuration import set_hypothesis_home_dir
    except ImportError:
        raise UsageError("fuzz needs the hypothesis package: pip install 'prefixproof[fuzz]' "
                         "(or pip install hypothesis)") from None
    set_hypothesis_home_dir(home)


def cmd_fuzz(args: argparse.Namespace, argv: list[str]) -> int:
    from prefixproof.usage import UsageError, check_writable

    if args.replay:
        return _replay(args.replay)
    if args.seconds is not None and not (args.seconds > 0 and args.seconds < 1e7):
        raise UsageError("--seconds must be a positive number of seconds")
    if not Path(args.failures).is_dir():
        raise UsageError(f"--failures {args.failures}: not a directory")
    check_writable(args.json)
    _hypothesis_available()
    if args.address and args.backend != "ray":
        raise UsageError("--address needs --backend ray")
    if args.shards > 1 or args.backend == "ray":
        from prefixproof.jobs.fuzz_shards import run_shards
        return run_shards(args)
    from prefixproof.verify.identities.properties import CONTROLS, PROPERTIES
    from prefixproof.verify.identities.runner import HarnessError, Plan, fuzz, run_control

    props = list(dict.fromkeys(args.property or PROPERTIES))
    examples = args.examples if args.examples or args.seconds else 2000
    plan = Plan(props, examples, args.seconds, args.seed, args.workers, args.size, engine=args.engine)
    if not args.quiet:
        print(f"fuzz: {', '.join(props)}; {_budget(examples, args.seconds)}; seed {args.seed}; size {args.size}; "
              f"engine {args.engine}; {args.workers} worker(s)", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        results = fuzz(plan, (lambda *a: None) if args.quiet else _progress())
        controls = {}
        if not args.no_controls:
            for name, c in CONTROLS.items():
                if c.property in props:
                    controls[name] = run_control(name, args.seed)
    except HarnessError as e:
        print(f"prefixproof: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    saved = {}
    for prop, st in results.items():
        if st.failure is not None:
            saved[prop] = _save(st.failure, args.failures)
    print(_summary(results, controls, saved) if args.quiet else _table(results, controls, saved))
    status = EXIT_FALSIFIED if saved else EXIT_ERROR if any(c.failure is None for c in controls.values()) else EXIT_OK
    if args.json:
        doc = _report(argv, plan, results, controls, saved, time.perf_counter() - t0, status)
        write_json(args.json, doc)
    return status


def _summary(results, controls, saved) -> str:
    """--quiet: one line per property, one for the negative controls."""
    lines = []
    for prop, st in results.items():
        found = "no counterexample" if st.failure is None else f"COUNTEREXAMPLE, saved as {saved[prop]}"
        lines.append(f"{prop}: {found} in {st.examples} random transformers; the worst error was {st.worst:.3g} "
                     "of its tolerance")
    if controls:
        flagged = [n for n, st in controls.items() if st.failure is not None]
        missed = [n for n in controls if n not in flagged]
        lines.append(f"negative controls: {len(flagged)} of {len(controls)} flagged"
                     + (f"; NOT flagged (the harness is broken): {', '.join(missed)}" if missed else ""))
    return "\n".join(lines)


def _budget(examples: int | None, seconds: float | None) -> str:
    parts = ([f"{examples} examples per property"] if examples else []) + ([f"{seconds:g} s"] if seconds else [])
    return " and at most ".join(parts)


def _progress():
    last = [0.0]

    def report(prop, stats, total) -> None:
        now = time.monotonic()
        if now - last[0] < 1.0 and not (total and stats.examples >= total):
            return
        last[0] = now
        rate = stats.examples / stats.seconds if stats.seconds > 0 else 0.0
        of = f"/{total}" if total else ""
        print(f"  {prop}: {stats.examples}{of} examples, {rate:,.0f}/s, worst error {stats.worst:.3g} x tolerance",
              file=sys.stderr, flush=True)

    return report


def _save(failure, directory: str) -> str:
    doc = {"format": FAILURE_FORMAT, "format_version": 1, **failure.to_json()}
    text = json.dumps(json_safe(doc), indent=2) + "\n"
    path = Path(directory) / f"fuzz-failure-{failure.property}-{hashlib.sha256(text.encode()).hexdigest()[:10]}.json"
    write_json(path, doc)
    return str(path)


def _table(results, controls, saved) -> str:
    rows = [("property", "examples", "examples/s", "worst error / tol", "worst measure", "result")]
    for prop, st in results.items():
        rate = st.examples / st.seconds if st.seconds > 0 else 0.0
        result = "no counterexample" if st.failure is None else f"COUNTEREXAMPLE (saved {saved[prop]})"
        rows.append((prop, str(st.examples), f"{rate:,.0f}", f"{st.worst:.3g}", st.worst_measure or "-", result))
    lines = _columns(rows)
    for prop, st in results.items():
        if st.failure is not None:
            bad = st.failure.bad()
            what = st.failure.error or "; ".join(f"{m.name}: {m.error:.3g} > tol {m.tol:.3g}" for m in bad[:3])
            lines += ["", f"{prop}: shrunk counterexample {json.dumps(st.failure.case.to_json())}", f"  {what}",
                      f"  replay: prefixproof fuzz --replay {saved[prop]}",
                      f"  as a test example: @example(Case(**{st.failure.case.to_json()!r}))"]
    if controls:
        crow = [("negative control", "property", "flagged", "after examples", "flagging measure")]
        for name, st in controls.items():
            f = st.failure
            m = None if f is None else (f.bad()[0] if f.bad() else None)
            how = "-" if f is None else (f.error or (f"{m.name}: {m.ratio:.3g} x tol" if m else "-"))
            crow.append((name, f.property if f else "-", "yes" if f else "NO (harness broken)", str(st.examples), how))
        lines += [""] + _columns(crow)
    return "\n".join(lines)


def _columns(rows) -> list[str]:
    return render_table(rows[0], rows[1:]).split("\n")


def _report(argv, plan, results, controls, saved, seconds, status) -> dict[str, Any]:
    def stats(st):
        return {"examples": st.examples, "seconds": round(st.seconds, 3),
                "examples_per_second": round(st.examples / st.seconds, 1) if st.seconds > 0 else None,
                "worst_ratio": st.worst, "worst_measure": st.worst_measure,
                "worst_case": None if st.worst_case is None else st.worst_case.to_json(),
                "counterexample": None if st.failure is None else st.failure.to_json()}

    from prefixproof.report import provenance

    return {
        "format": REPORT_FORMAT, "format_version": 1,
        **provenance(["prefixproof", *argv], ["float32", "float64"]),  # each random case draws its dtype
        "seed": plan.seed, "workers": plan.workers, "size": plan.size, "engine": plan.engine,
        "seconds": round(seconds, 3),
        "exit_status": status,
        "properties": {p: stats(st) for p, st in results.items()},
        "saved_counterexamples": saved,
        "controls": {n: {"flagged": st.failure is not None, "examples": st.examples,
                         "failure": None if st.failure is None else st.failure.to_json()}
                     for n, st in controls.items()},
    }


def _replay(path: str) -> int:
    from prefixproof.constructions.io import read_json
    from prefixproof.usage import UsageError
    from prefixproof.verify.identities.cases import CaseError
    from prefixproof.verify.identities.runner import replay

    doc = read_json(Path(path), UsageError, f"--replay {path}: no such file", f"--replay {path}")
    if not isinstance(doc, dict) or doc.get("format") != FAILURE_FORMAT:
        raise UsageError(f"--replay {path}: not a saved fuzz failure (format {FAILURE_FORMAT!r})")
    try:
        own, wide = replay(doc)
    except (CaseError, ValueError) as e:
        raise UsageError(f"--replay {path}: {e}") from None
    case = doc["case"]
    print(f"replay of {doc['property']}{' (control ' + doc['control'] + ')' if doc.get('control') else ''} "
          f"on {json.dumps(case)}")
    for label, ms in ((case.get("dtype", "float64"), own), ("extended precision (confirmation)", wide)):
        bad = [m for m in ms if not m.ok]
        worst = max(ms, key=lambda m: m.ratio) if ms else None
        print(f"  {label}: {len(bad)} of {len(ms)} measures exceed their tolerance" +
              ("" if worst is None else f"; worst {worst.name}: {worst.error:.3g} vs tol {worst.tol:.3g}"))
    failing = any(not m.ok for m in own)
    confirmed = failing and any(not m.ok for m in wide)
    print("still fails" + (" and is confirmed in extended precision" if confirmed else
                           " in its dtype only (extended precision passes: a precision issue, not the identity)")
          if failing else "passes now")
    return EXIT_FALSIFIED if failing else EXIT_OK
