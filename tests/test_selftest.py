"""The self-test: mechanical mutants of every lookup claim, judged by an independent reader.

- the quick subset ends with no false pass (a truly broken mutant the verifier passes) and every control holds;
- the truth oracle (prefixproof/audit/plain_reader.py) agrees with verify/semantics/generate.py on the unedited directories and on
  broken mutants, and imports no prefixproof code;
- negative control: a lenient fake verifier that certifies everything is reported as false passes;
- the mutants cover every tensor, bias and head, and carry a refreshed fingerprint.
"""
import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from prefixproof.constructions.io import load_model, load_prompt
from prefixproof.verify.semantics.ops import NumpyOps
from prefixproof.verify.semantics.generate import generate
from prefixproof.audit.mutate_dir import TENSOR_OPS, Parts, _tensor_op, apply, specs_for
from prefixproof.audit.plain_reader import greedy, read_dir
from prefixproof.audit.plain_truth import claim_cases
from prefixproof.schemas import validate
from prefixproof.audit.selftest import (CLAIMS, DTYPES, _truth64, build_base, lenient_verifier, render, run_selftest,
                             to_json)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("selftest-bases")
    return {claim: build_base(claim, root) for claim in CLAIMS}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return run_selftest(quick=True, workdir=str(tmp_path_factory.mktemp("selftest-quick")))


def test_quick_selftest_has_no_false_pass(quick):
    """Every truly broken mutant ends FALSIFIED or UNKNOWN (or is counted as ERROR / rejected), never a pass."""
    report = render(quick)
    assert not quick.false_passes, report
    assert all(c.ok for c in quick.controls), report
    doc = to_json(quick, True, 0, ["prefixproof", "selftest", "--quick"])
    validate(doc)  # the shipped schema (prefixproof/schemas/selftest.schema.json)
    assert doc["arithmetic"] == list(DTYPES) and doc["exit_status"] == 0 and doc["versions"]["torch"] is None \
        or "torch" in sys.modules
    by = doc["counts"]
    assert set(by) == set(CLAIMS)
    for claim, per_dtype in by.items():
        assert set(per_dtype) == set(DTYPES)
        for dtype, c in per_dtype.items():
            # not vacuous: the subset holds truly broken mutants and the verifier kills some of them
            assert c["killed"] >= 5 and c["mutants"] >= 15, (claim, dtype, c)
    for r in quick.rows:  # the verifier never passes what truth says is broken
        assert not (r.broken and r.verdict in ("PROVED", "CERTIFIED", "CHECKED", "SAMPLED")), r


def test_lenient_fake_verifier_is_caught(tmp_path):
    """Negative control: a verifier that always says CERTIFIED must show up as false passes and fail the run."""
    result = run_selftest(("theorem1", "multi_token_packing"), quick=True, verifier=lenient_verifier,
                          workdir=str(tmp_path))
    broken = [r for r in result.rows if r.broken]
    assert broken and len(result.false_passes) == len(broken)
    assert not result.ok
    assert "FALSE PASS" in render(result)
    assert {r.claim for r in result.false_passes} == {"theorem1", "multi_token_packing"}


def _tolerance(dtype, logits_scale: float) -> float:
    """Two evaluators of the same operations in different orders: each op rounds with relative error eps; sums
    have at most 2^5 terms here and exp amplifies a score error by at most its argument (scale * |q.k| <= 2^5),
    so logits differ by at most ~2^10 eps times their magnitude; the margin is a difference of two logits."""
    return 2.0 * 2 ** 10 * float(np.finfo(dtype).eps) * max(1.0, logits_scale)


