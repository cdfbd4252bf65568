"""Named residual-stream subspaces and the builders that wire them together.

Every vector space in a model description (the residual stream, an attention
head's query/key/value space, an MLP hidden layer, the logits) is a `Space`: an
ordered tuple of dimension labels. Labels are either a scalar name (``one``) or
``block:k`` for the k-th coordinate of a block (``target:3``, ``pos:0``).

Weights are never written with index arithmetic. A `Wiring` says where each
named input direction goes::

    w = Wiring(src=stream, dst=head_value)
    w.copy_block("target", "payload")        # target:k -> payload:k, for every k
    w.connect("one", "bias", Fraction(1, 2))

and `w.build()` gives the (dst.dim, src.dim) matrix as an `ExactArray`.
Coefficients stay exact `Fraction`s, so the exact/symbolic evaluators see the
intended values (j/V, not their float64 roundings); `ExactArray.to_float`
rounds them to float64 once, when the model is materialised.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

Number = int | Fraction

# Dense storage is used while the matrix is small or well filled; beyond this
# many entries a mostly-empty matrix is stored as CSR (V=32000 makes dense
# token blocks several GB).
DENSE_LIMIT = 1 << 16


def _label_block(label: str) -> str:
    return label.split(":", 1)[0]


@dataclass(frozen=True)
class Space:
    """An ordered set of named directions: one unique label per dimension."""

    name: str
    labels: tuple[str, ...]
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError(f"space {self.name!r} has no dimensions; give it at least one label")
        index: dict[str, int] = {}
        for i, label in enumerate(self.labels):
            if not isinstance(label, str) or not label:
                raise ValueError(f"space {self.name!r}: label {i} must be a non-empty string")
            if label in index:
                raise ValueError(f"space {self.name!r}: label {label!r} appears twice; labels must be unique")
            index[label] = i
        object.__setattr__(self, "_index", index)

    @classmethod
    def of(cls, name: str, blocks: Mapping[str, int | None]) -> "Space":
        """Build a space from ``{block: size}``; size ``None`` means one scalar label."""
        labels: list[str] = []
        for block, size in blocks.items():
            if size is None:
                labels.append(block)
            else:
                if size < 1:
                    raise ValueError(f"space {name!r}: block {block!r} has size {size}; sizes must be >= 1")
                labels.extend(f"{block}:{k}" for k in range(size))
        return cls(name, tuple(labels))

    @classmethod
    def anonymous(cls, name: str, dim: int) -> "Space":
        """A space with labels ``x:0..dim-1`` for weights that carry no meaning (random models, files)."""
        return cls.of(name, {"x": dim})

    @property
    def dim(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        try:
            return self._index[label]
        except KeyError:
            raise KeyError(f"space {self.name!r} has no direction {label!r}") from None

    def block(self, block: str) -> list[int]:
        """Indices of ``block:0, block:1, ...`` (or of the scalar label ``block``), in order."""
        if block in self._index:
            return [self._index[block]]
        out = []
        k = 0
        while f"{block}:{k}" in self._index:
            out.append(self._index[f"{block}:{k}"])
            k += 1
        if not out:
            raise KeyError(f"space {self.name!r} has no block {block!r}")
        return out

    def block_size(self, block: str) -> int:
        return len(self.block(block))

    def vector(self, values: Mapping[str, Number]) -> np.ndarray:
        """A float64 vector with the given labelled coordinates set, the rest zero."""
        out = np.zeros(self.dim)
        for label, value in values.items():
            out[self.index(label)] = float(value)
        return out


@dataclass(frozen=True)
class ExactArray:
    """A 1-D or 2-D array given by exact rational entries; everything else is zero.

    Constructions build their weights as ExactArrays (the mathematical object,
    with entries such as j/V); `to_float` rounds each entry to float64 once.
    """

    shape: tuple[int, ...]
    entries: Mapping[tuple[int, ...], Fraction]

    def __post_init__(self) -> None:
        if len(self.shape) not in (1, 2) or min(self.shape, default=0) < 0:
            raise ValueError(f"ExactArray shape must be (n,) or (rows, cols), got {self.shape}")

    @classmethod
    def zeros(cls, *shape: int) -> "ExactArray":
        return cls(tuple(shape), {})

    def to_float(self, sparse: bool | None = None) -> np.ndarray | sp.csr_array:
        """Round every entry to the nearest float64 (once); dense or CSR by size."""
        keys = list(self.entries)
        vals = np.fromiter((float(self.entries[k]) for k in keys), dtype=np.float64, count=len(keys))
        idx = [np.fromiter((k[a] for k in keys), dtype=np.int64, count=len(keys)) for a in range(len(self.shape))]
        if len(self.shape) == 1:
            out = np.zeros(self.shape)
            out[idx[0]] = vals
            return out
        rows, cols = self.shape
        if sparse is None:
            sparse = rows * cols > DENSE_LIMIT and len(keys) * 8 < rows * cols
        if sparse:
            m = sp.csr_array((vals, (idx[0], idx[1])), shape=self.shape)
            m.sort_indices()
            return m
        out = np.zeros(self.shape)
        out[idx[0], idx[1]] = vals
        return out


class Wiring:
    """Builder for a linear map src -> dst, stated as where named directions go."""

    def __init__(self, src: Space, dst: Space) -> None:
        self.src = src
        self.dst = dst
        self._entries: dict[tuple[int, int], Fraction] = {}

    def connect(self, src_label: str, dst_label: str, coef: Number = 1) -> "Wiring":
        """Add ``coef`` times direction ``src_label`` to direction ``dst_label``."""
        key = (self.dst.index(dst_label), self.src.index(src_label))
        value = self._entries.get(key, Fraction(0)) + Fraction(coef)
        if value == 0:
            self._entries.pop(key, None)
        else:
            self._entries[key] = value
        return self

    def copy_block(self, src_block: str, dst_block: str, coef: Number = 1) -> "Wiring":
        """``src_block:k -> dst_block:k`` for every k; the two blocks must have equal size."""
        src_idx, dst_idx = self.src.block(src_block), self.dst.block(dst_block)
        if len(src_idx) != len(dst_idx):
            raise ValueError(
                f"cannot copy block {src_block!r} ({len(src_idx)} dims) into {dst_block!r} ({len(dst_idx)} dims)"
            )
        for s, d in zip(src_idx, dst_idx):
            self.connect(self.src.labels[s], self.dst.labels[d], coef)
        return self

    def spread(self, src_label: str, dst_block: str, coefs: Iterable[Number]) -> "Wiring":
        """``src_label -> dst_block:k`` with coefficient ``coefs[k]``."""
        dst_idx = self.dst.block(dst_block)
        coefs = list(coefs)
        if len(coefs) != len(dst_idx):
            raise ValueError(f"spread into {dst_block!r} needs {len(dst_idx)} coefficients, got {len(coefs)}")
        for d, c in zip(dst_idx, coefs):
            if c:
                self.connect(src_label, self.dst.labels[d], c)
        return self

    def gather(self, src_block: str, dst_label: str, coef: Number = 1) -> "Wiring":
        """``src_block:k -> dst_label`` for every k: the sum of a block."""
        for s in self.src.block(src_block):
            self.connect(self.src.labels[s], dst_label, coef)
        return self

    def build(self) -> ExactArray:
        """The (dst.dim, src.dim) matrix, exact."""
        return ExactArray((self.dst.dim, self.src.dim), dict(self._entries))


def exact_vector(space: Space, values: Mapping[str, Number]) -> ExactArray:
    """An exact vector over ``space``: the given labelled coordinates, zero elsewhere."""
    entries = {}
    for label, value in values.items():
        if Fraction(value) != 0:
            entries[(space.index(label),)] = Fraction(value)
    return ExactArray((space.dim,), entries)


def named_rows(space: Space, rows: Sequence[Mapping[str, Number]]) -> ExactArray:
    """A table with one row per entry of ``rows`` (an embedding E or positions P), each row stated as the
    named coordinates it sets: ``named_rows(stream, [{"one": 1, "pos:0": 1}, ...])``."""
    entries = {}
    for r, values in enumerate(rows):
        for label, value in values.items():
            if Fraction(value) != 0:
                entries[(r, space.index(label))] = Fraction(value)
    return ExactArray((len(rows), space.dim), entries)


def one_hot_tokens(space: Space, block: str, V: int) -> ExactArray:
    """The token embedding E[u] = ``block:u`` (one-hot in the named block), for u in 0..V-1."""
    return named_rows(space, [{f"{block}:{u}": 1} for u in range(V)])


def position_rows(space: Space, n: int) -> ExactArray:
    """The positional table P[p] = ``one`` + ``pos:p`` for p in 0..n-1: the constant direction that queries
    use, and the one-hot of the position that keys match."""
    return named_rows(space, [{"one": 1, f"pos:{p}": 1} for p in range(n)])


def block_names(labels: Sequence[str]) -> list[str]:
    """The distinct block names of a label tuple, in order of first appearance."""
    seen: dict[str, None] = {}
    for label in labels:
        seen.setdefault(_label_block(label), None)
    return list(seen)
