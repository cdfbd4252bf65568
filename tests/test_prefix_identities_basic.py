"""The identity residuals on the project's own forward pass, and a control that they can fail."""
import numpy as np

from prefixproof.verify.semantics.forward import Prefix, forward
from prefixproof.verify.identities.residuals import residuals, tolerance

from models import random_model


def test_identities_hold_on_own_forward_and_dropping_the_factor_is_flagged():
    rng = np.random.default_rng(0)
    model = random_model(rng, layers=1)
    tokens = rng.integers(0, model.vocab.size, size=(2, 6))
    P = 3
    s = rng.normal(size=(P, model.d_model)) * 2
    base = forward(model, tokens, return_attention=True).attention[0]
    pre = forward(model, tokens, prefixes=[Prefix(activations=s)], return_attention=True).attention[0]
    r = residuals(base, pre, P)
    assert r.rescale <= tolerance(np.float64, P + 6)
    assert 0 < r.alpha_min <= r.alpha_max < 1
    wrong = residuals(base, np.concatenate([pre[..., :P], pre[..., P:] / (1 - pre[..., :P].sum(-1, keepdims=True))], -1), P)
    assert wrong.rescale > 100 * tolerance(np.float64, P + 6)
