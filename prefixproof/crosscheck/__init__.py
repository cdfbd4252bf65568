"""prefixproof/crosscheck."""
