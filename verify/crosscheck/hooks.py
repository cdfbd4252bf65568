"""Reading activations out of Hugging Face modules with forward hooks (no change to the modules).

A `Recorder` registers hooks for the duration of a `with` block and keeps what
each hooked call saw: a module's first input (the layer input, or the head
outputs entering the output projection W_O) or its first output.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Hashable

import numpy as np

from prefixproof.verify import optional as extras

torch = extras.torch()


class Recorder:
    def __init__(self) -> None:
        self._calls: dict[Hashable, list[Any]] = defaultdict(list)
        self._handles: list[Any] = []

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def input(self, module: Any, key: Hashable) -> None:
        """Record the first positional input (or `hidden_states`) of every call."""
        def hook(_m: Any, args: tuple, kwargs: dict) -> None:
            self._calls[key].append(args[0] if args else kwargs["hidden_states"])
        self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def output(self, module: Any, key: Hashable, index: int = 0) -> None:
        """Record output[index] (or the output itself when it is a tensor) of every call."""
        def hook(_m: Any, _args: tuple, out: Any) -> None:
            self._calls[key].append(out[index] if isinstance(out, tuple) else out)
        self._handles.append(module.register_forward_hook(hook))

    def take(self, key: Hashable) -> Any:
        """The value of the single call recorded under `key` since the last take; then forget it."""
        calls = self._calls.pop(key, [])
        if len(calls) != 1:
            raise RuntimeError(f"expected exactly one recorded call for {key!r}, got {len(calls)}")
        return calls[0]

    def clear(self) -> None:
        self._calls.clear()


def split_heads(x: Any, heads: int) -> Any:
    """(B, T, H * d) -> (B, H, T, d)."""
    B, T, width = x.shape
    return x.reshape(B, T, heads, width // heads).transpose(1, 2)


def to_numpy(x: Any) -> np.ndarray:
    """The exact values of a framework tensor (float32 and float64 convert exactly to float64)."""
    return x.detach().to(torch.float64).cpu().numpy()


def causal_additive_mask(T: int, dtype: Any) -> Any:
    """(1, 1, T, T): 0 where key j <= query i, the dtype's most negative number elsewhere (eager masks)."""
    blocked = torch.ones(T, T, dtype=torch.bool).triu(1)
    return torch.zeros(T, T, dtype=dtype).masked_fill(blocked, torch.finfo(dtype).min)[None, None]
