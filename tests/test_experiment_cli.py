"""`prefixproof experiment`: the protocol (split, fixed test sets, configs) and the command line's errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from prefixproof.experiments import tasks
from prefixproof.experiments.config import ConfigError, from_json, load
from prefixproof.experiments.registry import BUILDERS, get
from tests.clirun import run


def test_split_is_fixed_disjoint_and_a_quarter():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 8, size=(20000, 10))
    frac = tasks.is_test(x).mean()
    assert 0.23 < frac < 0.27
    # fixed: the same answer for the same inputs in a fresh process (no salted hash())
    code = ("import numpy as np; from prefixproof.experiments.tasks import is_test; "
            "print(is_test(np.arange(40).reshape(4, 10) % 8).tolist())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert outs == {str(tasks.is_test(np.arange(40).reshape(4, 10) % 8).tolist()) + "\n"}
    train = tasks.train_batch("ascending", np.random.default_rng(1), 500, 1).seq[:, 1:11]
    assert not tasks.is_test(train).any()


def test_test_set_is_fixed_distinct_and_in_the_test_split():
    a = tasks.eval_batch("descending", 3200, 2)
    b = tasks.eval_batch("descending", 3200, 2)
    assert np.array_equal(a.seq, b.seq)
    inputs = a.seq[:, 2:12]
    assert tasks.is_test(inputs).all() and len(np.unique(inputs, axis=0)) == 3200
    assert np.array_equal(a.seq[:, 12:], -np.sort(-inputs, axis=1))


@pytest.mark.parametrize("task,inp,out", [
    ("double_hist", [1, 1, 2, 3, 3, 3, 0, 5, 5, 7], [2, 2, 1, 3, 3, 3, 1, 2, 2, 1]),
    ("ascending_add1", [3, 1, 2, 0, 0, 0, 0, 0, 0, 7], [1, 1, 1, 1, 1, 1, 2, 3, 4, 8]),
    ("add2", [7, 0, 1, 2, 3, 4, 5, 6, 7, 7], [9, 2, 3, 4, 5, 6, 7, 8, 9, 9]),
])
def test_task_answers(task, inp, out):
    assert tasks.solve(task, np.array([inp])).tolist() == [out]


def test_mix_with_task_token_and_single_tasks_without():
    b = tasks.digit_batch("mix", np.zeros((4, 10), dtype=int), 1, task_token=True)
    assert b.seq[:, 1].tolist() == [11, 12, 13, 14]
    s = tasks.digit_batch("ascending", np.zeros((2, 10), dtype=int), 1, task_token=True)
    assert (s.seq[:, 1] == tasks.PAD).all()


def test_mix_without_task_token_hides_the_task():
    """E2/E3: the four rows share one input and prompt; only the answers say which task each row has."""
    inp = np.tile(np.array([[3, 1, 2, 0, 7, 0, 5, 5, 6, 4]]), (4, 1))
    b = tasks.digit_batch("mix", inp, 1, task_token=False)
    assert b.prompt_len == 11 and (b.seq[:, :11] == b.seq[0, :11]).all()
    assert [r[11:].tolist() for r in b.seq] == [tasks.solve(t, inp[:1])[0].tolist() for t in tasks.MIX]


def test_memorisation_words_are_fixed_and_distinct():
    w1, a1, b1 = tasks.words(100)
    w2, _, _ = tasks.words(100)
    assert np.array_equal(w1, w2) and len(np.unique(w1, axis=0)) == 100 and not np.array_equal(a1, b1)
    assert "recall" in tasks.eval_set_name("translate_b")


@pytest.mark.parametrize("eid", sorted(BUILDERS))
def test_every_config_round_trips_through_json(eid, tmp_path):
    for paper in (False, True):
        exp = get(eid, paper)
        p = tmp_path / "c.json"
        p.write_text(json.dumps(exp.to_json()))
        assert load(p) == exp


def test_bad_configs_are_errors_that_say_what_is_wrong():
    doc = get("E1").to_json()
    with pytest.raises(ConfigError, match="unknown key"):
        from_json(dict(doc, colour="red"))
    with pytest.raises(ConfigError, match="unknown method"):
        from_json(dict(doc, cells=[dict(doc["cells"][0], method="adapter")]))
    with pytest.raises(ConfigError, match="multiple of heads"):
        from_json(dict(doc, model={"layers": 1, "heads": 3, "width": 32}))


def test_list_and_usage_errors(capsys, tmp_path):
    code, out, _ = run(capsys, "experiment", "list")
    assert code == 0 and all(e in out for e in BUILDERS)
    for argv, msg in [(("experiment", "run", "E9"), "invalid choice"),
                      (("experiment", "run"), "give an experiment id or --config"),
                      (("experiment", "run", "E1", "--address", "x:1"), "--address needs --backend ray"),
                      (("experiment", "run", "E1", "--steps-scale", "0"), "--steps-scale"),
                      (("experiment", "report", "--out", tmp_path), "no experiment results"),
                      (("experiment", "run", "--config", tmp_path / "none.json"), "cannot read experiment config")]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and msg in err and err.count("\n") == 1, (argv, err)


def test_missing_torch_is_one_line_exit_2(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    code, _, err = run(capsys, "experiment", "run", "E1")
    assert code == 2 and "pip install 'prefixproof[torch]'" in err and err.count("\n") == 1


def test_core_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['ray'] = None; "
            "import prefixproof.cli, prefixproof.experiments.registry, prefixproof.experiments.report, "
            "prefixproof.jobs; prefixproof.cli.build_parser(); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "ok", r.stderr


def _fake_run(folder, cell, seed, acc, method="prefix", ok=True):
    doc = {"format": "prefixproof-experiment-run", "experiment": "E1", "cell": cell, "seed": seed, "task": "descending",
           "method": method, "accuracy": acc, "trainable_params": 96,
           "measures": {"identities_checked": method == "prefix", "identities_ok": ok,
                        "worst": {"ratio": 0.5 if ok else 3.0}, "tau_mean": 1.0 if method == "prefix" else 0.5,
                        "tau_min": 1.0 if method == "prefix" else -0.2}}
    (folder / f"{cell}-seed{seed}.json").write_text(json.dumps(doc))


def test_report_aggregates_seeds_and_judges_the_claim(capsys, tmp_path):
    folder = tmp_path / "E1"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(get("E1").to_json()))
    for seed, acc in enumerate([0.8, 0.9, 1.0]):
        _fake_run(folder, "full", seed, acc, method="full")
    for seed, acc in enumerate([0.0, 0.0, 0.03]):
        _fake_run(folder, "prefix", seed, acc, ok=seed != 2)
    code, out, _ = run(capsys, "experiment", "report", "--out", tmp_path, "--json", tmp_path / "r.json")
    assert code == 0
    assert "90.00 ± 10.00" in out and "1.00 ± 1.73" in out
    assert "2/3, 3e+00" in out  # one run whose identities failed is counted, not hidden
    assert "full - prefix = 89.0 points (claim: >= 40): reproduced" in out
    _fake_run(folder, "prefix", 0, 0.95)
    _fake_run(folder, "prefix", 1, 0.95)  # 90 - 64.3 = 25.7 points < 40
    code, out, _ = run(capsys, "experiment", "report", "--out", tmp_path)
    assert "NOT reproduced" in out


def test_workers_default_to_the_usable_cpus(capsys, monkeypatch, tmp_path):
    """Without --workers the pool has one worker per CPU in the process's affinity mask; --workers overrides."""
    import os

    import prefixproof.experiments.run as run_mod

    seen = []
    monkeypatch.setattr(run_mod, "run_experiment", lambda *a, **kw: seen.append(kw["workers"]))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    run(capsys, "experiment", "run", "E1", "--out", tmp_path)
    run(capsys, "experiment", "run", "E1", "--out", tmp_path, "--workers", "1")
    assert seen == [3, 1]
