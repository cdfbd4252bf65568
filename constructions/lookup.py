"""Payload lookup: the building blocks shared by Theorems 1 and 2.

Both theorems store a payload t = (t_0, ..., t_{K-1}) with t_k = Y_k / V in one
virtual token, and answer "which coordinate?" with a one-hot pointer that comes
from somewhere else (the query's position in Theorem 1, the user's token in
Theorem 2). One attention layer with two heads and a three-layer ReLU MLP does
the lookup:

  head "fetch"    every query attends to the virtual token and copies t
                  into block `fetched`;
  head "pointer"  every query attends to the pointer's source and copies the
                  one-hot e_k into block `here`;
  MLP layer 1     select:k = ReLU(fetched:k + here:k - 1): equals t_k for the
                  pointed-at k, and 0 elsewhere because t_k <= (V-1)/V < 1;
  MLP layer 2     value = ReLU(sum_k select:k) = t_k;
  MLP layer 3     logit_j = (2j/V) value - (j/V)^2: nearest-grid decoding,
                  logit_y - logit_j = ((y-j)/V)^2 > 0 at value = y/V.

Leakage of the softmax and the scale that bounds it are in `scales.py`.
"""
from __future__ import annotations

from fractions import Fraction

from prefixproof.constructions.basis import ExactArray, Space, Wiring, exact_vector
from prefixproof.constructions.model import Dense, Head


def anchor_head(
    name: str,
    stream: Space,
    attn_out: Space,
    *,
    query: str,
    key: str,
    read: str,
    write: str,
    scale: float,
) -> Head:
    """A head whose every query (label `query`, constant 1) prefers the key with label `key`.

    Score s_ij = scale * [query direction of x_i] * [key direction of x_j]; with
    both directions 0/1 indicators, the intended key scores `scale` and every
    other visible key 0. The head copies block `read` of the attended position
    into block `write` of the attention output.
    """
    qk = Space.of(f"{name}.qk", {"match": None})
    v = Space.of(f"{name}.v", {"carry": stream.block_size(read)})
    W_Q = Wiring(stream, qk).connect(query, "match").build()
    W_K = Wiring(stream, qk).connect(key, "match").build()
    W_V = Wiring(stream, v).copy_block(read, "carry").build()
    W_O = Wiring(v, attn_out).copy_block("carry", write).build()
    return Head(name, W_Q, W_K, W_V, W_O, scale)


def match_head(
    name: str,
    stream: Space,
    attn_out: Space,
    *,
    match: str,
    read: str,
    write: str,
    scale: float,
) -> Head:
    """A head where query i prefers the key whose one-hot block `match` equals its own.

    Score s_ij = scale * <onehot_i, onehot_j>: `scale` on the matching key, 0 on
    every other. The head copies block `read` of the matching position into `write`.
    """
    size = stream.block_size(match)
    qk = Space.of(f"{name}.qk", {"match": size})
    v = Space.of(f"{name}.v", {"carry": stream.block_size(read)})
    W_Q = Wiring(stream, qk).copy_block(match, "match").build()
    W_K = Wiring(stream, qk).copy_block(match, "match").build()
    W_V = Wiring(stream, v).copy_block(read, "carry").build()
    W_O = Wiring(v, attn_out).copy_block("carry", write).build()
    return Head(name, W_Q, W_K, W_V, W_O, scale)


def lookup_mlp(attn_out: Space, K: int, V: int, pointers: tuple[str, ...] = ("here",)) -> tuple[tuple[Dense, ...], tuple[Space, ...], Space]:
    """The three-layer ReLU MLP: select the pointed-at payload, sum it, decode it to V logits.

    With several pointer blocks (one one-hot each), payload coordinate a is the
    row-major index of (a_1, ..., a_L), and it is selected only when every
    pointer points at its part: select:a = ReLU(fetched:a + sum_l here_l:a_l - L).
    """
    select = Space.of("mlp.select", {"select": K})
    value = Space.of("mlp.value", {"value": None})
    logits = Space.of("logits", {"logit": V})
    sizes = [attn_out.block_size(p) for p in pointers]
    L = len(pointers)

    # Layer 1: select:a = fetched:a + sum_l here_l:a_l - L. The ReLU that follows zeroes every a
    # some pointer does not point at: fetched:a <= (V-1)/V < 1 and the other pointers add at most L-1.
    w1 = Wiring(attn_out, select).copy_block("fetched", "select")
    for a in range(K):
        rest = a
        for block, size in reversed(list(zip(pointers, sizes))):
            w1.connect(f"{block}:{rest % size}", f"select:{a}")
            rest //= size
    b1 = ExactArray((K,), {(k,): Fraction(-L) for k in range(K)})

    # Layer 2: value = sum_k select:k (one non-zero term; the ReLU is the identity on it).
    w2 = Wiring(select, value).gather("select", "value")
    b2 = exact_vector(value, {})

    # Layer 3: nearest-grid decoding, logit_j = (2j/V) value - (j/V)^2.
    w3 = Wiring(value, logits).spread("value", "logit", [Fraction(2 * j, V) for j in range(V)])
    b3 = ExactArray((V,), {(j,): -Fraction(j * j, V * V) for j in range(1, V)})

    mlp = (Dense(w1.build(), b1), Dense(w2.build(), b2), Dense(w3.build(), b3))
    return mlp, (select, value), logits
