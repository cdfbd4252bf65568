"""Per-operation monotone rounding (verify/certify/directed.py, per_box.py): exact rounding to the format's grid,
enclosures that contain every real execution of the format, tight enough to move the float16 frontier, and a
negative control (rounding each float64 result to nearest, with no allowance for order or wider accumulators)
that the same comparison catches."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from prefixproof.constructions.model import materialize
from prefixproof.constructions.theorem2 import Theorem2
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.theorems.theorem1 import Theorem1Inputs
from prefixproof.verify.certify.directed import grid_for
from prefixproof.verify.certify.interval import exec_for
from prefixproof.verify.certify.lookup import certify_lookup
from prefixproof.verify.certify.lookup_rows import theorem1_rows, theorem2_rows
from prefixproof.verify.certify.per_box import box_margins
from prefixproof.verify.numeric.decoding import decode_margins
from prefixproof.verify.semantics.executions import executions
from prefixproof.verify.semantics.formats import round_model, round_to
from prefixproof.verify.semantics.forward import forward
from box_margins import point_margins

from models import random_lookup_model


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_grid_rounds_like_numpy_and_counts_consecutive_values(dtype):
    g = grid_for(dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20000) * 10.0 ** rng.integers(-9, 4, 20000)
    x = np.concatenate([x, [0.0, 1.0, -1.0, 2.0**-24, 3 * 2.0**-25, 65504.0]])
    assert np.array_equal(g.rn(x), round_to(x, dtype).astype(np.float64))
    assert np.all(g.rd(x) <= x) and np.all(g.ru(x) >= x)
    v = np.unique(g.rn(x[np.abs(x) < 60000]))
    nxt = np.nextafter(v.astype(dtype), np.asarray(np.inf, dtype=dtype)).astype(np.float64)
    assert np.array_equal(g.from_ordinal(g.ordinal(v) + 1), nxt)


@given(seed=st.integers(0, 10**6), V=st.integers(2, 6), N=st.integers(1, 4),
       dtype=st.sampled_from(["float32", "float16", "bfloat16"]))
def test_per_operation_bounds_contain_every_real_execution_on_random_models(seed, V, N, dtype):
    rng = np.random.default_rng(seed)
    model = random_lookup_model(rng, V=V, N=N, weight_scale=float(rng.uniform(0.3, 3.0)))
    enc = LookupEncoding.of(model, "target")
    claim = theorem1_rows(enc.payload, enc.V, enc.K, dtype)
    rows = rng.integers(N, size=3)
    ys = rng.integers(V, size=3)
    bounds = box_margins(round_model(model, dtype), claim, exec_for(dtype), rows, ys)
    problem = Theorem1Inputs(enc)
    for row, y, lb in zip(rows, ys, bounds):
        assert lb <= point_margins(model, problem, int(row), int(y), rng, 6, dtype).min()


def _theorem2_real(V, dtype):
    """Real margins of every (user token u, value y) box of Theorem 2 on the extreme maps (the other coordinates
    all 0 or all V-1), the smaller over both executions: shape (V, V) indexed [u, y]."""
    c = Theorem2(V)
    model = round_model(materialize(c.model()), dtype)
    out = np.full((V, V), np.inf)
    for e in executions(materialize(c.model()), dtype):
        for fill in (0, V - 1):
            for y in range(V):
                maps = np.full((V, V), fill)
                maps[np.arange(V), np.arange(V)] = y
                soft = round_to(c.encode_batch(maps), dtype).astype(np.float64)
                logits = np.asarray(forward(e.model, np.arange(V)[:, None], soft, ops=e.ops).logits, dtype=np.float64)
                m = decode_margins(logits[:, -1:, :], np.full((V, 1), y))[:, 0]
                out[:, y] = np.minimum(out[:, y], m)
    return model, out


def _theorem2_bounds(model, V, dtype, nearest=False):
    enc = LookupEncoding.of(model, "map")
    claim = theorem2_rows(enc.payload, V, dtype)
    u, y = np.repeat(np.arange(V), V), np.tile(np.arange(V), V)
    return box_margins(model, claim, exec_for(dtype), u, y, nearest=nearest).reshape(V, V)


def test_theorem2_float16_bounds_contain_real_executions_and_the_nearest_rounding_control_is_caught():
    """V=19 is where numpy float16 really fails (user token 17 of the identity map answers 16)."""
    model, real = _theorem2_real(19, "float16")
    bounds = _theorem2_bounds(model, 19, "float16")
    assert np.all(bounds <= real)
    assert real.min() <= 0 and bounds.min() <= 0  # the real failure, and the certificate does not pass it
    too_tight = _theorem2_bounds(model, 19, "float16", nearest=True)
    assert np.any(too_tight > real)  # the negative control claims more than a real execution delivers
    assert too_tight.min() > 0  # ... and would have certified a size that fails


def test_per_operation_rounding_certifies_theorem2_float16_near_the_real_failure():
    """Certified at V=15 (the global gamma model stopped at V=8): within 20% of the first real failure, V=19."""
    V = 15
    model, real = _theorem2_real(V, "float16")
    enc = LookupEncoding.of(model, "map")
    res, _ = certify_lookup(model, theorem2_rows(enc.payload, V, "float16"), exec_for("float16"))
    assert res.certified, res.failures[:3]
    assert 0 < res.min_margin <= real.min()
