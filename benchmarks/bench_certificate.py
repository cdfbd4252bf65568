"""Benchmark: the interval certificate over every input, this tree against a baseline tree, in the same run.

    python benchmarks/bench_certificate.py [--baseline-python PYTHON] [--cases NAME,...] [--timeout S]

Each case runs in a fresh process per interpreter (`--case NAME`), under `prlimit --as=10000000000` and a
timeout: this tree's code (the interpreter running this script) and the baseline's (`--baseline-python`,
e.g. `python` where that runs /work/main, or a git worktree of main's venv). A case times building the
construction and the certificate itself (all V^N targets for Theorem 1, all V^V maps x V inputs for
Theorem 2, float64 execution), and reports the process's peak RSS. Prints a markdown section for
benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CASES = {  # name: (theorem, V, N, target seconds, target peak GB)
    "t1-95x20": ("theorem1", 95, 20, 1.0, None),
    "t1-32000x1024": ("theorem1", 32000, 1024, 60.0, None),
    "t1-128256x4096": ("theorem1", 128256, 4096, 60.0, 2.0),
    "t2-95": ("theorem2", 95, None, 1.0, None),
    "t2-32000": ("theorem2", 32000, None, 60.0, None),
    "t2-128256": ("theorem2", 128256, None, 30.0, None),
}
MEMORY_CAP = 10_000_000_000  # bytes of address space per case process


def run_case(name: str) -> dict:
    """Build and certify one case in this process; the figures as a dict."""
    from prefixproof.constructions.model import materialize
    from prefixproof.theorems.obligations.encoding import LookupEncoding
    from prefixproof.verify.certify.interval import exec_for
    from prefixproof.verify.certify.lookup import certify_lookup
    from prefixproof.verify.certify.lookup_rows import theorem1_rows, theorem2_rows

    theorem, V, N, _, _ = CASES[name]
    t0 = time.perf_counter()
    if theorem == "theorem1":
        from prefixproof.constructions.theorem1 import Theorem1

        model = materialize(Theorem1(V, N).model())
        enc = LookupEncoding.of(model, "target")
        rows = theorem1_rows(enc.payload, enc.V, enc.K, "float64")
    else:
        from prefixproof.constructions.theorem2 import Theorem2

        model = materialize(Theorem2(V).model())
        enc = LookupEncoding.of(model, "map")
        rows = theorem2_rows(enc.payload, enc.V, "float64")
    build = time.perf_counter() - t0
    rss_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res, seconds = certify_lookup(model, rows, exec_for("float64"))
    return {"certified": bool(res.certified), "reason": res.reason, "margin": res.min_margin, "seconds": seconds,
            "build": build, "evaluations": res.evaluations, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_mb_after_build": rss_build}


def measure(python: str, name: str, timeout: float) -> dict:
    cmd = ["prlimit", f"--as={MEMORY_CAP}", python, str(Path(__file__).resolve()), "--case", name]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"not finished in {timeout:.0f} s (killed)"}
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"failed": f"exit {out.returncode} after {time.perf_counter() - t0:.0f} s: {last[:120]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cell(r: dict) -> tuple[str, str, str]:
    if "failed" in r:
        return r["failed"], "-", "-"
    verdict = "certified" if r["certified"] else f"not certified ({r['reason']})"
    return f"{r['seconds']:.1f} s", f"{r['peak_mb']:.0f} MB", verdict


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case")
    ap.add_argument("--baseline-python", default=None)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    from machine import describe_machine

    rows = []
    for name in args.cases.split(","):
        theorem, V, N, target_s, target_gb = CASES[name]
        new = measure(sys.executable, name, args.timeout)
        base = measure(args.baseline_python, name, args.timeout) if args.baseline_python else {"failed": "not run"}
        size = f"V={V}" + (f", N={N}" if N else "")
        target = f"{target_s:.0f} s" + (f", {target_gb:.0f} GB" if target_gb else "")
        n_t, n_m, n_v = _cell(new)
        b_t, b_m, b_v = _cell(base)
        build = f"{new['build']:.1f} s" if "build" in new else "-"
        rows.append(f"| {theorem} | {size} | {target} | {b_t} | {b_m} | {n_t} | {n_m} | {n_v} | {build} |")
        print(f"{name}: baseline {base}; this tree {new}", file=sys.stderr)
    print("\n".join([
        "## Certificates at LLaMA scale: every input, float64 execution, baseline and this tree in the same run",
        "", describe_machine(), "",
        "| theorem | size | target | baseline certificate | baseline peak RSS | certificate | peak RSS | verdict | "
        "build weights |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows, "",
        f"Command: `python benchmarks/bench_certificate.py --baseline-python <main's python>`; every case in a fresh "
        f"process under `prlimit --as={MEMORY_CAP}` and a {args.timeout:.0f} s timeout. The certificate column is "
        "the interval proof alone (stage 1: attention and first-layer forms; stage 2: blocks of values through "
        "the MLP and the decoder); peak RSS is the whole process's, building the weights included.", "",
    ]))


if __name__ == "__main__":
    main()
