"""The README runs as written.

Every line of every fenced code block in README.md is one of:
- a console command `$ CMD` (a `prefixproof` command, or `echo '...' > FILE` writing an input), followed by the output it shows: it is run (in README order, in one temporary
  directory, so later commands see the files earlier ones wrote), must exit 0, and every output line shown
  must appear in its stdout in that order (a shown line ending in `…` matches any line that starts with the
  text before it);
- a ```python block: it is run with this Python in the same directory and must exit 0; a line
  `print(...)  # -> TEXT` also demands that TEXT is a line of its output;
- a synopsis line `prefixproof SUB ...` with placeholders: every `--option` it shows must be accepted by
  `prefixproof SUB --help` (for `build A|B`, by each construction's help), and every construction it names must
  exist;
- an install line `python -m pip install -e ".[extras]"`: every extra must exist in setup.cfg;
- the Quick start's two run lines `prefixproof verify` (run, exit 0) and `python -m pytest` (this run).
A line that is none of these fails the test, so no command in the README escapes it.
"""
from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "250", "PYTHONHASHSEED": "0"}


@dataclass
class Block:
    lang: str
    lines: list[str]
    start: int  # line number of the opening fence


@dataclass
class Console:
    command: str
    shown: list[str] = field(default_factory=list)
    line: int = 0


def blocks(text: str) -> list[Block]:
    out, cur = [], None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if cur is None:
                cur = Block(line[3:].strip(), [], n)
            else:
                out.append(cur)
                cur = None
        elif cur is not None:
            cur.lines.append(line)
    assert cur is None, f"README.md: code block opened at line {cur.start} is never closed"
    return out


def consoles(block: Block) -> list[Console]:
    out: list[Console] = []
    for k, line in enumerate(block.lines):
        if line.startswith("$ "):
            out.append(Console(line[2:], [], block.start + 1 + k))
        elif out:
            out[-1].shown.append(line)
    return out


def _run(argv: str | list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=ENV, shell=isinstance(argv, str), capture_output=True, text=True,
                          timeout=timeout)


def _cli(cmd: str) -> str:
    """`prefixproof ...` through this interpreter, so the test runs the installed code of this checkout."""
    assert cmd.startswith("prefixproof"), cmd
    return f"{sys.executable} -m {cmd}"


def _shown_lines_appear(shown: list[str], stdout: str) -> str | None:
    got = stdout.splitlines()
    i = 0
    for want in (s for s in shown if s.strip()):
        prefix = want[:-1] if want.endswith("…") else None
        while i < len(got) and not (got[i].startswith(prefix) if prefix is not None else got[i] == want):
            i += 1
        if i == len(got):
            return want
        i += 1
    return None


ECHO = re.compile(r"^echo '[^']*' > [A-Za-z0-9_.-]+$")
SYNOPSIS = re.compile(r"^prefixproof (\S+)(.*)$")
INSTALL = re.compile(r'^python -m pip install -e "\.\[([a-z,]+)\]"$')


def _help(sub: list[str], cwd: Path) -> str:
    r = _run([sys.executable, "-m", "prefixproof", *sub, "--help"], cwd)
    assert r.returncode == 0, f"`prefixproof {' '.join(sub)} --help` exited {r.returncode}: {r.stderr.strip()}"
    return r.stdout


def _synopsis_helps(line: str, cwd: Path) -> list[str]:
    """The --help texts a synopsis line must agree with (one per construction for `build A|B`)."""
    m = SYNOPSIS.match(line)
    assert m, line
    sub, rest = m.group(1), m.group(2)
    first = rest.split()[0] if rest.split() else ""
    if sub == "build" and first and not first.startswith(("-", "[", "(")):
        return [_help(["build", c], cwd) for c in first.split("|")]
    return [_help([sub], cwd)]


def _check_options(line: str, helps: list[str]) -> None:
    options = set(re.findall(r"--[a-z][a-z0-9-]*", line))
    for h in helps:
        missing = sorted(o for o in options if o not in h)
        assert not missing, f"README synopsis `{line.strip()}` shows {missing}, which --help does not accept"


def _extras() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return set(cfg["options.extras_require"])


