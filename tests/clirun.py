"""Run the command line in-process, as the tests do: (exit status, stdout, stderr)."""
from __future__ import annotations

import shutil
from pathlib import Path

from prefixproof.cli import main


def run(capsys, *argv):
    """`prefixproof ARGV...` through `prefixproof.cli.main`; arguments are turned into strings first."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def build_all(root: Path, builds: dict[str, list[str]]) -> Path:
    """`prefixproof build ARGV --out root/NAME` for every NAME: ARGV of `builds` (each must exit 0); root."""
    for name, argv in builds.items():
        assert main(["build", *argv, "--out", str(root / name)]) == 0, name
    return root


def copy_built(built: Path, tmp_path: Path, name: str) -> Path:
    """A private copy of the built directory `name` (for tests that edit it)."""
    shutil.copytree(built / name, tmp_path / name)
    return tmp_path / name
