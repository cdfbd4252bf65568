"""Certificates (docs/certificate-format.md): `verify --certificate` writes one, `check` accepts it, and every
tampering (of the certificate or of the weights) is rejected with exit status 1, naming the failing step."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from clirun import run
from prefixproof.checker.files import fingerprint, read_weights


def _load(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="np") as f:
        head = json.loads(f.metadata()["certificate"])
        return head, {k: f.get_tensor(k) for k in f.keys()}


def _save(path: Path, head: dict, arrays: dict) -> None:
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path),
              metadata={"certificate": json.dumps(head)})


@pytest.fixture(scope="module")
def t2(tmp_path_factory):
    """Theorem 2 at V=7 (a random map): weights directory and its certificate."""
    d = tmp_path_factory.mktemp("cert")
    assert run_cli(["build", "theorem2", "--map", "random:3", "--vocab", "7", "--out", d / "w"])[0] == 0
    code, out = run_cli(["verify", "--weights", d / "w", "--claim", "theorem2", "--level", "certify",
                         "--certificate", d / "t2.cert"])
    assert code == 0 and "wrote certificate" in out, out
    return d


def run_cli(argv):
    from prefixproof.cli import main
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([str(a) for a in argv])
    return code, buf.getvalue()


def _check(capsys, cert: Path, weights: Path) -> tuple[int, str]:
    code, out, err = run(capsys, "check", cert, "--weights", weights)
    return code, out + err


def test_untouched_certificate_is_accepted_and_says_what_it_trusts(t2, capsys):
    code, out = _check(capsys, t2 / "t2.cert", t2 / "w")
    assert code == 0, out
    assert "trusted:" in out and "python-flint" in out and "rounding model" in out and "safetensors" in out
    head, arrays = _load(t2 / "t2.cert")
    assert f"margin >= {head['margin']:.6g}" in out and head["margin"] > 0
    assert set(arrays["blocks.row"]) == set(range(7))  # every decision of the claim has blocks


def _edit(key, fn):
    def tamper(head, arrays):
        if key is None:
            fn(head)
        else:
            arrays[key] = fn(arrays[key].copy())
    return tamper


def _set(a, idx, value):
    a[idx] = value
    return a


def _drop_block(head, arrays):
    for k in ("row", "ya", "yb", "margin"):
        arrays[f"blocks.{k}"] = np.delete(arrays[f"blocks.{k}"], 1)
    for k in range(head["layers"]):
        arrays[f"relu.{k}"] = np.delete(arrays[f"relu.{k}"], 1, axis=0)


def _swap_blocks(head, arrays):
    for k in ["blocks.row", "blocks.ya", "blocks.yb", "blocks.margin"] + [f"relu.{i}" for i in range(head["layers"])]:
        arrays[k][[0, 1]] = arrays[k][[1, 0]]


def _drop_form(head, arrays):
    keep = np.arange(len(arrays["forms.row"])) != 3
    for k in ("row", "unit", "c_lo", "c_hi", "b_lo", "b_hi"):
        arrays[f"forms.{k}"] = arrays[f"forms.{k}"][keep]


def _flip_relu(head, arrays):
    a = arrays["relu.0"]
    k, s = np.argwhere(a == 1)[0]
    a[k, s] = 0


def _enclose_on_block(head, arrays):
    k = int(np.flatnonzero(arrays["blocks.ya"] < arrays["blocks.yb"])[0])
    arrays["relu.0"][k, np.argwhere(arrays["relu.0"][k] == 1)[0][0]] = 2


TAMPERS = {
    "attention narrowed below": (_edit("attention.lo", lambda a: _set(a, (0, 6, 0), a[0, 6, 0] + 1e-3)), "attention[head 0, row 6"),
    "attention narrowed above": (_edit("attention.hi", lambda a: _set(a, (1, 2, 1), a[1, 2, 1] * 0.5)), "attention[head 1, row 2"),
    "attention NaN": (_edit("attention.hi", lambda a: _set(a, (0, 0, 0), np.nan)), "arrays"),
    "form constant edited": (_edit("forms.c_lo", lambda a: _set(a, 2, a[2] + 1e-6)), "form[row"),
    "form coefficient edited": (_edit("forms.b_hi", lambda a: _set(a, 0, a[0] - 1e-3)), "form[row"),
    "form widened": (_edit("forms.c_hi", lambda a: a + 2.0), "relu["),
    "form pair dropped": (_drop_form, "form[row"),
    "forms unsorted": (_edit("forms.row", lambda a: a[::-1].copy()), "forms"),
    "block dropped": (_drop_block, "coverage[row"),
    "value dropped from coverage": (_edit("blocks.yb", lambda a: _set(a, 1, a[1] - 1)), "coverage[row"),
    "steps swapped": (_swap_blocks, "coverage[row"),
    "ReLU decision edited": (_flip_relu, "relu["),
    "ReLU enclosed on a block": (_enclose_on_block, "relu["),
    "decode inequality with the wrong sign": (_edit("blocks.margin", lambda a: -a), "decode[row 0"),
    "decode bound raised": (_edit("blocks.margin", lambda a: _set(a, 4, a[4] * 4)), "decode[row"),
    "truncated array": (_edit("blocks.margin", lambda a: a[:-1]), "arrays"),
    "extra array": (lambda h, a: a.__setitem__("extra", np.zeros(2)), "arrays"),
    "header margin": (_edit(None, lambda h: h.__setitem__("margin", h["margin"] * 2)), "margin"),
    "claim parameter": (_edit(None, lambda h: h["params"].__setitem__("V", 8)), "claim"),
    "claim id": (_edit(None, lambda h: h.__setitem__("claim", "theorem1")), "claim"),
    "demanded margin above the bound": (_edit(None, lambda h: h.__setitem__("demanded_margin", 1.0)), "decode[row 0"),
    "format": (_edit(None, lambda h: h.__setitem__("execution", {"format": "float16"})), "attention"),
    "unknown format": (_edit(None, lambda h: h.__setitem__("execution", {"format": "float8"})), "format"),
    "extra field": (_edit(None, lambda h: h.__setitem__("note", "x")), "header"),
    "missing field": (_edit(None, lambda h: h.pop("positions")), "header"),
    "version": (_edit(None, lambda h: h.__setitem__("version", 99)), "header"),
    "fingerprint edited": (_edit(None, lambda h: h.__setitem__("weights_fingerprint", "0" * 64)), "fingerprint"),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tampered_certificate_is_rejected_naming_the_step(t2, tmp_path, capsys, name):
    assert_tamper_rejected(capsys, tmp_path, t2 / "t2.cert", t2 / "w", *TAMPERS[name])


def assert_tamper_rejected(capsys, tmp_path: Path, cert: Path, weights: Path, tamper, step: str) -> None:
    """Apply `tamper(head, arrays)` to a copy of `cert`; the checker must reject it (exit 1) naming `step`."""
    head, arrays = _load(cert)
    tamper(head, arrays)
    _save(tmp_path / "bad.cert", head, arrays)
    code, out = _check(capsys, tmp_path / "bad.cert", weights)
    assert code == 1, out
    assert f"REJECTED at step {step}" in out, out


def test_corrupt_file_is_rejected_and_missing_files_are_usage_errors(t2, tmp_path, capsys):
    data = (t2 / "t2.cert").read_bytes()
    (tmp_path / "cut.cert").write_bytes(data[: len(data) // 2])
    code, out = _check(capsys, tmp_path / "cut.cert", t2 / "w")
    assert code == 1 and "REJECTED at step file" in out
    assert _check(capsys, tmp_path / "none.cert", t2 / "w")[0] == 2
    assert _check(capsys, t2 / "t2.cert", tmp_path / "nowhere")[0] == 2


def _weights_copy(t2, tmp_path) -> Path:
    w = tmp_path / "w"
    shutil.copytree(t2 / "w", w)
    return w


@pytest.mark.parametrize("tensor", ["embed", "pos", "layers.0.heads.0.W_Q", "layers.0.heads.1.W_K",
                                    "layers.0.heads.0.W_V", "layers.0.heads.1.W_O", "layers.0.mlp.0.W",
                                    "layers.0.mlp.1.b", "layers.0.mlp.2.W"])
def test_edited_weights_no_longer_match_the_fingerprint(t2, tmp_path, capsys, tensor):
    w = _weights_copy(t2, tmp_path)
    tensors = load_file(str(w / "model.safetensors"))
    name = tensor if tensor in tensors else f"{tensor}.data"
    tensors[name].flat[0] += 0.5
    save_file(tensors, str(w / "model.safetensors"))
    code, out = _check(capsys, t2 / "t2.cert", w)
    assert code == 1 and "REJECTED at step fingerprint" in out, out


@pytest.mark.parametrize("edit,step", [("bias", "decode[row"), ("scale", "attention[head"), ("nan", "weights")])
def test_forged_fingerprint_with_edited_weights_is_rejected_by_reasoning(t2, tmp_path, capsys, edit, step):
    w = _weights_copy(t2, tmp_path)
    if edit in ("bias", "nan"):  # the decoder's bias of logit 3 raised: value 3 wins where its neighbours should;
        tensors = load_file(str(w / "model.safetensors"))  # or NaN, which would make every comparison pass
        tensors["layers.0.mlp.2.b"][3] = np.nan if edit == "nan" else tensors["layers.0.mlp.2.b"][3] + 0.05
        save_file(tensors, str(w / "model.safetensors"))
    else:  # a much smaller attention scale: the softmax no longer selects
        config = json.loads((w / "config.json").read_text())
        config["layers"][0]["heads"][0]["scale"] = 0.5
        (w / "config.json").write_text(json.dumps(config))
    head, arrays = _load(t2 / "t2.cert")
    head["weights_fingerprint"] = fingerprint(read_weights(w))
    _save(tmp_path / "forged.cert", head, arrays)
    code, out = _check(capsys, tmp_path / "forged.cert", w)
    assert code == 1 and f"REJECTED at step {step}" in out, out


def test_checker_fingerprint_agrees_with_the_recorded_one(t2):
    config = json.loads((t2 / "w" / "config.json").read_text())
    assert fingerprint(read_weights(t2 / "w")) == config["weights_sha256"]


@pytest.mark.parametrize("claim,build", [
    ("theorem1", ["theorem1", "--tokens", "1,4,0,3", "--vocab", "5"]),
    ("long_response", ["long_response", "--map", "random:1", "--vocab", "3", "--length", "2"]),
    ("multi_token", ["multi_token", "--map", "random:1", "--vocab", "3", "--inputs", "2"]),
    ("conditional", ["conditional", "--map", "random:2", "--vocab", "3", "--inputs", "2", "--length", "2"]),
])
def test_every_certified_lookup_claim_writes_a_certificate_check_accepts(tmp_path, capsys, claim, build):
    assert run_cli(["build", *build, "--out", tmp_path / "w"])[0] == 0
    code, out = run_cli(["verify", "--weights", tmp_path / "w", "--claim", claim, "--level", "certify",
                         "--certificate", tmp_path / "c.cert"])
    assert code == 0 and "CERTIFIED" in out, out
    code, out = _check(capsys, tmp_path / "c.cert", tmp_path / "w")
    assert code == 0 and "ACCEPTED" in out, out


def test_low_precision_certificate_is_accepted(t2, tmp_path, capsys):
    code, out = run_cli(["verify", "--weights", t2 / "w", "--claim", "theorem2", "--level", "certify", "--dtype",
                         "float32", "--certificate", tmp_path / "f32.cert"])
    assert code == 0 and "wrote certificate" in out, out
    assert _load(tmp_path / "f32.cert")[0]["execution"] == {"format": "float32"}
    assert _check(capsys, tmp_path / "f32.cert", t2 / "w")[0] == 0


def test_no_certificate_without_a_certified_decode(tmp_path, capsys):
    assert run_cli(["build", "theorem2", "--map", "random:3", "--vocab", "7", "--out", tmp_path / "w"])[0] == 0
    code, out, err = run(capsys, "verify", "--weights", tmp_path / "w", "--claim", "theorem2", "--level", "certify",
                         "--min-margin", "1", "--certificate", tmp_path / "c.cert")
    assert code == 2 and "nothing certified to write" in err and not (tmp_path / "c.cert").exists()


def test_checker_runs_alone_as_a_module(t2):
    import subprocess
    import sys
    ok = subprocess.run([sys.executable, "-m", "prefixproof.checker", str(t2 / "t2.cert"), "--weights", str(t2 / "w")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "ACCEPTED" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run([sys.executable, "-m", "prefixproof.checker", str(t2 / "t2.cert")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_outward_steps_reach_past_the_neighbouring_float():
    from prefixproof.checker import iv

    rng = np.random.default_rng(7)
    x = rng.integers(0, 2**64 - 1, size=200_000, dtype=np.uint64).view(np.float64)
    p = 2.0 ** np.arange(-1074, 1024.0)
    x = np.concatenate([x[~np.isnan(x)], p, -p, np.nextafter(p, 0), -np.nextafter(p, 0), [0.0, -0.0, np.inf, -np.inf]])
    with np.errstate(over="ignore"):
        up, dn = iv.up(x), iv.dn(x)
        assert np.all(up >= np.nextafter(x, np.inf)) and np.all(dn <= np.nextafter(x, -np.inf))
        f, far = np.isfinite(x), np.nextafter(np.nextafter(np.nextafter(x, np.inf), np.inf), np.inf)
        assert np.all(up[f] <= far[f])  # and at most three floats away (not needlessly loose)
    assert iv.up(-np.inf) == -np.finfo(np.float64).max and np.isnan(iv.up(np.nan))
    # negative control: a step that is too small (half an ulp) is caught by the same comparison
    assert not np.all(x[np.isfinite(x)] + np.abs(x[np.isfinite(x)]) * 2.0**-54 >= np.nextafter(x, np.inf)[np.isfinite(x)])

