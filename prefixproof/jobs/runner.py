"""The job runner: `run_jobs(fn, args, workers=N)` on a process pool, or `backend="ray"` on a Ray cluster.

- process (default): `concurrent.futures.ProcessPoolExecutor` with the spawn start method (no forked torch
  or BLAS state), at most `workers` processes; `workers == 1` runs in this process, in order. A worker exits
  within about a second once the process that started it is gone (killed, or stopped with Ctrl-C), instead
  of training on as an orphan.
- ray: `ray.init(address=ADDR)` (or a local instance when ADDR is None), one remote task per job with
  `num_cpus=1`; Ray is imported only here and only for this backend (`pip install 'prefixproof[cluster]'`).

A job that raises makes `run_jobs` raise `JobError` naming the job, after the other jobs finished
(never a silent pass).

Dependencies: `after[i] = j` makes job i wait for job j (it starts as soon as j finished, not after every
earlier job); a job whose dependency failed is not run and counts as failed. The process pool keeps at most
`workers` jobs in flight and starts the first ready job in list order; in-process (`workers == 1`) the list
order must already put each dependency first; Ray runs the jobs in waves (every job whose dependency is done).
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

BACKENDS = ("process", "ray")


class JobError(RuntimeError):
    """A job failed; the message names it and its exception."""


def _collect(labels: Sequence[str], outcomes: list[tuple[bool, Any]]) -> list[Any]:
    failed = [f"{labels[i]}: {type(v).__name__}: {v}" for i, (ok, v) in enumerate(outcomes) if not ok]
    if failed:
        raise JobError(f"{len(failed)} of {len(outcomes)} jobs failed; first: {failed[0]}")
    return [v for _, v in outcomes]


class _DependencyFailed(RuntimeError):
    """The outcome of a job that was not run because the job it waits for (`after`) failed."""


def _skipped(i: int, after: Sequence[int | None]) -> tuple[bool, Any]:
    """The outcome of job i, not run because the job it waits for failed."""
    return False, _DependencyFailed(f"job {after[i]} it depends on failed")


def _ready(i: int, after: Sequence[int | None], outcomes: dict[int, tuple[bool, Any]]) -> bool | None:
    """True: job i may start; False: wait; None: its dependency failed."""
    j = after[i]
    if j is None:
        return True
    if j not in outcomes:
        return False
    return True if outcomes[j][0] else None


def _exit_with_parent(parent: int) -> None:
    """Pool-worker initializer: a daemon thread that ends this worker once its parent `parent` is gone."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _process(fn: Callable[[Any], Any], args: Sequence[Any], workers: int,
             after: Sequence[int | None]) -> list[tuple[bool, Any]]:
    outcomes: dict[int, tuple[bool, Any]] = {}
    if workers == 1:
        for i, a in enumerate(args):
            ready = _ready(i, after, outcomes)
            if ready is None:
                outcomes[i] = _skipped(i, after)
                continue
            if not ready:
                raise ValueError(f"job {i} depends on job {after[i]}, which comes later in the list")
            try:
                outcomes[i] = (True, fn(a))
            except Exception as e:  # noqa: BLE001 - reported by _collect, never a pass
                outcomes[i] = (False, e)
        return [outcomes[i] for i in range(len(args))]
    waiting = list(range(len(args)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_exit_with_parent, initargs=(os.getpid(),)) as ex:
        running: dict[Any, int] = {}
        while waiting or running:
            for i in list(waiting):
                if len(running) >= workers:
                    break
                ready = _ready(i, after, outcomes)
                if ready is None:
                    outcomes[i] = _skipped(i, after)
                    waiting.remove(i)
                elif ready:
                    running[ex.submit(fn, args[i])] = i
                    waiting.remove(i)
            if not running:
                if waiting:  # nothing runs and nothing can start: a cycle or a missing job
                    raise ValueError(f"jobs {waiting} wait for jobs that never run; check `after`")
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for f in finished:
                i = running.pop(f)
                try:
                    outcomes[i] = (True, f.result())
                except Exception as e:  # noqa: BLE001
                    outcomes[i] = (False, e)
    return [outcomes[i] for i in range(len(args))]


def _ray(fn: Callable[[Any], Any], args: Sequence[Any], address: str | None,
         init_kwargs: dict[str, Any] | None) -> list[tuple[bool, Any]]:
    try:
        import ray
    except ImportError:
        from prefixproof.usage import UsageError
        raise UsageError("--backend ray needs Ray: pip install 'prefixproof[cluster]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **(init_kwargs or {}))
    try:
        remote = ray.remote(num_cpus=1)(fn)
        refs = [remote.remote(a) for a in args]
        outcomes: list[tuple[bool, Any]] = []
        for r in refs:
            try:
                outcomes.append((True, ray.get(r)))
            except Exception as e:  # noqa: BLE001
                outcomes.append((False, e))
        return outcomes
    finally:
        if started:
            ray.shutdown()


def run_jobs(fn: Callable[[Any], Any], args: Sequence[Any], *, workers: int = 1, backend: str = "process",
             address: str | None = None, labels: Sequence[str] | None = None,
             ray_init: dict[str, Any] | None = None, after: Sequence[int | None] | None = None) -> list[Any]:
    """fn(a) for every a in args, results in order; raises JobError if any job raised. `after[i]`: the index
    of the job that job i waits for, or None."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    labels = list(labels) if labels is not None else [f"job {i}" for i in range(len(args))]
    after = list(after) if after is not None else [None] * len(args)
    if len(after) != len(args) or any(j is not None and not 0 <= j < len(args) for j in after):
        raise ValueError("after must give, for every job, None or the index of another job")
    if backend == "ray":
        return _collect(labels, _ray_waves(fn, args, address, ray_init, after))
    if address is not None:
        raise ValueError("--address is for --backend ray")
    return _collect(labels, _process(fn, args, max(1, min(workers, len(args) or 1)), after))


def _ray_waves(fn: Callable[[Any], Any], args: Sequence[Any], address: str | None,
               init_kwargs: dict[str, Any] | None, after: Sequence[int | None]) -> list[tuple[bool, Any]]:
    outcomes: dict[int, tuple[bool, Any]] = {}
    while len(outcomes) < len(args):
        wave = [i for i in range(len(args)) if i not in outcomes and _ready(i, after, outcomes) is not False]
        if not wave:
            raise ValueError("jobs wait for jobs that never run; check `after`")
        for i in [i for i in wave if _ready(i, after, outcomes) is None]:
            outcomes[i] = _skipped(i, after)
        todo = [i for i in wave if i not in outcomes]
        for i, o in zip(todo, _ray(fn, [args[i] for i in todo], address, init_kwargs) if todo else []):
            outcomes[i] = o
    return [outcomes[i] for i in range(len(args))]
