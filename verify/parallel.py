"""Batches evaluated on several threads (numpy releases the GIL in its kernels).

Results come back in submission order, so "the first failure" does not depend
on thread timing. At most `workers` batches are in flight at once.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    env = os.environ.get("PREFIXPROOF_WORKERS")
    if env and env.isdigit() and int(env) >= 1:
        return int(env)
    return max(1, min(os.cpu_count() or 1, 4))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> Iterator[tuple[T, R]]:
    """Yield (item, fn(item)) in input order, evaluating up to `workers` items concurrently."""
    workers = workers or default_workers()
    if workers == 1:
        for item in items:
            yield item, fn(item)
        return
    with ThreadPoolExecutor(workers) as ex:
        pending: deque = deque()
        for item in items:
            pending.append((item, ex.submit(fn, item)))
            if len(pending) >= workers:
                done_item, fut = pending.popleft()
                yield done_item, fut.result()
        while pending:
            done_item, fut = pending.popleft()
            yield done_item, fut.result()
