"""`prefixproof experiment list | run ID | report [ID] | figure ID`: the paper's experiments (torch extra).

`run` trains (pretraining per seed, then every cell per seed) as independent jobs on a process pool
(`--workers N`) or a Ray cluster (`--backend ray --address ADDR`, the cluster extra) and writes a config file
plus one JSON result per run under `--out`; `report` prints accuracy mean ± sd over seeds against the paper,
the prefix identities and the attention-order measure; `figure` draws Figure 1 (plot extra).
Exit status: 0 done, 2 bad usage or a missing extra, 3 a job failed.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_OUT = "experiment-runs"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; os.cpu_count() where there is none): the default
    number of workers, one torch thread each."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def add_parser(sub: Any, positive: Any) -> None:
    from prefixproof.experiments.registry import BUILDERS

    e = sub.add_parser("experiment", help="train prefix / soft prompt / LoRA / full fine-tuning on the paper's "
                       "tasks and measure the theorems on the trained models (needs the torch extra)")
    esub = e.add_subparsers(dest="action", required=True, parser_class=sub._parser_class)
    esub.add_parser("list", help="the experiments, their models and cells")
    r = esub.add_parser("run", help="run one experiment (CPU size unless --paper)")
    r.add_argument("id", nargs="?", choices=tuple(BUILDERS), help="experiment id (or --config FILE)")
    r.add_argument("--config", metavar="FILE", help="run this configuration file (config.json of a run)")
    r.add_argument("--paper", action="store_true", help="the paper's model sizes and step counts (for a GPU)")
    r.add_argument("--seeds", type=positive, help="seeds 0..N-1 (default: the experiment's, 3)")
    r.add_argument("--steps-scale", type=float, default=1.0, metavar="X",
                   help="multiply every step count by X (e.g. 0.1 for a smoke run; results say so)")
    r.add_argument("--device", default="cpu", help="torch device (default cpu; cuda for --paper)")
    r.add_argument("--workers", type=positive, help="processes of the local pool (default: the CPUs this process "
                   "may use)")
    r.add_argument("--backend", choices=("process", "ray"), default="process")
    r.add_argument("--address", metavar="ADDR", help="Ray cluster address (with --backend ray)")
    r.add_argument("--out", default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    rp = esub.add_parser("report", help="the comparison table of finished runs")
    rp.add_argument("id", nargs="*", help="experiment ids (default: every one found under --out)")
    rp.add_argument("--out", default=DEFAULT_OUT)
    rp.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    f = esub.add_parser("figure", help="Figure 1: attention before/after adaptation per method (plot extra)")
    f.add_argument("id")
    f.add_argument("--out", default=DEFAULT_OUT)
    f.add_argument("--layer", type=int, default=0)
    f.add_argument("--head", type=int, default=0)
    f.add_argument("--png", metavar="PATH", help="output (default OUT/ID/figure1.png)")


def _need(module: str, extra: str) -> None:
    from prefixproof.usage import UsageError

    try:
        __import__(module)
    except ImportError:
        raise UsageError(f"this needs {module}: pip install 'prefixproof[{extra}]'") from None


def _scaled(exp: Any, x: float) -> Any:
    from dataclasses import replace

    from prefixproof.usage import UsageError
    if not 0 < x <= 100:
        raise UsageError("--steps-scale must be in (0, 100]")
    if x == 1.0:
        return exp
    cells = tuple(replace(c, steps=max(1, round(c.steps * x)),
                          warmup=min(round(c.warmup * x), max(1, round(c.steps * x)) - 1)) for c in exp.cells)
    return replace(exp, pretrain_steps=max(1, round(exp.pretrain_steps * x)), cells=cells,
                   title=exp.title + f" [steps x{x:g}]")


def cmd_experiment(args: argparse.Namespace) -> int:
    from prefixproof.experiments.config import ConfigError
    from prefixproof.usage import UsageError

    try:
        if args.action == "list":
            return _list()
        if args.action == "report":
            return _report(args)
        _need("torch", "torch")
        if args.action == "figure":
            _need("matplotlib", "plot")
            return _figure(args)
        return _run(args)
    except ConfigError as e:
        raise UsageError(str(e)) from None


def _list() -> int:
    from prefixproof.experiments.registry import BUILDERS, get
    from prefixproof.output import render_table

    rows = []
    for eid in BUILDERS:
        e, p = get(eid), get(eid, paper=True)
        m, mp = e.model, p.model
        rows.append([eid, e.title, f"{m.layers}L {m.heads}H d={m.width}", f"{mp.layers}L {mp.heads}H d={mp.width}",
                     ", ".join(f"{c.name}: {c.method} on {c.task}" for c in e.cells)])
    print(render_table(("id", "what", "CPU model", "paper model", "cells"), rows))
    return 0


def _run(args: argparse.Namespace) -> int:
    from prefixproof.experiments.config import load
    from prefixproof.experiments.registry import get
    from prefixproof.experiments.run import run_experiment
    from prefixproof.jobs import JobError
    from prefixproof.report import EXIT_ERROR
    from prefixproof.usage import UsageError
    import sys

    if (args.id is None) == (args.config is None):
        raise UsageError("give an experiment id or --config FILE (one of them)")
    if args.address and args.backend != "ray":
        raise UsageError("--address needs --backend ray")
    if args.backend == "ray":
        _need("ray", "cluster")
    exp = load(args.config) if args.config else get(args.id, args.paper)
    exp = _scaled(exp, args.steps_scale)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: not a directory")
    try:
        run_experiment(exp, out, args.seeds or exp.seeds, workers=args.workers or usable_cpus(),
                       backend=args.backend, address=args.address, device=args.device, quiet=args.quiet)
    except JobError as e:
        print(f"prefixproof: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    args.id, args.json = [exp.id], None
    return _report(args)


def _report(args: argparse.Namespace) -> int:
    from prefixproof.experiments.report import HEADER, NOTE, rows
    from prefixproof.output import render_table, write_json
    from prefixproof.usage import UsageError

    out = Path(args.out)
    ids = args.id or sorted(p.name for p in out.glob("*") if (p / "config.json").exists())
    if not ids:
        raise UsageError(f"no experiment results under {out} (run `prefixproof experiment run ID` first)")
    tables = {}
    for eid in ids:
        if not (out / eid / "config.json").exists():
            raise UsageError(f"no results for {eid} under {out}")
        exp, r, v = rows(out / eid)
        print(render_table(HEADER, r, title=f"{eid}: {exp.title}"))
        for line in v:
            print(line)
        print()
        tables[eid] = {"title": exp.title, "rows": r, "claims": v}
    import textwrap

    from prefixproof.output import terminal_width
    print(textwrap.fill(NOTE, width=terminal_width()))
    if getattr(args, "json", None):
        write_json(args.json, {"format": "prefixproof-experiment-report", "version": 1, "header": list(HEADER),
                               "experiments": tables, "note": NOTE})
    return 0


def _figure(args: argparse.Namespace) -> int:
    from prefixproof.experiments.config import load
    from prefixproof.experiments.figure import figure
    from prefixproof.usage import UsageError

    folder = Path(args.out) / args.id
    if not (folder / "config.json").exists():
        raise UsageError(f"no results for {args.id} under {args.out}")
    exp = load(folder / "config.json")
    png = Path(args.png) if args.png else folder / "figure1.png"
    print(figure(exp, folder, png, args.layer, args.head))
    return 0
