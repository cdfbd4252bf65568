"""Progress lines on stderr for runs longer than a couple of seconds."""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

QUIET_SECONDS = 2.0  # say nothing for runs shorter than this
EVERY_SECONDS = 1.0  # then at most one line per second


def progress_printer(stream: TextIO | None = None) -> Callable[[str], Callable[[int, int], None]]:
    """A factory: `factory(label)` returns a callback `report(done, total)`."""
    out = stream or sys.stderr

    def factory(label: str) -> Callable[[int, int], None]:
        t0 = time.perf_counter()
        last = [t0]

        def report(done: int, total: int) -> None:
            now = time.perf_counter()
            if now - t0 < QUIET_SECONDS or (now - last[0] < EVERY_SECONDS and done < total):
                return
            last[0] = now
            rate = done / (now - t0)
            eta = (total - done) / rate if rate > 0 else float("inf")
            pct = 100.0 * done / total if total else 100.0
            print(f"  {label}: {done}/{total} inputs ({pct:.0f}%), {rate:,.0f}/s, eta {eta:.0f}s",
                  file=out, flush=True)

        return report

    return factory
