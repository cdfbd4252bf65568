"""The prefix identities on Hugging Face GPT-2 (random init) and on PEFT's own prefix-tuning.

GPT-2 is built at random from a small `GPT2Config` (nothing is downloaded),
with eager attention so the attention weights are returned. The prefix is a
per-layer `DynamicCache` passed through `cache=`; content positions are
explicit (`position_ids = arange(T)`) so the prefixed and the prefix-free run
embed the content identically.

PEFT (`PrefixTuningConfig`, `get_peft_model`) injects its own per-layer keys
and values (`get_prompt(batch_size)`, a DynamicCache) and lets GPT-2 number
the content positions after the cache: P..P+T-1. The prefix-free baseline
therefore uses `position_ids = arange(T) + P`; a negative control shows what
happens without that shift. (PEFT 0.21.2 hands the cache to GPT-2 through the
deprecated `past_key_values=` argument itself; that is PEFT's call, not ours.)

Per layer l:
- A_pt, t_pt: from the real prefixed forward pass (`output_attentions`, and
  the head outputs entering `c_proj`, i.e. before W_O);
- layer 0: A, t from the real prefix-free forward pass (same layer input);
- layer l > 0: the layer input differs between the two runs, so A, t come from
  the real attention module recomputed on the prefixed run's own layer input
  without the prefix (causal additive mask, as the model builds it);
- values: the prefix values as injected, then the content values from the
  module's own `c_attn` projection of that layer input.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

from prefixproof.verify import optional as extras
from prefixproof.verify.crosscheck.hooks import Recorder, causal_additive_mask, split_heads, to_numpy
from prefixproof.verify.crosscheck.rows import LayerArrays

torch = extras.torch()
transformers = extras.transformers()

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Gpt2Shape:
    """A small GPT-2: weights drawn with std `init` so attention is far from uniform."""

    vocab: int = 64
    n_ctx: int = 32
    d_model: int = 48
    layers: int = 3
    heads: int = 4
    T: int = 10  # content tokens
    P: int = 4  # prefix length
    init: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} must be a multiple of heads={self.heads}")
        if not (1 <= self.T <= self.n_ctx and self.P >= 1 and self.vocab >= 2):
            raise ValueError("need 1 <= T <= n_ctx, P >= 1 and vocab >= 2")


def gpt2_model(shape: Gpt2Shape, dtype: str) -> Any:
    cfg = transformers.GPT2Config(vocab_size=shape.vocab, n_positions=shape.n_ctx, n_embd=shape.d_model,
                                  n_layer=shape.layers, n_head=shape.heads, initializer_range=shape.init,
                                  bos_token_id=0, eos_token_id=1, resid_pdrop=0.0, embd_pdrop=0.0,
                                  attn_pdrop=0.0, attn_implementation="eager")
    torch.manual_seed(shape.seed)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    return model.to(TORCH_DTYPES[dtype])


def _tokens(shape: Gpt2Shape) -> Any:
    g = torch.Generator().manual_seed(shape.seed + 1)
    return torch.randint(2, shape.vocab, (1, shape.T), generator=g)


def _layer_arrays(base: Any, ids: Any, prefixed: Callable[[], Any], prefix_values: list[Any],
                  base_positions: Any, P: int) -> list[LayerArrays]:
    blocks = base.transformer.h
    H = base.config.n_head
    T = ids.shape[1]
    dtype = next(base.parameters()).dtype
    with torch.no_grad(), Recorder() as rec, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        for l, blk in enumerate(blocks):
            rec.input(blk, ("in", l))
            rec.input(blk.attn.c_proj, ("t", l))
        out_pt = prefixed()
        inputs = [rec.take(("in", l)) for l in range(len(blocks))]
        t_pt = [rec.take(("t", l)) for l in range(len(blocks))]
        out0 = base(ids, position_ids=base_positions, output_attentions=True)
        t0 = rec.take(("t", 0))
        rec.clear()
        layers = []
        for l, blk in enumerate(blocks):
            h = blk.ln_1(inputs[l])
            v_content = split_heads(blk.attn.c_attn(h).split(base.config.n_embd, dim=2)[2], H)
            if l == 0:
                A, t, how = out0.attentions[0], t0, "baseline: full prefix-free run"
            else:
                _, A = blk.attn(h, attention_mask=causal_additive_mask(T, dtype))
                t, how = rec.take(("t", l)), "baseline: module recomputed on the prefixed run's layer input"
                rec.clear()
            values = torch.cat([prefix_values[l].to(dtype), v_content], dim=2)
            layers.append(LayerArrays(A=to_numpy(A), t=to_numpy(split_heads(t, H)), A_pt=to_numpy(out_pt.attentions[l]),
                                      t_pt=to_numpy(split_heads(t_pt[l], H)), values=to_numpy(values), P=P,
                                      baseline=how))
    return layers


def random_prefix(shape: Gpt2Shape, dtype: str) -> list[tuple[Any, Any]]:
    """Per layer (keys, values), each (1, H, P, d_head): N(0, 1) draws, seeded."""
    g = torch.Generator().manual_seed(shape.seed + 2)
    dh = shape.d_model // shape.heads
    size = (1, shape.heads, shape.P, dh)
    return [(torch.randn(size, generator=g, dtype=torch.float64).to(TORCH_DTYPES[dtype]),
             torch.randn(size, generator=g, dtype=torch.float64).to(TORCH_DTYPES[dtype]))
            for _ in range(shape.layers)]


def gpt2_arrays(shape: Gpt2Shape, dtype: str) -> list[LayerArrays]:
    """The identities' arrays at every layer of a random GPT-2 with a random DynamicCache prefix."""
    model = gpt2_model(shape, dtype)
    ids = _tokens(shape)
    kv = random_prefix(shape, dtype)
    positions = torch.arange(shape.T)[None]

    def prefixed() -> Any:
        cache = transformers.DynamicCache(config=model.config)
        for l, (k, v) in enumerate(kv):
            cache.update(k.clone(), v.clone(), l)
        return model(ids, position_ids=positions, cache=cache, output_attentions=True)

    return _layer_arrays(model, ids, prefixed, [v for _, v in kv], positions, shape.P)


def peft_model(shape: Gpt2Shape, dtype: str) -> Any:
    peft = extras.peft()
    base = gpt2_model(shape, dtype)
    torch.manual_seed(shape.seed + 3)  # PEFT's prefix encoder draws its embedding at construction
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.get_peft_model(base, peft.PrefixTuningConfig(task_type="CAUSAL_LM",
                                                                  num_virtual_tokens=shape.P))
    return model.to(TORCH_DTYPES[dtype]).eval()


def peft_arrays(shape: Gpt2Shape, dtype: str, shift_positions: bool = True) -> list[LayerArrays]:
    """The identities' arrays at every layer of PEFT prefix-tuning on a random GPT-2.

    `shift_positions=False` builds the negative control: a baseline at positions arange(T), which does not
    match PEFT's content positions arange(T) + P.
    """
    model = peft_model(shape, dtype)
    base = model.get_base_model()
    ids = _tokens(shape)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        cache = model.get_prompt(batch_size=1)
        prefix_values = [cache.layers[l].values.clone() for l in range(shape.layers)]
    positions = torch.arange(shape.T)[None] + (shape.P if shift_positions else 0)

    def prefixed() -> Any:
        return model(input_ids=ids, output_attentions=True)

    return _layer_arrays(base, ids, prefixed, prefix_values, positions, shape.P)
