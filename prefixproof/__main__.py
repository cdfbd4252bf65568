"""`python -m prefixproof` is the `prefixproof` command."""
from prefixproof.entry import run

run()
