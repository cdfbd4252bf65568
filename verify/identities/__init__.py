"""The prefix identities (rescale, bias) as measurements: residual formulas with derived tolerances,
random transformer cases, properties, shrinking and the fuzz runner. Imports semantics and constructions.
"""
