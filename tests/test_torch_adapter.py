"""The PyTorch adapter: exported weights directories run in torch exactly as our numpy evaluator runs them."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from prefixproof.constructions.io import FormatError, exact_prompt, save_model  # noqa: E402
from prefixproof.constructions.model import materialize  # noqa: E402
from prefixproof.constructions.theorem1 import Theorem1  # noqa: E402
from prefixproof.constructions.theorem2 import Theorem2  # noqa: E402
from prefixproof.verify.crosscheck import torch_model as torch_adapter  # noqa: E402
from prefixproof.verify.certify.layer_loop import inside, logits_enclosure  # noqa: E402
from prefixproof.verify.semantics.forward import forward  # noqa: E402
from prefixproof.verify.crosscheck.torch_model import load_torch_model, load_torch_prompt  # noqa: E402
from prefixproof.verify.verdict import Verdict  # noqa: E402
from prefixproof.crosscheck.constructions import check_directory  # noqa: E402

from models import random_model  # noqa: E402


@pytest.fixture
def t1_dir(tmp_path):
    c = Theorem1(11, 6)
    Y = [3, 1, 4, 1, 5, 9]
    d = tmp_path / "t1"
    save_model(materialize(c.model()), d, exact_prompt(c.encode(Y)), {"mode": "sequence", "target_tokens": Y})
    return d, c, Y


def test_theorem1_logits_and_generation_match_numpy(t1_dir):
    d, c, Y = t1_dir
    model = materialize(c.model())
    tm = load_torch_model(d)
    soft = load_torch_prompt(d)[None]
    tokens = np.array([Y[:-1]])
    lt = tm(torch.from_numpy(tokens), soft).numpy()
    ln = forward(model, tokens, soft.numpy()).logits
    lo, hi = logits_enclosure(model, tokens, soft.numpy())
    assert inside(lt, lo, hi) and inside(ln, lo, hi)
    assert np.array_equal(lt.argmax(-1)[0], Y)
    gen = tm.generate(soft)
    assert gen.tokens.tolist() == [Y] and bool((gen.margins > 0).all())


def test_check_directory_rows_and_scale_control(t1_dir):
    d, _, _ = t1_dir
    rows = check_directory("t1", d, low=("float32", "bfloat16"))
    by = {r.obligation: r for r in rows}
    assert by["float64 logits"].verdict is Verdict.CHECKED
    assert by["float64 logits"].details["max_error"] <= by["float64 logits"].details["tolerance"]
    assert by["float64 greedy generation"].verdict is Verdict.CHECKED
    ctrl = by["control: implicit 1/sqrt(d_k) scale"]
    assert ctrl.details["control"] and ctrl.verdict is Verdict.FALSIFIED
    assert by["float32 decode vs precision report"].verdict is Verdict.CHECKED
    assert "interval path: CERTIFIED" in by["float32 decode vs precision report"].details["interval_verdict"]
    assert by["bfloat16 decode vs precision report"].verdict in (Verdict.CHECKED, Verdict.UNKNOWN)


def test_csr_tensors_load_through_torch(tmp_path):
    c = Theorem2(300)
    m = [int(x) for x in np.random.default_rng(3).integers(0, 300, 300)]
    d = tmp_path / "t2"
    save_model(materialize(c.model()), d, exact_prompt(c.encode(m)), {"mode": "per_token", "map_tokens": m})
    table = json.loads((d / "config.json").read_text())["tensors"]
    assert any(e["storage"] == "csr" for e in table.values())
    rows = check_directory("t2", d, low=())
    assert [r.verdict for r in rows] == [Verdict.CHECKED, Verdict.CHECKED, Verdict.FALSIFIED]
    assert rows[0].details["decoded_identical"] and rows[0].min_margin > 0


@pytest.mark.parametrize("causal, residual", [(True, True), (False, False)])
def test_flags_follow_the_semantics(tmp_path, causal, residual):
    rng = np.random.default_rng(11)
    model = random_model(rng, causal=causal, residual=residual, sparse=True)
    save_model(model, tmp_path / "r")
    tokens = rng.integers(0, model.vocab.size, size=(4, 7))
    lt = load_torch_model(tmp_path / "r")(torch.from_numpy(tokens)).numpy()
    lo, hi = logits_enclosure(model, tokens, None)
    assert inside(lt, lo, hi)
    # negative control: flipping the causal flag in torch leaves the enclosure
    tm = load_torch_model(tmp_path / "r")
    for layer in tm.layers:
        layer.causal = not causal
    assert not inside(tm(torch.from_numpy(tokens)).numpy(), lo, hi)


def test_layernorm_agrees_within_a_forward_error_budget(tmp_path):
    """LayerNorm models are outside the enclosure. Budget: 2^10 float64 roundings of the largest logit,
    a heuristic forward-error allowance (a few layers of length <= 8 dot products, LN and softmax); the
    control (LN eps 1e-5 -> 1e-1) must exceed it."""
    rng = np.random.default_rng(5)
    model = random_model(rng, layernorm=True, residual=True)
    save_model(model, tmp_path / "ln")
    tokens = rng.integers(0, model.vocab.size, size=(3, 6))
    ln = forward(model, tokens).logits
    budget = 2**10 * np.finfo(np.float64).eps * max(1.0, float(np.abs(ln).max()))
    tm = load_torch_model(tmp_path / "ln")
    assert np.abs(tm(torch.from_numpy(tokens)).numpy() - ln).max() <= budget
    for layer in tm.layers:
        layer.ln_eps = 1e-1
    assert np.abs(tm(torch.from_numpy(tokens)).numpy() - ln).max() > budget


def test_bad_directories_are_one_line_format_errors(tmp_path, t1_dir, monkeypatch):
    with pytest.raises(FormatError, match="does not exist"):
        load_torch_model(tmp_path / "nowhere")
    save_model(random_model(np.random.default_rng(0), sparse=True), tmp_path / "csr")
    monkeypatch.setattr(torch_adapter, "DENSE_LIMIT", 10)
    with pytest.raises(FormatError, match="too large for the dense PyTorch adapter"):
        load_torch_model(tmp_path / "csr")
    monkeypatch.undo()
    d, _, _ = t1_dir
    raw = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(FormatError, match="truncated or corrupt"):
        load_torch_model(d)
