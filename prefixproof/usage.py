"""What every command shares about its usage: the usage error, the default alphabet, output paths.

Commands import these from here (never from `prefixproof.cli`), so the command modules and the
parser that dispatches to them do not import each other.
"""
from __future__ import annotations

from pathlib import Path

from prefixproof.constructions.alphabet import ASCII_SIZE, PRINTABLE_ASCII


class UsageError(Exception):
    """Bad command-line usage; reported in one line with exit status 2."""


def default_alphabet(vocab: int | None) -> tuple[int, str | None]:
    """V and its alphabet: printable ASCII (V = 95) unless another vocabulary size is given."""
    V = ASCII_SIZE if vocab is None else vocab
    return V, (PRINTABLE_ASCII if V == ASCII_SIZE else None)


def check_writable(path: str | None) -> None:
    """Refuse an output path whose directory does not exist, before any work is done."""
    if path is not None and not Path(path).resolve().parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {Path(path).resolve().parent} does not exist")
