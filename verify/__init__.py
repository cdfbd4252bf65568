"""The engine: everything that evaluates a model description. Imports only `prefixproof.constructions`.

  semantics/   the one forward pass (`forward.py`), its arithmetics (`ops.py`), formats, generation
  certify/     sound interval certificates at the real softmax scale
  exact/       exact rationals (hardmax limit) and arb balls
  symbolic/    sympy lemmas and derivations
  numeric/     the teacher-forced numeric checker and exhaustive counts
  identities/  the prefix identities, measured and fuzzed
  crosscheck/  PyTorch adapters and measurements on GPT-2, PEFT and MiniLM (the `torch` extra)
  verdict.py   the verdict vocabulary and the report record; parallel.py, optional.py: shared utilities
  budget.py    the memory budget (--max-memory); estimates.py: bytes a step allocates, computed before it
               runs; admission.py: sizes refused before anything is allocated
"""
