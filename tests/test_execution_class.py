"""Issue 9, items 3-5: a low-precision verdict covers real execution in that format (docs/certificates.md,
"Execution classes"). The truth about real execution comes from tests/plain_numpy.py, which runs the exported
files with plain numpy arrays of the format and shares no code with the checker or the certificate."""
import dataclasses
import itertools

import numpy as np
import pytest

from prefixproof.constructions.io import save_model
from prefixproof.constructions.model import materialize
from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.constructions.theorem2 import Theorem2
from tests.plain_numpy import load, theorem1_outputs, theorem2_outputs
from prefixproof.theorems import THEOREMS
from prefixproof.theorems.obligations.base import RunContext
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.theorems.theorem1 import Theorem1Inputs
from prefixproof.theorems.theorem2 import Theorem2Inputs
from prefixproof.verify.certify import exp_check
from prefixproof.verify.numeric.decoding import check_decoding
from prefixproof.verify.semantics.executions import NativeOps, fused_name, native_name
from prefixproof.verify.certify.interval import EnvironmentError_, exec_for
from prefixproof.audit.precision import frontier
from prefixproof.theorems.obligations.runner import run_obligation
from prefixproof.verify.verdict import Verdict

T1_BIAS = -0.008805938065052032  # issue 9: theorem1 V=6 N=4, decoder bias 1
T2_BIAS = -0.337646484375  # issue 9: theorem2 V=5, decoder bias 3 (layers.0.mlp.2.b[3])


def _edit_bias(model, k, i, value):
    model = materialize(model)
    layer = model.layers[0]
    b = np.array(layer.mlp[k].b, dtype=np.float64)
    b[i] = value
    mlp = list(layer.mlp)
    mlp[k] = dataclasses.replace(mlp[k], b=b)
    return dataclasses.replace(model, layers=(dataclasses.replace(layer, mlp=tuple(mlp)),))


def _decode(claim, params, model, dtype):
    th = THEOREMS[claim]
    ob = next(o for o in th.obligations if o.id == "decode")
    return run_obligation(th, ob, RunContext(params=th.resolve(params), samples=32, seed=0, dtype=dtype,
                                             levels=frozenset({"certify"}), model=model))


def test_theorem1_bias_edit_fails_in_real_float32_and_is_not_checked(tmp_path):
    model = _edit_bias(Theorem1(6, 4).model(), 2, 1, T1_BIAS)
    save_model(model, tmp_path)
    cfg, w = load(tmp_path)
    targets = np.array(list(itertools.product(range(6), repeat=4)))
    wrong32 = int((theorem1_outputs(cfg, w, targets, np.float32) != targets).any(axis=1).sum())
    wrong64 = int((theorem1_outputs(cfg, w, targets, np.float64) != targets).any(axis=1).sum())
    assert wrong64 == 0 and wrong32 > 0  # the issue measured 216 of 1,296

    rec = check_decoding(model, Theorem1Inputs(LookupEncoding.of(model, "target")), claim="theorem1",
                         params={"V": 6, "N": 4}, samples=5, seed=0, dtype="float32")
    assert rec.verdict is Verdict.FALSIFIED
    assert native_name("float32") in rec.method and fused_name("float32") in rec.method
    assert rec.counterexample["execution"] == native_name("float32")
    assert rec.counterexample["confirmation"]["fails"]
    # every input plain numpy gets wrong is a failure of the named numpy execution (ties count as failures too)
    assert rec.details["executions"][native_name("float32")]["failing_inputs"] >= wrong32
    assert _decode("theorem1", {"V": 6, "N": 4}, model, "float32").verdict is Verdict.FALSIFIED


def test_theorem2_bias_edit_fails_in_real_float16_and_is_not_checked(tmp_path):
    model = _edit_bias(Theorem2(5).model(), 2, 3, T2_BIAS)
    save_model(model, tmp_path)
    cfg, w = load(tmp_path)
    maps = np.array(list(itertools.product(range(5), repeat=5)))
    assert (theorem2_outputs(cfg, w, maps, np.float64) == maps).all()
    assert (theorem2_outputs(cfg, w, maps, np.float16) != maps).any()

    rec = check_decoding(model, Theorem2Inputs(LookupEncoding.of(model, "map")), claim="theorem2",
                         params={"V": 5}, samples=5, seed=0, dtype="float16")
    assert rec.verdict is Verdict.FALSIFIED
    assert rec.counterexample["execution"] == native_name("float16")
    assert _decode("theorem2", {"V": 5}, model, "float16").verdict is Verdict.FALSIFIED


def test_theorem2_float16_first_counterexample_at_most_19(tmp_path):
    save_model(Theorem2(19).model(), tmp_path)
    cfg, w = load(tmp_path)
    identity = np.arange(19)[None]
    assert theorem2_outputs(cfg, w, identity, np.float16)[0, 17] == 16  # u=17 answers 16 in numpy float16
    f = frontier("theorem2", "float16", "V", {}, 64)
    assert f.first_falsified is not None and f.largest_ok < f.first_falsified <= 19
    assert f.scan["sizes_scanned"] == list(range(f.first_fail, f.first_falsified + 1))  # every size scanned
    ce = f.falsified_record.counterexample
    assert ce["confirmation"]["fails"] and ce["confirmation"]["generated"] != ce["expected"]


