"""The experiments: E1-E5 of the paper, the 1-layer ablation of E3 (E3L1) and prefix + LoRA (E6).

Every experiment has a CPU size (the default: reproduces the qualitative result on a 2-core machine) and a
paper size (`--paper`: the companion code's model sizes and step counts, for `--device cuda`). Paper figures
are the companion code's (issue 13). CPU sizes keep the structure that matters: the same tasks, the same
prefix lengths and LoRA ranks matched to the prefix's parameter count; smaller widths and fewer steps.
E2 and E3 pretrain the mix without a task token at both sizes, as the companion code (the prefix selects the
task); E4's CPU size pretrains it with a task token (it converges in far fewer steps).
"""
from __future__ import annotations

from dataclasses import replace

from prefixproof.experiments.config import Cell, ConfigError, Experiment, ModelConfig
from prefixproof.experiments.tasks import MIX

QKV = ("q", "k", "v")


def _e1(paper: bool) -> Experiment:
    return Experiment(
        "E1", "pretrain ascending sort, adapt to descending: full fine-tuning learns it, a prefix cannot",
        ModelConfig(1, 1, 96), "ascending", 20000 if paper else 600, 1e-3 if not paper else 5e-4,
        (Cell("full", "descending", "full", 10000 if paper else 300, 5e-4, paper="84.91%"),
         Cell("prefix", "descending", "prefix", 40000 if paper else 600, 1e-2 if not paper else 5e-4, paper="0.00%"),
         Cell("soft", "descending", "soft", 10000 if paper else 300, 1e-2 if not paper else 5e-4, paper="-")),
        prefix_len=1, pretrained_evals=("descending",), paper_pretrained={"ascending": "91.41%"},
        expect=(("full", "prefix", 40.0),))


def _mix_model(paper: bool, layers: int, cpu_layers: int = 1, layernorm: bool = True) -> ModelConfig:
    """The paper's width 256 and `layers`; at CPU size width 64 and `cpu_layers` (E3: 2, E4: 3, the others: 1)."""
    return ModelConfig(layers if paper else cpu_layers, 4, 256 if paper else 64, layernorm)


def _e2(paper: bool) -> Experiment:
    """As the companion code at both sizes: the mix has no task token (the pretrained model cannot know the task
    and hedges between the four; the prefix has to select one). CPU size: 3,000 pretraining steps at lr 1e-2
    (1,000 at 2e-3 left the model at 9.94% on the mix, i.e. not trained), prefixes 400 steps at 1e-2."""
    cells = tuple(Cell(f"prefix_{t}", t, "prefix", 30000 if paper else 400, 5e-5 if paper else 1e-2, paper=f)
                  for t, f in zip(MIX, ("94.09%", "83.72%", "99.62%", "99.78%")))
    return Experiment("E2", "pretrain on a mix of 4 tasks without a task token, extract each with a prefix (no "
                      "LayerNorm)", _mix_model(paper, 1, layernorm=False), "mix", 20000 if paper else 3000,
                      5e-4 if paper else 1e-2, cells, prefix_len=1, task_token=False, pretrained_evals=MIX)


def _e3(paper: bool, layers: int = 4, eid: str = "E3", cpu_prefix: tuple[int, float] = (2000, 3e-1)) -> Experiment:
    """As the companion code (03_script.py) at both sizes: the mix without a task token; paper size: prefixes of
    10 positions, 500,000 steps at 5e-5 for the new tasks. CPU size: the mix 2,000 steps at 1e-2 (E2: 3,000; the
    2-layer pretraining costs ~2x a step); both prefixes the same `cpu_prefix` (steps, lr): E3 2,000 at 3e-1, the
    best of a sweep on the composition (1e-2 to 3e-1, benchmarks/RESULTS.md; the prefix enters through LayerNorm,
    so a large lr turns its direction faster); E3L1 the same at 1 layer."""
    steps, lr = (500000, 5e-5) if paper else cpu_prefix
    return Experiment(
        eid, f"after the 4-task mix{'' if eid == 'E3' else ' (1 layer, 4 heads)'}: a composition (sort-and-increment) is learned "
        "by a prefix, a novel task (double histogram) is not",
        _mix_model(paper, layers, 2 if eid == "E3" else 1),
        "mix", 40000 if paper else 2000, 5e-4 if paper else 1e-2,
        (Cell("prefix_sort_inc", "ascending_add1", "prefix", steps, lr, paper="71.59%" if eid == "E3" else "-"),
         Cell("prefix_hist", "double_hist", "prefix", steps, lr, paper="0.62%" if eid == "E3" else "-")),
        prefix_len=10 if paper else 12, task_token=False, pretrained_evals=(*MIX, "ascending_add1", "double_hist"),
        expect=(("prefix_sort_inc", "prefix_hist", 20.0),))


# the companion code's LoRA targets: every module named c_proj or c_fc, i.e. the attention output map (o) and
# both MLP maps; rank 1 on them has 2d + 5d + 5d = 12 d parameters per layer: the prefix's 12 positions * d
OFF = ("o", "fc1", "fc2")


