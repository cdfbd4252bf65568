"""A small minGPT-like transformer (pre-LayerNorm, causal, learned positions) with adaptation hooks.

Block l computes ``x = x + Attn(LN1(a)); x = x + MLP(LN2(x))`` where ``a`` is the block's input ``x``, except
that with a prefix the first P positions of ``a`` are replaced by the learned prefix vectors of layer l
(before LN1), as in the paper's companion code. Attention projections have no bias, so each head is exactly
a `prefixproof.constructions.model.Head` (W_Q, W_K, W_V, the head's columns of W_O, scale 1/sqrt(d_head)) and
the one forward semantics can re-run it (`measure.py`). A soft prompt replaces the token embedding at the
first P positions (the positional embedding is still added); LoRA adds ``s * B A x`` to a chosen linear map.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from prefixproof.experiments.config import ModelConfig


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.width
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(d) if cfg.layernorm else nn.Identity()
        self.ln2 = nn.LayerNorm(d) if cfg.layernorm else nn.Identity()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def lin(self, name: str, x: torch.Tensor, lora: Any, layer: int) -> torch.Tensor:
        y = getattr(self, name)(x)
        return y if lora is None else y + lora.delta(layer, name, x)

    def forward(self, x: torch.Tensor, prefix: torch.Tensor | None, lora: Any, layer: int,
                record: dict | None) -> torch.Tensor:
        B, T, d = x.shape
        a = x if prefix is None else torch.cat([prefix.expand(B, -1, -1), x[:, prefix.shape[0]:]], dim=1)
        if record is not None:
            record.setdefault("inputs", []).append(a.detach())
        h = self.ln1(a)
        H, dh = self.heads, d // self.heads
        q, k, v = (self.lin(n, h, lora, layer).view(B, T, H, dh).transpose(1, 2) for n in "qkv")
        s = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        A = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
        if record is not None:
            record.setdefault("attention", []).append(A.detach())
        y = (A @ v).transpose(1, 2).reshape(B, T, d)
        x = x + self.lin("o", y, lora, layer)
        return x + self.lin("fc2", F.gelu(self.lin("fc1", self.ln2(x), lora, layer)), lora, layer)


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab: int, n_ctx: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(vocab, cfg.width)
        self.wpe = nn.Embedding(n_ctx, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.width) if cfg.layernorm else nn.Identity()
        self.head = nn.Linear(cfg.width, vocab, bias=False)
        self.apply(_init)

    def forward(self, idx: torch.Tensor, prefixes: torch.Tensor | None = None, soft: torch.Tensor | None = None,
                lora: Any = None, record: dict | None = None) -> torch.Tensor:
        """Logits (B, T, V). prefixes: (layers, P, d); soft: (P, d) replacing the first P token embeddings."""
        T = idx.shape[1]
        tok = self.wte(idx)
        if soft is not None:
            tok = torch.cat([soft.expand(idx.shape[0], -1, -1), tok[:, soft.shape[0]:]], dim=1)
        x = tok + self.wpe(torch.arange(T, device=idx.device))
        for l, block in enumerate(self.blocks):
            x = block(x, None if prefixes is None else prefixes[l], lora, l, record)
        return self.head(self.ln_f(x))


def _init(m: nn.Module) -> None:  # minGPT's initialisation
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, 0.0, 0.02)
