"""The table of bad inputs for tests/test_bad_inputs.py: (id, argv, set-up, exit status, text the one line names).

Every path in argv is relative to a fresh sandbox directory (the working directory of the case), which holds
copies of small built models: t1 (theorem1, target AAAA), t1z (theorem1, target ZZZZ), t2 (theorem2 V=5,
shift:1), mt (multi_token V=3, L=2). Set-up steps edit that sandbox before the run; nothing in it may change
during the run.
"""
from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from safetensors.numpy import load_file, save_file

DEL = object()
Step = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    setup: tuple[Step, ...] = ()
    code: int = 2
    says: str = ""  # a piece of the one stderr line (case-insensitive): the fix it names
    outputs: tuple[str, ...] = field(default=())  # paths the run may create or change (none for a refusal)


def cfg(d: str, keys: tuple, value: Any) -> Step:
    """Set (or with DEL remove) one field of d/config.json, e.g. cfg("t1", ("layers", 0, "causal"), "false")."""
    def step(box: Path) -> None:
        p = box / d / "config.json"
        doc = json.loads(p.read_text())
        obj = doc
        for k in keys[:-1]:
            obj = obj[k]
        if value is DEL:
            del obj[keys[-1]]
        else:
            obj[keys[-1]] = value
        p.write_text(json.dumps(doc))
    return step


def cfg_text(d: str, old: str, new: str) -> Step:
    """Replace text in d/config.json (for values JSON cannot carry through json.dumps, such as NaN)."""
    def step(box: Path) -> None:
        p = box / d / "config.json"
        text = p.read_text()
        assert old in text, old
        p.write_text(text.replace(old, new, 1))
    return step


