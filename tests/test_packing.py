"""The paper's packing construction: exact proof, float64 certificate, and the failure where the digits run out."""
from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from prefixproof.constructions.basis import ExactArray
from prefixproof.constructions.packing import Packing
from prefixproof.theorems.obligations.base import RunContext
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.theorems.packing import THEOREM, PackingInputs
from prefixproof.verify.certify.packing import analyse
from prefixproof.verify.numeric.decoding import check_decoding
from prefixproof.verify.semantics.formats import round_model
from prefixproof.verify.certify.interval import exec_for
from prefixproof.audit.precision import decode_at
from prefixproof.verify.symbolic.lemmas import packing_lemma
from prefixproof.verify.verdict import Verdict


def run(ob_id, **params):
    ob = next(o for o in THEOREM.obligations if o.id == ob_id)
    return ob.run(RunContext(params=params, samples=10, seed=0))


@settings(max_examples=12)
@given(V=st.integers(2, 9), seed=st.integers(0, 10**6))
def test_random_tables_decode_in_float64(V, seed):
    c = Packing(V, 2)
    model = c.model()
    rec = check_decoding(model, PackingInputs(LookupEncoding.of(model, "pay")), claim="p", params={}, samples=2,
                         seed=seed)
    assert rec.verdict in (Verdict.CHECKED, Verdict.SAMPLED) and rec.min_margin > 0


def test_lemma_and_exact_proof():
    assert packing_lemma().proved
    assert run("exact-lookup", V=3, L=2).verdict is Verdict.PROVED
    assert run("exact-lookup", V=2, L=3).verdict is Verdict.PROVED


def test_exact_proof_rejects_a_broken_threshold():
    c = Packing(3, 2)
    model = c.model()
    layer = model.layers[0]
    stage = layer.mlp[2]  # digit stage 0, first layer: shift every threshold by a whole grid step
    b = ExactArray(stage.b.shape, {k: v + (6 if k[0] < 2 else 0) for k, v in stage.b.entries.items()})
    broken = replace(model, layers=(replace(layer, mlp=layer.mlp[:2] + (replace(stage, b=b),) + layer.mlp[3:]),))
    import prefixproof.verify.exact.packing as ep

    original = Packing.model
    try:
        Packing.model = lambda self, scale=None: broken
        rec = ep.exhaustive_exact("p", c, {"V": 3, "L": 2})
    finally:
        Packing.model = original
    assert rec.verdict is Verdict.UNKNOWN and "grid logit" in rec.reason


@pytest.mark.parametrize("V", [4, 10])
def test_float64_certificate(V):
    c = Packing(V, 2)
    r = analyse(round_model(c.model(), "float64"), c, exec_for("float64"), "float64")
    assert r["certified"] and r["margin"] > 0.9 / V**2


def test_the_verifier_catches_where_float64_runs_out():
    """V=14: 14^14 > 2^53, so the packed digits no longer fit a float64 - a confirmed counterexample."""
    rec = decode_at("multi_token_packing", {"V": 14, "L": 2}, "float64", search=True)
    assert rec.verdict is Verdict.FALSIFIED
    ce = rec.counterexample
    assert ce["confirmation"]["fails"] and ce["confirmation"]["generated"] != ce["expected"]
    assert decode_at("multi_token_packing", {"V": 11, "L": 2}, "float64").verdict is Verdict.CERTIFIED
