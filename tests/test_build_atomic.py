"""Issue 11: a build killed at any moment leaves --out entirely the old model or entirely the new one.

A real process rebuilding target AAAA -> ZZZZ with --force is SIGKILLed (1) at exact moments, by a child that
wraps one step of the build and kills itself there (before each file is written, before the fsyncs, right
before and right after the swap), and (2) from outside, as soon as the staging directory appears and after a
seeded random delay. Afterwards `generate` must print what config.json records, and loading (fingerprint
included) must pass: the old model or the new one, never a mix. The documented two-rename fallback (no
renameat2) is killed between its renames: --out is then absent, and the old and the new model are each whole
under their hidden names, as prefixproof/outdir.py documents.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from prefixproof.cli import main
from prefixproof.constructions.io import load_model, load_prompt

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}

CHILD = textwrap.dedent("""
    import argparse, os, shutil, signal, sys
    point, nth, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    import prefixproof.constructions.io as io
    import prefixproof.outdir as od

    calls = [0]
    def bomb(fn):
        def wrapped(*a, **k):
            calls[0] += 1
            if calls[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            out = fn(*a, **k)
            if point == "after-exchange":
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        return wrapped

    if point == "save_file":
        io.save_file = bomb(io.save_file)
    elif point == "fsync":
        od._fsync = bomb(od._fsync)
    elif point in ("exchange", "after-exchange"):
        od._exchange = bomb(od._exchange)
    elif point == "rmtree":
        od.shutil.rmtree = bomb(shutil.rmtree)
    elif point == "fallback-rename":
        od._renameat2_exchange = lambda a, b: False
        od.os.rename = bomb(os.rename)
    from prefixproof.commands.build import cmd_build
    cmd_build(argparse.Namespace(theorem="theorem1", target="ZZZZ", tokens=None, vocab=None, length=None,
                                 out=out, force=True))
    print("finished without being killed")
""")

POINTS = [("save_file", 1), ("save_file", 2), ("fsync", 1), ("fsync", 3), ("exchange", 1), ("after-exchange", 0),
          ("rmtree", 1)]


@pytest.fixture(scope="module")
def old_model(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("old") / "model"
    assert main(["build", "theorem1", "--target", "AAAA", "--out", str(d)]) == 0
    return d


def _state(d: Path, capsys) -> str:
    """The target a whole, consistent model directory generates; fails on any mix."""
    model = load_model(d)  # weights_sha256 and fingerprint (config, weights, prompt) checked
    load_prompt(d, model)
    capsys.readouterr()
    assert main(["generate", str(d)]) == 0
    generated = capsys.readouterr().out.strip()
    recorded = json.loads((d / "config.json").read_text())["prompt"]["target"]
    assert generated == recorded, f"{d}: generates {generated!r} but config.json records {recorded!r}"
    return generated


def _fresh(old_model: Path, where: Path) -> Path:
    where.mkdir(parents=True)
    d = where / "model"
    shutil.copytree(old_model, d)
    return d


def _run_child(point: str, nth: int, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, point, str(nth), str(out)], env=ENV, capture_output=True,
                          text=True, timeout=300)


def test_killed_at_every_step_of_a_rebuild(old_model, tmp_path, capsys):
    outs = {p: _fresh(old_model, tmp_path / f"{p[0]}-{p[1]}") for p in POINTS}
    with ThreadPoolExecutor(3) as ex:
        runs = dict(zip(POINTS, ex.map(lambda p: _run_child(p[0], p[1], outs[p]), POINTS)))
    seen = {}
    for p, r in runs.items():
        assert r.returncode == -signal.SIGKILL, (p, r.returncode, r.stdout, r.stderr)
        seen[p] = _state(outs[p], capsys)
    # before the swap the old model is in place, from the swap on the new one
    assert [seen[p] for p in POINTS] == ["AAAA"] * 5 + ["ZZZZ"] * 2, seen
    # the staging directory and, after the swap, the old model are left as hidden siblings, never inside --out
    for p in POINTS:
        assert sorted(os.listdir(outs[p])) == ["adapter_config.json", "adapter_model.safetensors", "config.json",
                                             "model.safetensors", "prompt.safetensors"]


def test_the_two_rename_fallback_killed_between_its_renames(old_model, tmp_path, capsys):
    out = _fresh(old_model, tmp_path / "fallback")
    r = _run_child("fallback-rename", 2, out)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert not out.exists()  # documented: no --out for that instant, both models whole beside it
    old = [p for p in out.parent.iterdir() if p.name.startswith(".model.old-")]
    new = [p for p in out.parent.iterdir() if p.name.startswith(".model.tmp-")]
    assert len(old) == len(new) == 1
    assert _state(old[0], capsys) == "AAAA" and _state(new[0], capsys) == "ZZZZ"


def _kill_real_build(out: Path, how: str, delay: float) -> int:
    p = subprocess.Popen([sys.executable, "-m", "prefixproof", "build", "theorem1", "--target", "ZZZZ", "--out",
                          str(out), "--force"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    if how == "staging":  # as soon as the staging directory beside --out appears
        while p.poll() is None and time.monotonic() < deadline and \
                not any(q.name.startswith(".model.tmp-") for q in out.parent.iterdir()):
            time.sleep(0.001)
    else:
        time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    return p.wait(timeout=60)


def test_real_rebuilds_killed_from_outside(old_model, tmp_path, capsys):
    rng = random.Random(11)
    plans = [("staging", 0.0), ("delay", rng.uniform(0.5, 4.0)), ("delay", rng.uniform(4.0, 9.0))]
    outs = [_fresh(old_model, tmp_path / f"real{i}") for i in range(len(plans))]
    with ThreadPoolExecutor(3) as ex:
        list(ex.map(lambda a: _kill_real_build(*a), [(o, h, t) for o, (h, t) in zip(outs, plans)]))
    for out in outs:
        assert _state(out, capsys) in ("AAAA", "ZZZZ")


def test_a_finished_rebuild_replaces_the_model_and_leaves_nothing_behind(old_model, tmp_path, capsys):
    out = _fresh(old_model, tmp_path / "done")
    assert main(["build", "theorem1", "--target", "ZZZZ", "--out", str(out), "--force"]) == 0
    assert _state(out, capsys) == "ZZZZ"
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def test_an_empty_out_directory_is_used_and_a_failed_build_leaves_no_staging_directory(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["build", "theorem1", "--target", "AB", "--out", str(empty)]) == 0
    assert _state(empty, capsys) == "AB"
    assert main(["build", "theorem2", "--vocab", "3", "--map", "const:5", "--out", str(tmp_path / "x")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_negative_control_a_half_replaced_directory_is_caught(old_model, tmp_path, capsys):
    """What the old one-file-at-a-time writer left when killed: ZZZZ's prompt beside AAAA's config."""
    from prefixproof.constructions.io import FormatError

    new = tmp_path / "new"
    assert main(["build", "theorem1", "--target", "ZZZZ", "--out", str(new)]) == 0
    mixed = _fresh(old_model, tmp_path / "mixed")
    shutil.copyfile(new / "prompt.safetensors", mixed / "prompt.safetensors")
    with pytest.raises(FormatError, match="fingerprint mismatch in prompt.safetensors"):
        _state(mixed, capsys)
