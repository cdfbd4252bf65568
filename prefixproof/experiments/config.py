"""Experiment configurations: frozen, validated dataclasses, written to and read from JSON.

An experiment pretrains one model per seed on `pretrain_task`, then adapts a copy with each cell's method
to the cell's task. Every run writes this configuration next to its results, and
`prefixproof experiment run --config FILE` reads one back (unknown keys and wrong types are errors).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from prefixproof.experiments.tasks import TASKS

METHODS = ("full", "prefix", "soft", "lora", "prefix_lora")
LORA_TARGETS = ("q", "k", "v", "o", "fc1", "fc2")


class ConfigError(ValueError):
    """An experiment configuration that cannot run; the message says which field and why."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class ModelConfig:
    layers: int
    heads: int
    width: int
    layernorm: bool = True

    def __post_init__(self) -> None:
        _check(self.layers >= 1 and self.heads >= 1, "model: layers and heads must be >= 1")
        _check(self.width % self.heads == 0, f"model: width {self.width} must be a multiple of heads {self.heads}")


@dataclass(frozen=True)
class Cell:
    """One adaptation: `method` trains on `task` for `steps` AdamW steps at learning rate `lr`."""

    name: str
    task: str
    method: str
    steps: int
    lr: float
    lora_rank: int = 1
    lora_targets: tuple[str, ...] = ("q", "k", "v")
    match_prefix: bool = False  # LoRA's parameter count must equal the prefix's (an error otherwise)
    # prefix / soft prompt start: "pretrained" = what the pretrained model has at the prefix positions (its PAD
    # activations at every layer; the soft prompt: PAD's embedding) plus N(0, 0.01^2); "normal" = N(0, 1)
    # (prefix) or N(0, 0.02^2) (soft prompt), as the companion code
    init: str = "pretrained"
    paper: str = ""  # the paper's figure for this cell, shown in the report
    # learning-rate schedule: linear warm-up over the first `warmup` steps, then the cosine decay to 10% over the
    # rest (train.lr_factor); 0 = no warm-up (the cosine over all steps), left out of the JSON so the configs
    # (and config hashes) of runs made before this option stay as they were
    warmup: int = 0

    def __post_init__(self) -> None:
        _check(self.task in TASKS, f"cell {self.name}: unknown task {self.task!r}; choose from {', '.join(TASKS)}")
        _check(self.method in METHODS, f"cell {self.name}: unknown method {self.method!r}; choose from "
               f"{', '.join(METHODS)}")
        _check(self.steps >= 1 and self.lr > 0, f"cell {self.name}: steps must be >= 1 and lr > 0")
        _check(self.lora_rank >= 1, f"cell {self.name}: lora_rank must be >= 1")
        _check(0 <= self.warmup < self.steps, f"cell {self.name}: warmup must be >= 0 and < steps ({self.steps})")
        _check(self.init in ("pretrained", "normal"), f"cell {self.name}: init must be pretrained or normal")
        bad = [t for t in self.lora_targets if t not in LORA_TARGETS]
        _check(not bad and bool(self.lora_targets), f"cell {self.name}: lora_targets {bad or '[]'} not among "
               f"{', '.join(LORA_TARGETS)}")


@dataclass(frozen=True)
class Experiment:
    id: str
    title: str
    model: ModelConfig
    pretrain_task: str
    pretrain_steps: int
    pretrain_lr: float
    cells: tuple[Cell, ...]
    prefix_len: int = 1
    batch: int = 64
    test_size: int = 3200
    n_words: int = 0  # memorisation: size of the word list
    task_token: bool = False
    weight_decay: float = 0.1
    pretrained_evals: tuple[str, ...] = ()  # tasks the pretrained model is scored on (its own task always)
    paper_pretrained: dict[str, str] = field(default_factory=dict)
    expect: tuple[tuple[str, str, float], ...] = ()  # (higher cell, lower cell, min gap in points)
    seeds: int = 3

    def __post_init__(self) -> None:
        _check(self.pretrain_task in TASKS, f"{self.id}: unknown pretrain_task {self.pretrain_task!r}")
        _check(self.pretrain_steps >= 1 and self.pretrain_lr > 0, f"{self.id}: pretrain_steps >= 1 and lr > 0")
        _check(self.prefix_len >= 1 and self.batch >= 1 and self.test_size >= 1 and self.seeds >= 1,
               f"{self.id}: prefix_len, batch, test_size and seeds must be >= 1")
        names = [c.name for c in self.cells]
        _check(len(set(names)) == len(names), f"{self.id}: cell names must be unique, got {names}")
        for hi, lo, _ in self.expect:
            _check(hi in names and lo in names, f"{self.id}: expect names unknown cells {hi!r}, {lo!r}")
        memo = [t for t in [self.pretrain_task, *(c.task for c in self.cells)] if t.startswith("translate")]
        _check(not memo or self.n_words >= 1, f"{self.id}: memorisation tasks need n_words >= 1")

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for c in doc["cells"]:
            if c["warmup"] == 0:  # the default: omitted, so older configs and their hashes are unchanged
                del c["warmup"]
        return doc


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    _check(not unknown, f"{where}: unknown key(s) {', '.join(unknown)}")
    kw = dict(data)
    if cls is Experiment:
        kw["model"] = _build(ModelConfig, data.get("model"), f"{where}.model")
        kw["cells"] = tuple(_build(Cell, c, f"{where}.cells[{i}]") for i, c in enumerate(data.get("cells", [])))
        kw["pretrained_evals"] = tuple(data.get("pretrained_evals", ()))
        kw["expect"] = tuple(tuple(e) for e in data.get("expect", ()))
    if cls is Cell and "lora_targets" in kw:
        kw["lora_targets"] = tuple(kw["lora_targets"])
    try:
        return cls(**kw)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def from_json(data: Any, where: str = "config") -> Experiment:
    return _build(Experiment, data, where)


def load(path: str | Path) -> Experiment:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read experiment config {path}: {e}") from None
    return from_json(data, str(path))
