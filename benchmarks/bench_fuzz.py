"""Benchmark: fuzz throughput of the prefix identities, and the long zero-counterexample runs.

    python benchmarks/bench_fuzz.py throughput [--examples N] [--workers W ...] [--engines E ...]
    python benchmarks/bench_fuzz.py long [--examples N] [--workers W] [--seed S]

`throughput` fuzzes every property on small models (--size small: one layer,
width <= 4) with both engines (hypothesis, random) and 1 and 2 worker
processes, and prints examples/s per property, best of --repeats runs (the
machine may be shared). `long` runs N examples
per property (default 10^5) on the full default ranges and prints examples,
seconds, the worst error as a fraction of the tolerance, and the number of
counterexamples. Both print a markdown block for benchmarks/RESULTS.md; the
long run also writes the `prefixproof fuzz --json` style report when given
--json. Counterexamples, if any, are saved in the current directory.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import describe_machine  # noqa: E402

from prefixproof.verify.identities.properties import PROPERTIES  # noqa: E402
from prefixproof.verify.identities.runner import Plan, fuzz  # noqa: E402


def load() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "unknown"


def throughput(args: argparse.Namespace) -> None:
    print(describe_machine())
    print(f"Load average before: {load()}.")
    print()
    print("| engine | property | workers | examples | best examples/s |")
    print("|---|---|---|---|---|")
    for engine in args.engines:
        for workers in args.workers:
            for prop in PROPERTIES:
                best = 0.0
                for r in range(args.repeats):
                    st = fuzz(Plan([prop], examples=args.examples, seed=r, workers=workers, size="small",
                                   chunk=max(100, args.examples // (2 * workers)), engine=engine))[prop]
                    if st.failure is not None:
                        raise SystemExit(f"counterexample in the throughput run: {st.failure.to_json()}")
                    best = max(best, st.examples / st.seconds)
                print(f"| {engine} | {prop} | {workers} | {args.examples} | {best:,.0f} |", flush=True)
    print(f"\nLoad average after: {load()}.")


def long(args: argparse.Namespace) -> None:
    print(describe_machine())
    print(f"Load average before: {load()}.")
    t0 = time.perf_counter()
    results = fuzz(Plan(list(PROPERTIES), examples=args.examples, seed=args.seed, workers=args.workers,
                        engine=args.engine),
                   lambda prop, st, total: print(f"  {prop}: {st.examples}/{total}, worst {st.worst:.3g}",
                                                 file=sys.stderr, flush=True) if st.examples % 10000 < 500 else None)
    print()
    print("| property | examples | counterexamples | worst error / tolerance | worst measure | seconds | examples/s |")
    print("|---|---|---|---|---|---|---|")
    doc = {}
    for prop, st in results.items():
        bad = 0 if st.failure is None else 1
        print(f"| {prop} | {st.examples:,} | {bad} | {st.worst:.3g} | {st.worst_measure} | {st.seconds:,.0f} | "
              f"{st.examples / st.seconds:,.0f} |")
        doc[prop] = {"examples": st.examples, "counterexamples": bad, "worst_ratio": st.worst,
                     "worst_measure": st.worst_measure, "worst_case": st.worst_case.to_json(), "seconds": st.seconds,
                     "failure": None if st.failure is None else st.failure.to_json()}
    print(f"\nTotal {time.perf_counter() - t0:,.0f} s with {args.workers} worker(s), engine {args.engine}, seed {args.seed}; "
          f"load average after: {load()}.")
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--examples", type=int, default=3000)
    t.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    t.add_argument("--repeats", type=int, default=2)
    t.add_argument("--engines", nargs="+", default=["hypothesis", "random"])
    g = sub.add_parser("long")
    g.add_argument("--examples", type=int, default=100_000)
    g.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--engine", default="hypothesis", choices=("hypothesis", "random"))
    g.add_argument("--json")
    args = p.parse_args()
    throughput(args) if args.what == "throughput" else long(args)


if __name__ == "__main__":
    main()
