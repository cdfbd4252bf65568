"""`python -m prefixproof.checker FILE --weights DIR`: the checker alone, without loading the generator."""
import sys
from pathlib import Path

from prefixproof.checker.main import run

args = sys.argv[1:]
if len(args) != 3 or args[1] != "--weights":
    print("usage: python -m prefixproof.checker FILE --weights DIR", file=sys.stderr)
    sys.exit(2)
sys.exit(run(Path(args[0]), Path(args[2])))
