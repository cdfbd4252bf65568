"""Named subspaces, wiring builders and model validation."""
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp

from prefixproof.constructions.basis import ExactArray, Space, Wiring, exact_vector
from prefixproof.constructions.io import space_from_json, space_to_json
from prefixproof.constructions.model import Dense, Head, ModelError, materialize
from prefixproof.constructions.theorem1 import Theorem1


def test_space_labels_and_blocks():
    s = Space.of("s", {"one": None, "pos": 3, "target": 2})
    assert s.labels == ("one", "pos:0", "pos:1", "pos:2", "target:0", "target:1")
    assert s.block("pos") == [1, 2, 3]
    assert s.block("one") == [0]
    assert s.index("target:1") == 5
    with pytest.raises(KeyError, match="no direction 'pos:9'"):
        s.index("pos:9")
    with pytest.raises(ValueError, match="appears twice"):
        Space("bad", ("a", "a"))


def test_wiring_states_where_directions_go():
    src = Space.of("src", {"one": None, "a": 3})
    dst = Space.of("dst", {"b": 3, "sum": None})
    w = Wiring(src, dst).copy_block("a", "b", 2).gather("a", "sum").connect("one", "sum", Fraction(1, 3))
    M = w.build().to_float()
    x = np.array([1.0, 5.0, 7.0, 11.0])
    np.testing.assert_array_equal(M @ x, [10.0, 14.0, 22.0, 23.0 + 1 / 3])
    with pytest.raises(ValueError, match="cannot copy block"):
        Wiring(src, Space.of("d", {"b": 2})).copy_block("a", "b")


def test_exact_array_keeps_rationals_and_rounds_once():
    v = exact_vector(Space.of("s", {"x": 3}), {"x:1": Fraction(1, 3)})
    assert v.entries == {(1,): Fraction(1, 3)}
    np.testing.assert_array_equal(v.to_float(), [0.0, 1 / 3, 0.0])
    big = ExactArray((1000, 1000), {(5, 7): Fraction(2)})
    m = big.to_float()
    assert sp.issparse(m) and m.nnz == 1 and m[5, 7] == 2.0


def test_space_json_round_trip():
    s = Space("s", ("one", "pos:0", "pos:1", "odd", "x:0", "x:1", "x:2"))
    runs = space_to_json(s)
    assert runs == {"name": "s", "blocks": [["one", None], ["pos", 2], ["odd", None], ["x", 3]]}
    assert space_from_json("s", runs) == s


def test_model_validation_messages():
    W = np.zeros((2, 3))
    with pytest.raises(ModelError, match="W_K has shape"):
        Head("h", W, np.zeros((2, 4)), W, np.zeros((3, 2)), 1.0)
    with pytest.raises(ModelError, match="NaN or infinity"):
        Head("h", np.full((2, 3), np.nan), W, W, np.zeros((3, 2)), 1.0)
    with pytest.raises(ModelError, match="finite number"):
        Head("h", W, W, W, np.zeros((3, 2)), float("inf"))
    with pytest.raises(ModelError, match="MLP bias"):
        Dense(np.zeros((2, 3)), np.zeros(3))


def test_construction_blocks_are_labelled():
    c = Theorem1(V=7, N=4)
    m = materialize(c.model())
    assert m.stream.labels[:5] == ("one", "pos:0", "pos:1", "pos:2", "pos:3")
    layer = m.layers[0]
    assert [h.name for h in layer.heads] == ["fetch", "pointer"]
    assert layer.attn_out.block_size("fetched") == 4
    assert layer.out.labels[-1] == "logit:6"
    # The fetch head's key reads exactly one direction: pos:0.
    WK = layer.heads[0].W_K
    WK = WK.toarray() if sp.issparse(WK) else WK
    assert np.flatnonzero(WK[0]).tolist() == [m.stream.index("pos:0")]


def test_position_and_token_tables_are_stated_by_name():
    from prefixproof.constructions.basis import named_rows, one_hot_tokens, position_rows

    space = Space.of("s", {"one": None, "pos": 3, "tok": 2})
    P = position_rows(space, 3).to_float()
    for p in range(3):
        assert P[p].tolist() == space.vector({"one": 1, f"pos:{p}": 1}).tolist()
    E = one_hot_tokens(space, "tok", 2).to_float()
    assert E.tolist() == [space.vector({"tok:0": 1}).tolist(), space.vector({"tok:1": 1}).tolist()]
    # zero coefficients are not stored; an unknown label is refused
    assert named_rows(space, [{"one": 0}]).entries == {}
    with pytest.raises(KeyError):
        named_rows(space, [{"pos:9": 1}])
