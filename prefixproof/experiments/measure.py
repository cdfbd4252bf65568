"""The theorems measured on trained models: the prefix identities per layer and head, and the attention order.

Each block's attention is exported as a `prefixproof.constructions.model.Layer` (its LayerNorm, and per head
W_Q, W_K, W_V, the head's columns of W_O, scale 1/sqrt(d_head); LoRA merged into the weights) and re-run by
the one forward semantics (`prefixproof.verify.semantics.forward`) on the trained model's own layer inputs.
So the identities are checked exactly as `prefixproof fuzz` checks them (`verify.identities.checks.
compare_head`, the documented tolerances), given the same input to the layer:

- prefix_rescale / prefix_bias: the adapted layer with its prefix (the learned vectors; for a soft prompt the
  activations at the prompt positions) against the same layer without it, on the content inputs;
- agreement: torch's attention weights against the re-run's (tolerance for float32): the export is the model;
- attention order: Kendall tau between the pretrained layer's and the adapted layer's attention over content
  keys, per query row (P + 1 or more keys), on the same layer input. A prefix can only rescale the content
  attention, so tau = 1; LoRA and full fine-tuning change the weights and so can change the order (a LoRA
  on neither q nor k, such as E4's on o, fc1, fc2, cannot: its tau is 1 by construction).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau

from prefixproof.constructions.basis import Space
from prefixproof.constructions.model import Head, Layer, LayerNorm, Model, Vocab
from prefixproof.experiments import tasks
from prefixproof.experiments.config import Experiment
from prefixproof.experiments.methods import Adapter
from prefixproof.experiments.model import GPT
from prefixproof.verify.identities.checks import Measure, compare_head, magnitudes
from prefixproof.verify.identities.residuals import tolerance
from prefixproof.verify.numeric.probe import ProbeOps, layer_model
from prefixproof.verify.semantics.forward import Prefix, forward

N_INPUTS = 32  # test inputs the measures run on (the first of the fixed test set)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def attention_layer(model: GPT, l: int, lora: Any = None) -> Layer:
    """Block l's attention as a model-description Layer (no MLP, no residual: the attention output only)."""
    block = model.blocks[l]
    d, H = model.cfg.width, model.cfg.heads
    dh = d // H
    W = {n: _np(getattr(block, n).weight if lora is None else lora.merged(l, n, getattr(block, n).weight))
         for n in "qkvo"}
    heads = tuple(Head(f"h{h}", W["q"][h * dh:(h + 1) * dh], W["k"][h * dh:(h + 1) * dh],
                       W["v"][h * dh:(h + 1) * dh], W["o"][:, h * dh:(h + 1) * dh], 1.0 / float(np.sqrt(dh)))
                  for h in range(H))
    ln = None
    if isinstance(block.ln1, torch.nn.LayerNorm):
        ln = LayerNorm(_np(block.ln1.weight), _np(block.ln1.bias), float(block.ln1.eps))
    space = Space.anonymous("attn", d)
    return Layer(heads, (), space, (), space, causal=True, ln=ln)


def _run(layer: Layer, x: np.ndarray, prefix: np.ndarray | None) -> ProbeOps:
    d, n = x.shape[-1], x.shape[1]
    one = Model(Vocab(2), Space.anonymous("x", d), np.zeros((2, d)), np.zeros((n, d)), (layer,),
                unembed=np.zeros((2, d)))
    ops = ProbeOps(np.float64)
    forward(layer_model(one, 0, n), None, x, prefixes=None if prefix is None else [Prefix(activations=prefix)],
            ops=ops)
    return ops


def order_taus(before: np.ndarray, after: np.ndarray) -> list[float]:
    """Kendall tau (tau-b) per (sequence, head, content query r >= 1) over the content keys 0..r it sees;
    before/after (B, H, n, n) content attention. Rows where tau is undefined (a constant row) are skipped."""
    out = []
    B, H, Tq, _ = before.shape
    for b in range(B):
        for h in range(H):
            for r in range(1, Tq):
                a, c = before[b, h, r, :r + 1], after[b, h, r, :r + 1]
                tau = kendalltau(a, c).statistic
                if np.isfinite(tau):
                    out.append(float(tau))
    return out


def measure(model: GPT, pretrained: GPT, adapter: Adapter, exp: Experiment, task: str,
            n_inputs: int = N_INPUTS) -> dict[str, Any]:
    """Identities (methods with prefix positions) and attention order (every method) at every layer and head."""
    P = exp.prefix_len
    seq = tasks.eval_batch(task, exp.test_size, P, exp.task_token, exp.n_words).seq[:n_inputs, :-1]
    record: dict = {}
    with torch.no_grad():
        model.eval()
        model(torch.as_tensor(seq, device=next(model.parameters()).device), record=record, **adapter.kwargs())
    has_prefix = adapter.method in ("prefix", "prefix_lora", "soft")
    measures: list[Measure] = []
    taus: list[float] = []
    per_layer = []
    for l in range(len(model.blocks)):
        x = _np(record["inputs"][l])
        after_layer = attention_layer(model, l, adapter.lora)
        before_layer = attention_layer(pretrained, l)
        content = x[:, P:]
        base_before = _run(before_layer, content if has_prefix else x, None)
        A_before = np.stack([t.A for t in base_before.layer(0, len(before_layer.heads))], 1)
        if has_prefix:
            pre = _run(after_layer, content, x[:, :P])
            base = _run(after_layer, content, None)
            pre_t, base_t = pre.layer(0, len(after_layer.heads)), base.layer(0, len(after_layer.heads))
            prefix = Prefix(activations=x[:, :P])
            layer_m: list[Measure] = []
            for h, mag in enumerate(magnitudes(after_layer, content, prefix)):
                layer_m += compare_head(f"L{l} h{h}", pre_t[h], base_t[h], P, mag, np.dtype(np.float64),
                                        after_layer.heads[h].W_O)
            A_torch = _np(record["attention"][l])[:, :, P:, :]  # content queries, prefix + content keys
            A_ours = np.stack([t.A for t in pre_t], 1)
            mag = max(magnitudes(after_layer, content, prefix), key=lambda m: m.S)
            layer_m.append(Measure(f"L{l} torch = forward.py (float32)", float(np.abs(A_torch - A_ours).max()),
                                   tolerance(np.float32, A_ours.shape[-1], 1.0, depth=mag.D, score_scale=mag.S)))
            A_after = np.stack([t.A for t in pre_t], 1)[..., P:]
            measures += layer_m
        else:
            run = _run(after_layer, x, None)
            A_after = np.stack([t.A for t in run.layer(0, len(after_layer.heads))], 1)[:, :, P:, P:]
            A_before = A_before[:, :, P:, P:]
            layer_m = []
        t = order_taus(A_before, A_after)
        taus += t
        per_layer.append({"layer": l, "tau_mean": float(np.mean(t)) if t else None,
                          "tau_min": float(np.min(t)) if t else None,
                          "worst_ratio": max((m.ratio for m in layer_m), default=None)})
    worst = max(measures, key=lambda m: m.ratio) if measures else None
    return {
        "inputs": len(seq), "identities_checked": bool(measures),
        "identities_ok": all(m.ok for m in measures) if measures else None,
        "measures": len(measures), "worst": worst.to_json() if worst else None,
        "tau_mean": float(np.mean(taus)) if taus else None, "tau_min": float(np.min(taus)) if taus else None,
        "tau_rows": len(taus), "layers": per_layer,
    }
