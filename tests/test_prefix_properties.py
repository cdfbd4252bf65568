"""Property-based tests of the prefix identities on random transformers, and the negative controls they must flag.

Strategies draw dimensions, heads, lengths, prefix lengths, activation or raw
prefixes (batched or shared), causal and padding masks, pre-LayerNorm,
residuals, float32 and float64, and magnitudes from tiny to logit-saturating
(verify/identities/strategies.py). Tolerances come from the documented formula
(verify/prefix_identities.tolerance, docs/identities.md), never a bare atol.
"""
import math

import numpy as np
import pytest
from hypothesis import example, given, settings, target

from prefixproof.verify.identities.cases import CONFIRM_DTYPE, Case
from prefixproof.verify.identities.properties import CONTROLS, PROPERTIES
from prefixproof.verify.identities.runner import run_control
from prefixproof.verify.identities.strategies import cases


def assert_holds(prop, case):
    measures = PROPERTIES[prop].measures(case)
    assert measures, "a property with nothing to measure cannot fail"
    worst = max(measures, key=lambda m: m.ratio)
    target(min(worst.ratio, 1e300), label=f"{prop}: worst error / tolerance")
    bad = [m for m in measures if not m.ok]
    assert not bad, f"{prop} fails on {case}: {bad[:3]}"


# edge cases kept as explicit examples: every query padded away (alpha = 1), one prefix position (the segment),
# float32 with saturated scores, a width-1 stream under LayerNorm (LN(x) = beta), batched raw prefixes
EDGE = [
    Case(seed=3, n=4, batch=2, padding=True, prefix_len=1),
    Case(seed=4, dtype="float32", heads=2, scale_log10=2.0, qk_log10=1.0, prefix_log10=2.0),
    Case(seed=5, d=1, layernorm=True, layers=2, prefix_layers=3),
    Case(seed=6, raw=True, prefix_batched=True, batch=3, heads=3, d_v=5, d=2),
]


# cheap examples: more of them than the profile's default (the fuzz profile's larger budget still wins)
MANY = settings(max_examples=max(300, settings.default.max_examples))


def with_edges(test):
    for case in EDGE:
        test = example(case=case)(test)
    return test


@MANY
@with_edges
@given(case=cases())
def test_prefix_rescale_holds(case):
    assert_holds("prefix_rescale", case)


@MANY
@with_edges
@given(case=cases())
def test_prefix_bias_holds(case):
    assert_holds("prefix_bias", case)


@MANY
@with_edges
@given(case=cases())
def test_soft_prompt_is_a_prefix(case):
    assert_holds("soft_in_prefix", case)


@MANY
@given(case=cases(heads=(2, 3), layers=(2, 3), prefix_layers=(2, 7), dtype="float32", scale_log10=(1.0, 2.0)))
def test_later_layers_several_heads_saturated_float32(case):
    for prop in PROPERTIES:
        assert_holds(prop, case)


def test_tolerance_grows_with_score_magnitude_and_dtype():
    from prefixproof.verify.identities.residuals import tolerance

    assert tolerance(np.float32, 4) > tolerance(np.float64, 4) * 1e8
    assert tolerance(np.float64, 4, depth=8, score_scale=1e3) > 1e3 * tolerance(np.float64, 4)
    assert tolerance(np.float64, 4, 2.0) == 2 * tolerance(np.float64, 4)


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_negative_control_is_flagged(name):
    """A deliberately wrong identity must be flagged, and the flag must survive extended precision."""
    control = CONTROLS[name]
    prop = PROPERTIES[control.property]
    stats = run_control(name, seed=0, examples=300)
    assert stats.failure is not None, f"control {name} was not flagged in {stats.examples} examples"
    found = stats.failure.case
    wide = prop.measures(found, name, CONFIRM_DTYPE)
    worst = max(wide, key=lambda m: m.ratio)
    assert worst.ratio > 1e3, f"{name}: flagged in {found.dtype} but only {worst.ratio:.3g} x tolerance in extended precision"
    # the same case passes the true identity: the control, not the case, is what fails
    assert all(m.ok for m in prop.measures(found))


def test_extended_precision_confirmation_passes_the_true_identities():
    rng = np.random.default_rng(11)
    for _ in range(5):
        case = Case.random(rng)
        for prop in PROPERTIES.values():
            assert all(m.ok for m in prop.measures(case, None, CONFIRM_DTYPE))


def test_measures_flag_nan():
    from prefixproof.verify.identities.checks import Measure

    m = Measure("x", float("nan"), 1.0)
    assert not m.ok and math.isinf(m.ratio)
