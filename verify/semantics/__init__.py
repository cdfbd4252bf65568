"""verify/semantics."""
