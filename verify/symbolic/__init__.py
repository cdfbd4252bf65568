"""verify/symbolic."""
