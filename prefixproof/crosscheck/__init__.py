"""Front ends of the framework cross-checks: construction directories in PyTorch, the report table, plots.

The measurements on GPT-2, PEFT and MiniLM live in the engine (`prefixproof.verify.crosscheck`);
these modules choose what to run and render it. May import everything below.
"""
