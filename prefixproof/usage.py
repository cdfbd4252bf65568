"""What every command shares about its usage: the usage error, the default alphabet, output paths.

Commands import these from here (never from `prefixproof.cli`), so the command modules and the
parser that dispatches to them do not import each other.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from prefixproof.constructions.alphabet import ASCII_SIZE, PRINTABLE_ASCII


class UsageError(Exception):
    """Bad command-line usage; reported in one line with exit status 2."""


def default_alphabet(vocab: int | None) -> tuple[int, str | None]:
    """V and its alphabet: printable ASCII (V = 95) unless another vocabulary size is given."""
    V = ASCII_SIZE if vocab is None else vocab
    return V, (PRINTABLE_ASCII if V == ASCII_SIZE else None)


def check_writable(path: str | None) -> None:
    """Refuse an output path whose directory does not exist, before any work is done."""
    if path is not None and not Path(path).absolute().parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {Path(path).absolute().parent} does not exist")


def check_json_target(path: str | None, inputs: Iterable[str], flag: str = "--json") -> None:
    """Refuse, before the run, a report path that cannot be written or would overwrite something:

    empty; a directory; in a missing or unwritable directory; an input of the run (or a file inside an input
    directory); or an existing file that is not a report an earlier run wrote (`_ours`)."""
    if path is None:
        return
    if not path.strip():
        raise UsageError(f"{flag} is empty; give a file path, e.g. {flag} report.json")
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{flag} {path} is a directory; give a file path, e.g. {flag} {p / 'report.json'}")
    check_parent(p, flag, path)
    target = p.resolve()
    for item in inputs:
        q = Path(item).resolve()
        if target == q or q in target.parents:
            raise UsageError(f"{flag} {path} would overwrite {item}, an input of this run; write the report elsewhere")
    if p.exists() or p.is_symlink():
        if not p.is_file() or not _ours(p):
            raise UsageError(f"{flag} {path} exists and is not a prefixproof report; prefixproof never overwrites "
                             f"files it did not write: choose another path or remove it")


def _ours(p: Path) -> bool:
    """A JSON object with a "format" of ours that is a report an earlier run wrote (not a model config, a saved
    counterexample or a certificate: those are inputs of other runs)."""
    try:
        if p.stat().st_size > 1 << 28:
            return False
        doc = json.loads(p.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    fmt = doc.get("format") if isinstance(doc, dict) else None
    return isinstance(fmt, str) and fmt.startswith("prefixproof-") and fmt not in NOT_REPORTS and "certificate" not in fmt


NOT_REPORTS = ("prefixproof-model", "prefixproof-fuzz-failure")


def check_parent(p: Path, flag: str, given: str) -> None:
    """The folder `p` would be written in exists and is writable (else a one-line UsageError naming `flag`)."""
    parent = p.absolute().parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {flag} {given}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {flag} {given}: no write permission in {parent}")
