"""Sound interval certificates of the lookup claims over their whole input sets, in a stated arithmetic.

`interval.py` is the outward-rounded arithmetic; `attention.py` and `value_blocks.py` are the factored
derivation of the forward pass used for speed (docs/semantics.md says why it is separate and how a test
holds it to `semantics/forward.py`); `decoder.py` decides the argmax on logit differences; `packing.py` is the
packing construction's error recursion. Imports semantics and constructions.
"""
