"""docs/format.md is enough to re-implement loading, encoding and greedy generation: tests/reference_reader.py,
written from that page alone (plain numpy, nothing from prefixproof), matches `prefixproof generate` on all six
constructions and every prompt mode, and re-derives every stored prompt exactly from config.json's record."""
from __future__ import annotations

import ast
import itertools
from pathlib import Path

import numpy as np
import pytest

from clirun import run
from reference_reader import Reader

HERE = Path(__file__).resolve().parent

# name -> (build arguments after --out DIR, the --input strings to generate from (None: no --input))
BUILDS = {
    "theorem1-ascii": (["theorem1", "--target", "Hi!~"], [None, "H", "Hi"]),
    "theorem1": (["theorem1", "--tokens", "3,0,2,2", "--vocab", "4"], [None, "3", "1,1"]),
    "theorem2-ascii": (["theorem2", "--map", "abc->xyz"], ["abcdef~ "]),
    "theorem2": (["theorem2", "--map", "random:3", "--vocab", "6"], [",".join(map(str, range(6)))]),
    "long_response": (["long_response", "--map", "random:1", "--vocab", "3", "--length", "3"], "all"),
    "multi_token": (["multi_token", "--map", "random:2", "--vocab", "3", "--inputs", "2"], "all"),
    "conditional": (["conditional", "--map", "random:4", "--vocab", "2", "--inputs", "3", "--length", "2"], "all"),
    "multi_token_packing": (["multi_token_packing", "--map", "random:5", "--vocab", "3", "--inputs", "2"], "all"),
    "multi_token_packing-L3": (["multi_token_packing", "--map", "random:6", "--vocab", "2", "--inputs", "3"], "all"),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    from prefixproof.cli import main

    dirs = {}
    for name, (argv, _) in BUILDS.items():
        assert main(["build", *argv, "--out", str(root / name)]) == 0, name
        dirs[name] = root / name
    return dirs


def _inputs(reader: Reader, spec):
    if spec != "all":
        return spec
    V, L = reader.cfg["vocab"], reader.prompt["inputs"]  # every input of L tokens, in big-endian order
    return [",".join(str(t) for u in itertools.product(range(V), repeat=L) for t in u)]


@pytest.mark.parametrize("name", BUILDS)
def test_the_reference_reader_matches_generate(built, capsys, name):
    capsys.readouterr()
    reader = Reader(built[name])
    stored = reader.virtual
    assert np.array_equal(reader.encode(), stored)  # the label encoder, from the doc, gives the stored prompt bits
    for text in _inputs(reader, BUILDS[name][1]):
        argv = ["generate", str(built[name])] + ([] if text is None else ["--input", text])
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert reader.generate(text) == out.rstrip("\n").split("\n"), (name, text)


def test_the_reader_covers_every_mode_and_construction(built):
    modes = {Reader(d).prompt["mode"] for d in built.values()}
    kinds = {Reader(d).cfg["construction"]["construction"] for d in built.values()}
    assert modes == {"sequence", "per_token", "queries"}
    assert kinds == {"theorem1", "theorem2", "conditional", "packing"}
    params = {(Reader(d).cfg["construction"]["params"].get("L"), Reader(d).cfg["construction"]["params"].get("R"))
              for n, d in built.items() if Reader(d).cfg["construction"]["construction"] == "conditional"}
    assert {(1, 3), (2, 1), (3, 2)} <= params  # long_response (L=1), multi_token (R=1), conditional


def test_a_reader_that_gets_the_doc_wrong_is_caught(built, monkeypatch):
    """Negative controls: the comparison detects a little-endian table index and a missing positional row."""
    r = Reader(built["conditional"])
    rows = r.prompt["table_tokens"]
    V, L = r.cfg["vocab"], r.prompt["inputs"]
    little = [rows[sum(((a // V ** l) % V) * V ** (L - 1 - l) for l in range(L))] for a in range(len(rows))]
    r.prompt = {**r.prompt, "table_tokens": little}
    assert not np.array_equal(r.encode(), r.virtual)
    t1 = Reader(built["theorem1"])
    right = t1.generate(None)
    t1.Pos = t1.Pos * 0.0  # forgetting that pos[p] is added at every position
    assert t1.generate(None) != right


def test_the_reader_is_small_and_imports_nothing_from_prefixproof():
    src = (HERE / "reference_reader.py").read_text()
    assert len(src.splitlines()) <= 160
    mods = {n.module if isinstance(n, ast.ImportFrom) else a.name
            for n in ast.walk(ast.parse(src)) if isinstance(n, (ast.Import, ast.ImportFrom))
            for a in (n.names if isinstance(n, ast.Import) else [n])}
    assert mods <= {"__future__", "json", "struct", "sys", "fractions", "pathlib", "numpy"}, mods
