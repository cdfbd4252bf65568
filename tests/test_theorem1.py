"""Theorem 1: the construction generates every target, with the margin the leakage bound predicts."""
import math

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

from prefixproof.constructions.model import materialize
from prefixproof.constructions.scales import SCALE_GRID, leak, lookup_margin_bound, lookup_scale
from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.theorems.obligations.base import RunContext
from prefixproof.theorems.theorem1 import THEOREM, Theorem1Inputs
from prefixproof.verify.numeric.decoding import check_decoding, decode_margins
from prefixproof.verify.semantics.forward import forward
from prefixproof.verify.semantics.generate import generate
from prefixproof.verify.verdict import Verdict

from conftest import margin_tolerance


def teacher_forced_margins(c: Theorem1, Y: np.ndarray) -> np.ndarray:
    model = materialize(c.model())
    logits = forward(model, Y[:, :-1], c.encode_batch(Y)).logits
    return decode_margins(logits, Y)


@given(V=st.integers(2, 400), N=st.integers(1, 48), data=st.data())
@example(V=95, N=30, data=None)  # the paper notebook's construction breaks from N=30
def test_every_target_decodes_with_the_predicted_margin(V, N, data):
    c = Theorem1(V, N)
    if data is None:
        Y = np.full((1, N), V - 1)
    else:
        Y = np.array([data.draw(st.lists(st.integers(0, V - 1), min_size=N, max_size=N))])
    margins = teacher_forced_margins(c, Y)
    tol = margin_tolerance(np.float64, N)
    assert margins.min() >= c.margin_bound - tol
    assert c.margin_bound >= 0.5 / V**2  # the derived scale keeps at least half the ideal margin 1/V^2


@given(V=st.integers(2, 400), N=st.integers(2, 48))
def test_the_bound_is_attained_by_the_largest_payload(V, N):
    """The leakage bound is exact: payload (V-1)/V at the last position has exactly the bound margin."""
    c = Theorem1(V, N)
    Y = np.full((1, N), V - 1)
    margins = teacher_forced_margins(c, Y)
    assert abs(margins[0, -1] - c.margin_bound) <= margin_tolerance(np.float64, N)


@given(V=st.integers(2, 10**5), m=st.integers(1, 10**4))
def test_scale_is_the_smallest_grid_value_meeting_the_bound(V, m):
    sigma = lookup_scale(V, m)
    assert 2 * leak(m, sigma) <= 1 / (4 * V)  # delta <= 1/(4V): at least half the ideal margin
    below = sigma - 1 / SCALE_GRID
    assert m * math.exp(-below) > 1 / (8 * V)  # one grid step lower no longer satisfies the rule
    assert sigma * SCALE_GRID == int(sigma * SCALE_GRID)  # an exact binary number


def test_generation_reproduces_targets_with_tilde_and_space():
    text = "~ ~~ spaces and tildes ~"
    Y = [ord(ch) - 32 for ch in text]
    c = Theorem1(95, len(Y), "printable-ascii")
    gen = generate(materialize(c.model()), soft=c.encode_batch(np.array([Y])))
    assert gen.tokens[0].tolist() == Y
    assert gen.margins.min() > 0


@pytest.mark.parametrize("V,N,samples", [(95, 1024, 3), (32000, 64, 6)])
def test_large_sizes(V, N, samples):
    c = Theorem1(V, N)
    rec = check_decoding(c.model(), Theorem1Inputs(LookupEncoding.of(c.model(), "target")), claim="theorem1", params={"V": V, "N": N},
                         samples=samples, seed=0)
    assert rec.verdict is Verdict.SAMPLED
    assert rec.min_margin >= c.margin_bound - margin_tolerance(np.float64, N)
    assert rec.coverage.covered == samples


def test_exhaustive_small_instance_is_checked():
    ctx = RunContext(params={"V": 3, "N": 5}, samples=10, seed=0, levels=frozenset({"numeric"}))
    rec = next(ob for ob in THEOREM.obligations if ob.id == "decode").run(ctx)
    assert rec.verdict is Verdict.CHECKED
    assert rec.coverage.covered == rec.coverage.total == 3**5
    assert rec.min_margin == pytest.approx(lookup_margin_bound(3, 4, lookup_scale(3, 4)), abs=1e-12)


def test_negative_control_lowered_scale_is_falsified():
    """Lower the scale until 2*leak > 1/(2V): the checker must find and confirm a failure."""
    V, N = 95, 20
    c = Theorem1(V, N)
    low = 6.0  # leak(19, 6) ~ 0.045 > 1/(2(2V-1)) ~ 0.0026: the top payload decodes one step low
    assert lookup_margin_bound(V, N - 1, low) < 0
    rec = check_decoding(c.model(scale=low), Theorem1Inputs(LookupEncoding.of(c.model(), "target")), claim="theorem1", params={"V": V, "N": N},
                         samples=50, seed=0)
    assert rec.verdict is Verdict.FALSIFIED
    assert rec.counterexample["confirmation"]["fails"] is True
    assert rec.min_margin < 0
    assert len(rec.counterexample["target_tokens"]) == N
