"""Reading a printed table back: each column's text in order (tests check that nothing was cut)."""
from __future__ import annotations

import re

RULE = re.compile(r"^-+(  -+)*$")


def squeeze(text: str) -> str:
    """Text without any whitespace: wrapping may move spaces and split words, but must keep every character."""
    return "".join(str(text).split())


def read_table(text: str, start: int = 0) -> tuple[list[str], str, int]:
    """The first table at or after line `start`: (one squeezed text stream per column, the squeezed notes under
    the rows, the line index after the table). A line belongs to the table's cells when its first column holds
    text or it is blank up to the second column; other indented lines are notes (render_table's `notes`)."""
    lines = text.split("\n")
    r = next(i for i in range(start, len(lines)) if RULE.match(lines[i]))
    spans, col = [], 0
    for dashes in lines[r].split("  "):
        spans.append((col, col + len(dashes)))
        col += len(dashes) + 2
    spans[-1] = (spans[-1][0], None)
    streams, notes, i = [""] * len(spans), "", r + 1
    while i < len(lines) and lines[i].strip():
        line = lines[i]
        if not line.startswith(" ") or not line[:spans[1][0]].strip():
            for k, (a, b) in enumerate(spans):
                streams[k] += squeeze(line[a:b])
        else:
            notes += squeeze(line)
        i += 1
    return streams, notes, i
