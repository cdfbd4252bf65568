"""The one table renderer and the one JSON writer of every command.

Tables are rendered by `rich` to plain text that fits the terminal (or `width`): long cells wrap onto
more lines, never get cut. JSON reports are written atomically: to a temporary file beside the target,
flushed, then renamed over it, so a crash leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import io
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


def render_table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, width: int | None = None,
                 title: str | None = None) -> str:
    """Plain-text table; cells wrap (word boundaries first, then anywhere) so no line exceeds `width`."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    rule = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)  # a dashed rule under the header
    table = Table(*header, box=rule, title=title, title_justify="left", show_edge=False,
                  pad_edge=False, header_style="", title_style="")
    for column in table.columns:
        column.overflow = "fold"
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    buf = io.StringIO()
    console = Console(file=buf, width=width or terminal_width(), color_system=None, force_terminal=False,
                      legacy_windows=False, emoji=False, highlight=False, markup=False, soft_wrap=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip("\n").split("\n"))


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
    target = Path(path)
    text = json.dumps(json_safe(doc), indent=indent, allow_nan=False) + "\n"
    folder = Path(os.path.abspath(target)).parent  # beside the path itself (a link there is replaced, not followed)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