def tensor(d: str, file: str, name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Step:
    def step(box: Path) -> None:
        p = box / d / file
        t = load_file(str(p))
        t[name] = np.ascontiguousarray(fn(t[name].copy()))
        save_file(t, str(p))
    return step


def put(rel: str, content: str | bytes) -> Step:
    def step(box: Path) -> None:
        p = box / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return step


def mkdir(rel: str) -> Step:
    return lambda box: (box / rel).mkdir(parents=True, exist_ok=True)


def link(rel: str, target: str) -> Step:
    return lambda box: (box / rel).symlink_to(target)


def rm(rel: str) -> Step:
    return lambda box: (box / rel).unlink()


def copy(src: str, dst: str) -> Step:
    return lambda box: shutil.copyfile(box / src, box / dst)


def _set(value: float, at: tuple = (0, 0)) -> Callable[[np.ndarray], np.ndarray]:
    def fn(a: np.ndarray) -> np.ndarray:
        a[at if a.ndim == 2 else at[0]] = value
        return a
    return fn


DEEP = "[" * 100000 + "]" * 100000
BIGINT = "[" + "9" * 5000 + "]"
REPLAY = {"format": "prefixproof-fuzz-failure", "format_version": 1, "property": "prefix_rescale"}
NOTES = put("notes.txt", "my own notes\n")
JD = mkdir("jd")
AFILE = put("afile", "a plain file\n")
T1 = ("build", "theorem1", "--target", "AB")


def _g(cid: str, *steps: Step, says: str = "", d: str = "t1", argv: tuple = ()) -> Case:
    """`generate` on an edited copy of a built directory."""
    return Case(f"generate-{cid}", ("generate", d, *argv), steps, 2, says)


def _v(cid: str, *argv: str, setup: tuple = (), says: str = "", code: int = 2) -> Case:
    return Case(f"verify-{cid}", ("verify", *argv), setup, code, says)


def _b(cid: str, *argv: str, setup: tuple = (), says: str = "") -> Case:
    return Case(f"build-{cid}", ("build", *argv), setup, 2, says)


def _json(cmd: str, *argv: str) -> list[Case]:
    """The --json checks every command that has --json shares."""
    return [
        Case(f"{cmd}-json-dir", (cmd, *argv, "--json", "jd"), (JD,), 2, "is a directory"),
        Case(f"{cmd}-json-empty", (cmd, *argv, "--json", ""), (), 2, "--json is empty"),
        Case(f"{cmd}-json-no-parent", (cmd, *argv, "--json", "nodir/r.json"), (), 2, "does not exist"),
        Case(f"{cmd}-json-parent-is-file", (cmd, *argv, "--json", "afile/r.json"), (AFILE,), 2, "does not exist"),
        Case(f"{cmd}-json-not-ours", (cmd, *argv, "--json", "notes.txt"), (NOTES,), 2, "not a prefixproof report"),
        Case(f"{cmd}-json-model-config", (cmd, *argv, "--json", "t1/config.json"), (), 2, "not a prefixproof report"),
    ]


VERIFY = [
    _v("unknown-claim", "nosuch", says="unknown claim"),
    _v("vocab-0", "theorem2", "--vocab", "0", says="--vocab"),
    _v("vocab-negative", "theorem2", "--vocab", "-3", says="--vocab"),
    _v("vocab-text", "theorem2", "--vocab", "x", says="not an integer"),
    _v("vocab-float", "theorem2", "--vocab", "1.5", says="not an integer"),
    _v("vocab-superscript", "theorem2", "--vocab", "²", says="not an integer"),
    _v("length-0", "theorem1", "--length", "0", says="--length"),
    _v("samples-0", "theorem1", "--samples", "0", says="--samples"),
    _v("seed-negative", "theorem1", "--seed", "-1", says="seed"),
    _v("seed-text", "theorem1", "--seed", "abc", says="seed"),
    _v("dtype", "theorem1", "--dtype", "float8", says="invalid choice"),
    _v("level", "theorem1", "--level", "bogus", says="invalid choice"),
    _v("min-margin-nan", "theorem2", "--vocab", "3", "--min-margin", "nan", says="--min-margin"),
    _v("min-margin-negative", "theorem2", "--vocab", "3", "--min-margin", "-1", says="--min-margin"),
    _v("min-margin-inf", "theorem2", "--vocab", "3", "--min-margin", "inf", says="--min-margin"),
    _v("min-margin-text", "theorem2", "--vocab", "3", "--min-margin", "abc", says="--min-margin"),
    _v("param-unknown", "theorem2", "--param", "R=3", says="no parameter"),
    _v("param-no-equals", "long_response", "--param", "R", says="NAME=VALUE"),
    _v("param-text", "long_response", "--param", "R=x", says="not an integer"),
    _v("param-superscript", "long_response", "--param", "R=²", says="not an integer"),
    _v("param-bad-name", "long_response", "--param", "1R=3", says="NAME=VALUE"),
    _v("claim-without-weights", "--claim", "theorem1", says="--claim goes with --weights"),
    _v("weights-without-claim", "--weights", "t1", says="--weights needs --claim"),
    _v("weights-empty-path", "--weights", "", "--claim", "theorem1", says="--weights is empty"),
    _v("weights-missing", "--weights", "nowhere", "--claim", "theorem1", says="does not exist"),
    _v("weights-is-file", "--weights", "afile", "--claim", "theorem1", setup=(AFILE,), says="does not exist"),
    _v("weights-with-vocab", "--weights", "t1", "--claim", "theorem1", "--vocab", "3", says="drop --vocab"),
    _v("weights-two-claims", "--weights", "t1", "--claim", "theorem1", "theorem2", says="--claim only"),
    _v("weights-claim-unknown", "--weights", "t1", "--claim", "bogus", says="invalid choice"),
    _v("weights-wrong-claim", "--weights", "t1", "--claim", "theorem2", says="residual-stream block"),
    _v("weights-causal-string", "--weights", "t1", "--claim", "theorem1",
       setup=(cfg("t1", ("layers", 0, "causal"), "false"),), says="layers[0].causal"),
    _v("weights-prompt-of-other-build", "--weights", "t1", "--claim", "theorem1",
       setup=(copy("t1z/prompt.safetensors", "t1/prompt.safetensors"),), says="fingerprint mismatch in prompt"),
    _v("weights-config-of-other-build", "--weights", "t1", "--claim", "theorem1",
       setup=(copy("t1z/config.json", "t1/config.json"),), says="fingerprint mismatch in prompt"),
    _v("json-own-config", "--weights", "t1", "--claim", "theorem1", "--json", "t1/config.json", says="input of this run"),
    _v("json-inside-weights", "--weights", "t1", "--claim", "theorem1", "--json", "t1/r.json", says="input of this run"),
    _v("unknown-flag", "theorem1", "--bogus", says="unrecognized"),
    *_json("verify", "theorem2", "--vocab", "3"),
]

BUILD = [
    _b("no-construction", says="required"),
    _b("no-out", "theorem1", "--target", "AB", says="--out"),
    _b("out-empty", "theorem1", "--target", "AB", "--out", "", says="--out is empty"),
    _b("out-blank", "theorem1", "--target", "AB", "--out", "  ", says="--out is empty"),
    _b("out-is-file", "theorem1", "--target", "AB", "--out", "afile", setup=(AFILE,), says="existing file"),
    _b("out-user-dir", "theorem1", "--target", "AB", "--out", "u",
       setup=(put("u/config.json", "{}"), put("u/model.safetensors", "x"), put("u/notes.txt", "mine")),
       says="did not write"),
    _b("out-user-dir-force", "theorem1", "--target", "AB", "--out", "u", "--force",
       setup=(put("u/notes.txt", "mine"),), says="did not write"),
    _b("out-model-dir-no-force", "theorem1", "--target", "AB", "--out", "t1", says="--force"),
    _b("out-model-dir-extra-file", "theorem1", "--target", "AB", "--out", "t1", "--force",
       setup=(put("t1/README", "mine"),), says="did not write"),
    _b("out-model-dir-subdir", "theorem1", "--target", "AB", "--out", "t1", "--force",
       setup=(mkdir("t1/sub"),), says="did not write"),
    _b("out-garbage-config", "theorem1", "--target", "AB", "--out", "g", "--force",
       setup=(put("g/config.json", "not json"),), says="not a prefixproof model"),
    _b("out-other-format-config", "theorem1", "--target", "AB", "--out", "g", "--force",
       setup=(put("g/config.json", '{"format": "other"}'),), says="not a prefixproof model"),
    _b("out-symlink-inside", "theorem1", "--target", "AB", "--out", "s", "--force",
       setup=(put("outside.txt", "outside"), mkdir("s"), link("s/config.json", "../outside.txt")),
       says="symbolic link"),
    _b("out-symlink-inside-model", "theorem1", "--target", "AB", "--out", "t1", "--force",
       setup=(put("outside.txt", "outside"), rm("t1/prompt.safetensors"),
              link("t1/prompt.safetensors", "../outside.txt")), says="symbolic link"),
    _b("out-is-symlink", "theorem1", "--target", "AB", "--out", "ln", "--force",
       setup=(link("ln", "t1"),), says="symbolic link"),
    _b("out-dangling-symlink", "theorem1", "--target", "AB", "--out", "ln", setup=(link("ln", "nowhere"),),
       says="symbolic link"),
    _b("out-no-parent", "theorem1", "--target", "AB", "--out", "nodir/x", says="does not exist"),
    _b("out-parent-is-file", "theorem1", "--target", "AB", "--out", "afile/x", setup=(AFILE,), says="does not exist"),
    _b("target-empty", "theorem1", "--target", "", "--out", "o", says="--target is empty"),
    _b("target-non-ascii", "theorem1", "--target", "é", "--out", "o", says="--target"),
    _b("target-too-long-for-length", "theorem1", "--target", "ABC", "--length", "2", "--out", "o", says="must fit"),
    _b("target-with-vocab", "theorem1", "--target", "AB", "--vocab", "10", "--out", "o", says="--tokens"),
    _b("tokens-without-vocab", "theorem1", "--tokens", "1,2", "--out", "o", says="--vocab"),
    _b("tokens-text", "theorem1", "--tokens", "1,x", "--vocab", "5", "--out", "o", says="--tokens"),
    _b("tokens-out-of-range", "theorem1", "--tokens", "1,9", "--vocab", "5", "--out", "o", says="--tokens"),
    _b("tokens-negative", "theorem1", "--tokens", "1,-1", "--vocab", "5", "--out", "o", says="--tokens"),
    _b("target-and-tokens", "theorem1", "--target", "AB", "--tokens", "1", "--out", "o", says="not allowed"),
    _b("vocab-0", "theorem1", "--tokens", "0", "--vocab", "0", "--out", "o", says="--vocab"),
    _b("vocab-1", "theorem1", "--tokens", "0", "--vocab", "1", "--out", "o", says="V"),
    _b("map-shift-superscript", "theorem2", "--map", "shift:²", "--out", "o", says="shift"),
    _b("map-shift-text", "theorem2", "--map", "shift:x", "--out", "o", says="not a map spec"),
    _b("map-shift-huge", "theorem2", "--map", "shift:" + "9" * 40, "--out", "o", says="not a map spec"),
    _b("map-random-negative", "theorem2", "--map", "random:-1", "--out", "o", says="seed >= 0"),
    _b("map-random-empty", "theorem2", "--map", "random:", "--out", "o", says="not a map spec"),
    _b("map-random-superscript", "theorem2", "--map", "random:²", "--out", "o", says="not a map spec"),
    _b("map-bogus", "theorem2", "--map", "bogus", "--out", "o", says="not a map spec"),
    _b("map-const-two-tokens", "theorem2", "--map", "const:AB", "--out", "o", says="2 tokens"),
    _b("map-tr-unequal", "theorem2", "--map", "ab->x", "--out", "o", says="not a map spec"),
    _b("map-tr-twice", "theorem2", "--map", "aa->xy", "--out", "o", says="mapped twice"),
    _b("map-ids-unequal", "theorem2", "--vocab", "5", "--map", "0,1->2", "--out", "o", says="target tokens"),
    _b("map-ids-out-of-range", "theorem2", "--vocab", "5", "--map", "0,9->1,2", "--out", "o", says="--map source"),
    _b("map-file-empty-path", "theorem2", "--map-file", "", "--out", "o", says="--map-file is empty"),
    _b("map-file-missing", "theorem2", "--map-file", "none.json", "--out", "o", says="does not exist"),
    _b("map-file-deep", "theorem2", "--map-file", "deep.json", "--out", "o", setup=(put("deep.json", DEEP),),
       says="nested too deeply"),
    _b("map-file-bigint", "theorem2", "--map-file", "big.json", "--out", "o", setup=(put("big.json", BIGINT),),
       says="too long to read"),
    _b("map-file-not-json", "theorem2", "--map-file", "m.json", "--out", "o", setup=(put("m.json", "{a: b"),),
       says="not valid JSON"),
    _b("map-file-binary", "theorem2", "--map-file", "m.json", "--out", "o", setup=(put("m.json", b"\xff\xfe\x00"),),
       says="not valid JSON"),
    _b("map-file-pickle", "theorem2", "--map-file", "m.json", "--out", "o",
       setup=(put("m.json", pickle.dumps({"a": "b"})),), says="not valid JSON"),
    _b("map-file-duplicate-key", "theorem2", "--map-file", "m.json", "--out", "o",
       setup=(put("m.json", '{"a": "b", "a": "c"}'),), says="appears twice"),
    _b("map-file-list-length", "theorem2", "--vocab", "5", "--map-file", "m.json", "--out", "o",
       setup=(put("m.json", "[0, 1]"),), says="exactly 5"),
    _b("map-file-list-bool", "theorem2", "--vocab", "2", "--map-file", "m.json", "--out", "o",
       setup=(put("m.json", "[true, 0]"),), says="exactly 2"),
    _b("map-file-value-number", "theorem2", "--map-file", "m.json", "--out", "o",
       setup=(put("m.json", '{"a": 5}'),), says="one-character string"),
    _b("map-file-top-level-string", "theorem2", "--map-file", "m.json", "--out", "o",
       setup=(put("m.json", '"a"'),), says="must hold"),
    _b("map-file-two-char-key", "theorem2", "--map-file", "m.json", "--out", "o",
       setup=(put("m.json", '{"ab": "x"}'),), says="2 tokens"),
    _b("map-file-is-dir", "theorem2", "--map-file", "jd", "--out", "o", setup=(JD,), says="does not exist"),
    _b("table-map-shift", "multi_token", "--vocab", "3", "--map", "shift:1", "--out", "o", says="random:SEED"),
    _b("table-map-random-text", "multi_token", "--vocab", "3", "--map", "random:x", "--out", "o",
       says="not an integer"),
    _b("table-map-random-negative", "multi_token", "--vocab", "3", "--map", "random:-2", "--out", "o", says=">= 0"),
    _b("table-file-empty", "multi_token", "--map-file", "m.json", "--out", "o", setup=(put("m.json", "{}"),),
       says="non-empty"),
    _b("table-file-lengths", "multi_token", "--map-file", "m.json", "--out", "o",
       setup=(put("m.json", '{"a": "b", "ab": "c"}'),), says="different lengths"),
    _b("table-file-L-mismatch", "multi_token", "--inputs", "3", "--map-file", "m.json", "--out", "o",
       setup=(put("m.json", '{"ab": "c"}'),), says="L=3"),
    _b("table-file-response-too-long", "conditional", "--length", "1", "--map-file", "m.json", "--out", "o",
       setup=(put("m.json", '{"ab": "cd"}'),), says="response length"),
    _b("table-file-response-number", "conditional", "--map-file", "m.json", "--out", "o",
       setup=(put("m.json", '{"ab": 3}'),), says="must be a string"),
    _b("table-file-deep", "conditional", "--map-file", "deep.json", "--out", "o", setup=(put("deep.json", DEEP),),
       says="nested too deeply"),
    _b("long-response-inputs", "long_response", "--inputs", "2", "--map", "random:1", "--out", "o",
       says="unrecognized"),
    _b("inputs-0", "multi_token", "--inputs", "0", "--map", "random:1", "--out", "o", says="--inputs"),
]

_PROMPT = "prompt.safetensors"
GENERATE = [
    Case("generate-no-dir", ("generate",), (), 2, "required"),
    Case("generate-empty-dir-path", ("generate", ""), (), 2, "DIR is empty"),
    _g("missing", d="nowhere", says="does not exist"),
    _g("is-file", AFILE, d="afile", says="does not exist"),
    _g("empty-dir", mkdir("e"), d="e", says="config.json is missing"),
    _g("no-model-file", rm("t1/model.safetensors"), says="model.safetensors is missing"),
    _g("no-prompt-file", rm(f"t1/{_PROMPT}"), says="prompt.safetensors is missing"),
    _g("truncated-model", put("t1/model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{"), says="truncated or corrupt"),
    _g("pickle-model", put("t1/model.safetensors", pickle.dumps({"embed": [1.0]})), says="truncated or corrupt"),
    _g("truncated-prompt", put(f"t1/{_PROMPT}", b"\x05"), says="truncated or corrupt"),
    _g("config-not-json", put("t1/config.json", "{not json"), says="not valid JSON"),
    _g("config-deep", put("t1/config.json", DEEP), says="nested too deeply"),
    _g("config-bigint", put("t1/config.json", BIGINT), says="too long to read"),
    _g("config-list", put("t1/config.json", "[]"), says="JSON object"),
    _g("config-binary", put("t1/config.json", b"\xff\xfe"), says="not valid JSON"),
    _g("format", cfg("t1", ("format",), "other"), says="not a prefixproof-model"),
    _g("format-version-2", cfg("t1", ("format_version",), 2), says="format_version"),
    _g("format-version-true", cfg("t1", ("format_version",), True), says="format_version"),
    _g("causal-string", cfg("t1", ("layers", 0, "causal"), "false"), says="layers[0].causal"),
    _g("causal-int", cfg("t1", ("layers", 0, "causal"), 0), says="layers[0].causal"),
    _g("causal-missing", cfg("t1", ("layers", 0, "causal"), DEL), says="layers[0].causal"),
    _g("attn-residual-string", cfg("t1", ("layers", 0, "attn_residual"), "no"), says="attn_residual"),
    _g("mlp-residual-null", cfg("t1", ("layers", 0, "mlp_residual"), None), says="mlp_residual"),
    _g("vocab-float", cfg("t1", ("vocab",), 95.0), says="'vocab'"),
    _g("vocab-bool", cfg("t1", ("vocab",), True), says="'vocab'"),
    _g("vocab-string", cfg("t1", ("vocab",), "95"), says="'vocab'"),
    _g("vocab-huge", cfg("t1", ("vocab",), 10 ** 12), says="'vocab'"),
    _g("vocab-mismatch", cfg("t1", ("vocab",), 50), says="t1"),
    _g("n-ctx-string", cfg("t1", ("n_ctx",), "4"), says="n_ctx"),
    _g("n-ctx-mismatch", cfg("t1", ("n_ctx",), 7), says="n_ctx"),
    _g("alphabet", cfg("t1", ("alphabet",), "latin-1"), says="alphabet"),
    _g("unembed-string", cfg("t1", ("unembed",), "no"), says="unembed"),
    _g("scale-string", cfg("t1", ("layers", 0, "heads", 0, "scale"), "7.75"), says="scale"),
    _g("scale-huge", cfg("t1", ("layers", 0, "heads", 0, "scale"), 1e300), says="scale"),
    _g("scale-bool", cfg("t1", ("layers", 0, "heads", 0, "scale"), True), says="scale"),
    _g("scale-nan", cfg_text("t1", '"scale": 7.75', '"scale": NaN'), says="scale"),
    _g("scale-infinity", cfg_text("t1", '"scale": 7.75', '"scale": Infinity'), says="scale"),
    _g("scale-changed", cfg("t1", ("layers", 0, "heads", 0, "scale"), 3.0), says="do not belong together"),
    _g("head-name-number", cfg("t1", ("layers", 0, "heads", 0, "name"), 3), says="name"),
    _g("heads-empty", cfg("t1", ("layers", 0, "heads"), []), says="heads"),
    _g("layernorm-negative", cfg("t1", ("layers", 0, "layernorm_eps"), -1), says="layernorm_eps"),
    _g("mlp-layers-0", cfg("t1", ("layers", 0, "mlp_layers"), 0), says="mlp_layers"),
    _g("mlp-layers-float", cfg("t1", ("layers", 0, "mlp_layers"), 3.0), says="mlp_layers"),
    _g("mlp-layers-huge", cfg("t1", ("layers", 0, "mlp_layers"), 10 ** 9), says="mlp_layers"),
    _g("layers-object", cfg("t1", ("layers",), {}), says="'layers'"),
    _g("layers-empty", cfg("t1", ("layers",), []), says="'layers'"),
    _g("layer-unknown-key", cfg("t1", ("layers", 0, "gated"), True), says="unknown key"),
    _g("shape-null", cfg("t1", ("tensors", "pos", "shape"), None), says="tensors.pos.shape"),
    _g("shape-huge", cfg("t1", ("tensors", "pos", "shape"), [10 ** 12, 9]), says="tensors.pos.shape"),
    _g("shape-float", cfg("t1", ("tensors", "pos", "shape"), [4.0, 9.0]), says="tensors.pos.shape"),
    _g("shape-wrong", cfg("t1", ("tensors", "pos", "shape"), [3, 9]), says="tensor 'pos'"),
    _g("storage", cfg("t1", ("tensors", "pos", "storage"), "sparse"), says="storage"),
    _g("tensor-entry-list", cfg("t1", ("tensors", "pos"), [4, 9]), says="tensors.pos"),
    _g("labels-disagree", cfg("t1", ("spaces", "layers.0.out", "blocks"), [["logit", 7]]),
       says="labels and shapes must agree"),
    _g("declared-block-huge", cfg("t1", ("spaces", "stream", "blocks", 0), ["huge", 10 ** 12]),
       says="spaces.stream"),
    _g("space-missing", cfg("t1", ("spaces", "layers.0.out"), DEL), says="layers.0.out"),
    _g("space-blocks-string", cfg("t1", ("spaces", "stream", "blocks"), "pos"), says="spaces.stream"),
    _g("space-block-triple", cfg("t1", ("spaces", "stream", "blocks", 0), ["a", 1, 2]), says="spaces.stream"),
    _g("space-block-size-0", cfg("t1", ("spaces", "stream", "blocks", 0), ["a", 0]), says="spaces.stream"),
    _g("space-block-size-bool", cfg("t1", ("spaces", "stream", "blocks", 0), ["a", True]), says="spaces.stream"),
    _g("weights-sha-missing", cfg("t1", ("weights_sha256",), DEL), says="weights_sha256"),
    _g("fingerprint-missing", cfg("t1", ("fingerprint",), DEL), says="records no fingerprint"),
    _g("fingerprint-string", cfg("t1", ("fingerprint",), "abc"), says="fingerprint"),
    _g("fingerprint-edited", cfg("t1", ("fingerprint", "sha256"), "0" * 64), says="fingerprint mismatch"),
    _g("config-edited", cfg("t1", ("construction", "note"), "edited"), says="fingerprint mismatch in config.json"),
    _g("prompt-mode", cfg("t1", ("prompt", "mode"), "bogus"), says="prompt.mode"),
    _g("prompt-mode-null", cfg("t1", ("prompt", "mode"), None), says="prompt.mode"),
    _g("prompt-count-string", cfg("t1", ("prompt", "virtual_tokens"), "1"), says="prompt.virtual_tokens"),
    _g("prompt-target-out-of-range", cfg("t1", ("prompt", "target_tokens"), [999]), says="prompt.target_tokens"),
    _g("prompt-file-name", cfg("t1", ("prompt", "file"), "../x.safetensors"), says="prompt.file"),
    _g("prompt-absent", cfg("t1", ("prompt",), DEL), says="fingerprint mismatch in config.json"),
    _g("prompt-not-object", cfg("t1", ("prompt",), 3), says="'prompt'"),
    _g("nan-weight", tensor("t1", "model.safetensors", "pos", _set(np.nan)), says="NaN or infinity"),
    _g("inf-weight", tensor("t1", "model.safetensors", "pos", _set(np.inf)), says="NaN or infinity"),
    _g("huge-weight", tensor("t1", "model.safetensors", "pos", _set(1e300)), says="outside the allowed range"),
    _g("int-weight", tensor("t1", "model.safetensors", "pos", lambda a: a.astype(np.int64)), says="dtype"),
    _g("edited-weight", tensor("t1", "model.safetensors", "pos", _set(0.5)), says="do not belong together"),
    _g("prompt-huge", tensor("t1", _PROMPT, "virtual_tokens", _set(1e308)), says="outside the allowed range"),
    _g("prompt-nan", tensor("t1", _PROMPT, "virtual_tokens", _set(np.nan)), says="finite"),
    _g("prompt-width", tensor("t1", _PROMPT, "virtual_tokens", lambda a: a[:, :3]), says="virtual_tokens must have shape"),
    _g("prompt-two-tokens", tensor("t1", _PROMPT, "virtual_tokens", lambda a: np.concatenate([a, a])),
       says="virtual tokens"),
    _g("prompt-of-other-build", copy("t1z/prompt.safetensors", "t1/prompt.safetensors"),
       says="fingerprint mismatch in prompt.safetensors"),
    _g("config-of-other-build", copy("t1z/config.json", "t1/config.json"),
       says="fingerprint mismatch in prompt.safetensors"),
    _g("model-of-other-build", copy("t2/model.safetensors", "t1/model.safetensors"), says="tensor 'embed'"),
    _g("input-too-long", argv=("--input", "A" * 20), says="at most 3 input tokens"),
    _g("input-very-long", argv=("--input", "A" * 100000), says="at most 3 input tokens"),
    _g("input-non-ascii", argv=("--input", "é"), says="--input"),
    _g("per-token-no-input", d="t2", says="--input"),
    _g("per-token-out-of-range", d="t2", argv=("--input", "9"), says="--input"),
    _g("per-token-text", d="t2", argv=("--input", "a"), says="--input"),
    _g("queries-wrong-multiple", d="mt", argv=("--input", "1"), says="multiple of 2"),
    _g("queries-no-input", d="mt", says="multiple of 2"),
    _g("unknown-flag", argv=("--bogus",), says="unrecognized"),
]
GENERATE += [
    _g("extra-tensor", lambda box: save_file({**load_file(str(box / "t1/model.safetensors")), "surprise": np.zeros(2)},
                             str(box / "t1/model.safetensors")), says="does not describe"),
    _g("extra-prompt-tensor", lambda box: save_file({**load_file(str(box / "t1" / _PROMPT)), "x": np.zeros(2)},
                                                     str(box / "t1" / _PROMPT)), says="t1"),
]

PRECISION = [
    Case("precision-unknown", ("precision", "bogus"), (), 2, "invalid choice"),
    Case("precision-none", ("precision",), (), 2, "required"),
    Case("precision-dtype", ("precision", "theorem2", "--dtype", "float8"), (), 2, "invalid choice"),
    *_json("precision", "theorem2"),
]

SELFTEST = [
    Case("selftest-workers-0", ("selftest", "--workers", "0"), (), 2, "--workers"),
    Case("selftest-workers-text", ("selftest", "--workers", "x"), (), 2, "--workers"),
    Case("selftest-seed", ("selftest", "--seed", "-4"), (), 2, "seed"),
    Case("selftest-claim", ("selftest", "--claim", "bogus"), (), 2, "invalid choice"),
    *_json("selftest", "--quick"),
]

CROSSCHECK = [
    Case("crosscheck-target", ("crosscheck", "bogus"), (), 2, "unknown crosscheck target"),
    Case("crosscheck-dtype", ("crosscheck", "--dtype", "float8"), (), 2, "invalid choice"),
    Case("crosscheck-low-dtype-identities", ("crosscheck", "gpt2", "--dtype", "float16"), (), 2, "float32"),
    Case("crosscheck-weights-target", ("crosscheck", "gpt2", "--weights", "t1"), (), 2, "--weights goes with"),
    Case("crosscheck-json-input", ("crosscheck", "constructions", "--weights", "t1", "--json", "t1/r.json"), (), 2,
         "input of this run"),
    Case("crosscheck-json-dir", ("crosscheck", "constructions", "--json", "jd"), (JD,), 2, "is a directory"),
    Case("crosscheck-json-empty", ("crosscheck", "constructions", "--json", ""), (), 2, "--json is empty"),
    Case("crosscheck-json-not-ours", ("crosscheck", "constructions", "--json", "notes.txt"), (NOTES,), 2,
         "not a prefixproof report"),
]

PLOT = [
    Case("plot-out-empty", ("plot", "--out", ""), (), 2, "--out is empty"),
    Case("plot-out-is-file", ("plot", "--out", "afile"), (AFILE,), 2, "existing file"),
    Case("plot-source", ("plot", "--source", "bogus"), (), 2, "invalid choice"),
    Case("plot-layer-text", ("plot", "--layer", "x"), (), 2, "invalid int"),
    Case("plot-out-no-parent", ("plot", "--out", "nodir/x"), (), 2, "does not exist"),
]

_REPLAYS = {
    "missing": None, "not-json": "{", "list": "[]", "deep": DEEP, "bigint": BIGINT,
    "wrong-format": json.dumps({"format": "other"}),
    "no-case": json.dumps(REPLAY),
    "case-number": json.dumps({**REPLAY, "case": 3}),
    "case-empty": json.dumps({**REPLAY, "case": {}}),
    "case-bad-fields": json.dumps({**REPLAY, "case": {"seed": "x", "dtype": 5}}),
    "property-unknown": json.dumps({**REPLAY, "property": "bogus", "case": {}}),
    "property-number": json.dumps({**REPLAY, "property": 7, "case": {}}),
}
FUZZ = [
    Case(f"fuzz-replay-{k}", ("fuzz", "--replay", "r.json"), () if v is None else (put("r.json", v),), 2, "--replay")
    for k, v in _REPLAYS.items()
] + [
    Case("fuzz-seconds-0", ("fuzz", "--seconds", "0"), (), 2, "--seconds"),
    Case("fuzz-seconds-negative", ("fuzz", "--seconds", "-1"), (), 2, "--seconds"),
    Case("fuzz-seconds-nan", ("fuzz", "--seconds", "nan"), (), 2, "--seconds"),
    Case("fuzz-seconds-text", ("fuzz", "--seconds", "soon"), (), 2, "--seconds"),
    Case("fuzz-examples-0", ("fuzz", "--examples", "0"), (), 2, "--examples"),
    Case("fuzz-workers-0", ("fuzz", "--workers", "0"), (), 2, "--workers"),
    Case("fuzz-property", ("fuzz", "--property", "bogus"), (), 2, "invalid choice"),
    Case("fuzz-size", ("fuzz", "--size", "huge"), (), 2, "invalid choice"),
    Case("fuzz-engine", ("fuzz", "--engine", "bogus"), (), 2, "invalid choice"),
    Case("fuzz-seed", ("fuzz", "--seed", "-1"), (), 2, "seed"),
    Case("fuzz-failures-empty", ("fuzz", "--failures", ""), (), 2, "--failures is empty"),
    Case("fuzz-replay-empty-path", ("fuzz", "--replay", ""), (), 2, "--replay is empty"),
    Case("fuzz-failures-missing", ("fuzz", "--failures", "nodir"), (), 2, "--failures"),
    Case("fuzz-failures-file", ("fuzz", "--failures", "afile"), (AFILE,), 2, "--failures"),
    Case("fuzz-json-replay-input", ("fuzz", "--replay", "r.json", "--json", "r.json"),
         (put("r.json", json.dumps(REPLAY)),), 2, "input of this run"),
    *_json("fuzz", "--examples", "1"),
]

GLOBAL = [
    Case("no-command", (), (), 2, "required"),
    Case("unknown-command", ("bogus",), (), 2, "invalid choice"),
    Case("unknown-global-flag", ("--bogus", "verify", "theorem1"), (), 2, "unrecognized"),
]

CASES = VERIFY + BUILD + GENERATE + PRECISION + SELFTEST + CROSSCHECK + PLOT + FUZZ + GLOBAL
