"""Disagreement is ERROR at every level, and the reason names both results (issue 9, item 2).

A disagreeing evaluator is injected by handing one side of the ladder a *broken* copy of the weights (one
decoder bias lowered so that token 1 can never win), while the other side keeps the real weights. Which
targets really fail in the broken copy is decided independently, by greedy generation over every target.
"""
import itertools
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import prefixproof.theorems.obligations.ladder as decode
import prefixproof.theorems.obligations.stored_prompt as stored_prompt
from prefixproof.constructions.io import load_model
from prefixproof.theorems.theorem1 import Theorem1Inputs
from prefixproof.cli import main
from prefixproof.verify.semantics.formats import round_model
from prefixproof.verify.semantics.generate import generate
from clirun import run  # noqa: E402

V, N = 3, 2
BROKEN_TOKEN = 1




@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """(the built directory for target 1,2; the broken weights model; the targets that fail in it)."""
    root = tmp_path_factory.mktemp("dis")
    good = root / "good"
    assert main(["build", "theorem1", "--tokens", "1,2", "--vocab", str(V), "--out", str(good)]) == 0
    bad = root / "bad"
    shutil.copytree(good, bad)
    t = load_file(str(bad / "model.safetensors"))
    last = max(int(k.split(".")[3]) for k in t if k.startswith("layers.0.mlp.") and k.endswith(".b"))
    t[f"layers.0.mlp.{last}.b"][BROKEN_TOKEN] -= 4.0
    save_file(t, str(bad / "model.safetensors"))
    broken = load_model(bad, check_sha=False)
    targets = np.array(list(itertools.product(range(V), repeat=N)))
    soft = np.zeros((len(targets), 1, broken.d_model))
    soft[:, 0, broken.stream.block("target")] = targets / V
    gen = generate(broken, soft=soft)
    failing = {",".join(map(str, y)) for y, out, m in zip(targets, gen.tokens, gen.margins)
               if (out != y).any() or not (m > 0).all()}
    assert failing and len(failing) < len(targets)  # the edit breaks some targets, not all
    return good, broken, failing


def _verify(capsys, tmp_path, d, level):
    report = tmp_path / f"{level}.json"
    code, out, _ = run(capsys, "verify", "--weights", d, "--claim", "theorem1", "--level", level, "--json", report)
    (c,) = json.loads(report.read_text())["claims"]
    return code, " ".join(line.strip() for line in out.splitlines()), c, {o["obligation"]: o for o in c["obligations"]}


def _reported_target(reason, failing):
    hits = [t for t in failing if f"target='{t}'" in reason]
    assert hits, f"no failing target of the broken weights is named in: {reason}"
    return hits


def _on_broken(monkeypatch, broken, *names):
    """Make prefixproof.theorems.obligations.ladder's `names` evaluate the broken weights instead of the ones they are given."""
    for name in names:
        real = getattr(decode, name)
        monkeypatch.setattr(decode, name, lambda model, *a, _real=real, **k: _real(
            round_model(broken, "float64") if name == "certify_lookup" else broken, *a, **k))


@pytest.mark.parametrize("level", ["quick", "certify", "all"])
def test_certified_next_to_a_numeric_counterexample_is_error(capsys, monkeypatch, tmp_path, dirs, level):
    good, broken, failing = dirs
    _on_broken(monkeypatch, broken, "evaluate_boxes", "check_decoding")
    code, out, c, obs = _verify(capsys, tmp_path, good, level)
    dec = obs["decode"]
    assert dec["verdict"] == "ERROR" and c["verdict"] == "ERROR" and code != 0
    reason = dec["reason"]
    assert "certificate" in reason and "CERTIFIED margin >= " in reason  # one side
    assert "numeric (" in reason and "counterexample" in reason  # the other side
    _reported_target(reason, failing)
    assert f"decode: ERROR({reason})" in out  # the terminal shows it whole


def test_numeric_counterexample_vs_certificate_counterexample_at_level_all(capsys, monkeypatch, tmp_path, dirs):
    """Vice versa: the certificate side finds a (confirmed) counterexample, the exhaustive numeric run none."""
    good, broken, failing = dirs
    _on_broken(monkeypatch, broken, "certify_lookup", "search_boxes")
    code, out, c, obs = _verify(capsys, tmp_path, good, "all")
    reason = obs["decode"]["reason"] or ""
    assert obs["decode"]["verdict"] == "ERROR" and code != 0
    assert "certificate box search" in reason and "counterexample" in reason
    assert "CHECKED, every input decodes" in reason
    _reported_target(reason, failing)


