"""The adaptation methods and the parameters each one trains.

- full: every weight of the pretrained model;
- prefix: one learned vector per prefix position and layer, replacing the attention input there (L * P * d);
- soft: one learned vector per prefix position at the input layer only (P * d);
- lora: rank-r factors B A on the chosen linear maps of every layer (r * (d_in + d_out) each), B = 0 at start;
- prefix_lora: both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prefixproof.experiments.config import Cell, ConfigError
from prefixproof.experiments.model import GPT
from prefixproof.experiments.tasks import PAD


class LoRA(nn.Module):
    """delta(layer, name, x) = (x A^T) B^T for the targeted maps, zero elsewhere (scale alpha/r = 1)."""

    def __init__(self, model: GPT, rank: int, targets: tuple[str, ...], gen: torch.Generator) -> None:
        super().__init__()
        self.targets = targets
        self.A, self.B = nn.ParameterDict(), nn.ParameterDict()
        for l, block in enumerate(model.blocks):
            for t in targets:
                W = getattr(block, t).weight
                d_out, d_in = W.shape
                self.A[f"{l}_{t}"] = nn.Parameter(torch.randn(rank, d_in, generator=gen) / d_in ** 0.5)
                self.B[f"{l}_{t}"] = nn.Parameter(torch.zeros(d_out, rank))

    def delta(self, layer: int, name: str, x: torch.Tensor) -> torch.Tensor | float:
        key = f"{layer}_{name}"
        if name not in self.targets:
            return 0.0
        return (x @ self.A[key].T) @ self.B[key].T

    def merged(self, layer: int, name: str, W: torch.Tensor) -> torch.Tensor:
        """W + B A: the weight the adapted model uses."""
        key = f"{layer}_{name}"
        return W if name not in self.targets else W + self.B[key] @ self.A[key]


def lora_count(model: GPT, rank: int, targets: tuple[str, ...]) -> int:
    return sum(rank * sum(getattr(b, t).weight.shape) for b in model.blocks for t in targets)


def prefix_count(model: GPT, prefix_len: int) -> int:
    return len(model.blocks) * prefix_len * model.cfg.width


@dataclass
class Adapter:
    """What a method trains, and how the forward pass uses it."""

    method: str
    prefixes: torch.Tensor | None = None
    soft: torch.Tensor | None = None
    lora: LoRA | None = None

    def to(self, device: torch.device, params: list) -> list:
        """Move the adapter's tensors to `device`; returns the parameters to train, moved."""
        if device.type == "cpu":
            return params
        moved = {id(p): p for p in params}
        if self.prefixes is not None:
            self.prefixes = nn.Parameter(self.prefixes.detach().to(device))
            moved[id(params[0])] = self.prefixes
        if self.soft is not None:
            self.soft = nn.Parameter(self.soft.detach().to(device))
            moved[id(params[0])] = self.soft
        if self.lora is not None:
            self.lora.to(device)
        return [moved.get(id(p), p) for p in params]

    def kwargs(self) -> dict[str, Any]:
        return {"prefixes": self.prefixes, "soft": self.soft, "lora": self.lora}


@torch.no_grad()
def _pad_activations(model: GPT, prefix_len: int) -> torch.Tensor:
    """(L, P, d): each layer's attention input at positions 0..P-1 of the pretrained model reading PADs there
    (causal: the same whatever follows), so a prefix that starts here starts as the pretrained model."""
    rec: dict = {}
    was = model.training
    model.eval()
    model(torch.full((1, prefix_len), PAD, dtype=torch.long, device=model.wte.weight.device), record=rec)
    model.train(was)
    return torch.stack([x[0] for x in rec["inputs"]]).cpu()


def make_adapter(model: GPT, cell: Cell, prefix_len: int, gen: torch.Generator) -> tuple[Adapter, list]:
    """The adapter of `cell` and the parameters to train (the model is frozen unless the method is `full`)."""
    for p in model.parameters():
        p.requires_grad_(cell.method == "full")
    L, d = len(model.blocks), model.cfg.width
    a = Adapter(cell.method)
    params: list = []
    if cell.method in ("prefix", "prefix_lora"):
        noise = torch.randn(L, prefix_len, d, generator=gen)
        start = _pad_activations(model, prefix_len) + 0.01 * noise if cell.init == "pretrained" else noise
        a.prefixes = nn.Parameter(start)
        params.append(a.prefixes)
    if cell.method == "soft":
        noise = torch.randn(prefix_len, d, generator=gen)
        pad = model.wte.weight.detach()[PAD].cpu().expand(prefix_len, -1)
        a.soft = nn.Parameter(pad + 0.01 * noise if cell.init == "pretrained" else 0.02 * noise)
        params.append(a.soft)
    if cell.method in ("lora", "prefix_lora"):
        if cell.match_prefix and lora_count(model, cell.lora_rank, cell.lora_targets) != prefix_count(model, prefix_len):
            raise ConfigError(
                f"cell {cell.name}: LoRA rank {cell.lora_rank} on {','.join(cell.lora_targets)} trains "
                f"{lora_count(model, cell.lora_rank, cell.lora_targets)} parameters, the prefix "
                f"{prefix_count(model, prefix_len)}; change lora_rank, lora_targets or prefix_len")
        a.lora = LoRA(model, cell.lora_rank, cell.lora_targets, gen)
        params += list(a.lora.parameters())
    if cell.method == "full":
        params = list(model.parameters())
    return a, params
