"""verify/exact."""
