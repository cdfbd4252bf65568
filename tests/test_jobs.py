"""The job runner: results in order, a failing job is an error (never dropped), Ray on a local instance,
and fuzz shards through the same runner."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from prefixproof.jobs import JobError, run_jobs
from prefixproof.jobs.fuzz_shards import combine
from tests.clirun import run


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is bad")
    return x


def test_in_process_results_come_back_in_order():
    assert run_jobs(square, [3, 1, 2]) == [9, 1, 4]


def test_a_failing_job_is_an_error_naming_it():
    with pytest.raises(JobError, match="1 of 4 jobs failed; first: job 3: ValueError: three is bad"):
        run_jobs(fail_on_three, [0, 1, 2, 3])


def _staged(spec: dict) -> tuple[str, int]:
    """A stand-in job: optionally waits (up to 60 s) for a file another job writes, optionally writes one;
    returns its name and the process it ran in."""
    import os
    import time
    from pathlib import Path
    if spec.get("wait_for"):
        t0 = time.monotonic()
        while not Path(spec["wait_for"]).exists():
            if time.monotonic() - t0 > 60:
                raise TimeoutError(f"{spec['name']}: {spec['wait_for']} never appeared")
            time.sleep(0.05)
    if spec.get("write"):
        Path(spec["write"]).write_text(spec["name"])
    if spec.get("fail"):
        raise ValueError(f"{spec['name']} fails")
    return spec["name"], os.getpid()


def test_process_pool_runs_a_dependent_job_as_soon_as_its_own_dependency_finished(tmp_path):
    import os
    # the jobs run in other processes; pretrain seed 0 cannot finish until adapt seed 1 has run: a runner that waits for every pretraining job
    # before any adaptation (the old two-phase runner) deadlocks here until the 60 s timeout makes it fail
    marker = str(tmp_path / "adapt1-started")
    jobs = [{"name": "pre0", "wait_for": marker}, {"name": "pre1"}, {"name": "adapt0"},
            {"name": "adapt1", "write": marker}]
    done = run_jobs(_staged, jobs, workers=2, after=[None, None, 0, 1])
    assert [name for name, _ in done] == ["pre0", "pre1", "adapt0", "adapt1"]
    assert all(pid != os.getpid() for _, pid in done)


def _state(pid: int) -> str:
    """The process's state letter from /proc (Z for a zombie or a process that is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is `pid`, from /proc."""
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.add(int(stat.parent.name))
    return kids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (CI is Linux)")
def test_pool_workers_exit_when_the_process_that_started_them_is_killed():
    """A killed `prefixproof experiment run` must not leave its workers training as orphans (they did, before
    the exit-with-parent initializer: two orphans kept both cores busy for 14 minutes). Checked by hand: with
    the initializer removed this test fails."""
    import os
    import signal
    import subprocess
    import time

    code = "import time; from prefixproof.jobs import run_jobs; run_jobs(time.sleep, [120, 120], workers=2)"
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while len(_children(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # both workers started (the pool may also start a resource tracker: also a child)
        children = _children(parent.pid)
        assert len(children) >= 2, children
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while (alive := {c for c in children if _state(c) != "Z"}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive, f"orphaned workers still running: {alive}"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_job_whose_dependency_failed_is_not_run_and_is_an_error(tmp_path):
    marker = tmp_path / "ran"
    jobs = [{"name": "pre0", "fail": True}, {"name": "adapt0", "write": str(marker)}]
    with pytest.raises(JobError, match="2 of 2 jobs failed; first: job 0: ValueError: pre0 fails"):
        run_jobs(_staged, jobs, after=[None, 0])
    assert not marker.exists()
    with pytest.raises(ValueError, match="comes later in the list"):
        run_jobs(_staged, jobs[::-1], after=[1, None])
    with pytest.raises(ValueError, match="after must give"):
        run_jobs(_staged, jobs, after=[None, 5])


def test_ray_runs_jobs_on_a_local_instance():
    import os
    import sys
    ray = pytest.importorskip("ray")
    # the workers import this test module by name, as pytest did: give them pytest's sys.path
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
    try:
        assert run_jobs(square, [1, 2, 3], backend="ray") == [1, 4, 9]
        with pytest.raises(JobError, match="three is bad"):
            run_jobs(fail_on_three, [3, 4], backend="ray")
    finally:
        ray.shutdown()


def test_fuzz_shards_cover_the_examples_and_flag_the_controls(capsys, tmp_path):
    out = tmp_path / "shards.json"
    code, stdout, _ = run(capsys, "fuzz", "--shards", 2, "--workers", 1, "--examples", 6, "--size", "small",
                          "--engine", "random", "--property", "prefix_rescale", "--failures", tmp_path,
                          "--json", out)
    assert code == 0, stdout
    doc = json.loads(out.read_text())
    assert doc["shards"] == 2 and doc["shard_status"] == [0, 0]
    assert doc["properties"]["prefix_rescale"]["examples"] == 6  # 3 per shard
    assert doc["controls"] and all(c["flagged"] for c in doc["controls"].values())


def test_shard_combination_never_passes_a_failed_or_missing_shard():
    ok = {"status": 0, "report": {"properties": {}, "saved_counterexamples": {}, "controls": {}}}
    assert combine([ok, ok])[0] == 0
    assert combine([ok, {"status": 3, "report": ok["report"]}])[0] == 3
    assert combine([ok, {"status": 0, "report": None}])[0] == 3  # a shard without a report is not a pass
    assert combine([ok, {"status": 1, "report": {"saved_counterexamples": {"p": "f.json"}}}])[0] == 1
