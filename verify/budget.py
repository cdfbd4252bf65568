"""The memory budget: how many bytes a run may allocate, and the estimates checked against it before allocating.

`Budget` is a frozen number of bytes with the place it came from (`--max-memory`, or a fraction of the
machine's available memory). Every step that allocates in proportion to a user-chosen size first asks an
estimator "about how many bytes will this take for these sizes" (`prefixproof.verify.estimates`) and then:

- for a *usage* (a size the user asked to build or load): `Budget.require` raises `OverBudget`, which the
  command line prints as one line (exit 2) naming the estimate and the largest size that fits;
- for a *proof obligation*: the same `OverBudget` reaches the obligation runner, whose record is
  UNKNOWN(budget: needs X GB) while the other obligations still run;
- for work that streams (generation, the numeric checker, exact evaluation): `Budget.batch` turns the
  per-item estimate into the number of items per batch, so the peak stays within the budget whatever the
  input count.

The budget in force is process-wide (`current()`); the command line sets it once per command (`use`).
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Callable, Iterator

KB, MB, GB = 1 << 10, 1 << 20, 1 << 30
DEFAULT_FRACTION = 0.6  # of MemAvailable: the default budget
FALLBACK_BYTES = 2 * GB  # when /proc/meminfo cannot be read
RESERVE = 120 * MB  # the interpreter, numpy, scipy, sympy and flint once imported: not available to estimates
MIN_BYTES = 128 * MB  # the smallest --max-memory accepted: the reserve and a little room

_UNITS = {"": 1, "B": 1, "K": KB, "KB": KB, "KIB": KB, "M": MB, "MB": MB, "MIB": MB, "G": GB, "GB": GB, "GIB": GB,
          "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")


class OverBudget(Exception):
    """A step would allocate more than the budget; the message gives the estimate and what fits."""

    def __init__(self, what: str, needed: int, budget: "Budget", fits: str | None = None) -> None:
        self.what, self.needed, self.budget, self.fits = what, int(needed), budget, fits
        tail = f"; the largest that fits: {fits}" if fits else ""
        super().__init__(f"{what} needs about {human(needed)}, over the memory budget of {human(budget.bytes)} "
                         f"({budget.source}; raise it with --max-memory){tail}")

    @property
    def verdict_reason(self) -> str:
        """The reason of an UNKNOWN obligation record: `budget: needs X GB (...)`."""
        return f"budget: needs {human(self.needed)}, budget {human(self.budget.bytes)} ({self.what})"


def human(n: float) -> str:
    """Bytes for people: 1.5 GB, 300 MB, 12 KB (powers of 1024)."""
    n = float(n)
    for unit, size in (("TB", 1 << 40), ("GB", GB), ("MB", MB), ("KB", KB)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def parse_size(text: str) -> int:
    """'4G', '500M', '1.5GB', '2GiB', '123456' (bytes) -> bytes. Raises ValueError saying what is accepted."""
    m = _SIZE.match(str(text))
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a memory size; give bytes or a number with K, M, G or T, e.g. 4G or 500M")
    number = m.group(1)
    value = int(number) * _UNITS[unit] if number.isdigit() else int(float(number) * _UNITS[unit])
    if value < MIN_BYTES:
        raise ValueError(f"{text!r} is below the smallest workable budget of {human(MIN_BYTES)}")
    return value


def mem_available(path: str = "/proc/meminfo") -> int | None:
    """MemAvailable in bytes, or None when it cannot be read."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * KB
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class Budget:
    """At most `bytes` bytes for one command (its whole peak resident memory, interpreter included)."""

    bytes: int
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.bytes, int) or self.bytes <= RESERVE:
            raise ValueError(f"a memory budget must be an integer above the interpreter's reserve of {RESERVE} "
                             f"bytes, got {self.bytes!r}")

    @property
    def usable(self) -> int:
        """What estimates may use: the budget minus the interpreter's own footprint."""
        return self.bytes - RESERVE

    def fits(self, needed: int) -> bool:
        return needed <= self.usable

    def require(self, what: str, needed: int, fits: str | None = None) -> None:
        """Raise OverBudget unless `needed` bytes fit."""
        if not self.fits(needed):
            raise OverBudget(what, needed, self, fits)

    def batch(self, what: str, per_item: int, fixed: int = 0, workers: int = 1, at_most: int | None = None) -> int:
        """Items per batch so that `fixed + workers * batch * per_item` stays within the budget (>= 1);
        OverBudget when not even one item per worker fits."""
        room = self.usable - fixed
        per = max(1, per_item) * max(1, workers)
        if room < per:
            raise OverBudget(what, fixed + per, self, None)
        n = room // per
        return int(max(1, min(n, at_most) if at_most is not None else n))


def address_limit() -> int | None:
    """The process's RLIMIT_AS in bytes (ulimit -v, prlimit --as), or None when unlimited."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY or soft <= 0 else int(soft)


def default_budget() -> Budget:
    """DEFAULT_FRACTION of MemAvailable (or FALLBACK_BYTES when /proc/meminfo is unreadable), and never more
    than DEFAULT_FRACTION of an address-space limit (RLIMIT_AS) the process runs under."""
    avail = mem_available()
    cap = address_limit()
    if cap is not None and (avail is None or cap < avail):
        return Budget(max(MIN_BYTES, int(cap * DEFAULT_FRACTION)),
                      f"default: {DEFAULT_FRACTION:.0%} of the address-space limit of {human(cap)}")
    if avail is None:
        return Budget(FALLBACK_BYTES, f"default {human(FALLBACK_BYTES)}: MemAvailable unreadable")
    return Budget(max(MIN_BYTES, int(avail * DEFAULT_FRACTION)),
                  f"default: {DEFAULT_FRACTION:.0%} of the {human(avail)} available")


_CURRENT: list[Budget] = []


def current() -> Budget:
    """The budget in force (set by `use`), else the default."""
    return _CURRENT[-1] if _CURRENT else default_budget()


def install(budget: Budget) -> None:
    """Make `budget` the one in force from now on (the command line, once per command)."""
    _CURRENT[:] = [budget]


@contextlib.contextmanager
def use(budget: Budget) -> Iterator[Budget]:
    """Make `budget` the one in force inside the block."""
    _CURRENT.append(budget)
    try:
        yield budget
    finally:
        _CURRENT.pop()


def largest_fitting(estimate: Callable[[int], int], budget: Budget, low: int, high: int) -> int | None:
    """The largest size in [low, high] whose estimate fits (estimates grow with the size), or None."""
    if not budget.fits(estimate(low)):
        return None
    if budget.fits(estimate(high)):
        return high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if budget.fits(estimate(mid)) else (low, mid)
    return low
