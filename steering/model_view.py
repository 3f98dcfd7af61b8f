"""A view of a causal LM by meaning (layers, norms, unembedding), built on its architecture entry.

Nothing outside this module and architectures.py reaches into a model's submodules."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch
from torch import nn

from .architectures import Architecture, architecture_for
from .errors import LayerOutOfRangeError, UnsupportedArchitectureError


def _unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper, or the model itself."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


# Final states worth unembedding together: the demo's 262k-token unembedding runs ~1.3x faster per row at 256 rows
# than at 64 (2 cores, measured), and 256 rows of logits are 268 MB in float32.
UNEMBED_ROWS = 256


@dataclass(frozen=True)
class ModelView:
    model: nn.Module
    arch: Architecture

    @classmethod
    def of(cls, model: nn.Module) -> "ModelView":
        inner = _unwrap(model)
        return cls(inner, architecture_for(inner.config.model_type))

    def module(self, path: str, root: nn.Module | None = None) -> nn.Module:
        return (root or self.model).get_submodule(path)

    @cached_property
    def layers(self) -> nn.ModuleList:
        return self.module(self.arch.layers)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def d_model(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def decoder_stack(self) -> nn.Module:
        return self.module(self.arch.decoder_stack)

    @property
    def final_norm(self) -> nn.Module:
        return self.module(self.arch.final_norm)

    @property
    def embedding(self) -> nn.Module:
        return self.module(self.arch.embedding)

    @property
    def unembedding(self) -> nn.Module:
        return self.module(self.arch.unembedding)

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    def check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.n_layers:
            raise LayerOutOfRangeError(
                f"Layer {layer} is out of range: this model has layers 0..{self.n_layers - 1}."
            )
        return layer

    def layer(self, layer: int) -> nn.Module:
        return self.layers[self.check_layer(layer)]

    def attn_out(self, layer: int) -> nn.Module:
        return self.module(self.arch.attn_out, self.layer(layer))

    def mlp_out(self, layer: int) -> nn.Module:
        return self.module(self.arch.mlp_out, self.layer(layer))

    def mlp_down(self, layer: int) -> nn.Module:
        return self.module(self.arch.mlp_down, self.layer(layer))

    def mlp_post_norm(self, layer: int) -> nn.Module | None:
        """The norm the MLP's output passes through before it joins the residual stream (Gemma 2/3), else None."""
        path = self.arch.mlp_post_norm
        return None if path is None else self.module(path, self.layer(layer))

    def norm_eps(self, norm: nn.Module) -> float:
        """The epsilon of one of this model's norms (the final norm, a post-MLP norm, ...)."""
        value = getattr(norm, self.arch.norm_eps, None)
        if not isinstance(value, float):
            raise UnsupportedArchitectureError(f"{type(norm).__name__} has no float epsilon '{self.arch.norm_eps}', "
                                               f"which steering/architectures.py names for {self.arch.name}.")
        return value

    def mlp_output_weight(self, layer: int) -> torch.Tensor:
        """Each neuron's output weight as columns: [d_model, d_mlp], de-quantized to float32."""
        weight = _dense_weight(self.mlp_down(layer))
        return weight.T if self.arch.mlp_down_is_conv1d else weight

    def logits(self, final_hidden: torch.Tensor) -> torch.Tensor:
        """Logits from the decoder stack's output (after its final norm), with the model's soft-capping if any."""
        return self.softcap(self.unembedding(final_hidden))

    def softcap(self, raw_logits: torch.Tensor) -> torch.Tensor:
        """The model's final logit soft-capping (Gemma 2), or the logits unchanged."""
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(raw_logits / cap) * cap if cap else raw_logits

    def unembedding_weight(self) -> torch.Tensor:
        """[vocab, d_model], de-quantized to float32."""
        return _dense_weight(self.unembedding)


