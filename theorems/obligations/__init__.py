"""What the claims share: how a claim is stated (`base.py`), how its obligations run (`runner.py`), the one
verdict ladder of the `decode` obligations (`ladder.py`) and the agreement rule between evaluators
(`agreement.py`), the lookup claims' encodings and shared obligations (`encoding.py`, `lookup.py`,
`stored_prompt.py`, `prompt_layouts.py`), and the limitation claims' shared checks (`limitation.py`).

The claims themselves are the modules one level up, one per claim. May import verify and constructions.
"""
