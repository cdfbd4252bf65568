"""Exact evaluation: rationals through the forward pass in the hardmax limit (`hardmax.py`, streamed in batches of rows within the memory budget by `streaming.py`), arb balls
(`arb.py`), exact linear algebra and the packing's exhaustive exact lookup. Imports semantics and constructions.
"""
