"""Run import-linter's layer contract (setup.cfg, [importlinter]) on the installed package tree.

The user's top-level folders (constructions/, verify/, theorems/) install under `prefixproof` through
setup.cfg's package_dir, so on disk they do not sit inside prefixproof/. import-linter walks a package's
folder, so this script assembles the tree as it is installed (a plain copy, no build), then runs
`lint-imports` on it. Exit status: lint-imports' own (0 = every contract kept).

    python tests/lint_layers.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = ("constructions", "verify", "theorems")  # setup.cfg: prefixproof.<name> = <name>


def assemble(dest: Path) -> Path:
    pkg = dest / "prefixproof"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "prefixproof", pkg, ignore=ignore)
    for name in MAPPED:
        shutil.copytree(ROOT / name, pkg / name, ignore=ignore)
    return pkg


def lint(capture: bool = False, edit=None) -> subprocess.CompletedProcess:
    """Run the contracts; `edit(package_dir)` may change the assembled copy first (for negative controls)."""
    with tempfile.TemporaryDirectory(prefix="prefixproof-layers-") as tmp:
        pkg = assemble(Path(tmp))
        if edit is not None:
            edit(pkg)
        env = dict(os.environ, PYTHONPATH=tmp)
        exe = shutil.which("lint-imports")
        cmd = [exe] if exe else [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]
        return subprocess.run(cmd + [str(ROOT / "setup.cfg"), "--no-cache"], cwd=tmp, env=env,
                              capture_output=capture, text=True)


if __name__ == "__main__":
    sys.exit(lint().returncode)
