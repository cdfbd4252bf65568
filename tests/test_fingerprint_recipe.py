"""docs/format.md, section Fingerprint: the directory fingerprint recomputed from the documented recipe alone.

`recipe` below is an independent implementation that uses only hashlib, json, numpy and safetensors (nothing of
prefixproof); prefixproof is used only to build the directories. It must reproduce the recorded object exactly,
and (negative control) an edit of any covered part must change it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def _file_digest(path: Path) -> str:
    tensors = load_file(str(path))
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<"))  # little-endian
        h.update(_canonical([name, a.dtype.str, list(a.shape)]) + b"\n")
        h.update(a.tobytes(order="C"))
    return h.hexdigest()


def recipe(directory: Path) -> dict:
    """Steps 1-4 of docs/format.md, section Fingerprint."""
    config = json.loads((directory / "config.json").read_text())
    config.pop("fingerprint", None)
    parts = {"version": 1, "config.json": hashlib.sha256(_canonical(config)).hexdigest(),
             "model.safetensors": _file_digest(directory / "model.safetensors")}
    if "prompt" in config:
        parts["prompt.safetensors"] = _file_digest(directory / "prompt.safetensors")
    return {**parts, "sha256": hashlib.sha256(_canonical(parts)).hexdigest()}


BUILDS = {
    "theorem1": ["theorem1", "--target", "Hi ~"],
    "theorem2-csr": ["theorem2", "--vocab", "300", "--map", "shift:7"],
    "multi_token": ["multi_token", "--vocab", "3", "--inputs", "2", "--map", "random:2"],
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from clirun import build_all  # only to build the directories (the recipe below uses no prefixproof code)

    return build_all(tmp_path_factory.mktemp("fp"), BUILDS)


@pytest.mark.parametrize("name", list(BUILDS))
def test_the_documented_recipe_reproduces_the_recorded_fingerprint(built, name):
    d = built / name
    recorded = json.loads((d / "config.json").read_text())["fingerprint"]
    assert recipe(d) == recorded
    if name == "theorem2-csr":  # the CSR parts (int64 indices) are covered too
        assert any(k.endswith(".indices") for k in load_file(str(d / "model.safetensors")))


def test_a_directory_without_a_prompt(tmp_path):
    from prefixproof.constructions.io import save_model
    from prefixproof.constructions.theorem2 import Theorem2

    save_model(Theorem2(4).model(), tmp_path)
    recorded = json.loads((tmp_path / "config.json").read_text())["fingerprint"]
    assert "prompt.safetensors" not in recorded and recipe(tmp_path) == recorded


@pytest.mark.parametrize("edit", ["config value", "config key order", "weight", "prompt"])
def test_every_covered_part_changes_it_and_layout_does_not(built, tmp_path, edit):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(built / "theorem1", d)
    before = recipe(d)
    cfg = json.loads((d / "config.json").read_text())
    if edit == "config value":
        cfg["layers"][0]["causal"] = not cfg["layers"][0]["causal"]
        (d / "config.json").write_text(json.dumps(cfg))
    elif edit == "config key order":  # the same values, other layout: the same fingerprint
        (d / "config.json").write_text(json.dumps(dict(reversed(list(cfg.items())))))
    else:
        f = d / ("model.safetensors" if edit == "weight" else "prompt.safetensors")
        t = load_file(str(f))
        name = "pos" if edit == "weight" else "virtual_tokens"
        t[name] = t[name].copy()
        t[name].flat[0] = np.nextafter(t[name].flat[0], np.inf)  # one ulp
        save_file(t, str(f))
    after = recipe(d)
    if edit == "config key order":
        assert after == before
    else:
        changed = {"config value": "config.json", "weight": "model.safetensors", "prompt": "prompt.safetensors"}[edit]
        assert after[changed] != before[changed] and after["sha256"] != before["sha256"]
        assert all(after[k] == before[k] for k in before if k not in (changed, "sha256"))
