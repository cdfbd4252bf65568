"""E4 probe driver (benchmarks/RESULTS.md, "E4 probes"): pretrain the E4 mix model with overrides (cached under
--cache), then adapt it once (one seed, one process) and print exact match on the fixed test set, teacher-forced
per-token accuracy (overall and per answer position, first 800 test inputs), test loss, seconds and the training
loss curve. The same `train.pretrain` / `train.adapt` / `train.evaluate` as `prefixproof experiment run E4`
(bit-identical to its runs at the same settings).

    python benchmarks/e4_probe.py --layers 3 --targets o,fc1,fc2 --seed 2
    python benchmarks/e4_probe.py --layers 3 --method prefix --lr 1e-2

--scale s multiplies every LoRA delta by s: under Adam that moves B s times faster than A (LoRA+ with ratio s).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from e3_probe import fmt, per_position, pretrained
from prefixproof.experiments import methods, registry, train
from prefixproof.experiments.config import Cell, ModelConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--psteps", type=int, default=1000, help="pretraining steps")
    p.add_argument("--plr", type=float, default=2e-3, help="pretraining lr")
    p.add_argument("--plen", type=int, default=12, help="prefix positions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default="lora", choices=("lora", "prefix", "prefix_lora"))
    p.add_argument("--targets", default="o,fc1,fc2", help="LoRA targets, comma-separated")
    p.add_argument("--rank", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-2)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--scale", type=float, default=1.0, help="LoRA delta multiplier (see above)")
    p.add_argument("--task", default="double_hist")
    p.add_argument("--cache", type=Path, default=Path("/tmp/e4_probe_models"))
    a = p.parse_args()
    if a.scale != 1.0:
        delta = methods.LoRA.delta
        methods.LoRA.delta = lambda self, l, n, x: delta(self, l, n, x) * a.scale
    exp = replace(registry.get("E4"), model=ModelConfig(a.layers, a.heads, a.width), pretrain_steps=a.psteps,
                  pretrain_lr=a.plr, prefix_len=a.plen)
    key, path = pretrained(exp, a, a.seed)
    model = train.load_model(exp, path)
    print(f"{key} on the mix: {100 * train.evaluate(model, exp, 'mix')['accuracy']:.2f}%", flush=True)
    cell = Cell("probe", a.task, a.method, a.steps, a.lr, lora_rank=a.rank, lora_targets=tuple(a.targets.split(",")),
                warmup=a.warmup)
    t0 = time.perf_counter()
    adapter, curve, n = train.adapt(model, exp, cell, a.seed, quiet=True)
    dt = time.perf_counter() - t0
    r = train.evaluate(model, exp, a.task, adapter)
    print(f"{key} {a.method} {a.targets if 'lora' in a.method else ''} {a.steps}@{a.lr} W{a.warmup} scale {a.scale}: "
          f"exact {100 * r['accuracy']:.2f} {fmt(per_position(model, exp, a.task, adapter))} loss {r['loss']:.3f} "
          f"({dt:.0f}s, {n} params) curve {[round(x, 2) for x in curve.loss[::5]]}", flush=True)


if __name__ == "__main__":
    main()
