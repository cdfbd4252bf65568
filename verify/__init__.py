"""Evaluators of model descriptions, the claim checker, reports and the CLI."""