@pytest.mark.parametrize("claim", list(CLAIMS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_plain_reader_agrees_with_generate_on_every_input(bases, claim, dtype):
    """The oracle is checked: on every input of the claim, the plain reader's greedy tokens and margins match
    verify/semantics/generate.py (key/value cache, the shared forward pass) run in the same dtype."""
    base = bases[claim]
    params = CLAIMS[claim][1]
    m64 = read_dir(base)
    model = load_model(base)
    _compare(m64, model, claim, params, dtype)


def _compare(m64, model, claim, params, dtype):
    m = m64.astype(dtype)
    steps = {"theorem1": params.get("N"), "long_response": params.get("R"),
             "conditional": params.get("R")}.get(claim) or 1
    n = 0
    for soft, prompt, _ in claim_cases(claim, params, m64):
        toks, margins = greedy(m, soft.astype(dtype), prompt, steps)
        ref = generate(model, soft=soft, prompt=None if prompt.shape[1] == 0 else prompt, steps=steps,
                       ops=NumpyOps(dtype))
        tol = _tolerance(dtype, float(np.nanmax(np.abs(ref.margins))))
        sure = (np.abs(margins) > tol) & (np.abs(ref.margins) > tol)
        # two greedy runs may legitimately part after a near-tie, so compare up to the first unsure step
        first_unsure = np.where((~sure).any(axis=1), np.argmax(~sure, axis=1), steps)
        for i in range(len(toks)):
            k = first_unsure[i]
            assert np.array_equal(toks[i, :k], ref.tokens[i, :k]), (claim, i, toks[i], ref.tokens[i])
            assert np.allclose(margins[i, :k], ref.margins[i, :k], rtol=0, atol=tol), (claim, i)
        n += len(toks)
    assert n > 0


@pytest.mark.parametrize("claim, name", [("multi_token_packing", "layers.0.mlp.3.b zeroed"),
                                         ("theorem1", "layers.0.heads.1 (pointer) scale / 4"),
                                         ("conditional", "layers.0.mlp.2.b rows rolled")])
def test_plain_reader_agrees_with_generate_on_broken_mutants(bases, tmp_path, claim, name):
    """Agreement also where answers are wrong, so it is not only agreement on the right tokens."""
    params = CLAIMS[claim][1]
    base = Parts.read(bases[claim])
    spec = next(s for s in specs_for(base, claim) if s.name == name)
    parts, _ = apply(spec, base, claim, params, 0, _truth64(claim, params))
    parts.write(tmp_path / "m")
    assert _truth64(claim, params)(parts), "this mutant should be truly broken"
    for dtype in (np.float64, np.float32):
        _compare(read_dir(tmp_path / "m"), load_model(tmp_path / "m"), claim, params, dtype)


@pytest.mark.parametrize("claim", list(CLAIMS))
def test_mutants_cover_every_tensor_bias_and_head(bases, claim):
    parts = Parts.read(bases[claim])
    specs = specs_for(parts, claim)
    assert len(specs) >= 100
    names = {s.target for s in specs}
    for tensor in parts.config["tensors"]:
        assert tensor in names
        a = parts.tensors[tensor]
        for op in TENSOR_OPS:  # present unless the edit would leave the tensor as it is
            present = any(s.target == tensor and s.kind == op for s in specs)
            assert present or np.array_equal(_tensor_op(op, a), a), (tensor, op)
        assert sum(s.target == tensor and s.kind.startswith("perturbed") for s in specs) == 4
    for l, layer in enumerate(parts.config["layers"]):
        for h in range(len(layer["heads"])):
            assert sum(s.target == f"layers.{l}.heads.{h}" for s in specs) == 4
    assert sum(s.truth == "prompt" for s in specs) >= 5


def test_mutant_files_carry_a_refreshed_fingerprint(bases, tmp_path):
    claim = "theorem2"
    params = CLAIMS[claim][1]
    base = Parts.read(bases[claim])
    specs = specs_for(base, claim)
    for spec in (specs[0], next(s for s in specs if s.kind == "scale / 4"),
                 next(s for s in specs if s.kind == "prompt extra virtual token")):
        parts, _ = apply(spec, base, claim, params, 0, _truth64(claim, params))
        parts.write(tmp_path / "m")
        model = load_model(tmp_path / "m")  # checks the recorded fingerprint
        soft, _ = load_prompt(tmp_path / "m", model)
        written = Parts.read(tmp_path / "m").config["weights_sha256"]
        assert (written == base.config["weights_sha256"]) == (spec.truth == "prompt"), spec.name
        assert soft.shape[0] == parts.prompt.shape[0]


def test_truth_oracle_imports_no_prefixproof_code():
    """The oracle shares no code with the certificates or verify/semantics/forward.py: only numpy, safetensors, stdlib."""
    ours = {"constructions", "verify", "theorems", "prefixproof"}
    for path, allowed in ((ROOT / "prefixproof/audit/plain_reader.py", set()),
                          (ROOT / "prefixproof/audit/plain_truth.py", {"prefixproof.audit.plain_reader"})):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module] if isinstance(node, ast.ImportFrom) else [])
            for mod in mods:
                assert mod.split(".")[0] not in ours or mod in allowed, (path.name, mod)


def test_selftest_cli_bad_json_path_is_usage_error(capsys):
    from prefixproof.cli import main

    assert main(["selftest", "--quick", "--json", "/nonexistent-dir/x.json"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_verify_weights_certifies_the_real_construction(tmp_path, capsys):
    from prefixproof.cli import main

    d = tmp_path / "w"
    assert main(["build", "theorem2", "--map", "reverse", "--out", str(d)]) == 0
    code = main(["verify", "--weights", str(d), "--claim", "theorem2"])
    out = capsys.readouterr().out
    assert code == 0 and "CERTIFIED" in out and "hardmax" not in out  # construction-only lemmas do not apply


def test_weights_without_the_claims_labels_are_bad_input(tmp_path, capsys):
    from prefixproof.cli import main

    d = tmp_path / "w"
    assert main(["build", "theorem2", "--map", "identity", "--out", str(d)]) == 0
    code = main(["verify", "--weights", str(d), "--claim", "theorem1"])
    err = capsys.readouterr().err
    assert code == 2 and "no residual-stream block 'target'" in err and err.count("\n") == 1
