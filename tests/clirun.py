"""Run the command line in-process, as the tests do: (exit status, stdout, stderr)."""
from __future__ import annotations

from prefixproof.cli import main


def run(capsys, *argv):
    """`prefixproof ARGV...` through `prefixproof.cli.main`; arguments are turned into strings first."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
