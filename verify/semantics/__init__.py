"""The one model semantics, written once: `forward.py` runs a model description through an arithmetic
(`ops.py`: float, interval balls, exact hardmax, arb); `formats.py` rounds to low-precision formats;
`generate.py` is incremental greedy generation with a key/value cache. Imports only constructions.
"""
