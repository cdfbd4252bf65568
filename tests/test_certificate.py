"""The structured interval certificate: sound on every box, tight on the constructions, and able to fail."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from prefixproof.constructions.model import materialize, replace_layer_flags
from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.constructions.theorem2 import Theorem2
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.theorems.theorem1 import Theorem1Inputs
from prefixproof.theorems.theorem2 import Theorem2Inputs
from prefixproof.verify.exact.arb import box_margin, cross_check
from prefixproof.verify.certify.lookup import box_bounds, certify_lookup
from prefixproof.verify.certify.lookup_rows import theorem1_rows, theorem2_rows
from prefixproof.verify.certify.interval import REAL, exec_for
from box_margins import point_margins

from models import random_lookup_model

F64 = exec_for("float64")


def rows1(model, dtype="float64"):
    enc = LookupEncoding.of(model, "target")
    return enc, theorem1_rows(enc.payload, enc.V, enc.K, dtype)


@given(seed=st.integers(0, 10**6), V=st.integers(2, 6), N=st.integers(1, 4))
def test_box_bounds_are_sound_on_random_models(seed, V, N):
    rng = np.random.default_rng(seed)
    model = random_lookup_model(rng, V=V, N=N)
    enc, claim = rows1(model)
    boxes = [(int(rng.integers(N)), int(rng.integers(V))) for _ in range(3)]
    bounds = box_bounds(model, claim, F64, boxes)
    problem = Theorem1Inputs(enc)
    for (row, y), lb in bounds.items():
        assert lb <= point_margins(model, problem, row, y, rng, 6).min()


@given(seed=st.integers(0, 10**6), V=st.integers(2, 6), N=st.integers(1, 4),
       dtype=st.sampled_from(["float32", "float16", "bfloat16"]))
def test_low_precision_box_bounds_cover_numpy_and_fused_execution(seed, V, N, dtype):
    """The certificate's bounds in a format hold for numpy's own kernels in it and for fused rounding."""
    from prefixproof.verify.semantics.formats import round_model

    rng = np.random.default_rng(seed)
    model = random_lookup_model(rng, V=V, N=N)
    enc = LookupEncoding.of(model, "target")
    claim = theorem1_rows(enc.payload, enc.V, enc.K, dtype)
    boxes = [(int(rng.integers(N)), int(rng.integers(V))) for _ in range(3)]
    bounds = box_bounds(round_model(model, dtype), claim, exec_for(dtype), boxes)
    problem = Theorem1Inputs(enc)
    for (row, y), lb in bounds.items():
        assert lb <= point_margins(model, problem, row, y, rng, 6, dtype).min()


@given(seed=st.integers(0, 10**6), scale=st.floats(1.0, 12.0))
def test_certificate_sound_and_tight_on_rescaled_construction(seed, scale):
    c = Theorem1(7, 4)
    model = materialize(c.model(scale=scale))
    enc, claim = rows1(model)
    res, _ = certify_lookup(model, claim, F64)
    rng = np.random.default_rng(seed)
    true_min = min(point_margins(model, Theorem1Inputs(enc), r, y, rng, 5).min() for r in range(4) for y in (0, 6))
    if res.certified:
        assert res.min_margin <= true_min
        assert true_min - res.min_margin <= 1e-9  # tight: the worst box holds an input that attains it
    else:
        assert res.failures  # not certified always names a failing box (or a reason)


@pytest.mark.parametrize("V,N", [(95, 20), (2, 1), (300, 7)])
def test_construction_certified_at_its_attained_margin(V, N):
    c = Theorem1(V, N)
    enc, claim = rows1(materialize(c.model()))
    res, _ = certify_lookup(c.model(), claim, F64)
    assert res.certified and res.reason is None
    assert c.margin_bound - 1e-12 <= res.min_margin <= c.margin_bound  # bound attained by payload (V-1)/V


def test_theorem2_large_vocabulary_certified():
    c = Theorem2(4096)
    enc = LookupEncoding.of(c.model(), "map")
    res, seconds = certify_lookup(c.model(), theorem2_rows(enc.payload, 4096, "float64"), F64)
    assert res.certified and abs(res.min_margin - c.margin_bound) < 1e-13


def test_negative_control_lowered_scale_fails_at_the_top_payload():
    c = Theorem1(95, 20)
    model = materialize(c.model(scale=6.0))
    enc, claim = rows1(model)
    res, _ = certify_lookup(model, claim, F64)
    assert not res.certified
    rows_failing = {(r, y) for r, y, _ in res.failures}
    assert any(y == 94 for _, y in rows_failing)
    # the failing box really holds a failing input
    r, y, _ = res.failures[0]
    assert point_margins(model, Theorem1Inputs(enc), r, y, np.random.default_rng(0), 6).min() <= 0


def test_demanding_more_than_the_attained_margin_does_not_certify():
    c = Theorem1(95, 20)
    enc, claim = rows1(materialize(c.model()))
    ok, _ = certify_lookup(c.model(), claim, F64, min_margin=c.margin_bound * 0.999)
    too_much, _ = certify_lookup(c.model(), claim, F64, min_margin=c.margin_bound * 1.001)
    assert ok.certified and not too_much.certified


def test_non_causal_model_is_unsupported():
    c = Theorem1(7, 4)
    model = replace_layer_flags(materialize(c.model()), causal=False)
    enc, claim = rows1(model)
    res, _ = certify_lookup(model, claim, F64)
    assert not res.certified and "non-causal" in res.reason


def test_arb_agrees_with_certificate_and_flags_a_wrong_bound():
    c = Theorem2(6)
    model = materialize(c.model())
    enc = LookupEncoding.of(model, "map")
    claim = theorem2_rows(enc.payload, 6, None)
    boxes = [(u, y) for u in range(6) for y in (0, 5)]
    bounds = box_bounds(model, claim, REAL, boxes)
    assert cross_check(model, claim, bounds, points=1) == []
    lo, hi = box_margin(model, claim, 3, 5)
    assert bounds[(3, 5)] <= hi and hi - lo < 1e-12  # both evaluators bound the same narrow box
    wrong = dict(bounds)
    wrong[(3, 5)] = hi * 1.01 + 1e-12  # a bound above what the box attains
    assert cross_check(model, claim, wrong, points=1)


@pytest.mark.parametrize("dtype,V", [("float16", 11), ("bfloat16", 5), ("float32", 95)])
def test_low_precision_bounds_cover_emulated_execution(dtype, V):
    c = Theorem2(V)
    model = materialize(c.model())
    enc = LookupEncoding.of(model, "map")
    from prefixproof.verify.semantics.formats import round_model

    run = round_model(model, dtype)
    claim = theorem2_rows(enc.payload, V, dtype)
    rng = np.random.default_rng(1)
    boxes = [(int(rng.integers(V)), int(rng.integers(V))) for _ in range(4)]
    bounds = box_bounds(run, claim, exec_for(dtype), boxes)
    problem = Theorem2Inputs(enc)
    for (row, y), lb in bounds.items():
        assert lb <= point_margins(model, problem, row, y, rng, 5, dtype).min()
