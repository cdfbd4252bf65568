"""prefixproof: verify constructive proofs about prompting and prefix-tuning (Petrov, Torr & Bibi, ICLR 2024).

The one import package. Its layers point down only (checked by import-linter, setup.cfg):

  prefixproof.constructions  model descriptions as pure data (the folder constructions/)
  prefixproof.verify         the engine that evaluates them (the folder verify/)
  prefixproof.theorems       the claims, their obligations and the one verdict ladder (the folder theorems/)
  prefixproof (this folder)  the application: the command line, commands, reports, audits, cross-check front ends

This folder holds the application layer; it may import every layer below it.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("prefixproof")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