E4_STEPS, E4_WARMUP = 3000, 300  # CPU size: both methods, linear warm-up then the cosine


def _e4(paper: bool) -> Experiment:
    """The paper's rank-1 LoRA (on o, fc1, fc2 as the companion code) has exactly the 12-position prefix's count
    at both sizes (CPU: 3 layers * (128 + 320 + 320) = 2,304 = 3 * 12 * 64; paper: 4 * (512 + 1280 + 1280) =
    12,288). CPU size: 3 layers of width 64 (2 layers left LoRA on the loss plateau or slow on 2 seeds of 3),
    the mix pretrained 1,000 steps with the task token (99.1-99.8%), both methods the same steps and warm-up,
    each at the best learning rate of the 2-layer sweeps (benchmarks/RESULTS.md, E4 probes)."""
    steps, warmup = (100000, 0) if paper else (E4_STEPS, E4_WARMUP)
    return Experiment(
        "E4", "double histogram after the mix: prefix vs LoRA with the same number of parameters",
        _mix_model(paper, 4, 3), "mix", 40000 if paper else 1000, 5e-4 if paper else 2e-3,
        # LoRA first: the longer job of each seed starts first, so two workers finish together (CPU size, 2 idle
        # workers: 13 min 34 s, against 15 min 1 s with the prefix first; no job's result depends on the order)
        (Cell("lora", "double_hist", "lora", 10000 if paper else steps, 5e-3 if paper else 3e-2, lora_rank=1,
              lora_targets=OFF, match_prefix=True, warmup=warmup, paper="92.38%"),
         Cell("prefix", "double_hist", "prefix", steps, 5e-5 if paper else 1e-2, warmup=warmup, paper="0.31%")),
        prefix_len=12, task_token=not paper, pretrained_evals=("double_hist",), expect=(("lora", "prefix", 20.0),))


def _cell(exp: Experiment, name: str) -> Cell:
    return next(c for c in exp.cells if c.name == name)


def _e4m(paper: bool) -> Experiment:
    """E4 with the same LoRA budget on the attention maps only: rank 2 on q, k, v (CPU: 3 * 2 * 3 * 128 =
    2,304; paper: 4 * 2 * 3 * 512 = 12,288). The same pretrained models, steps, warm-up and learning rate as
    E4's LoRA."""
    e4 = _e4(paper)
    lora = _cell(e4, "lora")
    cell = Cell("lora_qkv", "double_hist", "lora", lora.steps, lora.lr, lora_rank=2, lora_targets=QKV,
                match_prefix=True, warmup=lora.warmup, paper="-")
    return replace(e4, id="E4M", title="E4 with the LoRA budget on the attention maps only (compare with E4's "
                   "rows: the same pretrained models)", cells=(cell,), expect=())


def _e5(paper: bool) -> Experiment:
    """CPU size: 50 words (the paper's 12,288 parameters for 1,000 words is 12 a word; 768 for 50 is 15), both
    methods 3,000 steps at lr 3e-2 (LoRA: 1% recall after 1,000 steps at 5e-3 on 100 words, 54% after 3,000 at
    3e-2 on 50; the prefix stays at 0% at 1e-2 and 2e-2)."""
    steps, lr = 3000, 3e-2
    return Experiment(
        "E5", "memorisation: pretrain translation into language A, adapt to language B",
        _mix_model(paper, 4), "translate_a", 40000 if paper else 2000, 5e-4 if paper else 2e-3,
        (Cell("prefix", "translate_b", "prefix", 20000 if paper else steps, 5e-4 if paper else lr, paper="fails"),
         Cell("lora", "translate_b", "lora", 10000 if paper else steps, 5e-3 if paper else lr, lora_rank=2,
              lora_targets=QKV, match_prefix=True, paper="94%")),
        prefix_len=12, n_words=1000 if paper else 50, expect=(("lora", "prefix", 20.0),))


def _e6(paper: bool) -> Experiment:
    """Prefix + LoRA: E4's prefix and E4's LoRA trained together (twice the parameters), at the LoRA's steps,
    warm-up and learning rate."""
    e4 = _e4(paper)
    lora = _cell(e4, "lora")
    both = Cell("prefix_lora", "double_hist", "prefix_lora", lora.steps, lora.lr, lora_rank=lora.lora_rank,
                lora_targets=lora.lora_targets, warmup=lora.warmup, paper="-")
    # the same pretraining as E4 (the models are shared): compare with E4's prefix and LoRA rows
    return replace(e4, id="E6", title="prefix + LoRA on the double histogram (compare with E4's prefix and LoRA "
                   "rows: the same pretrained models)", cells=(both,), expect=())


BUILDERS = {"E1": _e1, "E2": _e2, "E3": _e3, "E3L1": lambda p: _e3(p, 1, "E3L1"), "E4": _e4, "E4M": _e4m, "E5": _e5, "E6": _e6}


def get(eid: str, paper: bool = False) -> Experiment:
    if eid not in BUILDERS:
        raise ConfigError(f"unknown experiment {eid!r}; choose from {', '.join(BUILDERS)}")
    return BUILDERS[eid](paper)
