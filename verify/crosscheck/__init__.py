"""PyTorch adapters and identity measurements on GPT-2 (random init), PEFT prefix tuning and MiniLM.
Needs the optional `torch` extra, imported through `verify/optional.py`. Imports the rest of the engine.
"""
