"""A PyTorch re-implementation of the model semantics, loaded straight from a weights directory.

This is the independent second implementation the cross-check compares our
numpy evaluator against. It shares no forward-pass code with `verify/semantics/forward.py`:
it reads config.json and the safetensors files itself (docs/format.md, CSR
tensors through torch's own CSR constructor) and runs docs/semantics.md with
standard torch operations:

- x_p = E[t_p] + P[p]; at virtual positions the given vector replaces E[t_p]
  and P[p] is still added;
- per head `F.scaled_dot_product_attention(q, k, v, attn_mask, scale=head.scale)`
  with a boolean causal mask (j <= i) unless the layer is non-causal:
  scores scale * <W_Q x_i, W_K x_j>, never an implicit 1/sqrt(d_k);
- the head outputs W_O (A v) summed over heads; the input added only when the
  layer's `attn_residual` flag is set;
- an optional pre-LayerNorm (`F.layer_norm`, population variance);
- the MLP: Linear, ReLU, ..., Linear (no ReLU after the last), plus the
  attention output when `mlp_residual` is set; then the optional unembedding.

The directory is first validated by `prefixproof.constructions.io.load_model` (one-line
`FormatError` on a missing, corrupt or inconsistent file, fingerprint
included); only validation is shared, not arithmetic.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefixproof.constructions.io import CONFIG, PROMPT, WEIGHTS, FormatError, load_model
from prefixproof.verify import optional as extras

torch = extras.torch()
nn = torch.nn
F = torch.nn.functional

DENSE_LIMIT = 2**26  # entries: CSR tensors are expanded to dense torch tensors up to this size

DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
          "bfloat16": torch.bfloat16}


def _read(directory: Path, name: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(directory / name))


def _tensor(raw: dict[str, Any], table: dict[str, Any], name: str) -> Any:
    """One weight as a dense float64 tensor; CSR entries go through torch.sparse_csr_tensor."""
    entry = table[name]
    shape = tuple(entry["shape"])
    if entry.get("storage") != "csr":
        return raw[name].to(torch.float64)
    rows, cols = shape
    if rows * cols > DENSE_LIMIT:
        raise FormatError(f"CSR tensor {name!r} of shape {shape} is too large for the dense PyTorch adapter "
                          f"({rows * cols} > {DENSE_LIMIT} entries); cross-check a smaller vocabulary")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = torch.sparse_csr_tensor(raw[f"{name}.indptr"], raw[f"{name}.indices"],
                                      raw[f"{name}.data"].to(torch.float64), size=shape, check_invariants=True)
    return csr.to_dense()


def _hold(module: Any, name: str, w: Any) -> None:
    """Every weight is an nn.Parameter (frozen here; `prefixproof.hf` hands them to Hugging Face trainable)."""
    module.register_parameter(name, nn.Parameter(w, requires_grad=False))


def causal_mask(n: int, past: int = 0) -> Any:
    """Boolean (n, past + n): query i (absolute position past + i) sees keys j <= past + i."""
    return torch.ones(n, past + n, dtype=torch.bool).tril(diagonal=past)


class TorchHead(nn.Module):
    def __init__(self, W_Q: Any, W_K: Any, W_V: Any, W_O: Any, scale: float) -> None:
        super().__init__()
        for name, w in (("W_Q", W_Q), ("W_K", W_K), ("W_V", W_V), ("W_O", W_O)):
            _hold(self, name, w)
        self.scale = float(scale)

    def project(self, h: Any) -> tuple[Any, Any, Any]:
        """Queries, keys and values of h (B, n, d_in), each (B, n, d_k or d_v)."""
        return h @ self.W_Q.T, h @ self.W_K.T, h @ self.W_V.T

    def attend(self, q: Any, k: Any, v: Any, mask: Any) -> Any:
        """W_O sum_j A_ij v_j with A = softmax_j(scale <q_i, k_j>) over the keys the mask allows: (B, n, d_out)."""
        mixed = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), attn_mask=mask,
                                               scale=self.scale).squeeze(1)
        return mixed @ self.W_O.T

    def forward(self, h: Any, mask: Any) -> Any:
        """h (B, n, d_in) -> W_O sum_j A_ij W_V h_j, shape (B, n, d_out)."""
        return self.attend(*self.project(h), mask)


class TorchLayer(nn.Module):
    def __init__(self, spec: dict[str, Any], raw: dict[str, Any], table: dict[str, Any], l: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            TorchHead(*(_tensor(raw, table, f"layers.{l}.heads.{h}.{p}") for p in ("W_Q", "W_K", "W_V", "W_O")),
                      hs["scale"])
            for h, hs in enumerate(spec["heads"]))
        self.n_mlp = int(spec["mlp_layers"])
        for k in range(self.n_mlp):
            _hold(self, f"mlp_W{k}", _tensor(raw, table, f"layers.{l}.mlp.{k}.W"))
            _hold(self, f"mlp_b{k}", _tensor(raw, table, f"layers.{l}.mlp.{k}.b"))
        self.causal = bool(spec.get("causal", True))
        self.attn_residual = bool(spec.get("attn_residual"))
        self.mlp_residual = bool(spec.get("mlp_residual"))
        self.ln_eps = spec.get("layernorm_eps")
        if self.ln_eps is not None:
            _hold(self, "ln_gamma", _tensor(raw, table, f"layers.{l}.ln.gamma"))
            _hold(self, "ln_beta", _tensor(raw, table, f"layers.{l}.ln.beta"))

    def forward(self, x: Any, cache: Any = None, index: int = 0) -> Any:
        """The layer on x (B, n, d_in). With `cache` (a transformers Cache; `index` is this layer's slot in it) the
        n positions follow the cached ones: their keys and values are appended (all heads concatenated along the
        last axis, one cache entry per layer) and the queries attend to every cached key and to themselves."""
        n = x.shape[1]
        h = x if self.ln_eps is None else F.layer_norm(x, (x.shape[-1],), self.ln_gamma, self.ln_beta,
                                                       float(self.ln_eps))
        if cache is None:
            mask = causal_mask(n) if self.causal else None
            a = sum(head(h, mask) for head in self.heads)
        else:
            if not self.causal:
                raise ValueError("a key/value cache needs causal layers (a non-causal layer's earlier outputs "
                                 "change with later tokens); run with use_cache=False")
            qkv = [head.project(h) for head in self.heads]
            past = cache.get_seq_length(index)
            keys, values = cache.update(torch.cat([k for _, k, _ in qkv], -1).unsqueeze(1),
                                        torch.cat([v for _, _, v in qkv], -1).unsqueeze(1), index)
            keys, values = keys.squeeze(1), values.squeeze(1)
            mask = causal_mask(n, past)
            a, ko, vo = 0, 0, 0
            for head, (q, k, v) in zip(self.heads, qkv):
                a = a + head.attend(q, keys[..., ko:ko + k.shape[-1]], values[..., vo:vo + v.shape[-1]], mask)
                ko, vo = ko + k.shape[-1], vo + v.shape[-1]
        if self.attn_residual:
            a = a + x
        z = a
        for k in range(self.n_mlp):
            z = z @ getattr(self, f"mlp_W{k}").T + getattr(self, f"mlp_b{k}")
            if k < self.n_mlp - 1:
                z = torch.relu(z)
        if self.mlp_residual:
            z = z + a
        return z


@dataclass(frozen=True)
class TorchGeneration:
    tokens: Any  # (B, steps) long
    margins: Any  # (B, steps) top logit minus runner-up, in the model's dtype


class TorchModel(nn.Module):
    """The whole model; `forward(tokens, soft)` returns logits (B, n, V) in the model's dtype."""

    def __init__(self, config: dict[str, Any], raw: dict[str, Any]) -> None:
        super().__init__()
        table = config["tensors"]
        self.embed = nn.Embedding.from_pretrained(_tensor(raw, table, "embed"), freeze=True)  # E; weight (V, d)
        self.pos = nn.Embedding.from_pretrained(_tensor(raw, table, "pos"), freeze=True)  # P; weight (n_ctx, d)
        self.layers = nn.ModuleList(TorchLayer(spec, raw, table, l) for l, spec in enumerate(config["layers"]))
        self.has_unembed = bool(config.get("unembed"))
        if self.has_unembed:
            _hold(self, "unembed", _tensor(raw, table, "unembed"))
        self.vocab = int(config["vocab"])
        self.n_ctx = int(config["n_ctx"])

    @property
    def dtype(self) -> Any:
        return self.embed.weight.dtype

    def inputs(self, tokens: Any = None, soft: Any = None, past: int = 0) -> Any:
        """x_p = E[t_p] + P[p] (a given vector replaces E[t_p] at virtual positions); positions start at `past`."""
        parts = []
        if soft is not None:
            parts.append(soft.to(self.dtype))
        if tokens is not None and tokens.shape[-1]:
            parts.append(self.embed(tokens))
        if not parts:
            raise ValueError("nothing to embed: give tokens, virtual tokens, or both")
        if len(parts) == 2 and parts[0].shape[0] != parts[1].shape[0]:
            parts[0] = parts[0].expand(parts[1].shape[0], -1, -1)
        x = torch.cat(parts, dim=1)
        n = past + x.shape[1]
        if n > self.n_ctx:
            raise ValueError(f"sequence of {n} positions exceeds the model's context of {self.n_ctx}")
        return x + self.pos.weight[past:n]

    def forward(self, tokens: Any = None, soft: Any = None, cache: Any = None) -> Any:
        """Logits (B, n, V). With `cache`, tokens/soft are the positions after the cached ones (see TorchLayer)."""
        x = self.inputs(tokens, soft, 0 if cache is None else cache.get_seq_length(0))
        return self.run(x, cache)

    def run(self, x: Any, cache: Any = None) -> Any:
        """The layers and the optional unembedding on layer-0 inputs x (positional rows already added)."""
        for l, layer in enumerate(self.layers):
            x = layer(x, cache, l)
        return x @ self.unembed.T if self.has_unembed else x

    def generate(self, soft: Any, prompt: Any = None, steps: int | None = None) -> TorchGeneration:
        """Greedy decoding by re-running the whole sequence at every step (no cache: a different code path
        from our numpy generator). Ties go to the lowest id, as torch.argmax returns the first maximum."""
        B, k = soft.shape[0], soft.shape[1]
        seq = prompt if prompt is not None else torch.zeros(B, 0, dtype=torch.long)
        steps = self.n_ctx - (k + seq.shape[1]) + 1 if steps is None else steps
        tokens, margins = [], []
        for step in range(steps):
            logits = self.forward(seq, soft)[:, -1]
            top2 = torch.topk(logits, 2, dim=-1).values
            choice = torch.argmax(logits, dim=-1)
            tokens.append(choice)
            margins.append(top2[:, 0] - top2[:, 1])
            if step < steps - 1:
                seq = torch.cat([seq, choice[:, None]], dim=1)
        return TorchGeneration(torch.stack(tokens, 1), torch.stack(margins, 1))


def load_torch_model(directory: str | Path, dtype: str = "float64") -> TorchModel:
    """Validate the directory, then build the torch model from its files; weights rounded to `dtype` once."""
    d = Path(directory)
    load_model(d)  # one-line FormatError for anything malformed (shared validation only)
    config = json.loads((d / CONFIG).read_text())
    model = TorchModel(config, _read(d, WEIGHTS))
    return model.to(DTYPES[dtype]).eval()


def load_torch_prompt(directory: str | Path) -> Any:
    """The virtual tokens (k, d) as a float64 tensor."""
    return _read(Path(directory), PROMPT)["virtual_tokens"].to(torch.float64)
