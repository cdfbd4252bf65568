"""Conditional generation (long_response, multi_token, conditional): decoding, certificates, CLI."""
import json
import re

import numpy as np
import pytest
from hypothesis import given, strategies as st

from prefixproof.constructions.conditional import Conditional
from prefixproof.constructions.model import materialize
from prefixproof.theorems import THEOREMS
from prefixproof.theorems.obligations.base import RunContext
from prefixproof.theorems.conditional import ConditionalInputs, conditional_rows
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.verify.certify.lookup import certify_lookup
from prefixproof.verify.numeric.decoding import check_decoding, decode_margins
from prefixproof.cli import main
from prefixproof.verify.semantics.forward import forward
from prefixproof.verify.certify.interval import exec_for
from prefixproof.verify.verdict import Verdict

from conftest import margin_tolerance


def decode(c: Conditional, table: np.ndarray) -> np.ndarray:
    """Teacher-forced margins of every input of the table: (V^L, R)."""
    model = materialize(c.model())
    a = np.arange(c.K)
    us = np.stack([(a // c.V ** (c.L - 1 - l)) % c.V for l in range(c.L)], axis=1)
    tokens = np.concatenate([us, table[:, :-1]], axis=1)
    logits = forward(model, tokens, np.repeat(c.encode(table)[None], c.K, axis=0),
                     outputs_at=[c.output_position(r) for r in range(c.R)]).logits
    return decode_margins(logits, table)


@given(V=st.integers(2, 6), L=st.integers(1, 2), R=st.integers(1, 3), data=st.data())
def test_any_table_decodes_with_the_bound_margin(V, L, R, data):
    c = Conditional(V, L, R)
    table = np.array(data.draw(st.lists(st.integers(0, V - 1), min_size=c.K * R, max_size=c.K * R))).reshape(c.K, R)
    m = decode(c, table)
    assert m.min() >= c.margin_bound - margin_tolerance(np.float64, c.n_ctx)
    assert c.margin_bound >= 0.5 / V**2


def test_long_response_exhaustive_over_user_tokens_for_many_maps():
    c = Conditional(95, 1, 10)
    model = c.model()
    rec = check_decoding(model, ConditionalInputs(LookupEncoding.of(model, "table")), claim="long_response",
                         params={"V": 95, "R": 10}, samples=12, seed=4)
    assert rec.verdict is Verdict.SAMPLED and rec.coverage.covered == 12 * 95
    assert rec.min_margin >= c.margin_bound - margin_tolerance(np.float64, c.n_ctx)


@pytest.mark.parametrize("V,L,R", [(95, 1, 10), (95, 2, 1), (5, 3, 1), (7, 2, 3)])
def test_certified_in_float64(V, L, R):
    c = Conditional(V, L, R)
    model = materialize(c.model())
    enc = LookupEncoding.of(model, "table")
    res, _ = certify_lookup(model, conditional_rows(enc.payload, enc, "float64"), exec_for("float64"))
    assert res.certified, res.reason or res.failures[:3]
    assert res.min_margin >= c.margin_bound - 1e-12 and res.boxes == R * V**L * V


def test_negative_control_lowered_scale_is_falsified():
    th = THEOREMS["long_response"]
    model = Conditional(95, 1, 4).model(scale=3.0)
    ob = next(o for o in th.obligations if o.id == "decode")
    rec = ob.run(RunContext(params={"V": 95, "R": 4}, samples=5, seed=0, model=model))
    assert rec.verdict is Verdict.FALSIFIED and rec.counterexample["confirmation"]["fails"]


def test_hardmax_proves_a_small_conditional():
    th = THEOREMS["conditional"]
    ob = next(o for o in th.obligations if o.id == "hardmax-lookup")
    rec = ob.run(RunContext(params={"V": 5, "L": 2, "R": 2}, samples=1, seed=0))
    assert rec.verdict is Verdict.PROVED and rec.details["max_competing_keys"] == 4


def test_build_and_generate_long_responses(tmp_path, capsys):
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"a": "apple", "~": "tilde~", " ": "sp ace"}))
    d = tmp_path / "w"
    assert main(["build", "long_response", "--map-file", str(f), "--out", str(d)]) == 0
    capsys.readouterr()
    assert main(["generate", str(d), "--input", "a~ q"]) == 0
    assert capsys.readouterr().out.splitlines() == ["apple ", "tilde~", "sp ace", "      "]


def test_build_multi_token_and_generate(tmp_path, capsys):
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"0,1": "4", "4,4": "2"}))
    d = tmp_path / "w"
    assert main(["build", "multi_token", "--map-file", str(f), "--vocab", "5", "--out", str(d)]) == 0
    capsys.readouterr()
    assert main(["generate", str(d), "--input", "0,1,4,4,2,2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["4", "2", "0"]


@pytest.mark.parametrize("content,message", [
    ({"ab": "x", "c": "y"}, "different lengths"),
    ({"a": 5}, "must be a string"),
    ({"a": "xyz"}, "more than the response length 2"),
    ([], "non-empty JSON object"),
])
def test_bad_table_files_are_one_line_errors(tmp_path, capsys, content, message):
    f = tmp_path / "m.json"
    f.write_text(json.dumps(content))
    code = main(["build", "conditional", "--map-file", str(f), "--length", "2", "--out", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_verify_weights_of_a_long_response_directory(tmp_path, capsys):
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"a": "ab", "b": "ba"}))
    d = tmp_path / "w"
    assert main(["build", "long_response", "--map-file", str(f), "--vocab", "95", "--out", str(d)]) == 0
    capsys.readouterr()
    assert main(["verify", "--weights", str(d), "--claim", "long_response"]) == 0
    out = capsys.readouterr().out
    # the weights are certified for every table; the directory's own prompt is checked on every input
    assert "long_response (V=95, R=2): CHECKED" in out and "decode: CERTIFIED for every input" in out
    assert re.search(r"^ +stored-prompt +CHECKED +all 95 ", out, re.M)
    assert main(["verify", "--weights", str(d), "--claim", "multi_token"]) == 2
    assert "--claim conditional" in capsys.readouterr().err
