"""Precision report: the frontier is certified below, and really breaks above (with a confirmed counterexample)."""
import json


from prefixproof.constructions.theorem2 import Theorem2
from prefixproof.theorems.obligations.encoding import LookupEncoding
from prefixproof.theorems.theorem2 import Theorem2Inputs
from prefixproof.verify.numeric.decoding import check_decoding
from prefixproof.cli import main
from prefixproof.schemas import validate
from prefixproof.audit.precision import decode_at, frontier
from prefixproof.verify.verdict import Verdict


def test_bfloat16_frontier_theorem2():
    f = frontier("theorem2", "bfloat16", "V", {}, 64)
    assert f.largest_ok is not None and f.first_fail == f.largest_ok + 1
    assert decode_at("theorem2", {"V": f.largest_ok}, "bfloat16").verdict is Verdict.CERTIFIED
    # certified means no bfloat16 execution of any input fails there: the emulated run agrees
    c = Theorem2(f.largest_ok)
    m = c.model()
    rec = check_decoding(m, Theorem2Inputs(LookupEncoding.of(m, "map")), claim="t", params={}, samples=50, seed=3,
                         dtype="bfloat16")
    assert rec.verdict in (Verdict.CHECKED, Verdict.SAMPLED) and rec.min_margin >= \
        decode_at("theorem2", {"V": f.largest_ok}, "bfloat16").min_margin
    # above the frontier a real counterexample exists, confirmed by incremental generation in bfloat16
    assert f.first_falsified is not None and f.first_falsified > f.largest_ok
    ce = f.falsified_record.counterexample
    assert ce["confirmation"]["fails"] and ce["confirmation"]["generated"] != ce["expected"]


def test_float64_is_certified_where_low_precision_is_not():
    assert decode_at("theorem2", {"V": 512}, "float64").verdict is Verdict.CERTIFIED
    assert decode_at("theorem2", {"V": 512}, "float16").verdict is not Verdict.CERTIFIED


def test_precision_command_json(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["precision", "theorem2", "--dtype", "bfloat16", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    validate(doc)  # the shipped schema (prefixproof/schemas/precision.schema.json)
    (row,) = doc["formats"]["bfloat16"]
    assert row["largest_certified"] < row["first_not_certified"] <= row["first_falsified"]
    assert any(p["verdict"].startswith("FALSIFIED") for p in row["probes"])
    assert "first counterexample" in capsys.readouterr().out
