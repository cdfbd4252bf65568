"""Content-attention patterns reachable by prefixes and by fine-tuning, on a small exact model.

The model: one layer, one head, width 2, no causal mask, three tokens with
embeddings a = (1, 0), b = (0, 1), c = (2, 1) (not collinear), zero positions,
W_Q = W_K = W_V = W_O = I and scale 1. The content is the sequence (a, b, c)
and the query is c, so the scores are s_j = <W_Q c, W_K x_j> = (2, 1, 5): the
pattern (the ranking of the content attention) is c > a > b.

A pattern is the strict ranking of the three content weights; there are 3! = 6.
Scores are exact integers here, and the softmax is increasing in each score
with a common denominator, so the ranking of the weights is the ranking of the
scores, decided exactly. The float forward pass is run on every model and
every prefix of the grids as a cross-check.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from prefixproof.constructions.basis import Space
from prefixproof.constructions.model import Dense, Head, Layer, Model, Vocab
from prefixproof.verify.semantics.forward import Prefix, forward

TOKENS = np.array([[1, 0], [0, 1], [2, 1]])  # a, b, c
SEQUENCE = np.array([0, 1, 2])  # content a, b, c; the query is the last position (c)
IDENTITY = np.eye(2, dtype=np.int64)
GRID = (-1, 0, 1)
PREFIX_GRID = (-2, -1, 0, 1, 2)

Pattern = tuple[int, ...]  # content positions, highest weight first


def exact_pattern(W_Q: np.ndarray, W_K: np.ndarray) -> Pattern | None:
    """The ranking of the exact scores at the query (None when two scores tie)."""
    q = [sum(Fraction(int(W_Q[r, c])) * int(TOKENS[SEQUENCE[-1], c]) for c in range(2)) for r in range(2)]
    scores = [sum(q[r] * sum(Fraction(int(W_K[r, c])) * int(TOKENS[t, c]) for c in range(2)) for r in range(2))
              for t in SEQUENCE]
    if len(set(scores)) < len(scores):
        return None
    return tuple(sorted(range(len(scores)), key=lambda j: -scores[j]))


def model(W_Q: np.ndarray, W_K: np.ndarray) -> Model:
    s = Space.anonymous("stream", 2)
    head = Head("h", np.asarray(W_Q, float), np.asarray(W_K, float), np.eye(2), np.eye(2), 1.0)
    layer = Layer((head,), (Dense(np.eye(2), np.zeros(2)),), s, (), s, causal=False)
    return Model(Vocab(3), s, TOKENS.astype(float), np.zeros((3, 2)), (layer,), unembed=np.zeros((3, 2)))


def float_patterns(m: Model, prefix: Prefix | None = None, batch: int = 1) -> list[Pattern]:
    """Rankings of the content attention at the query, from the float forward pass (one per batch row)."""
    A = forward(m, np.tile(SEQUENCE, (batch, 1)), prefixes=[prefix], return_attention=True).attention[0]
    P = 0 if prefix is None else prefix.length
    content = A[:, 0, -1, P:]
    return [tuple(int(j) for j in np.argsort(-row, kind="stable")) for row in content]


@dataclass(frozen=True)
class Witness:
    label: str  # "W_Q += [[...]]", or the prefix keys
    W_Q: np.ndarray
    W_K: np.ndarray
    rank: int  # rank of the update (0 for a prefix)


@dataclass(frozen=True)
class Reach:
    patterns: dict[Pattern, Witness]  # pattern -> the first update (or prefix) found reaching it
    tried: int
    ties: int
    float_disagreements: int


def updates() -> dict[str, list[Witness]]:
    """The finite grids of weight updates: full fine-tuning of W_Q or W_K, and rank-1 LoRA on W_Q or W_K."""
    full = [np.array(e).reshape(2, 2) for e in itertools.product(GRID, repeat=4)]
    rank1 = [np.outer(b, a) for b in itertools.product(GRID, repeat=2) for a in itertools.product(GRID, repeat=2)]
    out: dict[str, list] = {"full fine-tuning": [], "LoRA rank 1 on W_Q": [], "LoRA rank 1 on W_K": []}
    for kind, deltas in (("full fine-tuning", full), ("LoRA rank 1", rank1)):
        for D in deltas:
            r = int(np.linalg.matrix_rank(D))
            q = Witness(f"W_Q += {D.tolist()}", IDENTITY + D, IDENTITY, r)
            k = Witness(f"W_K += {D.tolist()}", IDENTITY, IDENTITY + D, r)
            if kind == "full fine-tuning":
                out[kind] += [q, k]
            else:
                out["LoRA rank 1 on W_Q"].append(q)
                out["LoRA rank 1 on W_K"].append(k)
    return out


def finetune_reach() -> dict[str, Reach]:
    out = {}
    for kind, grid in updates().items():
        found: dict[Pattern, Witness] = {}
        ties = bad = 0
        for w in grid:
            pat = exact_pattern(w.W_Q, w.W_K)
            if pat is None:
                ties += 1
                continue
            bad += float_patterns(model(w.W_Q, w.W_K))[0] != pat
            found.setdefault(pat, w)
        out[kind] = Reach(found, len(grid), ties, bad)
    return out


def prefix_reach() -> Reach:
    """Every raw prefix of 1 or 2 positions with keys in PREFIX_GRID^2 (values do not affect attention)."""
    m = model(IDENTITY, IDENTITY)
    found: dict[Pattern, Witness] = {}
    tried = bad = 0
    original = exact_pattern(IDENTITY, IDENTITY)
    for P in (1, 2):
        keys = np.array(list(itertools.product(itertools.product(PREFIX_GRID, repeat=2), repeat=P)), dtype=float)
        prefix = Prefix(keys=(keys,), values=(np.zeros_like(keys),))
        for row, pat in enumerate(float_patterns(m, prefix, batch=len(keys))):
            found.setdefault(pat, Witness(f"prefix keys {keys[row].tolist()}", IDENTITY, IDENTITY, 0))
            bad += pat != original
        tried += len(keys)
    return Reach(found, tried, 0, bad)


def flipped_pair(before: Pattern, after: Pattern) -> tuple[int, int]:
    """Content keys (j, k) with A[j] > A[k] before and A[j] < A[k] after (the patterns must differ)."""
    for a in range(len(before)):
        for b in range(a + 1, len(before)):
            j, k = before[a], before[b]
            if after.index(j) > after.index(k):
                return j, k
    raise ValueError("the patterns are equal: no pair changes order")
