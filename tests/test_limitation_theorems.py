"""The limitation theorems: verdicts computed by their obligations, the evidence behind them, and controls that must fail."""
import json
from fractions import Fraction

import numpy as np
import pytest

from prefixproof.constructions.model import materialize
from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.theorems import THEOREMS
from prefixproof.theorems.obligations.base import RunContext
from prefixproof.theorems.obligations.limitation import run_sampled
from prefixproof.theorems.soft_in_prefix import STRICT_INSTANCE, _stacked_key_value_rows
from prefixproof.verify.numeric import attention_patterns as ap
from prefixproof.verify.numeric.capacity import hard_prompt_count, virtual_token_count
from prefixproof.cli import main
from prefixproof.verify.exact.linalg import certifies_inconsistent, left_null_vector
from prefixproof.verify.identities.properties import PROPERTIES, Property
from prefixproof.theorems.obligations.runner import run_theorem, theorem_verdict
from prefixproof.verify.verdict import Verdict

LIMITATION = ["prefix_rescale", "prefix_bias", "soft_in_prefix", "finetune_contrast", "capacity_count"]


def records(claim, **kw):
    theorem = THEOREMS[claim]
    ctx = RunContext(params=theorem.resolve(kw.pop("params", {})), samples=kw.pop("samples", 8), seed=0, **kw)
    return {r.obligation: r for r in run_theorem(theorem, ctx)}


def test_default_levels_prove_the_identities_and_check_the_witnesses():
    got = {claim: records(claim) for claim in LIMITATION}
    for claim in ("prefix_rescale", "prefix_bias", "soft_in_prefix"):
        assert theorem_verdict(list(got[claim].values())) is Verdict.PROVED, got[claim]
        assert "fuzz" not in got[claim]  # numeric sampling is not part of the default run
    fc = got["finetune_contrast"]
    assert fc["rotation-sphere"].verdict is Verdict.PROVED
    assert fc["witness"].verdict is Verdict.CHECKED and fc["reachable-patterns"].verdict is Verdict.CHECKED
    assert all(r.verdict is Verdict.CHECKED for r in got["capacity_count"].values())


def test_strictness_certificate_is_a_real_inconsistency():
    r = records("soft_in_prefix")["strict"]
    y = [Fraction(v) for v in r.details["certificate_y"]]
    M, _ = _stacked_key_value_rows(Theorem1(*STRICT_INSTANCE).model())
    Mf, yf = np.array(M, dtype=float), np.array(y, dtype=float)
    assert np.all(yf @ Mf == 0) and yf @ yf > 0
    # independent numeric check: the best soft prompt (least squares, any position) misses the prefix's (key, value)
    s, *_ = np.linalg.lstsq(Mf, yf, rcond=None)
    assert np.linalg.norm(Mf @ s - yf) > 0.5
    # control: a (key, value) that a soft prompt does produce is never certified
    b = [sum(row[c] * Fraction(c + 1, 3) for c in range(len(row))) for row in M]
    assert not certifies_inconsistent(M, left_null_vector(M), b)


def test_capacity_counts_and_a_broken_construction_is_caught():
    r = records("capacity_count", params={"V": 2, "N": 3})
    assert r["virtual-token-reach"].details["distinct_completions"] == 8
    for row in r["hard-prompt-bound"].details["counts"].values():
        assert row["distinct_completions"] <= row["bound_V^k"] == row["prompts"]
    # control: at a far too small attention scale the construction no longer reaches every target
    c = Theorem1(3, 3)
    count, exact = virtual_token_count(materialize(c.model(scale=0.0)), c.encode_batch, 3, 3)
    assert exact < 27
    assert hard_prompt_count(materialize(c.model()), 1).distinct == 1  # E = 0: every hard prompt looks the same


def test_finetune_witnesses_and_patterns(monkeypatch):
    r = records("finetune_contrast")
    for w in r["witness"].details["witnesses"].values():
        before, after = [v for k, v in w.items() if k.startswith("A[")]
        assert before > 1 > after and w["pattern_before"] != w["pattern_after"]
    pat = r["reachable-patterns"].details
    assert pat["prefix_reachable"] == [pat["original"]] and pat["finetune_reachable_total"] == 6
    # control: a forward pass that disagrees with the exact scores is an ERROR, never a pass
    monkeypatch.setattr(ap, "float_patterns", lambda m, prefix=None, batch=1: [(0, 1, 2)] * batch)
    assert records("finetune_contrast")["reachable-patterns"].verdict is Verdict.ERROR


def test_sampled_fuzz_obligation_and_a_falsified_control(monkeypatch):
    rec = run_sampled("prefix_rescale", "prefix_rescale", RunContext(params={}, samples=6, seed=1))
    assert rec.verdict is Verdict.SAMPLED and 0 <= rec.details["worst_error_over_tolerance"] <= 1
    true = PROPERTIES["prefix_rescale"]
    wrong = Property("prefix_rescale", "dropped factor", lambda c, ctl, ev: true.check(c, "drop_alpha", ev))
    monkeypatch.setitem(PROPERTIES, "prefix_rescale", wrong)
    rec = run_sampled("prefix_rescale", "prefix_rescale", RunContext(params={}, samples=6, seed=1))
    assert rec.verdict is Verdict.FALSIFIED and rec.counterexample["extended_precision_confirms"]


def test_verify_cli_reports_the_limitation_claims(capsys, tmp_path):
    out_json = tmp_path / "r.json"
    assert main(["verify", *LIMITATION, "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "prefix_rescale: PROVED" in out and "capacity_count (V=3, N=4): CHECKED" in out
    doc = json.loads(out_json.read_text())
    verdicts = {c["claim"]: c["verdict"] for c in doc["claims"]}
    assert verdicts == {"prefix_rescale": "PROVED", "prefix_bias": "PROVED", "soft_in_prefix": "PROVED",
                        "finetune_contrast": "CHECKED", "capacity_count": "CHECKED"}


@pytest.mark.parametrize("argv,expect", [
    (["verify", "capacity_count", "--vocab", "2", "--length", "3"], "capacity_count (V=2, N=3): CHECKED"),
    (["verify", "capacity_count", "--vocab", "300", "--length", "3"], "UNKNOWN(V^N = 300^3 exceeds"),
])
def test_capacity_count_takes_vocab_and_length(capsys, argv, expect):
    assert main(argv) == 0
    assert expect in capsys.readouterr().out
