"""Weights directories: round trip, fingerprints, and every kind of broken file."""
import json
import pickle

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from prefixproof.constructions.io import FormatError, load_model, load_prompt, save_model, weights_sha256
from prefixproof.constructions.model import materialize
from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.constructions.theorem2 import Theorem2
from prefixproof.verify.semantics.forward import forward


@pytest.fixture
def built(tmp_path):
    c = Theorem1(11, 6)
    model = materialize(c.model())
    Y = [3, 1, 4, 1, 5, 9]
    d = tmp_path / "w"
    save_model(model, d, np.asarray(c.encode(Y).to_float())[None], {"mode": "sequence"})
    return model, d, c, Y


def test_round_trip_preserves_weights_and_outputs(built):
    model, d, c, Y = built
    loaded = load_model(d)
    assert weights_sha256(loaded) == weights_sha256(model)
    assert loaded.stream == model.stream and loaded.layers[0].attn_out == model.layers[0].attn_out
    Yb = np.array([Y])
    np.testing.assert_array_equal(forward(loaded, Yb[:, :-1], c.encode_batch(Yb)).logits,
                                  forward(model, Yb[:, :-1], c.encode_batch(Yb)).logits)
    soft, info = load_prompt(d, loaded)
    assert soft.shape == (1, model.d_model) and info["mode"] == "sequence"


def test_sparse_weights_round_trip(tmp_path):
    model = materialize(Theorem2(300).model())
    save_model(model, tmp_path / "w")
    table = json.loads((tmp_path / "w" / "config.json").read_text())["tensors"]
    assert table["embed"]["storage"] == "csr"
    assert weights_sha256(load_model(tmp_path / "w")) == weights_sha256(model)


def test_fingerprint_covers_scales():
    c = Theorem1(11, 6)
    assert weights_sha256(c.model()) != weights_sha256(c.model(scale=c.scale - 1))


def _rewrite(d, fn):
    tensors = load_file(str(d / "model.safetensors"))
    fn(tensors)
    save_file(tensors, str(d / "model.safetensors"))


def _edit_config(d, fn):
    cfg = json.loads((d / "config.json").read_text())
    fn(cfg)
    (d / "config.json").write_text(json.dumps(cfg))


def test_missing_directory_and_files(tmp_path, built):
    _, d, _, _ = built
    with pytest.raises(FormatError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (d / "model.safetensors").unlink()
    with pytest.raises(FormatError, match="model.safetensors is missing"):
        load_model(d)


def test_truncated_weights(built):
    _, d, _, _ = built
    raw = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FormatError, match="truncated or corrupt"):
        load_model(d)


def test_corrupt_config(built):
    _, d, _, _ = built
    (d / "config.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_model(d)


def test_wrong_shape(built):
    _, d, _, _ = built
    _rewrite(d, lambda t: t.update({"pos": np.zeros((3, 3))}))
    with pytest.raises(FormatError, match="tensor 'pos' has shape"):
        load_model(d)


def test_nan_weight(built):
    _, d, _, _ = built

    def poison(t):
        t["layers.0.mlp.2.b"] = t["layers.0.mlp.2.b"].copy()
        t["layers.0.mlp.2.b"][3] = np.nan
    _rewrite(d, poison)
    with pytest.raises(FormatError, match="NaN or infinity"):
        load_model(d)


def test_config_that_does_not_match_its_tensors(built):
    _, d, _, _ = built
    _edit_config(d, lambda cfg: cfg["layers"][0]["heads"][0].update({"scale": 1.0}))
    with pytest.raises(FormatError, match="do not belong together"):
        load_model(d)


def test_config_shape_disagreeing_with_space(built):
    _, d, _, _ = built
    _edit_config(d, lambda cfg: cfg["spaces"].update({"stream": {"name": "stream", "blocks": [["x", 5]]}}))
    with pytest.raises(FormatError, match="space .stream. declares 5 labels"):
        load_model(d)


def test_extra_tensor(built):
    _, d, _, _ = built
    _rewrite(d, lambda t: t.update({"surprise": np.zeros(2)}))
    with pytest.raises(FormatError, match="does not describe"):
        load_model(d)


def test_prompt_of_the_wrong_width(built):
    model, d, _, _ = built
    save_file({"virtual_tokens": np.zeros((1, 3))}, str(d / "prompt.safetensors"))
    with pytest.raises(FormatError, match="virtual_tokens must have shape"):
        load_prompt(d, model)


class _Trap:
    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(_Trap.marker),))


def test_loading_never_unpickles(built, tmp_path):
    _, d, _, _ = built
    _Trap.marker = str(tmp_path / "unpickled")
    (d / "model.safetensors").write_bytes(pickle.dumps({"embed": _Trap()}))
    with pytest.raises(FormatError):
        load_model(d)
    assert not (tmp_path / "unpickled").exists()
