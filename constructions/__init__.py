"""Model descriptions as pure data: named subspaces, weights, scales and labels.

Nothing in this package evaluates a model or imports `verify`.
"""
