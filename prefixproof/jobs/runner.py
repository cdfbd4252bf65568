"""The job runner: `run_jobs(fn, args, workers=N)` on a process pool, or `backend="ray"` on a Ray cluster.

- process (default): `concurrent.futures.ProcessPoolExecutor` with the spawn start method (no forked torch
  or BLAS state), at most `workers` processes; `workers == 1` runs in this process, in order.
- ray: `ray.init(address=ADDR)` (or a local instance when ADDR is None), one remote task per job with
  `num_cpus=1`; Ray is imported only here and only for this backend (`pip install 'prefixproof[cluster]'`).

A job that raises makes `run_jobs` raise `JobError` naming the job, after the other jobs finished
(never a silent pass).
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

BACKENDS = ("process", "ray")


class JobError(RuntimeError):
    """A job failed; the message names it and its exception."""


def _collect(labels: Sequence[str], outcomes: list[tuple[bool, Any]]) -> list[Any]:
    failed = [f"{labels[i]}: {type(v).__name__}: {v}" for i, (ok, v) in enumerate(outcomes) if not ok]
    if failed:
        raise JobError(f"{len(failed)} of {len(outcomes)} jobs failed; first: {failed[0]}")
    return [v for _, v in outcomes]


def _process(fn: Callable[[Any], Any], args: Sequence[Any], workers: int) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    if workers == 1:
        for a in args:
            try:
                outcomes.append((True, fn(a)))
            except Exception as e:  # noqa: BLE001 - reported by _collect, never a pass
                outcomes.append((False, e))
        return outcomes
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        futures = [ex.submit(fn, a) for a in args]
        for f in futures:
            try:
                outcomes.append((True, f.result()))
            except Exception as e:  # noqa: BLE001
                outcomes.append((False, e))
    return outcomes


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
             ray_init: dict[str, Any] | None = None) -> list[Any]:
    """fn(a) for every a in args, results in order; raises JobError if any job raised."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    labels = list(labels) if labels is not None else [f"job {i}" for i in range(len(args))]
    if backend == "ray":
        return _collect(labels, _ray(fn, args, address, ray_init))
    if address is not None:
        raise ValueError("--address is for --backend ray")
    return _collect(labels, _process(fn, args, max(1, min(workers, len(args) or 1))))
