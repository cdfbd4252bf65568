"""`python -m prefixproof` is the `prefixproof` command."""
import sys

from prefixproof.cli import main

sys.exit(main())
