"""One module per command family (verify/generate/precision/selftest, build, crosscheck, fuzz, plot).

Each turns parsed arguments into calls on the layers below and an exit status. Commands share usage
helpers through `prefixproof.usage`, never through `prefixproof.cli`, which only parses and dispatches.
"""
