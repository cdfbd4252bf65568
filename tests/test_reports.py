"""Reports: each JSON report validates against its shipped schema, records the versions, the command line, the
arithmetic and the seed as docs/report.md says; the terminal output fits 100 columns and cuts no text.

The precision, fuzz, crosscheck and selftest reports are validated where their tests already produce them
(tests/test_precision.py, test_fuzz_cli.py, test_crosscheck_cli.py, test_selftest.py); this file holds the verify
report, the precision table, the schema API and the negative controls.
"""
from __future__ import annotations

import copy
import json
import os
import platform
import subprocess
import sys
from importlib.metadata import version

import jsonschema
import pytest

import prefixproof
from prefixproof.schemas import KINDS, load, validate
from tablecheck import read_table, squeeze

CLAIMS = ["theorem1", "prefix_bias", "capacity_count"]


@pytest.fixture(scope="module")
def verify_run(tmp_path_factory):
    """A real `prefixproof verify` in a fresh process (so nothing else has imported torch), at 100 columns."""
    path = tmp_path_factory.mktemp("verify") / "r.json"
    argv = ["verify", *CLAIMS, "--vocab", "5", "--length", "4", "--seed", "7", "--json", str(path)]
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-m", "prefixproof", *argv], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return argv, json.loads(path.read_text()), proc.stdout


def test_the_verify_report_validates_and_records_where_it_came_from(verify_run):
    argv, doc, _ = verify_run
    validate(doc)
    assert doc["command"] == ["prefixproof", *argv]
    v = doc["versions"]
    assert v["prefixproof"] == prefixproof.__version__ and v["python"] == platform.python_version()
    assert v["numpy"] == version("numpy") and v["sympy"] == version("sympy")
    assert v["python-flint"] == version("python-flint")
    assert v["torch"] is None  # verify does not use torch
    used = {o["arithmetic"] for c in doc["claims"] for o in c["obligations"]}
    assert set(doc["arithmetic"]) == used and "float64 execution" in used and doc["dtype"] == "float64"


def test_the_seed_contract(verify_run):
    """docs/report.md: the run's seed at the top; on a record, the seed when its method drew anything at random,
    null when it drew nothing (symbolic and exact-rational records)."""
    _, doc, _ = verify_run
    assert doc["seed"] == 7
    records = [o for c in doc["claims"] for o in c["obligations"]]
    drew_at_random = {"decode", "hard-prompt-bound", "virtual-token-reach",  # cross-check boxes, a random model
                      "soft-is-prefix"}  # its forward-pass cross-check runs seeded random transformers
    for o in records:
        assert o["seed"] == (7 if o["obligation"] in drew_at_random else None), o["obligation"]
    assert any(o["seed"] is None for o in records)
    drew = [o for o in records if o["obligation"] == "decode"]
    assert drew and all(o["seed"] == 7 for o in drew)  # decode draws its cross-check boxes with the seed


def test_verify_output_fits_100_columns_and_cuts_nothing(verify_run):
    _, doc, out = verify_run
    assert max(len(line) for line in out.split("\n")) <= 100
    cells, notes, _ = read_table(out)
    records = [o for c in doc["claims"] for o in c["obligations"]]
    for o in records:
        assert squeeze(o["obligation"]) in cells[1]
        assert squeeze(o["verdict"]) in cells[2]
        assert squeeze(f"method: {o['method']}; arithmetic: {o['arithmetic']}") in notes
    whole = squeeze(out)
    for c in doc["claims"]:  # one plain sentence per claim, whole, at the end
        assert c["summary"].startswith(c["claim"]) and squeeze(c["summary"]) in whole
    assert out.rstrip().split("\n")[-1].strip() != "" and "In plain words:" in out
    assert "..." not in out


def test_sentences_say_what_the_margin_means_with_the_runs_own_numbers(verify_run):
    _, doc, _ = verify_run
    t1 = next(c for c in doc["claims"] if c["claim"] == "theorem1")
    dec = next(o for o in t1["obligations"] if o["obligation"] == "decode")
    cert = dec["details"]["certificate"]
    loss = cert["margin_lower_bound_real_arithmetic"] - cert["margin_lower_bound"]
    assert 0 < loss < 1e-12  # the allowance for float64 rounding, from this run
    s = t1["summary"]
    assert "all 625 target sequences" in s and "float64 execution" in s
    assert f"{dec['min_margin']:.2g} below the right one" in s and f"takes {loss:.2g} off" in s
    bias = next(c for c in doc["claims"] if c["claim"] == "prefix_bias")["summary"]
    assert "proved with symbolic algebra" in bias and "no rounding" in bias