def _dense_weight(linear: nn.Module) -> torch.Tensor:
    weight = linear.weight
    if weight.__class__.__name__ == "Params4bit":  # bitsandbytes 4-bit: de-quantize for analysis
        return _dequantize_4bit(weight)
    if weight.__class__.__name__ == "Int8Params" and getattr(weight, "SCB", None) is not None:
        return (weight.data.float() * weight.SCB.float()[:, None] / 127.0)
    return weight.detach().float()


def _dequantize_4bit(weight) -> torch.Tensor:
    """A bitsandbytes 4-bit weight as float32 [out, in]. On a CPU with AVX512-BF16, bitsandbytes repacks the weight
    in place for its fused kernel at the first inference forward (`packing_format_for_cpu`); that layout is undone on
    a copy first, so the layer keeps its packed form."""
    import copy

    import bitsandbytes.functional as bnb_f

    data, state = weight.data, weight.quant_state
    if getattr(state, "packing_format_for_cpu", False):
        data, state = bnb_f._convert_weight_packed_for_cpu_inverse(data.clone(), copy.deepcopy(state))
        if state.absmax.dim() == 2:  # the inverse restores absmax only for nested states: un-transpose it here
            state.absmax = state.absmax.T.reshape(-1).float()
    return bnb_f.dequantize_4bit(data, state).float()


# ---- the unembedding while decoding -----------------------------------------------------------------------------
# A greedy step on the demo pair spends most of its time in the unembedding, [rows, 640] x [640, 262144]: MKL runs
# F.linear's layout (the weight [V, d] read transposed) far below the memory-read limit at 4 to 8 rows. The same
# product with the weight stored [d, V] (x @ W^T as a plain row-major GEMM), or in bfloat16 on a CPU with AMX or
# AVX512-BF16, reads the weight at close to memory speed (bench.playground measures both against the plain path).
DecodingUnembedding = Literal["plain", "transposed", "bfloat16"]
UNEMBEDDINGS: tuple[str, ...] = ("plain", "transposed", "bfloat16")


def bf16_matmul_is_fast() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles or AVX512-BF16): where bfloat16 decoding pays."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported())
    except AttributeError:
        return False


def _decoding_weight(head: nn.Module, kind: str) -> torch.Tensor:
    """The unembedding's weight laid out for decoding, made once per model and kept beside it (a transposed copy is
    the weight's size again, 671 MB on the demo model; a bfloat16 one half that)."""
    cache = head.__dict__.setdefault("_decoding_weights", {})
    weight = head.weight
    key = (kind, weight.data_ptr(), weight._version)  # a changed weight (a loaded checkpoint) makes a new copy
    if cache.get("key") != key:
        cache.clear()
        with torch.no_grad():
            cache["weight"] = (weight.detach().t().contiguous() if kind == "transposed"
                               else weight.detach().to(torch.bfloat16))
        cache["key"] = key
    return cache["weight"]


@contextmanager
def decoding_unembedding(model: nn.Module, kind: DecodingUnembedding = "plain") -> Iterator[None]:
    """While decoding, the unembedding computed from the weight laid out for it: "transposed" (float32, the same
    product in another summation order: greedy tokens may part only at a near tie) or "bfloat16" (faster where
    bf16_matmul_is_fast(); logits rounded to bfloat16's 8 bits, so tokens may differ). "plain" changes nothing, nor
    does any choice on a model that is not a float32 CPU model with a plain Linear unembedding."""
    head = ModelView.of(model).unembedding
    weight = getattr(head, "weight", None)
    usable = (kind != "plain" and type(head) is nn.Linear and head.bias is None and weight is not None
              and weight.dtype == torch.float32 and weight.device.type == "cpu")
    if not usable:
        yield
        return
    fast = _decoding_weight(head, kind)
    if kind == "transposed":
        def forward(hidden: torch.Tensor) -> torch.Tensor:
            return hidden @ fast
    else:
        def forward(hidden: torch.Tensor) -> torch.Tensor:
            return nn.functional.linear(hidden.to(torch.bfloat16), fast).float()
    head.forward = forward  # an instance attribute: the class's forward again once removed
    try:
        yield
    finally:
        del head.forward
