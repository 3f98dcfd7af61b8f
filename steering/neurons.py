"""MLP neurons as units: their effective output weights, mean ablation, and the final norm's scale.

Generic over the architectures in architectures.py; reaches model internals only through ModelView and the
`hooks` primitive ("neurons.L" and "resid_final" hook points).

    effective_output_weight(view, l)  # [d_model, d_mlp]: what one unit of each neuron adds to the residual
    effective_unembedding(view)       # [vocab, d_model]: W_U with the final norm's gain folded in
    mlp_output_from_neurons(view, l, acts)  # [..., d_model]: "mlp_out.L" recomputed from "neurons.L"
    mean_ablate(model, l, neurons, means)   # context manager: those neurons' activations set to their means
    final_norm_input(model)           # context manager: records the final norm's input per forward pass
    frozen_scale_output(norm, y, x, clean_scale)  # the final norm's output with its scale held at clean values
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from .architectures import norm_eps_of
from .errors import InvalidInputError
from .interventions import hooks
from .model_view import ModelView


@torch.no_grad()
def norm_gain(norm: nn.Module, d_model: int, *, eps: float | None = None) -> torch.Tensor:
    """[d_model] float32: the elementwise gain of a RMSNorm/LayerNorm (Gemma's (1 + weight) included), read off
    the module itself by feeding it +x and -x for x = (+1, -1, +1, ...), whose mean is 0 and scale is 1. `eps`
    defaults to the norm's own (ModelView.norm_eps gives it by the architecture's entry)."""
    weight = next(norm.parameters(), None)
    dtype = weight.dtype if weight is not None and weight.is_floating_point() else torch.float32
    device = weight.device if weight is not None else "cpu"
    x = torch.ones(d_model, device=device)
    x[1::2] = -1
    out = (norm(x[None].to(dtype)).float() - norm(-x[None].to(dtype)).float())[0] / 2
    return (out / x * (1 + _eps(norm, eps)) ** 0.5).cpu()


def _eps(norm: nn.Module, eps: float | None) -> float:
    return norm_eps_of(norm) if eps is None else eps


def norm_after_mlp(view: ModelView, layer: int) -> nn.Module | None:
    """The norm an MLP's output passes through before it joins the residual stream (Gemma 2/3), else None."""
    return view.mlp_post_norm(layer)


def effective_output_weight(view: ModelView, layer: int) -> torch.Tensor:
    """[d_model, d_mlp] float32: each neuron's output weight, times the gain of a norm after the MLP if the
    architecture has one (the direction a neuron writes into the residual stream; Gemma also divides the whole MLP
    output by its RMS, a per-token scalar that does not change directions)."""
    weight = view.mlp_output_weight(layer).float().cpu()
    post = norm_after_mlp(view, layer)
    return weight if post is None else weight * norm_gain(post, view.d_model, eps=view.norm_eps(post))[:, None]


def effective_unembedding(view: ModelView) -> torch.Tensor:
    """[vocab, d_model] float32: the unembedding with the final norm's gain folded in (as TransformerLens'
    fold_ln), so that logits = W_eff @ (normalised residual)."""
    gain = norm_gain(view.final_norm, view.d_model, eps=view.norm_eps(view.final_norm))
    return view.unembedding_weight().float().cpu() * gain[None, :]


@torch.no_grad()
def mlp_output_from_neurons(view: ModelView, layer: int, acts: torch.Tensor) -> torch.Tensor:
    """[..., d_model] what the MLP at `layer` adds to the residual stream ("mlp_out.L") given its neuron
    activations [..., d_mlp] ("neurons.L"): the down projection, then the norm after the MLP if there is one."""
    down = view.mlp_down(layer)
    out = down(acts.to(next(down.parameters()).dtype))
    post = norm_after_mlp(view, layer)
    return out if post is None else post(out)


@contextmanager
def mean_ablate(model: nn.Module, layer: int, neurons: Sequence[int], means: torch.Tensor) -> Iterator[None]:
    """Set the activations of `neurons` at MLP layer `layer` to `means[neurons]` at every position."""
    view = ModelView.of(model)
    view.check_layer(layer)
    index = torch.as_tensor(list(neurons), dtype=torch.long)
    if index.numel() and (index.min() < 0 or index.max() >= means.shape[-1]):
        raise InvalidInputError(f"Neuron indices must be in 0..{means.shape[-1] - 1}.")
    values = means.detach()[index]

    def fn(hidden: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        hidden = hidden.clone()
        hidden[..., index.to(hidden.device)] = values.to(device=hidden.device, dtype=hidden.dtype)
        return hidden

    with hooks(model, [(f"neurons.{layer}", fn)]):
        yield


@contextmanager
def final_norm_input(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the final norm's input (float32, detached), one tensor per forward pass."""
    store: list[torch.Tensor] = []

    def grab(hidden: torch.Tensor, offsets: torch.Tensor) -> None:
        store.append(hidden.detach().float())

    with hooks(model, [("resid_final", grab)]):
        yield store


def norm_scale(norm: nn.Module, x: torch.Tensor, *, eps: float | None = None) -> torch.Tensor:
    """[..., 1] the denominator the norm divides by: RMS (RMSNorm) or standard deviation (LayerNorm); `eps` as in
    norm_gain."""
    x = x.float()
    if isinstance(norm, nn.LayerNorm):
        x = x - x.mean(-1, keepdim=True)
    return (x.pow(2).mean(-1, keepdim=True) + _eps(norm, eps)).sqrt()


def frozen_scale_output(norm: nn.Module, y: torch.Tensor, x: torch.Tensor, clean_scale: torch.Tensor, *,
                        eps: float | None = None) -> torch.Tensor:
    """The norm's output for input `x` (whose real output is `y`) had its denominator been `clean_scale`:
    gain * (x - mean) / clean_scale + bias. Exact because the norm is linear in x once its scale is fixed."""
    bias = getattr(norm, "bias", None)
    bias = bias.detach().float() if isinstance(bias, torch.Tensor) else 0.0
    return bias + (y.float() - bias) * norm_scale(norm, x, eps=eps) / clean_scale
