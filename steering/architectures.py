"""The only place that knows where each architecture keeps its internals.

Every entry is data: dotted module paths, relative to the causal-LM object (or to one decoder layer for the
per-layer paths). Hook points, in the residual stream's terms:

    resid_pre.{l}   input of decoder layer l                      # [batch, pos, d_model]
    attn_out.{l}    what attention adds to the residual at l      # [batch, pos, d_model]
    mlp_out.{l}     what the MLP adds to the residual at l        # [batch, pos, d_model]
    neurons.{l}     MLP activations entering the down projection  # [batch, pos, d_mlp]
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UnsupportedArchitectureError


@dataclass(frozen=True)
class Architecture:
    """Where one family of decoder-only models keeps its parts."""

    name: str
    model_types: tuple[str, ...]  # config.model_type values that use this layout
    decoder_stack: str  # module that runs embeddings -> layers -> final norm (no unembedding)
    layers: str  # ModuleList of decoder layers
    embedding: str
    final_norm: str
    unembedding: str  # Linear whose weight is [vocab, d_model]
    attn_out: str  # per layer: module whose output joins the residual stream
    mlp_out: str  # per layer: module whose output joins the residual stream
    mlp_down: str  # per layer: the MLP's output projection; its input is the neurons' activations
    mlp_down_is_conv1d: bool = False  # GPT-2's Conv1D stores the weight as [d_in, d_out]
    notes: str = ""


_GEMMA_NOTES = (
    "Embeddings are multiplied by sqrt(hidden_size) inside embed_tokens, so resid_pre.0 is already scaled. "
    "Attention and MLP outputs pass through their own RMSNorm (post_attention_layernorm, "
    "post_feedforward_layernorm) before they join the residual stream: those norms' outputs are the hook "
    "points. The residual stream has a few very large dimensions; float16 overflows, use bfloat16 or float32."
)
_LLAMA_LIKE = dict(
    decoder_stack="model",
    layers="model.layers",
    embedding="model.embed_tokens",
    final_norm="model.norm",
    unembedding="lm_head",
    attn_out="self_attn",
    mlp_out="mlp",
    mlp_down="mlp.down_proj",
)

ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        name="Gemma 2/3",
        model_types=("gemma3_text", "gemma2"),
        **{**_LLAMA_LIKE, "attn_out": "post_attention_layernorm", "mlp_out": "post_feedforward_layernorm"},
        notes=_GEMMA_NOTES,
    ),
    Architecture(
        name="Llama / Mistral / Qwen2 / Gemma 1",
        model_types=("llama", "mistral", "qwen2", "qwen3", "gemma"),
        **_LLAMA_LIKE,
        notes="Pre-norm blocks; attention and MLP outputs join the residual stream directly.",
    ),
    Architecture(
        name="GPT-2",
        model_types=("gpt2",),
        decoder_stack="transformer",
        layers="transformer.h",
        embedding="transformer.wte",
        final_norm="transformer.ln_f",
        unembedding="lm_head",
        attn_out="attn",
        mlp_out="mlp",
        mlp_down="mlp.c_proj",
        mlp_down_is_conv1d=True,
        notes="Learned position embeddings are added before layer 0.",
    ),
    Architecture(
        name="GPT-NeoX / Pythia",
        model_types=("gpt_neox",),
        decoder_stack="gpt_neox",
        layers="gpt_neox.layers",
        embedding="gpt_neox.embed_in",
        final_norm="gpt_neox.final_layer_norm",
        unembedding="lm_head",
        attn_out="attention",
        mlp_out="mlp",
        mlp_down="mlp.dense_4h_to_h",
        notes="Parallel residual: attention and MLP read the same input and both add to the stream.",
    ),
)

_BY_MODEL_TYPE = {t: arch for arch in ARCHITECTURES for t in arch.model_types}


def supported_model_types() -> list[str]:
    return sorted(_BY_MODEL_TYPE)


def architecture_for(model_type: str) -> Architecture:
    """The layout for a config.model_type, or an error naming the supported ones."""
    try:
        return _BY_MODEL_TYPE[model_type]
    except KeyError:
        raise UnsupportedArchitectureError(
            f"Architecture '{model_type}' is not supported. Supported model types: "
            f"{', '.join(supported_model_types())}. Add an entry to steering/architectures.py to support it."
        ) from None
