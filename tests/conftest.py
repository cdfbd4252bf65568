"""Shared test set-up: hypothesis profiles and small helpers.

Profiles (select with HYPOTHESIS_PROFILE=...):
  ci    derandomized, no example database, no deadline; the default, used by CI
  fuzz  many more examples, randomized; for long local runs
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def margin_tolerance(dtype: type, positions: int) -> float:
    """How far a computed decode margin may sit from its exact value.

    Every quantity on the path to a logit has magnitude <= 2 and passes
    through at most ~8 roundings, plus one softmax over `positions` keys whose
    normaliser accumulates `positions` rounded terms; 32 * eps * (positions + 2)
    covers that with room to spare.
    """
    return 32 * float(np.finfo(dtype).eps) * (positions + 2)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Tables wrap to the terminal width (prefixproof/output.py). Tests that look for a cell as printed run
    at 250 columns, so that each row stays on one line; tests/test_output.py and
    tests/test_cli.py::test_verify_output_fits_100_columns check the wrapping itself."""
    monkeypatch.setenv("COLUMNS", "250")
