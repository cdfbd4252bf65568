"""prefixproof/audit."""
