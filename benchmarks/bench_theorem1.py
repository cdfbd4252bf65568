"""Benchmark: Theorem 1 generation and verification against a notebook-style naive reference.

    python benchmarks/bench_theorem1.py [--quick]

Prints a markdown report (machine, throughput at V=95 N=20, growth with N)
that is pasted into benchmarks/RESULTS.md. Timings are best-of-repeats wall
clock; every generated string is checked against its target.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402
from naive import naive_generate  # noqa: E402

from prefixproof.constructions.model import materialize  # noqa: E402
from prefixproof.constructions.theorem1 import Theorem1  # noqa: E402
from prefixproof.theorems.theorem1 import Theorem1Inputs  # noqa: E402
from prefixproof.verify.numeric.decoding import check_decoding  # noqa: E402
from prefixproof.verify.semantics.generate import generate, generate_many  # noqa: E402
from prefixproof.verify.verdict import Verdict  # noqa: E402


def best_of(fn, repeats: int = 3) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def per_string_naive(c: Theorem1, model, n: int) -> float:
    Y = np.random.default_rng(1).integers(0, c.V, size=(n, c.N))
    soft = c.encode_batch(Y)
    t0 = time.perf_counter()
    for i in range(n):
        assert naive_generate(model, soft[i], c.N) == Y[i].tolist()
    return (time.perf_counter() - t0) / n


def per_string_generate(c: Theorem1, model, B: int) -> float:
    Y = np.random.default_rng(2).integers(0, c.V, size=(B, c.N))
    soft = c.encode_batch(Y)
    out = {}

    def run():
        out["g"] = generate_many(model, soft)
    t = best_of(run)
    assert (out["g"].tokens == Y).all()
    return t / B


def per_string_verify(c: Theorem1, model, K: int) -> float:
    rec = {}

    def run():
        rec["r"] = check_decoding(model, Theorem1Inputs(c), claim="theorem1", params={}, samples=K, seed=0)
    t = best_of(run)
    assert rec["r"].verdict is Verdict.SAMPLED
    return t / K


def slope(ns: list[int], ts: list[float]) -> float:
    x, y = np.log(ns), np.log(ts)
    return float(np.polyfit(x, y, 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = ap.parse_args()
    lines = ["## Theorem 1: generation and verification throughput", "", describe_machine(), ""]

    c = Theorem1(95, 20)
    model = materialize(c.model())
    naive = per_string_naive(c, model, 3 if args.quick else 10)
    gen = per_string_generate(c, model, 4000 if args.quick else 40000)
    ver = per_string_verify(c, model, 4000 if args.quick else 40000)
    one = best_of(lambda: generate(model, soft=c.encode_batch(np.zeros((1, 20), dtype=int))))
    lines += [
        "### V=95, N=20 (per string)",
        "",
        "| path | seconds per string | strings per second | vs naive |",
        "|---|---|---|---|",
        f"| naive reference (notebook style, full recompute, Python loops) | {naive:.3g} | {1 / naive:,.1f} | 1x |",
        f"| `generate`, one string, key/value cache | {one:.3g} | {1 / one:,.0f} | {naive / one:,.0f}x |",
        f"| `generate_many`, batched, key/value cache | {gen:.3g} | {1 / gen:,.0f} | {naive / gen:,.0f}x |",
        f"| `check_decoding`, teacher-forced, batched | {ver:.3g} | {1 / ver:,.0f} | {naive / ver:,.0f}x |",
        "",
    ]

    ns = [20, 40, 80, 160] if args.quick else [20, 40, 80, 160, 320, 640, 1024]
    rows, tg, tv, tn = [], [], [], []
    for n in ns:
        cn = Theorem1(95, n)
        mn = materialize(cn.model())
        batch = max(16, int(3e7 / (n * n * (2 * n + 1))))
        g = per_string_generate(cn, mn, batch)
        v = per_string_verify(cn, mn, batch)
        nv = per_string_naive(cn, mn, 2) if n <= 80 else None
        tg.append(g)
        tv.append(v)
        if nv is not None:
            tn.append(nv)
        rows.append(f"| {n} | {2 * n + 1} | {batch} | {g:.3g} | {v:.3g} | {'-' if nv is None else f'{nv:.3g}'} |")
        print(f"N={n}: generate {g:.3g}s verify {v:.3g}s naive {nv}", file=sys.stderr)
    lines += [
        "### Growth with N (V=95, seconds per string)",
        "",
        "d = 2N+1 grows with N (the virtual token carries N payload coordinates), so O(N^2 d) generation is O(N^3) per string here.",
        "",
        "| N | d | batch | generate (cached) | verify (teacher-forced) | naive |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Fitted exponents (log-log slope over N): generate {slope(ns, tg):.2f}, verify {slope(ns, tv):.2f}"
        + (f", naive {slope(ns[:len(tn)], tn):.2f} (N <= 80)" if len(tn) > 1 else "") + ".",
        "",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
