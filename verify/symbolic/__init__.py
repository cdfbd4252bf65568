"""sympy derivations: the decode, leakage and packing lemmas (`lemmas.py`), the prefix identities (`prefix.py`),
the rotation/sphere contrast (`sphere.py`) and the finite-sum normaliser they rest on (`sums.py`).
Imports nothing else of ours.
"""
