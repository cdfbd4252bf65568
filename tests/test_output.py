"""The one table renderer and JSON writer: tables fit the width and lose no text; writes are atomic."""
from __future__ import annotations

import json
import os

import pytest

from prefixproof.output import render_table, write_json


@pytest.mark.parametrize("width", [40, 60, 100])
def test_tables_fit_the_width_and_keep_every_word(width):
    cells = [("theorem1", "structured interval certificate (grid decoder); cross-checked: arb on 8 boxes",
              "CERTIFIED (float64 execution), margin >= 5.83e-05"),
             ("prefix_bias", "sympy lemma", "PROVED (parametric in n, P, H, dimensions)")]
    text = render_table(("claim", "method", "verdict"), cells, width=width)
    lines = text.split("\n")
    assert max(len(line) for line in lines) <= width
    words = " ".join(lines).split()
    for row in cells:
        for cell in row:
            for word in cell.split():
                # a word longer than its column is folded, never dropped: its characters all appear in order
                assert word in words or word.replace(" ", "") in "".join(words)


def test_a_table_narrower_than_its_header_still_fits():
    text = render_table(("a-very-long-header", "b"), [("x", "y")], width=12)
    assert max(len(line) for line in text.split("\n")) <= 12


def test_json_is_written_atomically_and_numpy_values_become_json(tmp_path):
    import numpy as np
    path = tmp_path / "r.json"
    path.write_text("old")
    write_json(path, {"a": np.float64(1.5), "b": np.arange(3), "c": float("inf")})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": "inf"}
    assert os.listdir(tmp_path) == ["r.json"]  # no temporary file left behind


def test_a_failed_json_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")

    class Bad:
        def tolist(self):
            raise RuntimeError("cannot convert")

    with pytest.raises(RuntimeError):
        write_json(path, {"x": Bad()})
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]
