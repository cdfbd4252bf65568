"""`prefixproof fuzz`: runs, reports, flags its controls, shrinks/saves/replays failures, rejects bad input in one line."""
import json

import pytest

from prefixproof.commands import fuzz as cmd_fuzz
from prefixproof.verify.identities.runner import Plan, Stats, fuzz, run_chunk
from clirun import run  # noqa: E402
from prefixproof.schemas import validate




def test_fuzz_small_run_reports_every_property_and_flags_every_control(capsys, tmp_path):
    report = tmp_path / "fuzz.json"
    code, out, err = run(capsys, "fuzz", "--examples", "25", "--size", "small", "--workers", "1",
                         "--json", str(report), "--failures", str(tmp_path))
    assert code == 0, out + err
    doc = json.loads(report.read_text())
    validate(doc)  # the shipped schema (prefixproof/schemas/fuzz.schema.json)
    assert doc["seed"] == 0 and doc["command"][:2] == ["prefixproof", "fuzz"] and doc["versions"]["numpy"]
    assert set(doc["properties"]) == {"prefix_rescale", "prefix_bias", "soft_in_prefix"}
    for stats in doc["properties"].values():
        assert stats["examples"] == 25 and 0 <= stats["worst_ratio"] <= 1 and stats["counterexample"] is None
    assert doc["controls"] and all(c["flagged"] for c in doc["controls"].values())
    assert "examples/s" in out and "negative control" in out and "fuzz:" in err
    assert not list(tmp_path.glob("fuzz-failure-*.json"))


def test_one_property_without_controls(capsys, tmp_path):
    report = tmp_path / "f.json"
    code, out, _ = run(capsys, "fuzz", "--property", "prefix_bias", "--examples", "10", "--no-controls",
                       "--workers", "1", "--json", str(report))
    assert code == 0
    doc = json.loads(report.read_text())
    assert list(doc["properties"]) == ["prefix_bias"] and doc["controls"] == {}


def test_results_do_not_depend_on_the_number_of_workers():
    one = fuzz(Plan(["prefix_rescale"], examples=30, seed=7, workers=1, size="small", chunk=10))["prefix_rescale"]
    two = fuzz(Plan(["prefix_rescale"], examples=30, seed=7, workers=2, size="small", chunk=10))["prefix_rescale"]
    assert one.examples == two.examples == 30
    assert one.worst == two.worst and one.worst_case == two.worst_case


def test_a_failure_is_shrunk_saved_and_replayed(capsys, tmp_path):
    stats = run_chunk("prefix_rescale", seed=3, examples=200, control="drop_alpha")
    f = stats.failure
    assert f is not None and f.bad()
    assert f.case.layers == 1 and f.case.heads == 1 and f.case.batch == 1  # shrunk to the simplest model
    path = cmd_fuzz._save(f, str(tmp_path))
    code, out, _ = run(capsys, "fuzz", "--replay", path)
    assert code == 1 and "confirmed in extended precision" in out
    # the same case under the true identity passes: replay says so and exits 0
    doc = json.loads(open(path).read())
    doc["control"] = None
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(doc))
    code, out, _ = run(capsys, "fuzz", "--replay", str(ok))
    assert code == 0 and "passes now" in out


def test_random_engine_runs_and_shrinks_greedily(capsys, tmp_path):
    from prefixproof.verify.identities.runner import run_random_chunk

    code, out, _ = run(capsys, "fuzz", "--engine", "random", "--examples", "30", "--no-controls", "--workers", "1")
    assert code == 0 and "no counterexample" in out
    f = run_random_chunk("prefix_bias", seed=5, examples=100, control="swap_heads").failure
    assert f is not None and f.bad()
    assert (f.case.layers, f.case.heads, f.case.d, f.case.n, f.case.batch) == (1, 2, 1, 1, 1)  # heads >= 2 is needed
    path = cmd_fuzz._save(f, str(tmp_path))
    assert run(capsys, "fuzz", "--replay", path)[0] == 1


def test_an_unflagged_control_is_a_harness_error(capsys, monkeypatch):
    import prefixproof.verify.identities.runner as fr

    monkeypatch.setattr(fr, "run_control", lambda name, seed, examples=2000: Stats(examples=examples))
    code, out, _ = run(capsys, "fuzz", "--property", "prefix_rescale", "--examples", "5", "--workers", "1")
    assert code == 3 and "NO (harness broken)" in out


def test_time_budget_stops_the_run(capsys):
    code, out, _ = run(capsys, "fuzz", "--property", "soft_in_prefix", "--seconds", "1", "--no-controls",
                       "--workers", "1")
    assert code == 0 and "soft_in_prefix" in out


@pytest.mark.parametrize("argv,message", [
    (["fuzz", "--replay", "NOWHERE.json"], "no such file"),
    (["fuzz", "--seconds", "0"], "--seconds must be a positive number"),
    (["fuzz", "--property", "nope"], "invalid choice"),
    (["fuzz", "--examples", "0"], "must be >= 1"),
    (["fuzz", "--failures", "NO_SUCH_DIR"], "not a directory"),
])
def test_bad_fuzz_usage_is_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("content,message", [
    ("not json", "not valid JSON"),
    (json.dumps({"format": "other"}), "not a saved fuzz failure"),
    (json.dumps({"format": "prefixproof-fuzz-failure", "property": "prefix_rescale", "control": None,
                 "case": {"seed": 1, "layers": 9}}), "layers must be an integer in [1, 3]"),
    (json.dumps({"format": "prefixproof-fuzz-failure", "property": "nope", "control": None, "case": {"seed": 1}}),
     "unknown property 'nope'"),
    (json.dumps({"format": "prefixproof-fuzz-failure", "property": "prefix_bias", "control": None,
                 "case": {"seed": 1, "width": 3}}), "unknown case field(s) width"),
    (json.dumps({"format": "prefixproof-fuzz-failure", "property": "prefix_bias", "control": None,
                 "case": {"seed": 1, "dtype": "float16"}}), "dtype must be one of float64, float32"),
])
def test_bad_replay_files_are_one_line_exit_2(capsys, tmp_path, content, message):
    p = tmp_path / "f.json"
    p.write_text(content)
    code, out, err = run(capsys, "fuzz", "--replay", str(p))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_greedy_shrinker_keeps_a_case_nothing_simpler_reproduces():
    from prefixproof.verify.identities.cases import Case
    from prefixproof.verify.identities.shrink import shrink

    case = Case(seed=9, layers=3, heads=2, d=5, padding=True, qk_log10=0.7)
    same, used = shrink(case, lambda c: c == case)
    assert same == case and used > 0
    simplest, _ = shrink(case, lambda c: c.heads >= 2)  # only "two heads" matters
    assert simplest.heads == 2 and simplest.layers == 1 and simplest.d == 1 and not simplest.padding
    assert simplest.qk_log10 == 0.0 and simplest.seed == 0


def test_fuzz_quiet_prints_one_line_per_property_and_one_for_the_controls(capsys, tmp_path):
    code, out, err = run(capsys, "fuzz", "--examples", "5", "--size", "small", "--workers", "1", "--quiet",
                         "--failures", str(tmp_path))
    assert code == 0 and err == ""
    lines = out.strip().split("\n")
    assert [line.split(":")[0] for line in lines] == ["prefix_rescale", "prefix_bias", "soft_in_prefix",
                                                      "negative controls"]
    assert "no counterexample in 5 random transformers" in lines[0] and "6 of 6 flagged" in lines[-1]
