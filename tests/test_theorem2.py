"""Theorem 2: the construction answers m(u) for every user token, for any map."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from prefixproof.constructions.model import materialize
from prefixproof.constructions.theorem2 import Theorem2
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.theorems.theorem2 import Theorem2Inputs
from prefixproof.verify.numeric.decoding import check_decoding, decode_margins
from prefixproof.verify.semantics.forward import forward
from prefixproof.verify.semantics.generate import generate
from prefixproof.verify.verdict import Verdict

from conftest import margin_tolerance


@given(V=st.integers(2, 200), data=st.data())
def test_any_map_answers_every_input(V, data):
    c = Theorem2(V)
    m = np.array(data.draw(st.lists(st.integers(0, V - 1), min_size=V, max_size=V)))
    model = materialize(c.model())
    u = np.arange(V)
    logits = forward(model, u[:, None], np.repeat(c.encode_batch(m[None]), V, axis=0)).logits[:, 1:]
    margins = decode_margins(logits, m[:, None])
    assert margins.min() >= c.margin_bound - margin_tolerance(np.float64, 2)
    assert c.margin_bound >= 0.5 / V**2


@pytest.mark.parametrize("V,maps", [(95, 40), (4096, 2)])
def test_sampled_maps_exhaustive_over_inputs(V, maps):
    c = Theorem2(V)
    rec = check_decoding(c.model(), Theorem2Inputs(LookupEncoding.of(c.model(), "map")), claim="theorem2", params={"V": V}, samples=maps, seed=1)
    assert rec.verdict is Verdict.SAMPLED
    assert rec.coverage.covered == maps * V
    assert rec.min_margin >= c.margin_bound - margin_tolerance(np.float64, 2)


def test_tiny_vocabulary_is_checked_exhaustively():
    c = Theorem2(3)
    rec = check_decoding(c.model(), Theorem2Inputs(LookupEncoding.of(c.model(), "map")), claim="theorem2", params={"V": 3}, samples=1, seed=0)
    assert rec.verdict is Verdict.CHECKED
    assert rec.coverage.covered == rec.coverage.total == 3**3 * 3


def test_generation_answers_the_map():
    c = Theorem2(95, "printable-ascii")
    m = np.array([(k * 7 + 3) % 95 for k in range(95)])
    u = np.arange(95)
    gen = generate(materialize(c.model()), soft=np.repeat(c.encode_batch(m[None]), 95, axis=0),
                   prompt=u[:, None], steps=1)
    np.testing.assert_array_equal(gen.tokens[:, 0], m)


def test_negative_control_lowered_scale_is_falsified():
    c = Theorem2(95)
    rec = check_decoding(c.model(scale=2.0), Theorem2Inputs(LookupEncoding.of(c.model(), "map")), claim="theorem2", params={"V": 95},
                         samples=5, seed=0)
    assert rec.verdict is Verdict.FALSIFIED
    assert rec.counterexample["confirmation"]["fails"] is True
    assert rec.counterexample["expected"] != rec.counterexample["confirmation"]["generated"]
