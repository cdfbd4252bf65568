"""verify/crosscheck."""
