"""Benchmark: writing a certificate (`verify --certificate`) and re-checking it (`prefixproof check`).

    python benchmarks/bench_checker.py [CASE ...]      (cases: t1-95 t2-95 t2-32000 t1-32000 lr-95 mt-95 cd-7
                                                         pk-4 pk-11 pk-2-f16 t2-f32-800 t2-f32-1000 t2-f32-1089)

Each case saves the construction's weights (constructions + save_model, no prompt), runs
`prefixproof verify --weights DIR --claim C --level certify --certificate FILE` and then
`prefixproof check FILE --weights DIR` as separate processes (memory capped at 8 GB each), and prints
wall-clock (and CPU) seconds of both, the same check through `python -m prefixproof.checker`
(which loads only the checker), the checker's own time for its steps, the certificate's size and the verdicts, as a markdown
table for benchmarks/RESULTS.md.
"""
from __future__ import annotations

import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

from prefixproof.constructions.io import save_model  # noqa: E402
from prefixproof.constructions.alphabet import PRINTABLE_ASCII  # noqa: E402
from prefixproof.constructions.conditional import Conditional  # noqa: E402
from prefixproof.constructions.packing import Packing  # noqa: E402
from prefixproof.constructions.theorem1 import Theorem1  # noqa: E402
from prefixproof.constructions.theorem2 import Theorem2  # noqa: E402

CASES = {
    "t1-95": ("theorem1", "V=95, N=20", lambda: Theorem1(95, 20)),
    "t2-95": ("theorem2", "V=95", lambda: Theorem2(95)),
    "t2-32000": ("theorem2", "V=32000", lambda: Theorem2(32000)),
    "t1-32000": ("theorem1", "V=32000, N=20", lambda: Theorem1(32000, 20)),
    "lr-95": ("long_response", "V=95, R=10", lambda: Conditional(95, 1, 10, PRINTABLE_ASCII)),
    "mt-95": ("multi_token", "V=95, L=2", lambda: Conditional(95, 2, 1, PRINTABLE_ASCII)),
    "cd-7": ("conditional", "V=7, L=2, R=3", lambda: Conditional(7, 2, 3)),
    "pk-4": ("multi_token_packing", "V=4, L=2", lambda: Packing(4, 2)),  # the README's size (version 2)
    "pk-11": ("multi_token_packing", "V=11, L=2", lambda: Packing(11, 2)),  # the largest V certified in float64
    "pk-2-f16": ("multi_token_packing", "V=2, L=2, float16", lambda: Packing(2, 2), "float16"),
    # Theorem 2 in float32 up to the engine's frontier (V=1089): the writer settles against the checker
    **{f"t2-f32-{v}": ("theorem2", f"V={v}, float32", (lambda v=v: Theorem2(v)), "float32") for v in (800, 1000, 1089)},
}
EXE = Path(sys.executable).parent / "prefixproof"


def _run(argv: list[str], exe: list[str] | None = None) -> tuple[str, int, str]:
    """'wall s (cpu s)' of one process, its exit status and output."""
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(["prlimit", "--as=8000000000", *(exe or [str(EXE)]), *argv], capture_output=True,
                          text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    return f"{time.perf_counter() - t0:.1f} ({cpu:.1f})", proc.returncode, proc.stdout + proc.stderr


def case(key: str, tmp: Path) -> list[str]:
    claim, size, make, *fmt = CASES[key]
    d, cert = tmp / key, tmp / f"{key}.cert"
    save_model(make().model(), d)
    t_v, code_v, out_v = _run(["verify", "--weights", str(d), "--claim", claim, "--level", "certify",
                               "--certificate", str(cert)] + (["--dtype", fmt[0]] if fmt else []))
    if code_v != 0 or not cert.exists():
        return [claim, size, t_v, "-", "-", "-", "-", f"verify exit {code_v}: {out_v.strip().splitlines()[-1]}"]
    t_c, code_c, out_c = _run(["check", str(cert), "--weights", str(d)])
    t_m, _, _ = _run([str(cert), "--weights", str(d)], [sys.executable, "-m", "prefixproof.checker"])
    own = re.search(r"\(([\d.]+) s\)", out_c)
    last = out_c.strip().splitlines()[-1]
    return [claim, size, t_v, t_c, t_m, own.group(1) if own else "-", f"{cert.stat().st_size / 1e6:.2f} MB",
            last[:90]]


def main() -> None:
    keys = sys.argv[1:] or list(CASES)
    print(describe_machine())
    print()
    print("| claim | size | verify --certificate, s (cpu s) | prefixproof check, s (cpu s) | "
          "python -m prefixproof.checker, s (cpu s) | check steps, s | file | checker says |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-checker-") as tmp:
        for key in keys:
            print("| " + " | ".join(case(key, Path(tmp))) + " |", flush=True)


if __name__ == "__main__":
    main()