def test_same_injection_without_the_numeric_level_is_not_a_pass(capsys, monkeypatch, tmp_path, dirs):
    """Only one side runs at the default level: the certificate's counterexample stands (a control)."""
    good, broken, failing = dirs
    _on_broken(monkeypatch, broken, "certify_lookup", "search_boxes")
    code, out, c, obs = _verify(capsys, tmp_path, good, "quick")
    assert obs["decode"]["verdict"] == "FALSIFIED"
    assert obs["decode"]["counterexample"]["target"] in failing


def test_numeric_level_teacher_forced_vs_generation_is_error_naming_both(capsys, monkeypatch, tmp_path, dirs):
    good, broken, failing = dirs
    real_confirm = Theorem1Inputs.confirm
    # the teacher-forced pass runs the broken weights; the second path (generation) the real ones
    _on_broken(monkeypatch, broken, "check_decoding")
    monkeypatch.setattr(Theorem1Inputs, "confirm",
                        lambda self, model, ops, item, position=None: real_confirm(self, load_model(good), ops, item,
                                                                                    position))
    code, out, c, obs = _verify(capsys, tmp_path, good, "numeric")
    reason = obs["decode"]["reason"] or ""
    assert obs["decode"]["verdict"] == "ERROR" and code != 0
    assert "teacher-forced pass" in reason and "incremental generation" in reason
    target = _reported_target(reason, failing)[0]
    assert f"generated '{target}'" in reason  # the real weights reproduce the target: the other side


def test_claim_level_decode_certified_vs_stored_prompt_counterexample(capsys, monkeypatch, tmp_path, dirs):
    """decode CERTIFIED on the real weights; the stored prompt's generation runs the broken ones."""
    good, broken, failing = dirs
    assert "1,2" in failing  # the stored target really fails in the broken weights
    real_executions = stored_prompt.executions
    monkeypatch.setattr(stored_prompt, "executions", lambda model, dtype: real_executions(broken, dtype))
    for level in ("quick", "numeric"):
        code, out, c, obs = _verify(capsys, tmp_path, good, level)
        assert obs["stored-prompt"]["verdict"] == "FALSIFIED"
        passing = obs["decode"]["verdict"]
        if passing in ("CERTIFIED", "CHECKED"):
            ag = obs["agreement"]
            assert ag["verdict"] == "ERROR" and c["verdict"] == "ERROR"
            assert f"decode: {passing}" in ag["reason"] and "stored-prompt: FALSIFIED" in ag["reason"]
            assert "not '1,2'" in ag["reason"]
            assert f"agreement: ERROR({ag['reason']})" in out
        else:
            assert "agreement" not in obs


def test_claim_level_decode_counterexample_on_the_stored_table_that_generates_correctly(capsys, monkeypatch,
                                                                                       tmp_path, dirs):
    """Vice versa at claim level: decode (broken weights) FALSIFIED on exactly the table the stored prompt
    holds, while the stored prompt (real weights) generates it correctly."""
    good, broken, failing = dirs
    d = tmp_path / "first"
    assert main(["build", "theorem1", "--tokens", "0,1", "--vocab", str(V), "--out", str(d)]) == 0
    assert "0,1" in failing
    monkeypatch.setattr(decode, "check_decoding",
                        lambda model, *a, _real=decode.check_decoding, **k: _real(broken, *a, **k))
    code, out, c, obs = _verify(capsys, tmp_path, d, "numeric")
    assert obs["stored-prompt"]["verdict"] == "CHECKED"
    dec = obs["decode"]
    # the exhaustive checker reports the first failing target in lexicographic order: the stored one
    first = min(tuple(map(int, t.split(","))) for t in failing)
    assert first == (0, 1) and dec["verdict"] == "FALSIFIED" and dec["counterexample"]["target_tokens"] == [0, 1]
    ag = obs["agreement"]
    assert ag["verdict"] == "ERROR" and c["verdict"] == "ERROR"
    assert "decode: FALSIFIED" in ag["reason"] and "stored-prompt: CHECKED" in ag["reason"]
