"""Benchmark: writing a certificate (`verify --certificate`) and re-checking it (`prefixproof check`).

    python benchmarks/bench_checker.py [CASE ...]      (cases: t1-95 t2-95 t2-32000 t1-32000)

Each case saves the construction's weights (constructions + save_model, no prompt), runs
`prefixproof verify --weights DIR --claim C --level certify --certificate FILE` and then
`prefixproof check FILE --weights DIR` as separate processes (memory capped at 8 GB each), and prints
wall-clock seconds of both, the checker's own time, the certificate's size and the verdicts, as a markdown
table for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

from prefixproof.constructions.io import save_model  # noqa: E402
from prefixproof.constructions.theorem1 import Theorem1  # noqa: E402
from prefixproof.constructions.theorem2 import Theorem2  # noqa: E402

CASES = {
    "t1-95": ("theorem1", "V=95, N=20", lambda: Theorem1(95, 20)),
    "t2-95": ("theorem2", "V=95", lambda: Theorem2(95)),
    "t2-32000": ("theorem2", "V=32000", lambda: Theorem2(32000)),
    "t1-32000": ("theorem1", "V=32000, N=20", lambda: Theorem1(32000, 20)),
}
EXE = Path(sys.executable).parent / "prefixproof"


def _run(argv: list[str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(["prlimit", "--as=8000000000", str(EXE), *argv], capture_output=True, text=True,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    return time.perf_counter() - t0, proc.returncode, proc.stdout + proc.stderr


def case(key: str, tmp: Path) -> list[str]:
    claim, size, make = CASES[key]
    d, cert = tmp / key, tmp / f"{key}.cert"
    save_model(make().model(), d)
    t_v, code_v, out_v = _run(["verify", "--weights", str(d), "--claim", claim, "--level", "certify",
                               "--certificate", str(cert)])
    if code_v != 0 or not cert.exists():
        return [claim, size, f"{t_v:.1f}", "-", "-", "-", f"verify exit {code_v}: {out_v.strip().splitlines()[-1]}"]
    t_c, code_c, out_c = _run(["check", str(cert), "--weights", str(d)])
    own = re.search(r"\(([\d.]+) s\)", out_c)
    last = out_c.strip().splitlines()[-1]
    return [claim, size, f"{t_v:.1f}", f"{t_c:.1f}", own.group(1) if own else "-",
            f"{cert.stat().st_size / 1e6:.2f} MB", last[:90]]


def main() -> None:
    keys = sys.argv[1:] or list(CASES)
    print(describe_machine())
    print()
    print("| claim | size | verify --certificate (s) | check, whole process (s) | check, steps (s) | file | checker says |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-checker-") as tmp:
        for key in keys:
            print("| " + " | ".join(case(key, Path(tmp))) + " |", flush=True)


if __name__ == "__main__":
    main()