def _start_quick_start_verify(cwd: Path) -> subprocess.Popen:
    """The Quick start's `prefixproof verify` (the longest line, independent of every other) runs on the second
    core, in its own directory, while the other lines run; the test waits for it where the README shows it."""
    cwd.mkdir()
    return subprocess.Popen([sys.executable, "-m", "prefixproof", "verify"], cwd=cwd, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_every_readme_line_is_known_and_runs(tmp_path):
    text = README.read_text(encoding="utf-8")
    quick = _start_quick_start_verify(tmp_path / "quick-start") if "\nprefixproof verify\n" in text else None
    try:
        ran, synopses = _every_line(text, tmp_path, quick)
    finally:
        if quick is not None and quick.poll() is None:
            quick.kill()
            quick.wait()
    assert ran >= 5 and synopses >= 5, (ran, synopses)


def _every_line(text: str, tmp_path: Path, quick: subprocess.Popen | None) -> tuple[int, int]:
    ran, synopses = 0, 0
    helps: list[str] | None = None
    for block in blocks(text):
        if block.lang == "python":
            script = "\n".join(block.lines)
            r = _run([sys.executable, "-c", script], tmp_path)
            assert r.returncode == 0, f"README python block at line {block.start} failed:\n{r.stderr[-2000:]}"
            for want in re.findall(r"#\s*->\s*(.+)$", script, flags=re.M):
                assert want.strip() in r.stdout.splitlines(), \
                    f"README python block at line {block.start} should print {want.strip()!r}; got {r.stdout!r}"
            ran += 1
            continue
        assert block.lang in ("", "console", "text", "sh", "bash"), f"README block at line {block.start}: " \
                                                                      f"unknown language {block.lang!r}"
        if any(line.startswith("$ ") for line in block.lines):
            for c in consoles(block):
                if ECHO.match(c.command):  # writes an input file for the commands after it
                    r = _run(c.command, tmp_path)
                    assert r.returncode == 0 and not c.shown, f"README line {c.line} `{c.command}`: {r.stderr}"
                    continue
                assert c.command.startswith("prefixproof "), f"README line {c.line}: only prefixproof commands " \
                                                             f"and `echo '...' > FILE` are allowed"
                r = _run(_cli(c.command), tmp_path)
                assert r.returncode == 0, f"README line {c.line} `{c.command}` exited {r.returncode}: " \
                                          f"{r.stderr.strip()[-500:]}"
                missing = _shown_lines_appear(c.shown, r.stdout)
                assert missing is None, f"README line {c.line} `{c.command}` should print {missing!r}; " \
                                        f"it printed:\n{r.stdout}"
                ran += 1
            continue
        helps = None
        for k, line in enumerate(block.lines):
            where = f"README line {block.start + 1 + k}"
            if not line.strip():
                continue
            if m := INSTALL.match(line.strip()):
                unknown = set(m.group(1).split(",")) - _extras()
                assert not unknown, f"{where}: extras {sorted(unknown)} are not in setup.cfg"
            elif line.strip() == "python -m pytest":
                pass  # this very run
            elif line.strip() == "prefixproof verify":
                assert quick is not None
                _, err = quick.communicate(timeout=600)
                assert quick.returncode == 0, f"{where}: `prefixproof verify` exited {quick.returncode}: {err[-500:]}"
                ran += 1
            elif line.startswith("prefixproof "):
                helps = _synopsis_helps(line, tmp_path)
                _check_options(line, helps)
                synopses += 1
            elif line.startswith(" ") and helps is not None:
                _check_options(line, helps)  # a continuation of the synopsis above
            else:
                pytest.fail(f"{where}: `{line}` is neither a `$ ` command, a synopsis, an install line nor the "
                            f"Quick start; mark commands with `$ ` so this test runs them")
    return ran, synopses


def test_readme_states_the_python_version_setup_cfg_requires():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    required = cfg["options"]["python_requires"].strip()  # e.g. ">=3.11"
    assert required.startswith(">="), required
    assert f"Python {required[:2]} {required[2:]}" in README.read_text(encoding="utf-8"), \
        f"README.md must say which Python it needs: Python {required[:2]} {required[2:]} (setup.cfg python_requires)"
