"""The one table renderer and the one JSON writer of every command.

Tables are plain text that fits the terminal (or `width`): long cells wrap onto more lines at spaces,
never get cut (`render_table`). JSON reports are written atomically: to a temporary file beside the target,
flushed, then renamed over it, so a crash leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

DEFAULT_WIDTH = 100  # when the output is not a terminal


def terminal_width() -> int:
    """The terminal's width; $COLUMNS or DEFAULT_WIDTH when there is none."""
    return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns


GAP = "  "  # between columns


def wrap_cell(text: str, width: int) -> list[str]:
    """A cell's text as lines of at most `width` characters: at spaces first, inside a word only when the word
    alone is wider than the column. Explicit newlines are kept. Nothing is dropped: the lines joined give back
    every non-space character in order."""
    import textwrap

    out: list[str] = []
    for part in text.split("\n"):
        out += textwrap.wrap(part, max(width, 1), break_long_words=True, break_on_hyphens=False) or [""]
    return out


def column_widths(columns: Sequence[Sequence[str]], available: int) -> list[int]:
    """Widths that fit `available` characters: every column starts at its natural width; while too wide, the
    widest column that is still wider than its longest word gives up one character; only when every column is
    down to its longest word are words split."""
    natural = [max((len(line) for cell in col for line in cell.split("\n")), default=1) or 1 for col in columns]
    word = [max((len(w) for cell in col for w in cell.split()), default=1) or 1 for col in columns]
    widths = list(natural)
    while sum(widths) > available:
        shrinkable = [c for c in range(len(widths)) if widths[c] > word[c]] or \
            [c for c in range(len(widths)) if widths[c] > 1]
        if not shrinkable:
            break
        c = max(shrinkable, key=lambda k: (widths[k], -k))
        widths[c] -= 1
    return widths


def render_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, width: int | None = None,
                 title: str | None = None, notes: Sequence[str | None] | None = None,
                 note_indent: int = 4) -> str:
    """Plain-text table that fits `width` (default: the terminal's). Cells wrap at spaces (inside a word only
    when the word alone is wider than its column) and are never cut; a dashed rule sits under the header.
    `notes[i]`, when given, is printed under row i across the whole width, indented and wrapped (for a long
    text such as the method, which would make a column too narrow)."""
    width = width or terminal_width()
    head = [str(h) for h in header]
    body = [["-" if cell is None else str(cell) for cell in row] for row in rows]
    columns = [[head[c], *(row[c] for row in body)] for c in range(len(head))]
    widths = column_widths(columns, max(width - len(GAP) * (len(head) - 1), len(head)))

    def lines_of(cells: Sequence[str]) -> list[str]:
        wrapped = [wrap_cell(cell, w) for cell, w in zip(cells, widths)]
        height = max(len(w) for w in wrapped)
        return [GAP.join(w[i].ljust(widths[c]) if i < len(w) else " " * widths[c] for c, w in enumerate(wrapped))
                .rstrip() for i in range(height)]

    out = wrap_cell(title, width) if title else []
    out += lines_of(head)
    out.append(GAP.join("-" * w for w in widths))
    for i, row in enumerate(body):
        out += lines_of(row)
        if notes and notes[i]:
            out += [" " * note_indent + line for line in wrap_cell(notes[i], width - note_indent)]
    return "\n".join(out)


def json_safe(value: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays become Python numbers and lists, non-finite floats strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def write_json(path: str | Path, doc: Any, indent: int = 2) -> None:
    """Write `doc` as JSON to `path` atomically (temporary file in the same folder, then rename)."""
    write_atomic(path, (json.dumps(json_safe(doc), indent=indent, allow_nan=False) + "\n").encode("utf-8"))


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically: a temporary file beside the path itself (a link there is replaced, not
    followed), flushed and fsynced, then renamed over it; on any failure the temporary file is removed."""
    target = Path(path)
    folder = Path(os.path.abspath(target)).parent
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
