"""Run `prefixproof crosscheck all` and print the markdown summary recorded in benchmarks/RESULTS.md.

Usage: python benchmarks/bench_crosscheck.py [JSON_OUT]   (needs the torch extra)
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe_machine  # noqa: E402

from prefixproof.cli import main  # noqa: E402


def main_() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "crosscheck.json")
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(["crosscheck", "all", "--json", str(out)])
    seconds = time.perf_counter() - t0
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    print(describe_machine())
    print(f"Versions: {', '.join(f'{k} {v}' for k, v in doc['versions'].items())}.")
    print(f"Command: `prefixproof crosscheck all` ({seconds:.0f} s), exit status {status}.\n")
    print("| target | dtype | identity rows CHECKED | largest error | smallest tolerance | alpha range | "
          "controls flagged (smallest control error) |")
    print("|---|---|---|---|---|---|---|")
    groups = defaultdict(list)
    for r in rows:
        if r["claim"].startswith("prefix_"):
            groups[(r["details"]["target"], r["dtype"])].append(r)
    for (target, dtype), rs in groups.items():
        real = [r for r in rs if not r["details"]["control"]]
        ctrl = [r for r in rs if r["details"]["control"]]
        ok = sum(r["verdict"] == "CHECKED" for r in real)
        amin = min(r["details"]["alpha_min"] for r in real)
        amax = max(r["details"]["alpha_max"] for r in real)
        flagged = sum(r["verdict"] == "FALSIFIED" for r in ctrl)
        print(f"| {target} | {dtype} | {ok}/{len(real)} | {max(r['details']['max_error'] for r in real):.2e} | "
              f"{min(r['details']['tolerance'] for r in real):.2e} | {amin:.3f}..{amax:.3f} | "
              f"{flagged}/{len(ctrl)} ({min(r['details']['max_error'] for r in ctrl):.2e}) |")
    print("\n| construction | float64: max abs(torch - numpy) | enclosure width | decoded identical | "
          "greedy generation | 1/sqrt(d_k) control | float32 | float16 | bfloat16 |")
    print("|---|---|---|---|---|---|---|---|---|")
    cons = defaultdict(dict)
    for r in rows:
        if r["claim"] == "construction":
            cons[r["details"]["target"]][r["obligation"]] = r
    for name, by in cons.items():
        lg = by["float64 logits"]
        low = []
        for fmt in ("float32", "float16", "bfloat16"):
            r = by.get(f"{fmt} decode vs precision report")
            if r is None:
                low.append("-")
                continue
            d = r["details"]
            text = d["interval_verdict"]
            interval = text.replace("interval path: ", "").split("(")[0] if text.startswith("interval path: ") \
                else f"not available ({text.split(': ')[0].replace('interval path ', '')})"
            low.append(f"{d['decoded_right']}/{d['outputs']}, margin {r['min_margin']:.2g}; interval {interval}")
        print(f"| {name} | {lg['details']['max_error']:.2e} | {lg['details']['tolerance']:.2e} | "
              f"{lg['details']['decoded_identical']} | {by['float64 greedy generation']['verdict']} | "
              f"{by['control: implicit 1/sqrt(d_k) scale']['verdict']} | " + " | ".join(low) + " |")
    return status


if __name__ == "__main__":
    sys.exit(main_())
