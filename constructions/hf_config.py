"""The Hugging Face fields of config.json (docs/huggingface.md): what `transformers.AutoConfig` reads.

They are derived from the prefixproof fields (vocab, n_ctx, layers, the stream width) and written next to them by
`save_model`; the fingerprint does not cover them because they carry no information of their own. `check` holds a
directory's copy to the model it describes, so an edited Hugging Face field cannot make `transformers` and
prefixproof disagree about the shapes.
"""
from __future__ import annotations

from typing import Any

MODEL_TYPE = "prefixproof"
ARCHITECTURE = "PrefixproofForCausalLM"
KEYS = ("model_type", "architectures", "vocab_size", "hidden_size", "max_position_embeddings",
        "num_hidden_layers", "num_attention_heads", "dtype", "use_cache", "tie_word_embeddings",
        "bos_token_id", "eos_token_id", "pad_token_id")


def hf_fields(model: Any) -> dict[str, Any]:
    """The Hugging Face config fields of a model description (constructions.model.Model)."""
    return {
        "model_type": MODEL_TYPE,
        "architectures": [ARCHITECTURE],
        "vocab_size": int(model.vocab.size),
        "hidden_size": int(model.d_model),
        "max_position_embeddings": int(model.n_ctx),
        "num_hidden_layers": len(model.layers),
        "num_attention_heads": max(len(layer.heads) for layer in model.layers),
        "dtype": "float64",
        "use_cache": True,
        "tie_word_embeddings": False,
        # no special tokens: generation never stops early, it runs for the asked number of tokens
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
    }


def check(config: dict[str, Any], model: Any) -> str | None:
    """None when the config's Hugging Face fields (if any) match the model; else what differs, in one line."""
    if not any(k in config for k in KEYS):
        return None  # a directory written before the fields existed: still a valid prefixproof directory
    want = hf_fields(model)
    for key in KEYS:
        if key == "dtype":
            continue  # the dtype Hugging Face loads in by default; any float dtype is a valid choice
        if config.get(key, want[key]) != want[key]:
            return f"config.json {key!r} is {config.get(key)!r} but the weights need {want[key]!r}"
    return None
