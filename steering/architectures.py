"""The only place that knows where each architecture keeps its internals.

Every entry is data: dotted module paths, relative to the causal-LM object (or to one decoder layer for the
per-layer paths). Hook points, in the residual stream's terms:

    resid_pre.{l}   input of decoder layer l                      # [batch, pos, d_model]
    resid_post.{l}  output of decoder layer l                     # [batch, pos, d_model]
    resid_final     input of the final norm (after the last layer) # [batch, pos, d_model]
    attn_out.{l}    what attention adds to the residual at l      # [batch, pos, d_model]
    mlp_out.{l}     what the MLP adds to the residual at l        # [batch, pos, d_model]
    neurons.{l}     MLP activations entering the down projection  # [batch, pos, d_mlp]
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

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
    norm_eps: str  # attribute holding the epsilon on this architecture's norm modules
    lora_targets: tuple[str, ...]  # names of the Linear layers LoRA adapts (attention and MLP projections)
    mlp_post_norm: str | None = None  # per layer: the norm the MLP's output passes through before joining the
    #   residual stream (Gemma 2/3), None where the MLP's output joins it directly
    mlp_down_is_conv1d: bool = False  # GPT-2's Conv1D stores the weight as [d_in, d_out]
    float16_overflow: str = ""  # why the residual stream overflows float16 here ("" where it does not)
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
    lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
)

ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        name="Gemma 2/3",
        model_types=("gemma3_text", "gemma2"),
        **{**_LLAMA_LIKE, "attn_out": "post_attention_layernorm", "mlp_out": "post_feedforward_layernorm"},
        mlp_post_norm="post_feedforward_layernorm",
        norm_eps="eps",
        float16_overflow="scaled embeddings, large post-norm weights",
        notes=_GEMMA_NOTES,
    ),
    Architecture(
        name="Llama / Mistral / Qwen2 / Qwen3",
        model_types=("llama", "mistral", "qwen2", "qwen3"),
        **_LLAMA_LIKE,
        norm_eps="variance_epsilon",
        notes="Pre-norm blocks; attention and MLP outputs join the residual stream directly.",
    ),
    Architecture(
        name="Gemma 1",
        model_types=("gemma",),
        **_LLAMA_LIKE,
        norm_eps="eps",
        float16_overflow="scaled embeddings",
        notes="Llama's layout; embeddings are multiplied by sqrt(hidden_size) inside embed_tokens, and RMSNorm "
              "multiplies by (1 + weight).",
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
        norm_eps="eps",
        lora_targets=("c_attn", "c_proj", "c_fc"),  # c_proj: attention's and the MLP's output projections
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
        norm_eps="eps",
        lora_targets=("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
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


def norm_eps_of(norm: nn.Module) -> float:
    """The epsilon of a norm module met outside a ModelView (which reads it by its own entry's `norm_eps`): the
    first float held under an attribute that some entry names."""
    for name in dict.fromkeys(arch.norm_eps for arch in ARCHITECTURES):
        value = getattr(norm, name, None)
        if isinstance(value, float):
            return value
    raise UnsupportedArchitectureError(
        f"{type(norm).__name__} holds no epsilon under any attribute steering/architectures.py names."
    )
