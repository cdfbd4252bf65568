"""verify/numeric."""
