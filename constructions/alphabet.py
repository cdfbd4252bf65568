"""Text <-> token conversion.

The only text alphabet is printable ASCII: the 95 characters from space (token 0)
to '~' (token 94), in code-point order, so V = 95. For any other vocabulary
tokens are plain integers 0..V-1, written as comma-separated lists.
"""
from __future__ import annotations

from typing import Sequence

PRINTABLE_ASCII = "printable-ascii"
ASCII_CHARS = "".join(chr(c) for c in range(32, 127))
ASCII_SIZE = len(ASCII_CHARS)  # 95


class TokenError(ValueError):
    """Text or token list that does not fit the vocabulary."""


def encode_text(text: str) -> list[int]:
    """Printable ASCII text -> tokens; any other character is an error naming it."""
    out = []
    for i, ch in enumerate(text):
        code = ord(ch)
        if not 32 <= code <= 126:
            raise TokenError(
                f"character {ch!r} (U+{code:04X}) at index {i} is not printable ASCII; "
                "the alphabet is space through '~' (95 characters)"
            )
        out.append(code - 32)
    return out


def decode_text(tokens: Sequence[int]) -> str:
    return "".join(ASCII_CHARS[t] for t in tokens)


def parse_tokens(spec: str, vocab: int) -> list[int]:
    """``"3,1,4"`` -> [3, 1, 4], each checked to lie in 0..vocab-1."""
    parts = [p.strip() for p in spec.split(",")] if spec.strip() else []
    if not parts:
        raise TokenError("empty token list; give comma-separated integers such as 3,1,4")
    out = []
    for p in parts:
        try:
            t = int(p)
        except ValueError:
            raise TokenError(f"token {p!r} is not an integer; give comma-separated integers such as 3,1,4") from None
        if not 0 <= t < vocab:
            raise TokenError(f"token {t} is outside the vocabulary 0..{vocab - 1}")
        out.append(t)
    return out


def render(tokens: Sequence[int], alphabet: str | None) -> str:
    """Tokens as text for the ASCII alphabet, else as a comma-separated list."""
    if alphabet == PRINTABLE_ASCII:
        return decode_text(tokens)
    return ",".join(str(int(t)) for t in tokens)
