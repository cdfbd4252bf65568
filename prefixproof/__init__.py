"""prefixproof."""
