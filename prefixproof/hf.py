"""Hugging Face loading: `import prefixproof.hf`, then `AutoModelForCausalLM.from_pretrained(DIR)` on a directory
written by `prefixproof build` (docs/huggingface.md).

Importing this module registers `PrefixproofConfig` (model_type "prefixproof") with `AutoConfig` and
`PrefixproofForCausalLM` with `AutoModelForCausalLM`; no remote code, no `trust_remote_code`. It needs the
`torch` extra and sets HF_HUB_OFFLINE=1 before transformers is imported; `import prefixproof` never imports it.

There is one forward semantics: the model wraps the PyTorch evaluator of docs/semantics.md
(`prefixproof.verify.crosscheck.torch_model.TorchModel`) and adds only what Hugging Face needs around it:
nn.Parameters that train, `inputs_embeds`, explicit positions (P[p] is added at every position, virtual ones too)
and a key/value cache (`DynamicCache`, one entry per layer holding every head's keys side by side) so that
`generate` decodes incrementally. Loading goes through `prefixproof.constructions.io.load_model` (the same
validation and fingerprint check as every other command), then reads the tensors itself, CSR ones included,
which Hugging Face's own loader cannot: that is why `from_pretrained` is overridden.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefixproof.verify import optional as extras

extras.offline()
torch = extras.torch()
transformers = extras.transformers()

from transformers import (AutoConfig, AutoModelForCausalLM, DynamicCache, GenerationMixin,  # noqa: E402
                          PreTrainedConfig, PreTrainedModel)
from transformers.modeling_outputs import CausalLMOutputWithPast  # noqa: E402

from prefixproof.constructions.hf_config import MODEL_TYPE  # noqa: E402
from prefixproof.constructions.io import CONFIG, WEIGHTS, FormatError, load_model, space_from_json  # noqa: E402
from prefixproof.verify.crosscheck.torch_model import DTYPES, TorchModel  # noqa: E402

# keyword arguments of from_pretrained that only concern downloading (nothing is downloaded: ignored)
_HUB_KWARGS = {"cache_dir", "force_download", "local_files_only", "revision", "token", "proxies", "subfolder",
               "trust_remote_code", "code_revision", "use_safetensors", "low_cpu_mem_usage",
               # transformers finds the directory's PEFT adapter_config.json and asks us to load it into the base;
               # a prompt-tuning adapter cannot be merged into weights: PeftModel.from_pretrained applies it
               "adapter_kwargs", "adapter_name"}


class PrefixproofConfig(PreTrainedConfig):
    """config.json of a prefixproof weights directory. The Hugging Face fields are derived from the prefixproof
    ones (docs/format.md); every prefixproof field (layers, tensors, spaces, ...) is kept as an attribute."""

    model_type = MODEL_TYPE
    vocab_size: int = 2
    hidden_size: int = 1
    max_position_embeddings: int = 1
    num_hidden_layers: int = 1
    num_attention_heads: int = 1
    use_cache: bool = True
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None


def _zeros(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Dense zero tensors of the config's shapes (a model built from a config alone, e.g. `from_config`)."""
    table = {name: {"shape": e["shape"], "storage": "dense"} for name, e in config["tensors"].items()}
    return {**config, "tensors": table}, {name: torch.zeros(e["shape"], dtype=torch.float64)
                                          for name, e in table.items()}


