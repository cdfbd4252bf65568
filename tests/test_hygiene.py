"""`fuzz` writes nothing into the user's working directory: hypothesis's files go under a cache directory."""
import os
import subprocess
import sys
from pathlib import Path

from prefixproof.commands.fuzz import hypothesis_home


def test_fuzz_in_a_fresh_directory_leaves_it_untouched(tmp_path):
    cwd, cache = tmp_path / "work", tmp_path / "cache"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_STORAGE_DIRECTORY"}
    env.update(XDG_CACHE_HOME=str(cache), COLUMNS="100")
    proc = subprocess.run([sys.executable, "-m", "prefixproof", "fuzz", "--property", "prefix_rescale", "--examples", "5",
                           "--size", "small", "--no-controls", "--workers", "1", "--quiet"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(cwd.iterdir()) == []  # no .hypothesis/, no failure files
    # hypothesis did write something, and it went to the cache (so the check above is not vacuous)
    assert any((cache / "prefixproof" / "hypothesis").rglob("*"))


def test_the_cache_location_follows_xdg_and_never_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert hypothesis_home() == tmp_path / "prefixproof" / "hypothesis"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored, as the XDG spec says
    assert hypothesis_home() == Path.home() / ".cache" / "prefixproof" / "hypothesis"
    monkeypatch.setenv("HYPOTHESIS_STORAGE_DIRECTORY", str(tmp_path / "mine"))
    assert hypothesis_home() == tmp_path / "mine"
