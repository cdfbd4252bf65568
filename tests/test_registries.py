"""One registry of claims and one of formats; the CLI's choices come from them."""
from __future__ import annotations

import numpy as np
import pytest

from prefixproof.cli import build_parser
from prefixproof.theorems import THEOREMS
from prefixproof.verify.semantics.formats import FORMATS, REGISTRY, format_of


@pytest.mark.parametrize("name", FORMATS)
def test_format_constants_agree_with_the_dtype(name):
    fmt = REGISTRY[name]
    info = np.finfo(fmt.dtype)
    assert fmt.eps == float(info.eps) and fmt.u == float(info.eps) / 2
    assert fmt.eta == float(info.smallest_subnormal) and fmt.largest == float(info.max)
    # u is the largest relative rounding error: 1 + u is a tie that rounds to even (1), 1 + 1.5u rounds up
    assert float(np.float64(1.0 + fmt.u).astype(fmt.dtype)) == 1.0
    assert float(np.float64(1.0 + 1.5 * fmt.u).astype(fmt.dtype)) == 1.0 + fmt.eps


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="choose from float64, float32, float16, bfloat16"):
        format_of("float8")


def _choices(argv_prefix: list[str], dest: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[argv_prefix[0]]
    return next(a for a in sub._actions if a.dest == dest).choices


def test_cli_choices_come_from_the_registries():
    assert tuple(_choices(["verify"], "dtype")) == FORMATS
    assert tuple(_choices(["precision"], "dtype")) == FORMATS
    weights = tuple(_choices(["verify"], "claim"))
    assert weights == tuple(t.id for t in THEOREMS.values() if t.payload_block is not None)
    assert set(_choices(["precision"], "theorem")) <= set(THEOREMS)


def test_verify_help_names_every_claim_as_the_default():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["verify"]
    text = sub.format_help()
    assert f"all {len(THEOREMS)}" in text
    for claim in THEOREMS:
        assert claim in text.replace("\n", " ").replace("  ", " ")