def test_verify_quiet_prints_only_the_sentences(capsys):
    from clirun import run

    code, out, err = run(capsys, "verify", "theorem1", "prefix_rescale", "--vocab", "3", "--length", "2",
                         "--level", "numeric", "--samples", "5", "--quiet")
    assert code == 0 and err == ""
    lines = [line for line in out.split("\n") if line and not line.startswith(" ")]
    assert [line.split(" ")[0].rstrip(",") for line in lines] == ["theorem1", "prefix_rescale"]
    joined = " ".join(out.split())
    # exhaustive numeric run (9 targets) and seeded samples, each said in words
    assert "CHECKED, every one of all 9 target sequences was run in" in joined
    assert "SAMPLED" in joined and "not proved" in joined and "evidence, not a proof" in joined
    assert "obligation" not in out and "---" not in out


@pytest.mark.parametrize("kind", KINDS)
def test_every_schema_is_a_valid_draft_2020_12_schema_and_is_shipped(kind):
    schema = load(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert {"versions", "command", "arithmetic", "exit_status"} <= set(schema["required"])


@pytest.mark.parametrize("edit, where", [
    (lambda d: d.pop("versions"), "versions"),
    (lambda d: d["versions"].pop("python-flint"), "python-flint"),
    (lambda d: d.update(seed="7"), "seed"),
    (lambda d: d.update(command="prefixproof verify"), "command"),
    (lambda d: d["claims"][0]["obligations"][0].update(verdict="PASSED"), "PASSED"),
    (lambda d: d["claims"][0]["obligations"][0].pop("arithmetic"), "arithmetic"),
    (lambda d: d["claims"][0].pop("summary"), "summary"),
    (lambda d: d["claims"][0]["obligations"][0].update(seconds=-1), "seconds"),
    (lambda d: d.update(format_version=2), "format_version"),
])
def test_a_report_with_a_field_removed_or_mistyped_fails_validation(verify_run, edit, where):
    """Negative controls: the schema is not vacuous."""
    _, doc, _ = verify_run
    broken = copy.deepcopy(doc)
    edit(broken)
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


def test_a_document_of_another_kind_is_refused(verify_run):
    _, doc, _ = verify_run
    with pytest.raises(jsonschema.ValidationError):
        validate(doc, "fuzz")
    with pytest.raises(ValueError, match="not a prefixproof report"):
        validate({"format": "something-else"})


def test_precision_table_fits_100_columns_and_cuts_nothing(capsys, monkeypatch, tmp_path):
    """A real precision run (theorem2 in bfloat16, the sweep capped at V=10 to keep it short;
    bfloat16 stops being certified below 10, so the table has a verdict text to wrap) at 100 columns."""
    from prefixproof.audit import precision
    from clirun import run

    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setitem(precision.SWEEPS, "theorem2", [("V", {}, 10)])
    path = tmp_path / "p.json"
    code, out, _ = run(capsys, "precision", "theorem2", "--dtype", "bfloat16", "--json", str(path))
    assert code == 0
    doc = json.loads(path.read_text())
    validate(doc)
    assert doc["versions"]["torch"] is None or "torch" in sys.modules
    assert doc["arithmetic"] == ["bfloat16"] and doc["seed"] == 0
    assert max(len(line) for line in out.split("\n")) <= 100
    cells, notes, _ = read_table(out)
    (f,) = doc["formats"]["bfloat16"]
    assert f["first_not_certified"] is not None and len(f["verdict_there"]) > 40  # a long text, wrapped
    assert squeeze(f"verdict at V={f['first_not_certified']}: {f['verdict_there']}") in notes
    assert squeeze(str(f["largest_certified"])) in cells[3] and squeeze(str(f["first_not_certified"])) in cells[4]
    assert squeeze(f["summary"]) in squeeze(out) and "..." not in out
    code, quiet, _ = run(capsys, "precision", "theorem2", "--dtype", "bfloat16", "--quiet")
    assert code == 0 and quiet.strip().split("\n")[0].startswith("theorem2 in bfloat16")
    assert squeeze(quiet) == squeeze(f["summary"])


def test_every_command_has_quiet():
    import argparse

    from prefixproof.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        for p in (nested[0].choices.values() if nested else [parser]):
            assert any("--quiet" in a.option_strings for a in p._actions), (name, p.prog)
