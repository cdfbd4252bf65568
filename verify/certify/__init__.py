"""verify/certify."""
