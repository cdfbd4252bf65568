"""Exact evaluation: rationals through the forward pass in the hardmax limit (`hardmax.py`), arb balls
(`arb.py`), exact linear algebra and the packing's exhaustive exact lookup. Imports semantics and constructions.
"""
