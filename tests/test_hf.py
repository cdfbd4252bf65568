"""Hugging Face and PEFT: `AutoModelForCausalLM` loads a built directory and `generate` reproduces the construction;
`PeftModel.from_pretrained(base, DIR)` answers every input of every construction.

The truth is the table config.json records (and our numpy generator); logits of the cached generation and of a
cache-free forward pass must both lie in the enclosure of every float64 execution (verify/certify/layer_loop.py).
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

import prefixproof.hf  # noqa: E402,F401  (registers the Auto classes)
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from clirun import build_all  # noqa: E402
from prefixproof.cli import main  # noqa: E402
from prefixproof.constructions.io import FormatError, load_model, load_prompt  # noqa: E402
from prefixproof.verify.certify.layer_loop import inside, logits_enclosure  # noqa: E402
from prefixproof.verify.semantics.generate import generate as np_generate  # noqa: E402

BUILDS = {
    "theorem1": ["theorem1", "--tokens", "3,1,4,1,5,2", "--vocab", "7"],
    "theorem2": ["theorem2", "--map", "random:1", "--vocab", "6"],
    "long_response": ["long_response", "--map", "random:2", "--vocab", "3", "--length", "2"],
    "multi_token": ["multi_token", "--map", "random:3", "--vocab", "3", "--inputs", "2"],
    "conditional": ["conditional", "--map", "random:4", "--vocab", "2", "--inputs", "2", "--length", "2"],
    "multi_token_packing": ["multi_token_packing", "--map", "random:5", "--vocab", "3", "--inputs", "2"],
}
DTYPES = {"float64": torch.float64, "float32": torch.float32}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("hf"), BUILDS)


def _inputs_and_answers(d):
    """(user inputs (K, L) or None, the answers (K, R) config.json records), as `generate DIR` runs them."""
    info = json.loads((d / "config.json").read_text())["prompt"]
    if info["mode"] == "sequence":
        return None, np.array([info["target_tokens"]])
    if info["mode"] == "per_token":
        m = np.array(info["map_tokens"])
        return np.arange(len(m))[:, None], m[:, None]
    L, R, V = info["inputs"], info["steps"], json.loads((d / "config.json").read_text())["vocab"]
    a = np.arange(V ** L)
    inputs = np.stack([(a // V ** (L - 1 - l)) % V for l in range(L)], axis=1)
    return inputs, np.array(info["table_tokens"]).reshape(V ** L, R)


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_auto_class_generates_the_target_with_its_cache(built, dtype):
    d = built / "theorem1"
    assert type(AutoConfig.from_pretrained(d)).__name__ == "PrefixproofConfig"
    model = AutoModelForCausalLM.from_pretrained(d, dtype=DTYPES[dtype])
    assert type(model).__name__ == "PrefixproofForCausalLM" and model.dtype == DTYPES[dtype]
    assert json.loads((d / "config.json").read_text())["architectures"] == [type(model).__name__]
    names = dict(model.named_parameters())
    assert {"model.embed.weight", "model.pos.weight", "model.layers.0.heads.0.W_Q",
            "model.layers.0.mlp_W2"} <= set(names)
    assert all(isinstance(p, torch.nn.Parameter) for p in names.values()) and not list(model.buffers())
    _, answers = _inputs_and_answers(d)
    Y = answers[0]
    vt = torch.from_numpy(load_file(str(d / "prompt.safetensors"))["virtual_tokens"])[None].to(DTYPES[dtype])
    fed = []
    model.register_forward_pre_hook(lambda m, a, k: fed.append(
        (k["inputs_embeds"] if k.get("inputs_embeds") is not None else k["input_ids"]).shape[1]), with_kwargs=True)
    out = model.generate(inputs_embeds=vt, max_new_tokens=len(Y), do_sample=False, output_logits=True,
                         return_dict_in_generate=True)
    assert out.sequences[0].tolist() == Y.tolist()
    # the same as our numpy generator (the construction's output) ...
    np_model = load_model(d)
    soft, _ = load_prompt(d, np_model)
    assert np_generate(np_model, soft=soft[None]).tokens[0].tolist() == Y.tolist()
    # ... incrementally: the virtual token once, then one new token per step, all kept in the cache
    assert fed == [1] * len(Y) and out.past_key_values.get_seq_length() == len(Y)
    # the same path by hand: the cache filled one position at a time; transformers decides on these logits
    # rounded to float32 (generation/utils.py `_sample` casts them, whatever the model's dtype)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        steps = [model(inputs_embeds=vt, cache=cache).logits[:, -1]]
        steps += [model(input_ids=torch.tensor([[int(y)]]), cache=cache).logits[:, -1] for y in Y[:-1]]
        full = model(inputs_embeds=torch.cat([vt, model.model.embed(torch.from_numpy(Y[None, :-1]))], 1),
                     use_cache=False).logits
    cached = torch.stack(steps, 1)
    assert torch.equal(cached.float(), torch.stack(out.logits, 1))
    assert torch.equal(cached.argmax(-1), full.argmax(-1))
    if dtype == "float64":
        lo, hi = logits_enclosure(np_model, Y[None, :-1], soft[None])
        assert inside(cached.numpy(), lo, hi) and inside(full.numpy(), lo, hi)
        # negative control: a pass that forgets the virtual token leaves the enclosure
        with torch.no_grad():
            blind = model(input_ids=torch.from_numpy(Y[None, :-1]), use_cache=False).logits.numpy()
        assert not inside(blind, lo[:, 1:], hi[:, 1:])


@pytest.mark.parametrize("claim", list(BUILDS))
def test_peft_answers_every_input(built, claim):
    d = built / claim
    inputs, answers = _inputs_and_answers(d)
    for dtype in ("float64", "float32") if claim in ("theorem1", "theorem2") else ("float64",):
        base = AutoModelForCausalLM.from_pretrained(d, dtype=DTYPES[dtype])
        model = peft.PeftModel.from_pretrained(base, d)
        ids = torch.zeros(1, 0, dtype=torch.long) if inputs is None else torch.from_numpy(inputs)
        out = model.generate(input_ids=ids, max_new_tokens=answers.shape[1], do_sample=False)
        assert out[:, ids.shape[1]:].tolist() == answers.tolist(), (claim, dtype)


def test_adapter_files_are_what_peft_writes(built, tmp_path):
    d = built / "theorem2"
    base = AutoModelForCausalLM.from_pretrained(d)
    cfg = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=1)
    peft.get_peft_model(base, cfg).save_pretrained(tmp_path / "peft")
    theirs = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    ours = json.loads((d / "adapter_config.json").read_text())
    assert theirs.pop("base_model_name_or_path") == str(d) and ours.pop("base_model_name_or_path") is None
    assert theirs == ours
    from safetensors import safe_open

    with safe_open(str(tmp_path / "peft" / "adapter_model.safetensors"), "np") as a, \
            safe_open(str(d / "adapter_model.safetensors"), "np") as b:
        assert list(a.keys()) == list(b.keys()) == ["prompt_embeddings"] and a.metadata() == b.metadata()
        assert a.get_tensor("prompt_embeddings").shape == b.get_tensor("prompt_embeddings").shape
        assert a.get_tensor("prompt_embeddings").dtype == np.float32  # PEFT's; ours keeps the float64 values
        assert b.get_tensor("prompt_embeddings").dtype == np.float64


def test_from_pretrained_refuses_a_directory_prefixproof_refuses(built, tmp_path):
    import shutil

    d = tmp_path / "t1"
    shutil.copytree(built / "theorem1", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["layers"][0]["heads"][0]["scale"] *= 2
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FormatError, match="weights_sha256"):
        AutoModelForCausalLM.from_pretrained(d)
    cfg = json.loads((built / "theorem1" / "config.json").read_text())
    cfg["vocab_size"] += 1
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FormatError, match="vocab_size"):
        AutoModelForCausalLM.from_pretrained(d)


def test_every_parameter_has_labelled_axes(built):
    model = AutoModelForCausalLM.from_pretrained(built / "theorem1")
    for name, p in model.named_parameters():
        rows, cols = model.axes(name)
        assert (len(rows), len(cols)) == (p.shape[0], p.shape[1] if p.ndim == 2 else 0), name
    assert model.axes("model.layers.0.heads.0.W_O")[1][0] == "fetch.v:0"
    rows, cols = model.axes("model.layers.0.mlp_W0")
    # select:k reads fetched:k and here:k (constructions/lookup.py): the weights say so under these labels
    W = model.get_parameter("model.layers.0.mlp_W0").detach().numpy()
    sel = rows.index("select:2")
    assert W[sel, cols.index("fetched:2")] == 1 and W[sel, cols.index("here:2")] == 1
    assert W[rows.index("select:2"), cols.index("fetched:3")] == 0


def test_verify_predicts_what_peft_gets_wrong_with_its_float32_prompt(tmp_path, capsys):
    """The packing puts 16 base-4 digits (32 bits) in one coordinate: right in float64, not in PEFT's default
    float32 prompt encoder. `verify` must say so (UNKNOWN, not CHECKED) with the count PEFT really gets wrong."""
    from clirun import run

    d = tmp_path / "pk"
    assert main(["build", "multi_token_packing", "--map", "random:7", "--vocab", "4", "--inputs", "3",
                 "--out", str(d)]) == 0
    code, _, _ = run(capsys, "verify", "--weights", d, "--claim", "multi_token_packing", "--json", tmp_path / "r.json")
    (c,) = json.loads((tmp_path / "r.json").read_text())["claims"]
    a = {o["obligation"]: o for o in c["obligations"]}["adapter-prompt"]
    assert code == 0 and a["verdict"] == "UNKNOWN" and "as PEFT holds it (float32)" in a["reason"]
    predicted = a["details"]["peft_float32"]["wrong_inputs"]
    inputs, answers = _inputs_and_answers(d)
    wrong = {}
    for dtype in (torch.float32, torch.float64):
        base = AutoModelForCausalLM.from_pretrained(d)
        old = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # the dtype PEFT creates its prompt encoder in
        try:
            model = peft.PeftModel.from_pretrained(base, d)
        finally:
            torch.set_default_dtype(old)
        out = model.generate(input_ids=torch.from_numpy(inputs), max_new_tokens=1, do_sample=False)[:, -1:]
        wrong[dtype] = int((out.numpy() != answers).any(axis=1).sum())
    assert wrong[torch.float32] == predicted > 0 and wrong[torch.float64] == 0


def test_without_the_cache_alias_peft_reinjects_the_prompt(built, monkeypatch):
    """Negative control for prepare_inputs_for_generation: with transformers' own version, peft 0.21.2 does not
    see the cache and puts the virtual token before every new token, so theorem1 no longer generates its target."""
    from transformers import GenerationMixin

    d = built / "theorem1"
    _, answers = _inputs_and_answers(d)
    monkeypatch.setattr(prefixproof.hf.PrefixproofForCausalLM, "prepare_inputs_for_generation",
                        GenerationMixin.prepare_inputs_for_generation)
    model = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(d), d)
    fed = []
    model.base_model.register_forward_pre_hook(lambda m, a, k: fed.append(k["inputs_embeds"].shape[1]
                                               if k.get("inputs_embeds") is not None else None), with_kwargs=True)
    try:
        out = model.generate(input_ids=torch.zeros(1, 0, dtype=torch.long), max_new_tokens=answers.shape[1],
                             do_sample=False).tolist()
    except ValueError as e:  # the re-injected tokens run past the context
        out = str(e)
    assert fed[:2] == [1, 2] and out != answers.tolist()
