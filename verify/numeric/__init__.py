"""Numeric evaluation on finite input sets: the teacher-forced decode checker (`decoding.py`), the build self-check (`selfcheck.py`), hard-prompt
completion counts, attention patterns and activation probes. Imports semantics and constructions.
"""
