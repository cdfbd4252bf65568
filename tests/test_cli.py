"""The command line: verify, build, generate, and one-line errors with exit status 2 for bad input."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from clirun import run  # noqa: E402




def test_verify_defaults_both_theorems(capsys, tmp_path):
    report = tmp_path / "r.json"
    code, out, err = run(capsys, "verify", "theorem1", "theorem2", "--samples", "30", "--json", str(report))
    assert code == 0
    # one row per obligation; the claim is named on its first row
    assert re.search(r"^theorem1 +decode-lemma ", out, re.M) and re.search(r"^theorem2 +decode-lemma ", out, re.M)
    assert len(re.findall(r"^ +decode +CERTIFIED ", out, re.M)) == 2
    assert "all 95^20 (log10 39.55)" in out
    doc = json.loads(report.read_text())
    assert doc["exit_status"] == 0
    claims = {c["claim"]: c for c in doc["claims"]}
    assert claims["theorem1"]["params"] == {"V": 95, "N": 20}
    obs = {o["obligation"]: o for o in claims["theorem1"]["obligations"]}
    assert set(obs) == {"decode-lemma", "leakage-bound", "hardmax-lookup", "decode"}
    dec = obs["decode"]
    assert dec["coverage"]["exhaustive"] and len(dec["weights_sha256"]) == 64
    # the certified lower bound is positive and no numeric execution fell below it
    assert 0 < dec["min_margin"] <= dec["details"]["numeric_cross_check"]["min_margin"]
    assert dec["details"]["arb_cross_check"]["disagreements"] == []
    assert all(s["checked"] for s in obs["decode-lemma"]["details"]["steps"])


def test_verify_numeric_level_samples(capsys):
    code, out, _ = run(capsys, "verify", "theorem1", "--level", "numeric", "--samples", "30")
    assert code == 0 and "30 of 95^20 (log10 39.55)" in out and "SAMPLED" in out


def test_verify_exhaustive_small_vocab(capsys):
    code, out, _ = run(capsys, "verify", "theorem1", "--vocab", "3", "--length", "4", "--level", "numeric")
    assert code == 0 and "CHECKED" in out and "all 81" in out


def test_verify_float32(capsys):
    code, out, _ = run(capsys, "verify", "theorem1", "--samples", "20", "--dtype", "float32")
    assert code == 0 and "float32 execution" in out and "CERTIFIED" in out
    code, out, _ = run(capsys, "verify", "theorem1", "--samples", "20", "--dtype", "float32", "--level", "numeric")
    assert code == 0 and "numpy float32" in out


def test_build_and_generate_text_with_tilde_and_space(capsys, tmp_path):
    d = tmp_path / "t1"
    target = "~ Hello, prefix ~ tuning! ~"
    code, out, _ = run(capsys, "build", "theorem1", "--target", target, "--out", str(d))
    assert code == 0 and "generation reproduces it" in out
    code, out, _ = run(capsys, "generate", str(d))
    assert code == 0 and out == target + "\n"


def test_build_pads_a_short_target(capsys, tmp_path):
    d = tmp_path / "t"
    code, _, err = run(capsys, "build", "theorem1", "--target", "ab", "--length", "4", "--out", str(d))
    assert code == 0 and "padded with 2" in err
    assert run(capsys, "generate", str(d))[1] == "ab  \n"


def test_build_and_generate_integer_tokens(capsys, tmp_path):
    d = tmp_path / "t"
    assert run(capsys, "build", "theorem1", "--tokens", "6,0,6,2", "--vocab", "7", "--out", str(d))[0] == 0
    assert run(capsys, "generate", str(d))[1] == "6,0,6,2\n"


def test_build_and_generate_map(capsys, tmp_path):
    d = tmp_path / "t2"
    assert run(capsys, "build", "theorem2", "--map", "ab ~->~ ba", "--out", str(d))[0] == 0
    code, out, _ = run(capsys, "generate", str(d), "--input", "ab ~xyz")
    assert code == 0 and out == "~ ba" + "xyz\n"


def test_map_file(capsys, tmp_path):
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"a": "~", "~": " ", " ": "a"}))
    d = tmp_path / "t2"
    assert run(capsys, "build", "theorem2", "--map-file", str(f), "--out", str(d))[0] == 0
    assert run(capsys, "generate", str(d), "--input", "a~ q")[1] == "~ aq\n"


@pytest.mark.parametrize("argv,message", [
    (["verify", "--vocab", "1"], "V (vocabulary size) must be an integer >= 2"),
    (["verify", "--length", "0"], "must be >= 1"),
    (["verify", "theorem9"], "unknown claim 'theorem9'"),
    (["verify", "--samples", "x"], "not an integer"),
    (["build", "theorem1", "--target", "café", "--out", "OUT"], "'é' (U+00E9) at index 3 is not printable ASCII"),
    (["build", "theorem1", "--target", "abcdef", "--length", "3", "--out", "OUT"], "target has 6 tokens but --length is 3"),
    (["build", "theorem1", "--tokens", "1,9", "--vocab", "5", "--out", "OUT"], "token 9 is outside the vocabulary 0..4"),
    (["build", "theorem1", "--tokens", "1,x", "--vocab", "5", "--out", "OUT"], "token 'x' is not an integer"),
    (["build", "theorem2", "--map", "abc->xy", "--out", "OUT"], "is not a map spec"),
    (["build", "theorem2", "--map", "aa->xy", "--out", "OUT"], "is mapped twice"),
    (["build", "theorem2", "--map", "shift:x", "--out", "OUT"], "is not a map spec"),
    (["build", "theorem2", "--map", "0,1->1", "--vocab", "4", "--out", "OUT"], "2 source tokens but 1 target"),
    (["build", "theorem2", "--map-file", "MISSING.json", "--out", "OUT"], "does not exist"),
    (["generate", "NOWHERE"], "does not exist"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_usage_is_one_line_exit_2(capsys, tmp_path, argv, message):
    argv = [a.replace("OUT", str(tmp_path / "o")).replace("MISSING", str(tmp_path / "m"))
            .replace("NOWHERE", str(tmp_path / "n")) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("content", ['{"ab": "c"}', '{"a": 5}', '[1, 2]', '"x"', '{"a": "b", "a": "c"}', "{bad"])
def test_malformed_map_files(capsys, tmp_path, content):
    f = tmp_path / "m.json"
    f.write_text(content)
    code, _, err = run(capsys, "build", "theorem2", "--map-file", str(f), "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1 and err.startswith("prefixproof: error: ")


@pytest.fixture
def weights(capsys, tmp_path):
    d = tmp_path / "w"
    assert run(capsys, "build", "theorem1", "--target", "hello", "--out", str(d))[0] == 0
    return d


def _break(d, kind):
    if kind == "truncated":
        raw = (d / "model.safetensors").read_bytes()
        (d / "model.safetensors").write_bytes(raw[:100])
    elif kind == "missing":
        (d / "config.json").unlink()
    elif kind in ("shape", "nan"):
        t = load_file(str(d / "model.safetensors"))
        if kind == "shape":
            t["pos"] = np.zeros((2, 2))
        else:
            t["pos"] = np.full_like(t["pos"], np.nan)
        save_file(t, str(d / "model.safetensors"))
    elif kind == "mismatch":
        cfg = json.loads((d / "config.json").read_text())
        cfg["layers"][0]["heads"][1]["scale"] = 3.0
        (d / "config.json").write_text(json.dumps(cfg))
    elif kind == "prompt-nan":
        save_file({"virtual_tokens": np.full((1, 11), np.nan)}, str(d / "prompt.safetensors"))


@pytest.mark.parametrize("kind,message", [
    ("truncated", "truncated or corrupt"), ("missing", "config.json is missing"), ("shape", "tensor 'pos' has shape"),
    ("nan", "NaN or infinity"), ("mismatch", "do not belong together"), ("prompt-nan", "finite"),
])
def test_broken_weights_directories(capsys, weights, kind, message):
    _break(weights, kind)
    code, out, err = run(capsys, "generate", str(weights))
    assert code == 2 and message in err and err.count("\n") == 1 and out == ""


def test_generate_map_without_input_is_usage_error(capsys, tmp_path):
    d = tmp_path / "t2"
    run(capsys, "build", "theorem2", "--map", "identity", "--out", str(d))
    code, _, err = run(capsys, "generate", str(d))
    assert code == 2 and "give --input" in err


def test_console_script_never_prints_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "prefixproof.cli", "build", "theorem1", "--target", "\x01",
                           "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("prefixproof: error:") and "Traceback" not in proc.stderr


def test_exception_inside_an_evaluator_exits_nonzero_with_error(capsys, monkeypatch):
    import prefixproof.verify.certify.lookup as certify

    def broken(*args, **kwargs):
        raise FloatingPointError("injected failure inside the interval evaluator")

    monkeypatch.setattr(certify, "first_layer_forms", broken)
    code, out, _ = run(capsys, "verify", "theorem2", "--vocab", "5")
    assert code == 3
    assert "ERROR(FloatingPointError: injected failure" in out
    assert "theorem2 (V=5): ERROR" in out


def test_default_verify_runs_every_claim_and_reports_json(capsys, tmp_path, monkeypatch):
    """The Quick start's `prefixproof verify`: every claim ends PROVED, CERTIFIED or CHECKED, and the JSON report writes
    (coverage counts far beyond 2^53 digits included) and validates against its shipped schema. At 100 columns no
    line is wider and no record's text is cut."""
    from prefixproof.schemas import validate
    from tablecheck import read_table, squeeze

    monkeypatch.setenv("COLUMNS", "100")
    report = tmp_path / "r.json"
    code, out, _ = run(capsys, "verify", "--json", str(report))
    doc = json.loads(report.read_text())
    assert code == 0 and doc["exit_status"] == 0
    validate(doc)
    assert max(len(line) for line in out.split("\n")) <= 100
    cells, notes, _ = read_table(out)
    for c in doc["claims"]:
        assert squeeze(c["claim"]) in cells[0] and squeeze(c["summary"]) in squeeze(out)
        for o in c["obligations"]:
            assert squeeze(o["obligation"]) in cells[1] and squeeze(o["verdict"]) in cells[2]
            assert squeeze(f"method: {o['method']}; arithmetic: {o['arithmetic']}") in notes
    from prefixproof.theorems import THEOREMS

    assert [c["claim"] for c in doc["claims"]] == list(THEOREMS)
    for c in doc["claims"]:
        verdicts = {o["obligation"]: o["verdict"] for o in c["obligations"]}
        # capacity claims are exhaustive evaluations (CHECKED); everything else is proved or certified
        assert c["verdict"] in ("PROVED", "CERTIFIED", "CHECKED"), (c["claim"], verdicts)
        if "decode" in verdicts:
            dec = next(o for o in c["obligations"] if o["obligation"] == "decode")
            assert dec["coverage"]["exhaustive"] and dec["coverage"]["total_log10"] > 0


def test_verify_output_fits_100_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = run(capsys, "verify", "theorem2", "--vocab", "7")
    assert code == 0
    lines = out.split("\n")
    assert max(len(line) for line in lines) <= 100
    # nothing is cut: every word of the certificate's method cell is printed, and the wrapped explanation
    # lines below the table read whole once joined
    words = set(out.split())
    assert {"structured", "interval", "certificate", "cross-checked:", "execution"} <= words and "..." not in out
    joined = " ".join(" ".join(lines).split())
    assert "decode: CERTIFIED for every input in float64 execution" in joined
