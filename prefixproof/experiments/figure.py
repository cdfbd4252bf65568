"""Figure 1: attention before and after adaptation, one panel per method, for one test input.

Panel 1 is the pretrained model; then one panel per adapted run (seed 0). Each panel is layer `layer`,
head `head`: rows are queries, columns keys, both in sequence order (prefix / soft-prompt positions first,
then the 10 input digits, then the answer); white lines separate the prefix, input and answer. Darker is
more attention; the causal mask leaves the upper triangle empty.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from prefixproof.experiments import tasks
from prefixproof.experiments.config import Experiment
from prefixproof.experiments.methods import Adapter, LoRA, make_adapter
from prefixproof.experiments.model import GPT
from prefixproof.experiments.train import load_model

CAPTION = ("How to read it: each panel is the attention of layer {layer}, head {head} on one test input of "
           "'{task}' (rows: queries, columns: keys, prefix positions first; darker = more attention). A prefix "
           "or soft prompt can only move attention onto its own columns and scale the content columns of each row "
           "by the same factor, so the ORDER of the content attention in every row stays that of the pretrained "
           "model (Section 4); LoRA and full fine-tuning change the weights and can reorder it.")


def _adapted(exp: Experiment, path: Path, method: str, cell) -> tuple[GPT, Adapter]:
    from safetensors.torch import load_file

    t = load_file(str(path))
    model = GPT(exp.model, tasks.VOCAB, next(v for k, v in t.items() if k == "model.wpe.weight").shape[0])
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    adapter, _ = make_adapter(model, cell, exp.prefix_len, torch.Generator().manual_seed(0))
    if "prefixes" in t:
        adapter.prefixes = t["prefixes"]
    if "soft" in t:
        adapter.soft = t["soft"]
    if isinstance(adapter.lora, LoRA):
        adapter.lora.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("lora.")})
    return model, adapter


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def figure(exp: Experiment, folder: Path, out: Path, layer: int = 0, head: int = 0, seed: int = 0) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prefixproof.experiments.run import _model_paths

    weights, _ = _model_paths(exp, seed, folder.parent)
    panels: list[tuple[str, np.ndarray]] = []
    task = exp.cells[0].task
    seq = tasks.eval_batch(task, exp.test_size, exp.prefix_len, exp.task_token, exp.n_words).seq[:1, :-1]
    runs = [("pretrained", load_model(exp, weights), Adapter("none"))]
    for c in exp.cells:
        p = folder / f"{c.name}-seed{seed}.safetensors"
        if p.exists() and c.task == task:
            runs.append((f"{c.name} ({c.method})", *_adapted(exp, p, c.method, c)))
    for name, model, adapter in runs:
        rec: dict = {}
        with torch.no_grad():
            model.eval()
            model(torch.as_tensor(seq), record=rec, **adapter.kwargs())
        panels.append((name, rec["attention"][layer][0, head].numpy()))
    P, n = exp.prefix_len, seq.shape[1]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, (name, A) in zip(axes[0], panels):
        A = np.where(np.tril(np.ones_like(A, dtype=bool)), A, np.nan)
        ax.imshow(A, cmap="Greys", vmin=0, vmax=1)
        for edge in (P - 0.5, P + tasks.LENGTH - 0.5):
            ax.axhline(edge, color="tab:red", lw=0.6)
            ax.axvline(edge, color="tab:red", lw=0.6)
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{exp.id}: attention before/after adaptation (layer {layer}, head {head}, seed {seed}; "
                 f"{n} positions, {P} prefix)", fontsize=9)
    caption = CAPTION.format(layer=layer, head=head, task=task)
    import textwrap
    fig.text(0.01, 0.01, textwrap.fill(caption, width=int(32 * len(panels))), fontsize=6, va="bottom")
    fig.subplots_adjust(bottom=0.16, top=0.86)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    _write_text(out.with_suffix(".txt"), caption + "\n")
    return out
