"""The float64 logit enclosure that serves as the PyTorch cross-check's tolerance (numpy only, no torch needed)."""
import numpy as np
import pytest

from prefixproof.constructions.model import materialize
from prefixproof.constructions.theorem1 import Theorem1
from prefixproof.constructions.theorem2 import Theorem2
from prefixproof.verify.semantics.ops import NumpyOps, cast_model
from prefixproof.verify.certify.layer_loop import TORCH_FLOAT64, EnclosureUnsupported, inside, logits_enclosure
from prefixproof.verify.semantics.forward import forward

from models import random_model


def test_construction_logits_lie_in_a_narrow_enclosure_and_float32_does_not():
    c = Theorem1(11, 6)
    model = materialize(c.model())
    Y = np.array([[3, 1, 4, 1, 5, 9]])
    soft = c.encode_batch(Y)
    lo, hi = logits_enclosure(model, Y[:, :-1], soft)
    logits = forward(model, Y[:, :-1], soft).logits
    assert inside(logits, lo, hi)
    width = float((hi - lo).max())
    assert 0 < width < 1e-10  # a few thousand ulps of O(1) logits, not a loose bound
    # negative control: a float32 execution differs by ~1e-7, far outside the float64 enclosure
    l32 = forward(cast_model(model, np.float32), Y[:, :-1], soft.astype(np.float32), ops=NumpyOps(np.float32)).logits
    assert not inside(l32, lo, hi)


def test_enclosure_of_per_token_sparse_construction():
    c = Theorem2(300)
    model = materialize(c.model())
    m = list(np.random.default_rng(1).integers(0, 300, 300))
    soft = np.repeat(np.asarray(c.encode(m).to_float())[None, None], 300, axis=0)
    users = np.arange(300)[:, None]
    lo, hi = logits_enclosure(model, users, soft)
    assert inside(forward(model, users, soft).logits, lo, hi)
    # a wrong scale (the classic implicit 1/sqrt(d_k)) leaves the enclosure
    wrong = materialize(c.model(scale=c.scale / 2))
    assert not inside(forward(wrong, users, soft).logits, lo, hi)


@pytest.mark.parametrize("causal, residual", [(True, False), (False, True)])
def test_random_models_with_flags(causal, residual):
    rng = np.random.default_rng(7)
    model = random_model(rng, causal=causal, residual=residual)
    tokens = rng.integers(0, model.vocab.size, size=(3, 6))
    lo, hi = logits_enclosure(model, tokens, None, TORCH_FLOAT64)
    out = forward(model, tokens).logits
    assert inside(out, lo, hi)
    assert not inside(out + 1e-6 * np.abs(out).max(), lo, hi)


def test_layernorm_is_refused_not_guessed():
    model = random_model(np.random.default_rng(0), layernorm=True)
    with pytest.raises(EnclosureUnsupported, match="LayerNorm"):
        logits_enclosure(model, np.zeros((1, 3), dtype=int), None)
