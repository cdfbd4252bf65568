"""The one forward semantics: cache equivalence, causality, storage independence, dtypes."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, strategies as st

from prefixproof.constructions.model import map_weights
from prefixproof.verify.semantics.ops import NumpyOps, cast_model
from prefixproof.verify.semantics.forward import Prefix, embed, forward, new_caches, run_layers
from prefixproof.verify.semantics.generate import generate, top_margin

from conftest import margin_tolerance
from models import random_model


def chunked_logits(model, tokens, cuts, corrupt=False):
    """Run the layers over consecutive chunks of positions, reusing the key/value cache."""
    ops = NumpyOps()
    caches = new_caches(model, None, ops)
    out, start = [], 0
    for stop in list(cuts) + [tokens.shape[1]]:
        x = embed(model, tokens[:, start:stop], None, start, ops)
        out.append(run_layers(model, x, caches, ops))
        if corrupt:  # negative control: the cache forgets its first position
            for c in caches:
                c.keys = [ops.view(k)[:, 1:] for k in c.keys]
                c.values = [ops.view(v)[:, 1:] for v in c.values]
                c.n_content -= 1
        start = stop
    return np.concatenate(out, axis=1)


@given(seed=st.integers(0, 10**6), n=st.integers(2, 8), layers=st.integers(1, 3), ln=st.booleans(),
       residual=st.booleans(), data=st.data())
def test_cached_chunks_equal_the_full_pass(seed, n, layers, ln, residual, data):
    rng = np.random.default_rng(seed)
    model = random_model(rng, layers=layers, layernorm=ln, residual=residual)
    tokens = rng.integers(0, model.vocab.size, size=(3, n))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=3))))
    full = forward(model, tokens).logits
    tol = margin_tolerance(np.float64, n) * (1 + np.abs(full).max())
    np.testing.assert_allclose(chunked_logits(model, tokens, cuts), full, rtol=0, atol=tol)


def test_chunk_comparison_flags_a_broken_cache():
    rng = np.random.default_rng(1)
    model = random_model(rng)
    tokens = rng.integers(0, model.vocab.size, size=(2, 6))
    full = forward(model, tokens).logits
    broken = chunked_logits(model, tokens, [3], corrupt=True)
    assert np.abs(broken - full).max() > 1e-3


@given(seed=st.integers(0, 10**6), j=st.integers(0, 7))
def test_causal_outputs_ignore_later_tokens(seed, j):
    rng = np.random.default_rng(seed)
    model = random_model(rng, layers=2)
    a = rng.integers(0, model.vocab.size, size=(1, 8))
    b = a.copy()
    b[0, j] = (a[0, j] + 1) % model.vocab.size
    fa, fb = forward(model, a, return_attention=True), forward(model, b, return_attention=True)
    np.testing.assert_array_equal(fa.logits[:, :j], fb.logits[:, :j])
    for A, B in zip(fa.attention, fb.attention):
        np.testing.assert_array_equal(A[:, :, :j], B[:, :, :j])
    # not vacuous: the change reaches the attention row of position j (row 1 when j = 0)
    r = max(j, 1)
    assert np.abs(fa.attention[0][:, :, r] - fb.attention[0][:, :, r]).max() > 0


def test_non_causal_model_sees_later_tokens():
    rng = np.random.default_rng(3)
    model = random_model(rng, causal=False)
    a = rng.integers(0, model.vocab.size, size=(1, 6))
    b = a.copy()
    b[0, 5] = (a[0, 5] + 1) % model.vocab.size
    assert np.abs(forward(model, a).logits[:, 0] - forward(model, b).logits[:, 0]).max() > 0


@given(seed=st.integers(0, 10**6))
def test_sparse_and_dense_storage_agree(seed):
    rng = np.random.default_rng(seed)
    dense = random_model(rng, layernorm=True)
    sparse = map_weights(dense, lambda w: sp.csr_array(w) if w.ndim == 2 else w)
    tokens = rng.integers(0, dense.vocab.size, size=(2, 8))
    a, b = forward(dense, tokens).logits, forward(sparse, tokens).logits
    np.testing.assert_allclose(a, b, rtol=0, atol=margin_tolerance(np.float64, 8) * (1 + np.abs(a).max()))


@given(seed=st.integers(0, 10**6), P=st.integers(1, 4), ln=st.booleans())
def test_activation_prefix_equals_its_raw_keys_and_values(seed, P, ln):
    rng = np.random.default_rng(seed)
    model = random_model(rng, layers=1, layernorm=ln)
    s = rng.normal(size=(P, model.d_model))
    layer = model.layers[0]
    normed = NumpyOps().layernorm(s, layer.ln) if ln else s
    raw = Prefix(keys=tuple(normed @ h.W_K.T for h in layer.heads), values=tuple(normed @ h.W_V.T for h in layer.heads))
    tokens = rng.integers(0, model.vocab.size, size=(2, 5))
    a = forward(model, tokens, prefixes=[Prefix(activations=s)]).logits
    b = forward(model, tokens, prefixes=[raw]).logits
    np.testing.assert_allclose(a, b, rtol=0, atol=margin_tolerance(np.float64, 5 + P) * (1 + np.abs(a).max()))
    assert np.abs(a - forward(model, tokens).logits).max() > 0  # the prefix does change the output


def test_float32_tracks_float64():
    rng = np.random.default_rng(7)
    model = random_model(rng)
    tokens = rng.integers(0, model.vocab.size, size=(4, 8))
    a = forward(model, tokens).logits
    b = forward(cast_model(model, np.float32), tokens, ops=NumpyOps(np.float32)).logits
    assert b.dtype == np.float32
    np.testing.assert_allclose(b, a, rtol=0, atol=margin_tolerance(np.float32, 8) * (1 + np.abs(a).max()))


def test_generation_follows_teacher_forced_argmax():
    rng = np.random.default_rng(11)
    model = random_model(rng, n_ctx=9)
    start = rng.integers(0, model.vocab.size, size=(3, 2))
    gen = generate(model, prompt=start)
    seq = np.concatenate([start, gen.tokens[:, :-1]], axis=1)
    logits = forward(model, seq).logits[:, 1:]
    choice, margin = top_margin(logits)
    np.testing.assert_array_equal(choice, gen.tokens)
    np.testing.assert_allclose(margin, gen.margins, rtol=0, atol=1e-12)


def test_context_overflow_is_an_error():
    model = random_model(np.random.default_rng(0), n_ctx=4)
    with pytest.raises(ValueError, match="exceeds the model's context of 4"):
        forward(model, np.zeros((1, 5), dtype=int))
