"""Benchmark: peak memory (and seconds) of the README's commands and the headline sizes, each against its target.

    python benchmarks/bench_memory.py [--only SUBSTRING ...] [--cap BYTES] [--timeout S] [--prefixproof PATH]

Each command runs in its own subprocess (under `prlimit --as=CAP`, default 8 GB, so nothing can take the
machine down), started through a small wrapper process that waits for it and reports
`resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`: the peak resident memory of that one command. Prints one
markdown table row per command (command, peak, target, wall and CPU seconds, exit status, within target) and
the machine line, for benchmarks/RESULTS.md. The machine may be shared: the load average is printed too, and the
CPU seconds (user + system of the command) approximate the wall time on an idle machine; a seconds target is
judged on the wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

GB = 1 << 30
MAP = {"hi": "!", "ok": "?"}  # the README's example map file

# (label, arguments after `prefixproof`, peak target in bytes, seconds target or None)
CASES = [
    ("README multi_token --map-file", ["build", "multi_token", "--map-file", "{map}", "--out", "{out}/mt"], 1 * GB,
     None),
    ("README conditional --map-file", ["build", "conditional", "--map-file", "{map}", "--out", "{out}/cd"], 1 * GB,
     None),
    ("README theorem1 build", ["build", "theorem1", "--target", "Hello ~ world", "--out", "{out}/hello"], 4 * GB, None),
    ("README theorem2 build", ["build", "theorem2", "--map", "abc->xyz", "--out", "{out}/swap"], 4 * GB, None),
    ("README generate", ["generate", "{out}/swap", "--input", "abcdef"], 4 * GB, None),
    ("theorem2 V=32000 build", ["build", "theorem2", "--map", "random:3", "--vocab", "32000", "--out", "{out}/t2"],
     2 * GB, None),
    ("theorem1 V=32000 N=64 verify (default level)", ["verify", "theorem1", "--vocab", "32000", "--length", "64"],
     4 * GB, 120.0),
    ("theorem1 V=32000 N=1024 build", ["build", "theorem1", "--tokens", "1,2,3", "--vocab", "32000", "--length",
                                       "1024", "--out", "{out}/t1big"], 4 * GB, None),
    ("theorem1 V=32000 N=1024 verify (default level)", ["verify", "theorem1", "--vocab", "32000", "--length", "1024"],
     4 * GB, None),
    ("theorem2 V=32000 verify (default level)", ["verify", "theorem2", "--vocab", "32000"], 4 * GB, None),
    ("README verify (all claims, defaults)", ["verify"], 4 * GB, None),
]

WRAPPER = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
           "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
           "s = time.perf_counter() - t; u = resource.getrusage(resource.RUSAGE_CHILDREN); "
           "print(u.ru_maxrss, s, u.ru_utime + u.ru_stime, p.returncode, "
           "repr((p.stderr.strip().splitlines() or [''])[-1][:200]))")


def measure(argv: list[str], cap: int, timeout: float) -> tuple[int, float, float, int, str]:
    """(peak RSS in bytes, wall seconds, CPU seconds, exit status, last stderr line) of one command."""
    cmd = [sys.executable, "-c", WRAPPER, "prlimit", f"--as={cap}", "timeout", str(int(timeout)), *argv]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    rss_kb, seconds, cpu, code, last = out.stdout.split(" ", 4)
    return int(rss_kb) * 1024, float(seconds), float(cpu), int(code), eval(last)  # noqa: S307 - our own repr()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="run the cases whose label contains one of these")
    ap.add_argument("--cap", type=int, default=8_000_000_000, help="prlimit --as for every command (bytes)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    ap.add_argument("--prefixproof", default=str(Path(sys.executable).with_name("prefixproof")),
                    help="the prefixproof executable (default: beside this python)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        map_file = Path(tmp) / "map.json"
        map_file.write_text(json.dumps(MAP))
        subprocess.run([args.prefixproof, "build", "theorem2", "--map", "abc->xyz", "--out", f"{tmp}/swap"],
                       capture_output=True)  # for `generate`
        print(describe_machine())
        print(f"Load average before: {' '.join(open('/proc/loadavg').read().split()[:3])}")
        print()
        print("| command | peak RSS | target | wall s | CPU s | exit | within target |")
        print("|---|---|---|---|---|---|---|")
        for label, argv, target, seconds_target in CASES:
            if args.only and not any(o in label for o in args.only):
                continue
            argv = [a.format(map=map_file, out=tmp) for a in argv]
            peak, seconds, cpu, code, last = measure([args.prefixproof, *argv], args.cap, args.timeout)
            ok = code == 0 and peak <= target and (seconds_target is None or seconds <= seconds_target)
            shown = "prefixproof " + " ".join(a.replace(tmp + "/", "").replace(str(map_file), "map.json")
                                              for a in argv)
            goal = f"< {target / GB:.0f} GB" + (f", < {seconds_target:.0f} s" if seconds_target else "")
            print(f"| `{shown}` | {peak / GB:.2f} GB | {goal} | {seconds:.1f} | {cpu:.1f} | {code} | "
                  f"{'yes' if ok else 'NO: ' + last} |", flush=True)
        print(f"\nLoad average after: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
