"""verify/identities."""
