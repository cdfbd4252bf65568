"""`prefixproof fuzz --shards K`: one fuzz campaign as K independent shards on the job runner.

Shard i runs `prefixproof fuzz` with seed `seed + i`, ceil(examples / K) examples per property (or the
whole `--seconds` budget each), one worker, and the negative controls in shard 0 only. Shards run on the
local process pool (`--workers` shards at a time) or on Ray (`--backend ray --address ADDR`). The combined
result: examples summed per property, the worst error ratio over shards, every saved counterexample, the
controls of shard 0. Exit status: 1 if any shard found a counterexample, else 3 if any shard's harness
failed (or a shard's report is missing), else 2 if any shard rejected its usage, else 0.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from prefixproof.output import render_table, write_json
from prefixproof.report import EXIT_ERROR, EXIT_FALSIFIED, EXIT_OK

EXIT_USAGE = 2


def shard_argv(args: argparse.Namespace, i: int, json_path: str) -> list[str]:
    argv = ["fuzz", "--seed", str(args.seed + i), "--size", args.size, "--engine", args.engine,
            "--failures", str(Path(args.failures).resolve()), "--workers", "1", "--json", json_path]
    if args.examples or not args.seconds:
        argv += ["--examples", str(math.ceil((args.examples or 2000) / args.shards))]
    if args.seconds:
        argv += ["--seconds", repr(args.seconds)]
    for p in args.property or []:
        argv += ["--property", p]
    if args.no_controls or i > 0:
        argv.append("--no-controls")
    return argv


def run_shard(argv: list[str]) -> dict[str, Any]:
    """One shard, in this process (the job runner's workers call it): its exit status and JSON report."""
    from prefixproof.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    path = Path(argv[argv.index("--json") + 1])
    doc = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    return {"status": status, "report": doc, "stderr_tail": err.getvalue()[-400:]}


def combine(results: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    statuses = [r["status"] for r in results]
    missing = [i for i, r in enumerate(results) if r["report"] is None]
    props: dict[str, dict[str, Any]] = {}
    saved: dict[str, list[str]] = {}
    for r in results:
        for name, st in ((r["report"] or {}).get("properties") or {}).items():
            agg = props.setdefault(name, {"examples": 0, "worst_ratio": 0.0, "worst_measure": None})
            agg["examples"] += st["examples"]
            if st["worst_ratio"] is not None and float(st["worst_ratio"]) >= float(agg["worst_ratio"]):
                agg["worst_ratio"], agg["worst_measure"] = st["worst_ratio"], st["worst_measure"]
        for name, path in ((r["report"] or {}).get("saved_counterexamples") or {}).items():
            saved.setdefault(name, []).append(path)
    controls = (results[0]["report"] or {}).get("controls", {}) if results else {}
    if EXIT_FALSIFIED in statuses or saved:
        status = EXIT_FALSIFIED
    elif EXIT_ERROR in statuses or missing or any(s not in (EXIT_OK, EXIT_USAGE) for s in statuses):
        status = EXIT_ERROR
    elif EXIT_USAGE in statuses:
        status = EXIT_USAGE
    else:
        status = EXIT_OK
    doc = {"format": "prefixproof-fuzz-shards", "format_version": 1, "shards": len(results),
           "shard_status": statuses, "missing_reports": missing, "properties": props,
           "saved_counterexamples": saved, "controls": controls, "exit_status": status}
    return status, doc


def run_shards(args: argparse.Namespace) -> int:
    import sys

    from prefixproof.jobs import JobError, run_jobs

    with tempfile.TemporaryDirectory(prefix="prefixproof-shards-") as tmp:
        argvs = [shard_argv(args, i, str(Path(tmp) / f"shard{i}.json")) for i in range(args.shards)]
        print(f"fuzz: {args.shards} shards on {args.backend}"
              f"{'' if args.backend == 'ray' else f' ({args.workers} at a time)'}", file=sys.stderr, flush=True)
        try:
            results = run_jobs(run_shard, argvs, workers=args.workers, backend=args.backend, address=args.address,
                               labels=[f"shard {i}" for i in range(args.shards)])
        except JobError as e:
            print(f"prefixproof: error: {e}", file=sys.stderr)
            return EXIT_ERROR
    status, doc = combine(results)
    rows = [[p, st["examples"], f"{float(st['worst_ratio']):.3g}", st["worst_measure"] or "-",
             ", ".join(saved) if (saved := doc["saved_counterexamples"].get(p)) else "no counterexample"]
            for p, st in doc["properties"].items()]
    print(render_table(("property", "examples (all shards)", "worst error / tol", "worst measure", "result"), rows))
    for name, c in doc["controls"].items():
        print(f"negative control {name}: {'flagged' if c['flagged'] else 'NOT flagged (harness broken)'}")
    print(f"shards: {len(results)}, exit statuses {doc['shard_status']}")
    if args.json:
        write_json(args.json, doc)
    return status
