"""Audits of the verifier itself: the precision frontier sweep and the mutation self-test.

They run theorems' obligations many times over edited weights or growing sizes. May import
theorems, verify and constructions.
"""
