"""stored-prompt: `verify --weights DIR` covers the directory's own prompt.safetensors (issue 9, item 6).

The truth is what `generate DIR` prints for every input, compared with the table config.json records;
the unedited directories reproduce it, the edited prompts (another target, garbage, two virtual tokens)
do not, and their verdicts must say so, showing both sides.
"""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from prefixproof.constructions.io import refresh_fingerprint
from clirun import build_all, copy_built, run  # noqa: E402

BUILDS = {
    "theorem1": ["theorem1", "--tokens", "1,2,0", "--vocab", "3"],
    "theorem2": ["theorem2", "--map", "random:1", "--vocab", "4"],
    "long_response": ["long_response", "--map", "random:2", "--vocab", "3", "--length", "2"],
    "multi_token": ["multi_token", "--map", "random:3", "--vocab", "3", "--inputs", "2"],
    "conditional": ["conditional", "--map", "random:4", "--vocab", "2", "--inputs", "2", "--length", "2"],
    "multi_token_packing": ["multi_token_packing", "--map", "random:5", "--vocab", "3", "--inputs", "2"],
}




@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("dirs"), BUILDS)


def _verify(capsys, tmp_path, d, claim, *extra):
    report = tmp_path / f"{claim}.json"
    code, out, _ = run(capsys, "verify", "--weights", d, "--claim", claim, "--json", report, *extra)
    doc = json.loads(report.read_text())
    (c,) = doc["claims"]
    return code, out, c, {o["obligation"]: o for o in c["obligations"]}


