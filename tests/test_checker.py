"""The checker and runner: verdict words, confirmation by a second path, errors never pass."""
import numpy as np
import pytest

from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.theorems.obligations.base import Obligation, Param, RunContext, Theorem
from prefixproof.theorems.theorem1 import Theorem1Inputs
from prefixproof.verify.numeric.decoding import check_decoding, decode_margins
from prefixproof.report import ClaimResult, exit_status, table, to_json
from prefixproof.theorems.obligations.runner import run_theorem
from prefixproof.verify.verdict import Coverage, Record, Verdict, weakest


def test_decode_margins_counts_ties_and_nan_as_failures():
    logits = np.array([[[1.0, 3.0, 3.0]], [[0.0, 2.0, 1.0]], [[np.nan, 1.0, 0.0]]])
    m = decode_margins(logits, np.array([[1], [1], [1]]))
    assert m[0, 0] == 0.0 and not m[0, 0] > 0  # a tie is not a pass
    assert m[1, 0] == 1.0
    assert not m[2, 0] > 0


class DisagreeingInputs(Theorem1Inputs):
    """A problem whose second code path (wrongly) reports success: the checker must say ERROR."""

    def confirm(self, model, ops, item, position=None):
        return {"method": "stub", "fails": False, "margin_at": 0.01}  # far from the first path's margin


def test_unconfirmed_counterexample_is_error_not_falsified():
    c = Theorem1(95, 10)
    rec = check_decoding(c.model(scale=5.0), DisagreeingInputs(LookupEncoding.of(c.model(), "target")), claim="theorem1", params={}, samples=20, seed=0)
    assert rec.verdict is Verdict.ERROR
    assert "disagrees" in rec.reason
    assert not rec.verdict.passed


def _theorem(run):
    return Theorem("t", "t", "p", "c", "p", (Param("V", "v", 2, 3),), (Obligation("o", "s", ("certify",), "m", run),))


def test_exception_inside_an_evaluator_is_error():
    def boom(ctx):
        raise FloatingPointError("overflow in the evaluator")

    th = _theorem(boom)
    records = run_theorem(th, RunContext(params={"V": 3}, samples=1, seed=0))
    assert [r.verdict for r in records] == [Verdict.ERROR]
    assert "FloatingPointError: overflow in the evaluator" in records[0].reason
    result = ClaimResult(th, {"V": 3}, records)
    assert result.verdict is Verdict.ERROR
    assert exit_status([result]) == 3
    assert "ERROR(FloatingPointError" in table([result])


def test_weakest_verdict_and_exit_status():
    assert weakest([Verdict.PROVED, Verdict.SAMPLED, Verdict.CHECKED]) is Verdict.SAMPLED
    assert weakest([Verdict.SAMPLED, Verdict.ERROR, Verdict.FALSIFIED]) is Verdict.ERROR
    assert weakest([]) is Verdict.ERROR

    def rec(v):
        return Record(claim="t", obligation="o", verdict=v, method="m", arithmetic="a", params={})

    th = _theorem(lambda ctx: None)
    ok = ClaimResult(th, {}, [rec(Verdict.SAMPLED)])
    bad = ClaimResult(th, {}, [rec(Verdict.FALSIFIED)])
    assert exit_status([ok]) == 0 and exit_status([ok, bad]) == 1


def test_coverage_text_and_json():
    cov = Coverage(2000, 95**20, "95^20")
    assert cov.text() == "2000 of 95^20 (log10 39.55)"
    j = cov.to_json()
    assert j["total"] == str(95**20) and j["total_log10"] == 39.5545 and j["exhaustive"] is False
    assert Coverage(243, 243, "3^5").text() == "all 243"


def test_report_json_carries_the_record_fields():
    th = _theorem(lambda ctx: None)
    r = Record(claim="t", obligation="o", verdict=Verdict.SAMPLED, method="m", arithmetic="numpy float64",
               params={"V": 3}, coverage=Coverage(5, 27, "3^3"), min_margin=0.25, seconds=0.5, seed=7,
               dtype="float64", weights_sha256="ab" * 32)
    doc = to_json([ClaimResult(th, {"V": 3}, [r])], ["prefixproof", "verify"])
    ob = doc["claims"][0]["obligations"][0]
    assert doc["claims"][0]["verdict"] == "SAMPLED"
    for key in ("claim", "obligation", "method", "arithmetic", "params", "coverage", "min_margin", "seconds",
                "seed", "dtype", "weights_sha256", "counterexample"):
        assert key in ob
    assert ob["coverage"]["covered"] == 5 and ob["min_margin"] == 0.25


class ShiftedInputs(Theorem1Inputs):
    """A second path whose margin at the failing decision is the first path's plus `shift`."""

    shift = 0.0
    first = 0.0

    def confirm(self, model, ops, item, position=None):
        return {"method": "stub", "fails": False, "margin_at": self.first + self.shift}


@pytest.mark.parametrize("shift,verdict", [(1e-17, Verdict.FALSIFIED), (0.5, Verdict.ERROR)])
def test_second_path_agreeing_within_rounding_confirms(shift, verdict):
    c = Theorem1(95, 10)
    enc = LookupEncoding.of(c.model(), "target")
    first = check_decoding(c.model(scale=0.0), Theorem1Inputs(enc), claim="t", params={}, samples=5, seed=0)
    problem = ShiftedInputs(enc)
    problem.first, problem.shift = first.counterexample["teacher_forced_margin"], shift
    rec = check_decoding(c.model(scale=0.0), problem, claim="theorem1", params={}, samples=5, seed=0)
    assert rec.verdict is verdict
    if verdict is Verdict.FALSIFIED:
        assert "rounding" in rec.counterexample["confirmation"]["note"]


class ShortInputs(Theorem1Inputs):
    """A problem whose exhaustive enumeration silently drops its first batch."""

    def exhaustive(self, batch_size):
        batches = super().exhaustive(batch_size)
        next(batches)
        yield from batches


def test_exhaustive_run_that_misses_inputs_is_error_not_checked():
    c = Theorem1(3, 3)
    enc = LookupEncoding.of(c.model(), "target")
    full = check_decoding(c.model(), Theorem1Inputs(enc), claim="theorem1", params={}, samples=5, seed=0)
    assert full.verdict is Verdict.CHECKED and full.coverage.covered == 27
    short = check_decoding(c.model(), ShortInputs(enc), claim="theorem1", params={}, samples=5, seed=0)
    assert short.verdict is Verdict.ERROR and "of 27 inputs" in short.reason
