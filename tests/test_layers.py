"""The package layout: one import package, layers that point down (import-linter), no stray top-level names."""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

from lint_layers import ROOT, lint


def test_layer_contract_is_kept():
    proc = lint(capture=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "KEPT" in proc.stdout and "BROKEN" not in proc.stdout


def test_layer_contract_flags_an_upward_import():
    # negative control: constructions (pure data) importing the engine must break the contract
    def edit(pkg: Path) -> None:
        f = pkg / "constructions" / "scales.py"
        f.write_text(f.read_text() + "\nimport prefixproof.verify.semantics.forward  # noqa\n")

    proc = lint(capture=True, edit=edit)
    assert proc.returncode != 0
    assert "prefixproof.constructions.scales -> prefixproof.verify.semantics.forward" in proc.stdout


def test_every_package_folder_is_listed_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = {x.strip() for x in cfg["options"]["packages"].split() if x.strip()}
    found = set()
    for top in ("prefixproof", "constructions", "verify", "theorems"):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            found.add(".".join(parts) if top == "prefixproof" else "prefixproof." + ".".join(parts))
    assert listed == found


def test_only_prefixproof_is_importable_outside_the_checkout(tmp_path):
    code = ("import importlib.util as u, prefixproof.verify.semantics.forward as f;"
            "print([n for n in ('verify', 'theorems', 'constructions') if u.find_spec(n)]); print(f.__name__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "prefixproof.verify.semantics.forward"]


def test_every_application_module_is_in_the_top_layer():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    top = cfg["importlinter:contract:layers"]["layers"].strip().split("\n")[0]
    listed = {name.strip() for name in top.split(":")}
    app = {f"prefixproof.{p.stem}" for p in (ROOT / "prefixproof").glob("*.py")
           if p.stem not in ("__init__", "__main__")}
    app |= {f"prefixproof.{p.parent.name}" for p in (ROOT / "prefixproof").glob("*/__init__.py")}
    assert app == listed


def test_checker_contract_flags_an_import_of_the_engine():
    # negative control: the independent certificate checker importing the engine must break its contract
    def edit(pkg: Path) -> None:
        f = pkg / "checker" / "iv.py"
        f.write_text(f.read_text() + "\nimport prefixproof.verify.certify.interval  # noqa\n")

    proc = lint(capture=True, edit=edit)
    assert proc.returncode != 0
    assert "prefixproof.checker.iv -> prefixproof.verify.certify.interval" in proc.stdout