def _generate_all(capsys, d):
    """What `generate DIR` prints for every user input (the directory's own behaviour), and the recorded table."""
    cfg = json.loads((d / "config.json").read_text())
    info, V = cfg["prompt"], cfg["vocab"]
    if info["mode"] == "sequence":
        code, out, _ = run(capsys, "generate", d)
        assert code == 0
        return [out.strip()], [",".join(map(str, info["target_tokens"]))]
    if info["mode"] == "per_token":
        code, out, _ = run(capsys, "generate", d, "--input", ",".join(map(str, range(V))))
        assert code == 0
        return out.strip().split(","), [str(t) for t in info["map_tokens"]]
    L = info["inputs"]
    inputs = [[(a // V ** (L - 1 - l)) % V for l in range(L)] for a in range(V ** L)]
    code, out, _ = run(capsys, "generate", d, "--input", ",".join(str(t) for i in inputs for t in i))
    assert code == 0
    return out.split(), [",".join(map(str, row)) for row in info["table_tokens"]]


@pytest.mark.parametrize("claim", list(BUILDS))
def test_unedited_directories_pass(capsys, built, tmp_path, claim):
    generated, recorded = _generate_all(capsys, built / claim)
    assert generated == recorded  # independent truth: the directory does what it records
    code, out, c, obs = _verify(capsys, tmp_path, built / claim, claim)
    sp = obs["stored-prompt"]
    assert sp["verdict"] == "CHECKED" and sp["coverage"]["covered"] == len(recorded)
    assert code == 0 and "agreement" not in obs


def _edit_prompt(d, fn, virtual=None):
    vt = load_file(str(d / "prompt.safetensors"))["virtual_tokens"]
    save_file({"virtual_tokens": np.ascontiguousarray(fn(vt))}, str(d / "prompt.safetensors"))
    if virtual is not None:
        cfg = json.loads((d / "config.json").read_text())
        cfg["prompt"]["virtual_tokens"] = virtual
        (d / "config.json").write_text(json.dumps(cfg))
    refresh_fingerprint(d)  # an edit made by hand, fingerprint refreshed: judged on its content


def _payload_index(d, block):
    cfg = json.loads((d / "config.json").read_text())
    labels = []
    for name, size in cfg["spaces"]["stream"]["blocks"]:
        labels += [name] if size is None else [f"{name}:{k}" for k in range(size)]
    return [i for i, lab in enumerate(labels) if lab.startswith(block + ":")]


def _one_line(out):
    return " ".join(line.strip() for line in out.splitlines())


def _assert_falsified_both_sides(capsys, tmp_path, d, claim, *, stored_side):
    generated, recorded = _generate_all(capsys, d)
    assert generated != recorded  # the edit really breaks the directory's own generation
    code, out, c, obs = _verify(capsys, tmp_path, d, claim)
    sp = obs["stored-prompt"]
    assert sp["verdict"] == "FALSIFIED" and c["verdict"] != "CHECKED" and code != 0
    reason = sp["reason"]
    wrong = next(i for i, (g, r) in enumerate(zip(generated, recorded)) if g != r)
    # both sides: what config.json records and what the stored prompt holds / generates
    assert "config.json records" in reason and recorded[wrong] in reason
    assert stored_side in reason
    assert f"generated '{generated[wrong]}'" in reason
    assert reason in _one_line(out)  # the terminal shows the whole reason (wrapped, not cut)
    return sp


def test_prompt_for_another_target_is_falsified(capsys, built, tmp_path):
    d = copy_built(built, tmp_path, "theorem1")
    idx = _payload_index(d, "target")

    def other(vt):
        vt = vt.copy()
        vt[0, idx] = np.array([2, 0, 1]) / 3
        return vt
    _edit_prompt(d, other)
    sp = _assert_falsified_both_sides(capsys, tmp_path, d, "theorem1", stored_side="prompt.safetensors encodes '2,0,1'")
    assert "about" not in sp["details"]  # on the grid and generating what it encodes: no decode counterexample


def test_garbage_prompt_is_falsified(capsys, built, tmp_path):
    d = copy_built(built, tmp_path, "theorem2")
    _edit_prompt(d, lambda vt: np.random.default_rng(0).normal(size=vt.shape))
    code, out, c, obs = _verify(capsys, tmp_path, d, "theorem2")
    _assert_falsified_both_sides(capsys, tmp_path, d, "theorem2", stored_side="off the float64 grid")
    # an off-grid prompt is not an input of `decode`: no claim-level contradiction is invented
    assert obs["decode"]["verdict"] == "CERTIFIED" and "agreement" not in obs


def test_two_virtual_tokens_where_the_claim_has_one(capsys, built, tmp_path):
    d = copy_built(built, tmp_path, "theorem1")
    _edit_prompt(d, lambda vt: np.concatenate([vt, vt]), virtual=2)
    _assert_falsified_both_sides(capsys, tmp_path, d, "theorem1", stored_side="has 2 virtual token(s); theorem1")


def test_table_claim_prompt_mismatch_names_the_input(capsys, built, tmp_path):
    d = copy_built(built, tmp_path, "multi_token")
    idx = _payload_index(d, "table")
    _edit_prompt(d, lambda vt: np.where(np.isin(np.arange(vt.shape[1]), idx[:1]), (vt + 1 / 3) % 1, vt))
    code, out, c, obs = _verify(capsys, tmp_path, d, "multi_token")
    sp = obs["stored-prompt"]
    generated, recorded = _generate_all(capsys, d)
    assert sp["verdict"] == "FALSIFIED" and generated[0] != recorded[0]
    assert "input 0,0: generated" in sp["reason"] and "table_tokens" in sp["reason"]


def test_packing_prompt_off_its_digit_grid(capsys, built, tmp_path):
    d = copy_built(built, tmp_path, "multi_token_packing")
    idx = _payload_index(d, "pay")
    _edit_prompt(d, lambda vt: np.where(np.isin(np.arange(vt.shape[1]), idx[:1]), vt + 1e-3, vt))
    code, out, c, obs = _verify(capsys, tmp_path, d, "multi_token_packing")
    assert obs["stored-prompt"]["verdict"] == "FALSIFIED" and "packed value" in obs["stored-prompt"]["reason"]


def test_directory_without_a_recorded_table_is_unknown(capsys, built, tmp_path):
    d = copy_built(built, tmp_path, "conditional")
    cfg = json.loads((d / "config.json").read_text())
    del cfg["prompt"]["table_tokens"]
    (d / "config.json").write_text(json.dumps(cfg))
    refresh_fingerprint(d)
    code, out, c, obs = _verify(capsys, tmp_path, d, "conditional")
    assert obs["stored-prompt"]["verdict"] == "UNKNOWN" and "records no prompt.table_tokens" in obs["stored-prompt"]["reason"]


def test_constructions_without_a_directory_have_no_stored_prompt_obligation(capsys):
    code, out, _ = run(capsys, "verify", "theorem1", "--vocab", "3", "--length", "2")
    assert code == 0 and "stored-prompt" not in out


def _edit_config(d, fn):
    cfg = json.loads((d / "config.json").read_text())
    fn(cfg["prompt"])
    (d / "config.json").write_text(json.dumps(cfg))
    refresh_fingerprint(d)


@pytest.mark.parametrize("edit, why", [
    (lambda info: info.__setitem__("steps", 1), "steps"),  # generate answers one token where the table has more
    (lambda info: info.pop("virtual_tokens"), "virtual tokens"),  # generate refuses the directory
    (lambda info: info.__setitem__("mode", "per_token"), "mode"),
])
def test_a_config_that_makes_generate_differ_is_falsified(capsys, built, tmp_path, edit, why):
    d = copy_built(built, tmp_path, "long_response")
    _edit_config(d, edit)
    # independent truth: `generate DIR` no longer answers the recorded table (or refuses to run)
    cfg = json.loads((d / "config.json").read_text())
    V, rec = cfg["vocab"], [",".join(map(str, row)) for row in cfg["prompt"]["table_tokens"]]
    code, out, _ = run(capsys, "generate", d, "--input", ",".join(str(u) for u in range(V)))
    assert code != 0 or out.split() != rec
    code, out, c, obs = _verify(capsys, tmp_path, d, "long_response")
    sp = obs["stored-prompt"]
    assert sp["verdict"] == "FALSIFIED" and why in sp["reason"]


def test_demanded_margin_above_the_stored_prompts_margin_is_not_checked(capsys, built, tmp_path):
    d = built / "theorem2"
    _, _, _, obs = _verify(capsys, tmp_path, d, "theorem2")
    attained = obs["stored-prompt"]["min_margin"]
    _, _, _, obs = _verify(capsys, tmp_path, d, "theorem2", "--min-margin", str(attained * 1.5))
    assert obs["stored-prompt"]["verdict"] != "CHECKED"


def test_sparse_weights_run_in_float16(capsys, tmp_path):
    # V=400 stores its large matrices as CSR; real float16 execution must run them, not fail
    d = tmp_path / "big"
    assert run(capsys, "build", "theorem2", "--map", "random:1", "--vocab", "400", "--out", d)[0] == 0
    cfg = json.loads((d / "config.json").read_text())
    assert any(t.get("storage") == "csr" for t in cfg["tensors"].values())
    _, _, _, obs = _verify(capsys, tmp_path, d, "theorem2", "--dtype", "float16")
    sp = obs["stored-prompt"]
    assert sp["verdict"] != "ERROR", sp["reason"]
    assert sp["coverage"]["covered"] == 400
