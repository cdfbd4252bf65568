"""E3 probe driver (benchmarks/RESULTS.md, "E3 probes"): pretrain the E3 mix model with overrides (cached under
--cache), then prefix-adapt it on each --task; prints exact match on the fixed test set, teacher-forced
per-token accuracy (overall and per answer position, first 800 test inputs) and test loss. One seed, one
process, the same `train.pretrain` / `train.adapt` / `train.evaluate` as `prefixproof experiment run E3`
(bit-identical to its seed-0 runs at the same settings).

    python benchmarks/e3_probe.py --evals ascending,add1 --task ascending_add1 --steps 2000 --lr 3e-1
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from prefixproof.experiments import registry, tasks, train
from prefixproof.experiments.config import Cell, Experiment, ModelConfig
from prefixproof.experiments.methods import Adapter
from prefixproof.experiments.model import GPT


@torch.no_grad()
def per_position(model: GPT, exp: Experiment, task: str, adapter: Adapter | None = None, n: int = 800) -> np.ndarray:
    """Teacher-forced argmax accuracy at each of the 10 answer positions on the first n fixed test inputs."""
    model.eval()
    b = tasks.eval_batch(task, exp.test_size, exp.prefix_len, exp.task_token)
    seq = b.seq[:n]
    logits = model(torch.as_tensor(seq[:, :-1]), **(adapter.kwargs() if adapter is not None else {}))
    pred = logits[:, b.prompt_len - 1:].argmax(-1).numpy()
    return (pred == seq[:, b.prompt_len:]).mean(0)


def pretrained(exp: Experiment, a: argparse.Namespace, seed: int) -> tuple[str, Path]:
    """The probe's pretrained model for `exp` and `seed`: its cache key and safetensors file under `a.cache`,
    pretrained (and saved) on first use."""
    key = f"L{a.layers}H{a.heads}W{a.width}S{a.psteps}lr{a.plr}P{a.plen}s{seed}"
    path = a.cache / f"{key}.safetensors"
    a.cache.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        t0 = time.perf_counter()
        model, curve = train.pretrain(exp, seed, quiet=True)
        train.save_model(model, path)
        print(f"pretrain {key}: {time.perf_counter() - t0:.0f}s, last loss {curve.loss[-1]:.3f}", flush=True)
    return key, path


def fmt(pos: np.ndarray) -> str:
    return f"tok {100 * pos.mean():.1f} per-pos {' '.join(f'{100 * x:.0f}' for x in pos)}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--psteps", type=int, default=2000, help="pretraining steps")
    p.add_argument("--plr", type=float, default=1e-2, help="pretraining lr")
    p.add_argument("--plen", type=int, default=12, help="prefix positions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", action="append", default=[], help="prefix-adapt to this task (repeatable)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=3e-1)
    p.add_argument("--evals", default="", help="comma-separated tasks to score the pretrained model on")
    p.add_argument("--cache", type=Path, default=Path("/tmp/e3_probe_models"))
    a = p.parse_args()
    exp = replace(registry.get("E3"), model=ModelConfig(a.layers, a.heads, a.width), pretrain_steps=a.psteps,
                  pretrain_lr=a.plr, prefix_len=a.plen)
    key, path = pretrained(exp, a, a.seed)
    model = train.load_model(exp, path)
    for t in filter(None, a.evals.split(",")):
        r = train.evaluate(model, exp, t)
        print(f"{key} pretrained on {t}: exact {100 * r['accuracy']:.2f} {fmt(per_position(model, exp, t))} "
              f"loss {r['loss']:.3f}", flush=True)
    for t in a.task:
        m = train.load_model(exp, path)
        t1 = time.perf_counter()
        adapter, curve, n = train.adapt(m, exp, Cell("probe", t, "prefix", a.steps, a.lr), a.seed, quiet=True)
        dt = time.perf_counter() - t1
        r = train.evaluate(m, exp, t, adapter)
        print(f"{key} prefix {t} {a.steps}@{a.lr}: exact {100 * r['accuracy']:.2f} "
              f"{fmt(per_position(m, exp, t, adapter))} loss {r['loss']:.3f} train-end {curve.loss[-1]:.3f} "
              f"({dt:.0f}s, {n} params)", flush=True)


if __name__ == "__main__":
    main()
