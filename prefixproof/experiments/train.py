"""Training (AdamW, batch 64, optional linear warm-up then cosine decay to 10%, gradient clipping at 1) and
exact-match evaluation.

Every run is deterministic on CPU: `deterministic(seed)` fixes torch's algorithms, its thread count (1) and
seeds; batches come from a numpy generator seeded with the run's seed and a per-stage constant.
Evaluation is one teacher-forced pass: the greedy 10-token answer equals the target exactly when the argmax
is right at every answer position (by induction over positions), so exact match needs no generation loop.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from prefixproof.experiments import tasks
from prefixproof.experiments.config import Cell, Experiment
from prefixproof.experiments.methods import Adapter, make_adapter
from prefixproof.experiments.model import GPT

STAGE = {"pretrain": 1, "adapt": 2}  # keeps the pretraining and adaptation streams of one seed apart
CURVE_POINTS = 50


def deterministic(seed: int, device: str = "cpu") -> torch.Generator:
    if device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def seq_len(exp: Experiment) -> int:
    prompt = tasks.WORD_LENGTH if exp.pretrain_task.startswith("translate") else tasks.LENGTH + exp.task_token
    answer = tasks.WORD_LENGTH if exp.pretrain_task.startswith("translate") else tasks.LENGTH
    return exp.prefix_len + prompt + answer - 1


def new_model(exp: Experiment, device: str = "cpu") -> GPT:
    return GPT(exp.model, tasks.VOCAB, seq_len(exp)).to(device)


def _ids(model: GPT, seq: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(seq, device=model.wte.weight.device)


def _loss(logits: torch.Tensor, batch: tasks.Batch) -> torch.Tensor:
    seq = torch.as_tensor(batch.seq, device=logits.device)
    start = batch.prompt_len - 1  # logits at position t predict token t + 1
    out = logits[:, start:]
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), seq[:, start + 1:].reshape(-1))


class Progress:
    """One line on stderr, rewritten at most every 2 s (a new line each time when stderr is not a terminal)."""

    def __init__(self, label: str, total: int, quiet: bool = False) -> None:
        self.label, self.total, self.quiet = label, total, quiet
        self.t0 = self.last = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def __call__(self, step: int, loss: float) -> None:
        now = time.perf_counter()
        if self.quiet or (now - self.last < (2.0 if self.tty else 30.0) and step < self.total):
            return
        self.last = now
        width = 24
        fill = int(width * step / self.total)
        eta = (now - self.t0) / max(step, 1) * (self.total - step)
        line = f"{self.label} [{'#' * fill}{'.' * (width - fill)}] {step}/{self.total} loss {loss:.3f} eta {eta:.0f}s"
        sys.stderr.write(("\r" + line + ("\n" if step >= self.total else "")) if self.tty else line + "\n")
        sys.stderr.flush()


@dataclass
class Curve:
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)


def lr_factor(step: int, steps: int, warmup: int = 0) -> float:
    """The multiplier of the base learning rate at optimizer step `step` (0-based) of `steps`: with `warmup` > 0,
    (step + 1) / warmup for the first `warmup` steps, then a cosine from 1 down to 0.1 over the remaining
    steps; with `warmup` == 0, the cosine from 1 to 0.1 over all steps (the schedule of every run made before
    the warm-up option, kept bit for bit)."""
    if warmup <= 0:
        return 0.1 + 0.45 * (1 + math.cos(math.pi * step / steps))
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))


def fit(forward: Callable[[tasks.Batch], torch.Tensor], params: list, draw: Callable[[], tasks.Batch],
        steps: int, lr: float, weight_decay: float, progress: Progress, warmup: int = 0) -> Curve:
    decay = [p for p in params if p.dim() >= 2 and weight_decay > 0]
    rest = [p for p in params if not (p.dim() >= 2 and weight_decay > 0)]
    groups = [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0})
              if g["params"]]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup))
    curve, every, acc = Curve(), max(1, steps // CURVE_POINTS), []
    for step in range(1, steps + 1):
        batch = draw()
        loss = _loss(forward(batch), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        acc.append(loss.item())
        if step % every == 0 or step == steps:
            curve.steps.append(step)
            curve.loss.append(float(np.mean(acc)))
            acc = []
        progress(step, curve.loss[-1] if curve.loss else acc[-1])
    return curve


def pretrain(exp: Experiment, seed: int, quiet: bool = False, device: str = "cpu") -> tuple[GPT, Curve]:
    deterministic(seed, device)
    model = new_model(exp, device)
    rng = np.random.default_rng([seed, STAGE["pretrain"]])
    model.train()
    curve = fit(lambda b: model(_ids(model, b.seq[:, :-1])), list(model.parameters()),
                lambda: tasks.train_batch(exp.pretrain_task, rng, exp.batch, exp.prefix_len, exp.task_token,
                                          exp.n_words),
                exp.pretrain_steps, exp.pretrain_lr, exp.weight_decay,
                Progress(f"{exp.id} pretrain seed {seed}", exp.pretrain_steps, quiet))
    return model, curve


def adapt(model: GPT, exp: Experiment, cell: Cell, seed: int, quiet: bool = False) -> tuple[Adapter, Curve, int]:
    gen = deterministic(seed)  # the adapter's initial values are drawn on the CPU, then moved
    adapter, params = make_adapter(model, cell, exp.prefix_len, gen)
    params = adapter.to(model.wte.weight.device, params)
    rng = np.random.default_rng([seed, STAGE["adapt"]])
    model.train()
    curve = fit(lambda b: model(_ids(model, b.seq[:, :-1]), **adapter.kwargs()), params,
                lambda: tasks.train_batch(cell.task, rng, exp.batch, exp.prefix_len, exp.task_token, exp.n_words),
                cell.steps, cell.lr, exp.weight_decay if cell.method == "full" else 0.0,
                Progress(f"{exp.id} {cell.name} seed {seed}", cell.steps, quiet), cell.warmup)
    return adapter, curve, sum(p.numel() for p in params)


@torch.no_grad()
def evaluate(model: GPT, exp: Experiment, task: str, adapter: Adapter | None = None) -> dict[str, Any]:
    """Exact-match accuracy and mean loss on the task's fixed evaluation set."""
    model.eval()
    batch = tasks.eval_batch(task, exp.test_size, exp.prefix_len, exp.task_token, exp.n_words)
    correct, losses = 0, []
    kw = adapter.kwargs() if adapter is not None else {}
    for i in range(0, len(batch.seq), 800):
        part = tasks.Batch(batch.seq[i:i + 800], batch.prompt_len)
        logits = model(_ids(model, part.seq[:, :-1]), **kw)
        losses.append(float(_loss(logits, part)) * len(part.seq))
        pred = logits[:, part.prompt_len - 1:].argmax(-1).cpu().numpy()
        correct += int((pred == part.seq[:, part.prompt_len:]).all(axis=1).sum())
    n = len(batch.seq)
    return {"task": task, "accuracy": correct / n, "correct": correct, "n": n, "loss": sum(losses) / n,
            "eval_set": tasks.eval_set_name(task)}


def save_model(model: GPT, path: Path) -> None:
    """safetensors, written atomically (never pickle)."""
    _save(dict(model.state_dict()), path)


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_adapted(model: GPT, adapter: Adapter, path: Path) -> None:
    """The adapted model (`model.*`) and the adapter's tensors (`prefixes`, `soft`, `lora.*`)."""
    t = {f"model.{k}": v for k, v in model.state_dict().items()}
    if adapter.prefixes is not None:
        t["prefixes"] = adapter.prefixes
    if adapter.soft is not None:
        t["soft"] = adapter.soft
    if adapter.lora is not None:
        t.update({f"lora.{k}": v for k, v in adapter.lora.state_dict().items()})
    _save(t, path)


def load_model(exp: Experiment, path: Path, device: str = "cpu") -> GPT:
    from safetensors.torch import load_file

    model = new_model(exp, device)
    model.load_state_dict(load_file(str(path), device=device))
    return model