def test_unedited_constructions_are_certified_in_low_precision():
    for claim, params, model, dtype in (("theorem1", {"V": 6, "N": 4}, Theorem1(6, 4).model(), "float32"),
                                        ("theorem2", {"V": 5}, Theorem2(5).model(), "float32"),
                                        ("theorem2", {"V": 5}, Theorem2(5).model(), "float16")):
        rec = _decode(claim, params, model, dtype)
        assert rec.verdict is Verdict.CERTIFIED, (claim, dtype, rec.verdict_text)
        assert 0 < rec.min_margin <= rec.details["numeric_cross_check"]["min_margin"]


def test_native_execution_runs_in_the_format():
    m = Theorem2(5).model()
    enc = LookupEncoding.of(m, "map")
    from prefixproof.verify.semantics.formats import round_model
    from prefixproof.verify.semantics.forward import forward
    ops = NativeOps("float16")
    out = forward(round_model(m, "float16"), np.array([[3]]), enc.encode_batch(np.arange(5)[None]), ops=ops)
    assert out.logits.dtype == np.float16
    # numpy's float16 matmul forms exact products and accumulates in float32 (the class in docs/certificates.md)
    a = np.array([[2048.0] + [1.0] * 16], dtype=np.float16)
    assert float((a @ np.ones((17, 1), dtype=np.float16))[0, 0]) == 2064.0


def test_inaccurate_exp_is_rejected_at_start_up(monkeypatch):
    real = np.exp

    def exp_8ulp(x, *args, **kwargs):  # float32 exp that errs by 8 ulp
        y = real(x, *args, **kwargs)
        if isinstance(y, np.ndarray) and y.dtype == np.float32:
            for _ in range(8):
                y = np.nextafter(y, np.float32(np.inf))
        return y

    exp_check.reset()
    monkeypatch.setattr(np, "exp", exp_8ulp)
    try:
        with pytest.raises(EnvironmentError_, match="float32"):
            exec_for("float32")
        rec = _decode("theorem1", {"V": 6, "N": 4}, Theorem1(6, 4).model(), "float32")
        assert rec.verdict is Verdict.ERROR and "exp" in rec.reason
        assert exp_check.check_exp("float16")["worst_ratio"] <= 1  # float16's exp is not the patched one
    finally:
        monkeypatch.undo()
        exp_check.reset()
    m = exp_check.check_exp("float32")
    assert m["max_error_u"] <= m["bound_u"] and m["samples"] > 100_000


def test_real_arithmetic_bounds_are_flagged_on_float16_execution():
    """Negative control of the low-precision property in tests/test_certificate.py: bounds computed with the
    wrong execution model (float64 rounding) for a float16 run are violated by float16 execution on the bias
    edit, and the float16 model's bounds are not."""
    from tests.test_certificate import point_margins
    from prefixproof.verify.certify.lookup import box_bounds
    from prefixproof.verify.certify.lookup_rows import theorem2_rows
    from prefixproof.verify.semantics.formats import round_model

    model = _edit_bias(Theorem2(5).model(), 2, 3, T2_BIAS)
    enc = LookupEncoding.of(model, "map")
    claim = theorem2_rows(enc.payload, 5, "float16")
    boxes = [(r, y) for r in range(5) for y in range(5)]
    violated = {}
    for ex in ("float64", "float16"):
        bounds = box_bounds(round_model(model, "float16"), claim, exec_for(ex), boxes)
        rng = np.random.default_rng(0)
        violated[ex] = [b for b, lb in bounds.items()
                        if lb > point_margins(model, Theorem2Inputs(enc), *b, rng, 6, "float16").min()]
    assert violated["float64"] and not violated["float16"]


@pytest.mark.parametrize("fmt", ["float16", "bfloat16"])
def test_native_sparse_weights_run_in_the_format(fmt):
    """scipy has no float16/bfloat16: CSR weights are multiplied in float32 and rounded once, like numpy's dense
    float16 kernel. On integer data (exact everywhere) the sparse and dense products agree, in the format."""
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    W = rng.integers(-3, 4, (7, 5)).astype(np.float64)
    x = rng.integers(-3, 4, (2, 3, 5)).astype(np.float64)
    ops = NativeOps(fmt)
    dense, sparse = ops.linear(x, W), ops.linear(x, sp.csr_array(W))
    assert dense.dtype == sparse.dtype == ops.dtype
    assert np.array_equal(dense.astype(np.float64), x @ W.T) and np.array_equal(dense, sparse)
    mixed = ops.linears(x, [W, sp.csr_array(W)])  # a dense and a sparse weight in one call
    assert all(np.array_equal(m, dense) for m in mixed)


def test_adversarial_sweep_runs_for_the_box_claims():
    # the sweep must find its claim's inputs (a silent None would leave every size "not fully checked")
    from prefixproof.audit.precision_scan import sweep

    out = sweep("theorem2", {"V": 5}, "float16")
    assert out is not None and out["exhaustive"]  # 5^5 maps x 5 inputs: small enough to run every input
    assert out["record"].coverage.exhaustive
