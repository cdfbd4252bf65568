"""A recording hook for certificate files (docs/certificate-format.md): what the lookup engine decided, step by step.

The engine (attention.py, value_blocks.py, lookup.py) calls `note(kind, **arrays)` at the points where it
decides something: the attention enclosures, the first-layer forms, each batch of blocks with its ReLU
decisions and margins. Nothing is kept unless a caller opened `recording()`; then every `certify_lookup`
run inside it becomes one `Session`, in order. Recording never changes what the engine computes.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

_ACTIVE: list["Session"] | None = None  # the sessions of the open recording, or None
_CURRENT: "Session | None" = None  # the certify_lookup run now being recorded


@dataclass
class Session:
    """One certify_lookup run: its claim rows, arithmetic, and the notes in the order they were made."""

    claim: Any  # LookupRows
    ex: Any  # Exec
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    result: Any = None  # the CertResult


@contextlib.contextmanager
def recording() -> Iterator[list[Session]]:
    """Record every certify_lookup run inside the block; yields the list the sessions are appended to."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, []
    try:
        yield _ACTIVE
    finally:
        _ACTIVE = previous


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Run something that decides nothing (e.g. the real-arithmetic comparison) without recording it."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, None
    try:
        yield
    finally:
        _ACTIVE = previous


@contextlib.contextmanager
def session(claim: Any, ex: Any) -> Iterator[Session | None]:
    """Called by certify_lookup around its run; a no-op (yields None) unless a recording is open."""
    global _CURRENT
    if _ACTIVE is None:
        yield None
        return
    s, previous = Session(claim, ex), _CURRENT
    _CURRENT = s
    try:
        yield s
    finally:
        _CURRENT = previous
        _ACTIVE.append(s)


def active() -> bool:
    """Whether a recording is open (the packing certificate then runs its recorded pass)."""
    return _ACTIVE is not None


def note(kind: str, **arrays: Any) -> None:
    """Keep copies of `arrays` under `kind` in the current session (nothing when no session is open)."""
    if _CURRENT is not None:
        _CURRENT.notes.append((kind, {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
                                      for k, v in arrays.items()}))
