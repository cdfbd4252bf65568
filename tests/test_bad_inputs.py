"""Issue 11: every bad input ends with exit status 2 and ONE line naming the fix, never a traceback, changes no
file, and stays within a memory cap. The table is tests/badinputs.py (every command); most cases run in-process
through `prefixproof.cli.main` under an address-space cap (RLIMIT_AS lowered around the call), a few as real
subprocesses under `RLIMIT_AS` (preexec_fn), including Ctrl-C (exit 130) and the entry point's flags.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from badinputs import CASES, Case
from prefixproof.cli import main

BUILDS = {
    "t1": ["theorem1", "--target", "AAAA"],
    "t1z": ["theorem1", "--target", "ZZZZ"],
    "t2": ["theorem2", "--vocab", "5", "--map", "shift:1"],
    "mt": ["multi_token", "--vocab", "3", "--inputs", "2", "--map", "random:1"],
}
IN_PROCESS_HEADROOM = 1_500_000_000  # bytes of address space one in-process case may add
SUBPROCESS_CAP = 3_000_000_000  # RLIMIT_AS of a subprocess case (the interpreter and numpy/scipy included)
SUBPROCESS_IDS = ("build-out-empty", "build-map-file-deep", "generate-declared-block-huge", "generate-input-very-long",
                  "verify-json-own-config", "fuzz-replay-case-bad-fields")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for name, argv in BUILDS.items():
        assert main(["build", *argv, "--out", str(root / name)]) == 0
    return root


def snapshot(box: Path) -> dict[str, tuple]:
    """Every entry under `box`: files by content hash, links by target, directories by name."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(box, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(box))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def address_cap(extra: int):
    """Lower this process's RLIMIT_AS to its current size + `extra` for the duration (a real cap: an allocation
    past it raises MemoryError, which the CLI would report as 'out of memory', failing the case's message)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _sandbox(models: Path, tmp_path: Path, case: Case) -> Path:
    box = tmp_path / "box"
    shutil.copytree(models, box, symlinks=True)
    for step in case.setup:
        step(box)
    return box


def _check(case: Case, code: int, err: str) -> None:
    assert code == case.code, f"{case.id}: exit {code}, stderr {err!r}"
    assert err.endswith("\n") and err.count("\n") == 1, f"{case.id}: stderr is not one line: {err!r}"
    assert "Traceback" not in err and "internal error" not in err and "out of memory" not in err, err
    assert err.startswith("prefixproof: error: "), err
    assert case.says.lower() in err.lower(), f"{case.id}: {case.says!r} not in {err!r}"


def test_the_table_is_large_and_covers_every_command():
    assert len(CASES) >= 150 and len({c.id for c in CASES}) == len(CASES)
    commands = {c.argv[0] for c in CASES if c.argv}
    assert {"verify", "build", "generate", "precision", "selftest", "crosscheck", "plot", "fuzz"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_in_process(case, models, tmp_path, monkeypatch, capsys):
    box = _sandbox(models, tmp_path, case)
    monkeypatch.chdir(box)
    before = snapshot(box)
    capsys.readouterr()
    with address_cap(IN_PROCESS_HEADROOM):
        code = main(list(case.argv))
    out, err = capsys.readouterr()
    _check(case, code, err)
    assert snapshot(box) == before, f"{case.id} changed files in its sandbox"


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (SUBPROCESS_CAP, SUBPROCESS_CAP))


def _cli(argv, cwd, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "prefixproof", *argv], cwd=cwd, env=ENV, preexec_fn=_cap,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_bad_inputs_in_real_processes_under_a_memory_cap(models, tmp_path):
    chosen = [c for c in CASES if c.id in SUBPROCESS_IDS]
    assert len(chosen) == len(SUBPROCESS_IDS)
    boxes = []
    for c in chosen:
        box = _sandbox(models, tmp_path / c.id, c)
        boxes.append((c, box, snapshot(box)))

    def one(item):
        c, box, _ = item
        p = _cli(c.argv, box)
        out, err = p.communicate(timeout=240)
        return p.returncode, err

    with ThreadPoolExecutor(3) as ex:
        results = list(ex.map(one, boxes))
    for (c, box, before), (code, err) in zip(boxes, results):
        _check(c, code, err)
        assert snapshot(box) == before, c.id


def test_version_and_debug(capsys, tmp_path):
    from prefixproof import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"prefixproof {__version__}"
    assert main(["--debug", "verify", "nosuch"]) == 2  # a usage error stays one line with --debug
    assert capsys.readouterr().err.count("\n") == 1


def test_internal_error_is_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    import prefixproof.commands.verify as verify_cmd

    def boom(args):
        raise ZeroDivisionError("planted bug")

    monkeypatch.setattr(verify_cmd, "cmd_generate", boom)
    code = main(["generate", "somewhere"])
    err = capsys.readouterr().err
    assert code == 3 and err.count("\n") == 1 and "planted bug" in err and "--debug" in err
    code = main(["generate", "somewhere", "--debug"])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" in err and "ZeroDivisionError" in err and "planted bug" in err


def test_memory_error_is_exit_2_never_1(capsys, monkeypatch):
    import prefixproof.commands.verify as verify_cmd

    def hungry(args):
        raise MemoryError

    monkeypatch.setattr(verify_cmd, "cmd_generate", hungry)
    code = main(["generate", "somewhere"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--max-memory" in err


def _importing(pid: int) -> bool:
    """The child is past interpreter start-up and inside prefixproof's imports (numpy is being mapped in)."""
    try:
        return "numpy" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _interrupt(argv, cwd, wait_for: str | None) -> tuple[int, str]:
    """SIGINT a real run: while prefixproof is still importing (wait_for None), or once `wait_for` is printed."""
    p = _cli(argv, cwd)
    seen = ""
    if wait_for is None:
        deadline = time.monotonic() + 120
        while not _importing(p.pid) and time.monotonic() < deadline:
            time.sleep(0.005)
    else:
        seen = p.stderr.readline()
        assert wait_for in seen, seen
        time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    return p.returncode, seen + err


def test_ctrl_c_during_imports_and_during_a_run(tmp_path):
    with ThreadPoolExecutor(2) as ex:
        early = ex.submit(_interrupt, ["verify", "theorem1"], tmp_path, None)
        late = ex.submit(_interrupt, ["fuzz", "--examples", "100000000", "--workers", "2", "--failures",
                                      str(tmp_path)], tmp_path, "fuzz:")
        for fut in (early, late):
            code, err = fut.result()
            lines = [line for line in err.splitlines() if not line.startswith(("fuzz:", "  "))]
            assert code == 130 and "Traceback" not in err, err
            assert lines == ["prefixproof: interrupted"], err


def test_unwritable_places_are_refused_before_the_run(tmp_path, monkeypatch, capsys):
    """Permissions cannot be taken away from root (the test machine runs as root), so os.access is made to
    answer as it would for an unprivileged user without write permission."""
    import prefixproof.outdir as outdir
    import prefixproof.usage as usage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(outdir.os, "access", lambda path, mode: False)
    assert main(["build", "theorem1", "--target", "AB", "--out", "o"]) == 2
    assert "no write permission" in capsys.readouterr().err
    monkeypatch.setattr(usage.os, "access", lambda path, mode: False)
    assert main(["verify", "theorem2", "--vocab", "3", "--json", "r.json"]) == 2
    err = capsys.readouterr().err
    assert "no write permission" in err and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == []
