"""prefixproof/commands."""
