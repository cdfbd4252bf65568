"""The verifier against its mutants: every one rejected, the constructions certified, the sanity mode honest."""
import json

import pytest

from constructions.io import save_model
from verify.cli import main
from verify.mutants import all_mutants
from verify.selftest import run_selftest, summary
from verify.verdict import Verdict


def test_kill_rate_is_total_and_controls_hold():
    outcomes = run_selftest()
    mutants = [o for o in outcomes if o.expected == "killed" and "demand" not in o.label]
    assert len([o for o in mutants if o.label.startswith("theorem1")]) >= 25
    assert len([o for o in mutants if o.label.startswith("theorem2")]) >= 25
    assert all(o.record.verdict in (Verdict.FALSIFIED, Verdict.UNKNOWN) for o in mutants), summary(outcomes)
    for o in mutants:  # a FALSIFIED mutant always carries a counterexample confirmed by generation
        if o.record.verdict is Verdict.FALSIFIED:
            assert o.record.counterexample["confirmation"]["fails"] is True
    controls = [o for o in outcomes if o not in mutants]
    assert all(o.ok for o in controls), summary(outcomes)
    assert "(100%)" in summary(outcomes)


@pytest.mark.parametrize("name", ["decode grid shifted by half a step", "positions off by one", "causal mask removed",
                                  "weights downcast to float16"])
def test_verify_weights_rejects_mutants_from_files(tmp_path, capsys, name):
    m = next(m for m in all_mutants() if m.claim == "theorem1" and m.name == name)
    d = tmp_path / "w"
    save_model(m.build(), d)
    report = tmp_path / "r.json"
    code = main(["verify", "--weights", str(d), "--claim", "theorem1", "--json", str(report)])
    out = capsys.readouterr().out
    doc = json.loads(report.read_text())
    verdicts = [o["verdict"] for c in doc["claims"] for o in c["obligations"]]
    assert verdicts == [doc["claims"][0]["verdict"]] and verdicts[0] in ("FALSIFIED", "UNKNOWN")
    assert code == (1 if verdicts[0] == "FALSIFIED" else 0)
    assert "decode" in out and "CERTIFIED" not in out


def test_verify_weights_certifies_the_real_construction(tmp_path, capsys):
    d = tmp_path / "w"
    assert main(["build", "theorem2", "--map", "reverse", "--out", str(d)]) == 0
    code = main(["verify", "--weights", str(d), "--claim", "theorem2"])
    out = capsys.readouterr().out
    assert code == 0 and "CERTIFIED" in out and "hardmax" not in out  # construction-only lemmas do not apply


def test_weights_without_the_claims_labels_are_bad_input(tmp_path, capsys):
    d = tmp_path / "w"
    assert main(["build", "theorem2", "--map", "identity", "--out", str(d)]) == 0
    code = main(["verify", "--weights", str(d), "--claim", "theorem1"])
    err = capsys.readouterr().err
    assert code == 2 and "no residual-stream block 'target'" in err and err.count("\n") == 1


def test_selftest_command(capsys):
    assert main(["selftest", "--quiet"]) == 0
    assert "kill rate: 60/60 mutants (100%)" in capsys.readouterr().out
