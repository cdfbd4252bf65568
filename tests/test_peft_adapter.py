"""The PEFT prompt-tuning adapter that `build` writes, read without torch, and `verify --weights` on base + adapter.

The truth for `verify` is the table config.json records; the negative controls are an adapter whose one virtual
coordinate was moved to another grid value (a different answer, FALSIFIED) and corrupt adapters (exit 2, one line).
"""
import json
import pickle

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from prefixproof.constructions.io import load_model, load_prompt
from prefixproof.constructions.peft_adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterError, read_peft_adapter
from clirun import build_all, copy_built, run

BUILDS = {
    "theorem1": ["theorem1", "--tokens", "1,2,0,2", "--vocab", "3"],
    "theorem2": ["theorem2", "--map", "random:1", "--vocab", "5"],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("adapters"), BUILDS)


def _verify(capsys, tmp_path, d, claim):
    report = tmp_path / "r.json"
    code, out, err = run(capsys, "verify", "--weights", d, "--claim", claim, "--json", report)
    (c,) = json.loads(report.read_text())["claims"]
    return code, {o["obligation"]: o for o in c["obligations"]}


def test_build_writes_the_virtual_tokens_as_a_prompt_tuning_adapter(built):
    for claim in BUILDS:
        d = built / claim
        cfg = json.loads((d / ADAPTER_CONFIG).read_text())
        assert cfg["peft_type"] == "PROMPT_TUNING" and cfg["task_type"] == "CAUSAL_LM"
        model = load_model(d)
        vt, _ = load_prompt(d, model)
        adapter = read_peft_adapter(d, model.d_model)
        assert adapter.stored_dtype == "float64" and cfg["num_virtual_tokens"] == adapter.num_virtual_tokens
        assert np.array_equal(adapter.virtual_tokens, vt)  # bit for bit the prompt generate uses


@pytest.mark.parametrize("claim", list(BUILDS))
def test_verify_checks_a_correct_adapter_and_falsifies_an_edited_one(built, tmp_path, capsys, claim):
    d = copy_built(built, tmp_path, claim)
    code, obs = _verify(capsys, tmp_path, d, claim)
    assert code == 0
    assert obs["decode"]["verdict"] == "CERTIFIED"
    a = obs["adapter-prompt"]
    assert a["verdict"] == "CHECKED" and a["details"]["construction_encoding"] is True
    assert any("PEFT holds it (float32)" in r for r in a["details"]["runs"])  # the arithmetic PEFT runs, too
    # negative control: one payload coordinate moved by one grid step answers another token
    w = load_file(str(d / ADAPTER_WEIGHTS))["prompt_embeddings"].copy()
    model = load_model(d)
    col = model.stream.labels.index("target:1" if claim == "theorem1" else "map:2")
    V = model.vocab.size
    w[0, col] = (round(w[0, col] * V) + 1) % V / V
    save_file({"prompt_embeddings": w}, str(d / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    code, obs = _verify(capsys, tmp_path, d, claim)
    assert code == 1
    a = obs["adapter-prompt"]
    assert a["verdict"] == "FALSIFIED" and "wrongly" in a["reason"]
    assert a["details"]["construction_encoding"] is False
    assert obs["stored-prompt"]["verdict"] == "CHECKED"  # prompt.safetensors was not touched


def test_a_float32_adapter_off_the_grid_is_judged_by_its_answers(built, tmp_path, capsys):
    """A prompt trained with PEFT from a float32 model: float32 values near, not on, the grid."""
    d = copy_built(built, tmp_path, "theorem2")
    w = load_file(str(d / ADAPTER_WEIGHTS))["prompt_embeddings"]
    trained = (w + 1e-4 * (w != 0)).astype(np.float32)
    save_file({"prompt_embeddings": trained}, str(d / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    code, obs = _verify(capsys, tmp_path, d, "theorem2")
    a = obs["adapter-prompt"]
    assert code == 0 and a["verdict"] == "CHECKED" and a["details"]["construction_encoding"] is False
    assert "adapter stored in float32" in a["arithmetic"] and a["details"]["adapter"]["dtype"] == "float32"
    assert len(a["details"]["runs"]) == 1  # float32 is what PEFT holds: one variant


def _corrupt(d, how):
    cfg = json.loads((d / ADAPTER_CONFIG).read_text())
    w = load_file(str(d / ADAPTER_WEIGHTS))["prompt_embeddings"]
    if how == "shape":
        save_file({"prompt_embeddings": w[:, :-1].copy()}, str(d / ADAPTER_WEIGHTS))
    elif how == "nan":
        w = w.copy()
        w[0, 0] = np.nan
        save_file({"prompt_embeddings": w}, str(d / ADAPTER_WEIGHTS))
    elif how == "num_virtual_tokens":
        cfg["num_virtual_tokens"] = 2
        (d / ADAPTER_CONFIG).write_text(json.dumps(cfg))
    elif how == "pickle":
        (d / ADAPTER_WEIGHTS).write_bytes(pickle.dumps({"prompt_embeddings": w.tolist()}))
    elif how == "truncated":
        raw = (d / ADAPTER_WEIGHTS).read_bytes()
        (d / ADAPTER_WEIGHTS).write_bytes(raw[:-8])
    elif how == "peft_type":
        cfg["peft_type"] = "LORA"
        (d / ADAPTER_CONFIG).write_text(json.dumps(cfg))
    elif how == "int":
        save_file({"prompt_embeddings": w.astype(np.int64)}, str(d / ADAPTER_WEIGHTS))


@pytest.mark.parametrize("how, says", [("shape", "token_dim"), ("nan", "NaN"),
                                       ("num_virtual_tokens", "num_virtual_tokens=2"), ("pickle", "never unpickled"),
                                       ("truncated", "truncated"), ("peft_type", "PROMPT_TUNING"),
                                       ("int", "dtype I64")])
def test_a_corrupt_adapter_is_exit_2_with_one_line(built, tmp_path, capsys, how, says):
    d = copy_built(built, tmp_path, "theorem2")
    _corrupt(d, how)
    with pytest.raises(AdapterError):
        read_peft_adapter(d, load_model(d).d_model)
    code, out, err = run(capsys, "verify", "--weights", d, "--claim", "theorem2")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err


def test_the_core_imports_without_torch_and_prefixproof_hf_names_the_extra(tmp_path):
    """With torch, transformers and peft unimportable: `import prefixproof`, `--help`, build (with the adapter)
    and verify --weights on base + adapter all work; `import prefixproof.hf` is a one-line MissingExtra."""
    import subprocess
    import sys

    code = f"""
import sys
for m in ("torch", "transformers", "peft"):
    sys.modules[m] = None
import prefixproof
from prefixproof.cli import main
try:
    main(["--help"])
except SystemExit as e:
    assert e.code == 0
assert main(["build", "theorem2", "--map", "random:1", "--vocab", "3", "--out", {str(tmp_path / 'd')!r}]) == 0
assert main(["verify", "--weights", {str(tmp_path / 'd')!r}, "--claim", "theorem2"]) == 0
try:
    import prefixproof.hf
except Exception as e:
    print("MISSING", type(e).__name__, e)
assert not any(sys.modules.get(m) for m in ("torch", "transformers", "peft"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "adapter-prompt" in out.stdout
    assert "MISSING MissingExtra" in out.stdout and ".[torch]" in out.stdout