class PrefixproofForCausalLM(PreTrainedModel, GenerationMixin):
    """The construction as a causal LM: `self.model` is the PyTorch evaluator, its weights nn.Parameters."""

    config_class = PrefixproofConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _supports_sdpa = True

    def __init__(self, config: PrefixproofConfig, raw: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        spec = config.to_dict()
        if "tensors" not in spec or "layers" not in spec:
            raise ValueError("a prefixproof config needs the `layers` and `tensors` fields of docs/format.md; "
                             "load a directory written by `prefixproof build`")
        if raw is None:
            spec, raw = _zeros(spec)
        self.model = TorchModel(spec, raw)
        for p in self.model.parameters():
            p.requires_grad_(True)
        self.post_init()

    def _init_weights(self, module: Any) -> None:
        """The weights come from the directory; nothing is initialised at random."""

    def axes(self, name: str) -> tuple[list[str], list[str]]:
        """The labels of the rows and of the columns of parameter `name` (docs/huggingface.md), e.g.
        axes("model.layers.0.mlp_W0") -> (["select:0", ...], ["fetched:0", ..., "here:0", ...]).
        Rows of W_Q, W_K, W_V and columns of W_O are a head's own query/key/value dimensions, labelled with the
        head's name: "fetch.q:0", "fetch.k:0", "fetch.v:0"."""
        spaces = self.config.spaces

        def labels(key: str) -> list[str]:
            return list(space_from_json(key, spaces[key]).labels)

        vocab = [f"token:{t}" for t in range(self.config.vocab_size)]
        parts = name.removeprefix("model.").split(".")
        if parts[0] in ("embed", "pos") and parts[1:] == ["weight"]:
            n_ctx = self.config.max_position_embeddings
            rows = vocab if parts[0] == "embed" else [f"position:{p}" for p in range(n_ctx)]
            return rows, labels("stream")
        if parts[0] == "unembed":
            return vocab, labels(f"layers.{len(self.config.layers) - 1}.out")
        if parts[0] != "layers" or len(parts) < 3:
            raise KeyError(f"{name!r} is not a parameter of this model; see dict(model.named_parameters())")
        l = int(parts[1])
        inp = labels("stream") if l == 0 else labels(f"layers.{l - 1}.out")
        if parts[2] == "heads":
            h, which = int(parts[3]), parts[4]
            head = self.config.layers[l]["heads"][h].get("name", f"h{h}")
            kind = "v" if which == "W_O" else which[-1].lower()
            own = [f"{head}.{kind}:{i}" for i in range(self.get_parameter(name).shape[1 if which == "W_O" else 0])]
            return (labels(f"layers.{l}.attn_out"), own) if which == "W_O" else (own, inp)
        n = int(self.config.layers[l]["mlp_layers"])
        if parts[2] in ("ln_gamma", "ln_beta"):
            return inp, []
        k = int(parts[2][len("mlp_W"):])
        out = labels(f"layers.{l}.out") if k == n - 1 else labels(f"layers.{l}.hidden.{k}")
        if parts[2].startswith("mlp_b"):
            return out, []
        return out, labels(f"layers.{l}.attn_out") if k == 0 else labels(f"layers.{l}.hidden.{k - 1}")

    def get_input_embeddings(self) -> Any:
        return self.model.embed

    def set_input_embeddings(self, value: Any) -> None:
        self.model.embed = value

    def get_output_embeddings(self) -> Any:
        return None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *model_args: Any, config: Any = None,
                        dtype: Any = None, torch_dtype: Any = None, **kwargs: Any) -> "PrefixproofForCausalLM":
        """Load a local weights directory (validated and fingerprint-checked by prefixproof's own loader), in its
        stored float64 unless `dtype` says otherwise (weights rounded once)."""
        if model_args:
            raise TypeError("PrefixproofForCausalLM.from_pretrained takes no extra positional arguments")
        unknown = sorted(k for k in kwargs if k not in _HUB_KWARGS and not k.startswith("_")
                         and not (k == "device_map" and kwargs[k] in (None, "cpu")))
        if unknown:
            raise TypeError(f"PrefixproofForCausalLM.from_pretrained does not support {unknown[0]!r}")
        d = Path(pretrained_model_name_or_path)
        if not d.is_dir():
            raise OSError(f"{d} is not a local directory; prefixproof models load from a directory written by "
                          f"`prefixproof build` (nothing is downloaded)")
        load_model(d)  # one-line FormatError on anything malformed, the fingerprint included
        spec = json.loads((d / CONFIG).read_text())
        if config is None or not isinstance(config, PrefixproofConfig):
            config = PrefixproofConfig.from_dict(spec)
        from safetensors.torch import load_file

        model = cls(config, raw=load_file(str(d / WEIGHTS)))
        want = dtype if dtype is not None else torch_dtype
        if want is None or want == "auto":
            want = getattr(config, "dtype", None) or "float64"
        if isinstance(want, str):
            if want not in DTYPES:
                raise ValueError(f"dtype {want!r}: use one of {', '.join(DTYPES)}")
            want = DTYPES[want]
        model = model.to(want)
        model.config.dtype = want
        model.name_or_path = str(d)
        model.config.name_or_path = str(d)
        return model.eval()

    @property
    def is_gradient_checkpointing(self) -> bool:
        """transformers 5's deprecated alias, which peft 0.21.2 still reads: answered without the FutureWarning."""
        return self.is_activation_checkpointing

    def prepare_inputs_for_generation(self, input_ids: Any, *args: Any, inputs_embeds: Any = None,
                                      **kwargs: Any) -> dict[str, Any]:
        """transformers' own preparation without position_ids, plus the cache under its pre-5.0 name as well.

        peft 0.21.2's prompt tuning looks for `past_key_values` to tell the prefill step from later steps;
        transformers 5 calls it `cache`, so without the alias PEFT re-injects the virtual tokens before every new
        token (measured on a stock GPT-2 too: docs/huggingface.md). Our forward takes either name."""
        inputs = super().prepare_inputs_for_generation(input_ids, *args, inputs_embeds=inputs_embeds, **kwargs)
        # positions come from the cache (absolute, virtual tokens included); transformers' own position_ids count
        # input_ids only and PEFT drops them with a warning
        inputs.pop("position_ids", None)
        if inputs.get("cache") is not None and inputs.get("past_key_values") is None:
            inputs["past_key_values"] = inputs["cache"]
        return inputs

    def save_pretrained(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("save_pretrained is refused: prefixproof models are written by `prefixproof build` "
                        "(docs/format.md: CSR tensors, fingerprint); Hugging Face's dense layout would not load back")

    def forward(self, input_ids: Any = None, attention_mask: Any = None, position_ids: Any = None,
                cache: Any = None, inputs_embeds: Any = None, labels: Any = None, use_cache: Any = None,
                cache_position: Any = None, return_dict: Any = None, logits_to_keep: int = 0,
                past_key_values: Any = None, **kwargs: Any) -> CausalLMOutputWithPast:
        """Logits (B, n, V) for the n new positions: x_p = E[t_p] + P[p] (or inputs_embeds[p] + P[p]), the layers,
        no residual unless the weights' flags say so. Positions continue after the cached ones unless given.
        `cache` (transformers 5's name) or the older `past_key_values` is the key/value cache, filled in place."""
        if cache is None:
            cache = past_key_values
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids and inputs_embeds")
        m = self.model
        x = m.embed(input_ids) if inputs_embeds is None else inputs_embeds.to(m.dtype)
        if attention_mask is not None and not bool(torch.as_tensor(attention_mask).bool().all()):
            raise ValueError("padding is not supported: the positions P[p] are absolute, so batch inputs of equal "
                             "length (attention_mask all ones)")
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None
        past = 0 if cache is None else cache.get_seq_length(0)
        if position_ids is None:
            position_ids = torch.arange(past, past + x.shape[1])[None]
        if int(position_ids.max()) >= m.n_ctx or int(position_ids.min()) < 0:
            raise ValueError(f"position {int(position_ids.max())} is outside the model's context of {m.n_ctx}")
        logits = m.run(x + m.pos.weight[position_ids], cache)
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                     labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=cache)


AutoConfig.register(MODEL_TYPE, PrefixproofConfig, exist_ok=True)
AutoModelForCausalLM.register(PrefixproofConfig, PrefixproofForCausalLM, exist_ok=True)

__all__ = ["PrefixproofConfig", "PrefixproofForCausalLM", "FormatError"]
