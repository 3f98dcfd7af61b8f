"""MLP neurons as units: their effective output weights, mean ablation, and the final norm's scale.

Generic over the architectures in architectures.py; reaches model internals only through ModelView and the
`hooks` primitive ("neurons.L" and "resid_final" hook points).

    effective_output_weight(view, l)  # [d_model, d_mlp]: what one unit of each neuron adds to the residual
    effective_unembedding(view)       # [vocab, d_model]: W_U with the final norm's gain folded in
    mlp_output_from_neurons(view, l, acts)  # [..., d_model]: "mlp_out.L" recomputed from "neurons.L"
    mean_ablate(model, l, neurons, means)   # context manager: those neurons' activations set to their means
    final_norm_input(model)           # context manager: records the final norm's input per forward pass
    frozen_scale_output(norm, y, x, clean_scale)  # the final norm's output with its scale held at clean values
    AffineNorm(view, norm)            # a RMSNorm/LayerNorm as gain * center(x) / scale(x) + bias (tensor math)
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


class AffineNorm:
    """A RMSNorm or LayerNorm as plain tensor math: norm(x) = gain * center(x) / scale(x) + bias, with center the
    mean removal of a LayerNorm (identity for RMSNorm) and scale(x) = sqrt(mean(center(x)^2) + eps). Once its
    scale is known per token the norm is affine in x, which is what lets a last-layer ablation be written as a
    per-token combination of fixed vectors (analyses/confidence/ablation.py). `matches` says whether the formula
    reproduces the module on given inputs (an architecture whose norm differs falls back to running it)."""

    def __init__(self, view: ModelView, norm: nn.Module):
        self.module = norm
        self.eps = view.norm_eps(norm)
        self.centered = isinstance(norm, nn.LayerNorm)
        self.gain = norm_gain(norm, view.d_model, eps=self.eps)
        bias = getattr(norm, "bias", None)
        self.bias = bias.detach().float().cpu() if isinstance(bias, torch.Tensor) else torch.zeros(view.d_model)

    def center(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(-1, keepdim=True) if self.centered else x

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """[..., 1] float32: the denominator (as norm_scale)."""
        return norm_scale(self.module, x, eps=self.eps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return self.gain.to(x.device) * self.center(x) / self.scale(x) + self.bias.to(x.device)

    @torch.no_grad()
    def matches(self, x: torch.Tensor, tol: float = 1e-4) -> bool:
        """Whether the formula gives the module's output on x [..., d_model] (relative to its size)."""
        dtype = next(self.module.parameters(), x).dtype
        real = self.module(x.to(dtype)).float()
        return bool((real - self(x)).abs().max() <= tol * (1 + real.abs().max()))


class LastLayerAblation:
    """Logits at chosen positions of a model whose LAST MLP layer has one neuron set to a value, with no forward
    pass and no [positions, d_model] x [d_model, vocab] unembedding per neuron.

    With the clean final-norm input x_t, the clean down-projection output m_t and the neuron's activation a_t and
    output weight w, the ablated final-norm input is x'_t = x_t - post(m_t) + post(m_t + d_t w), d_t = value - a_t,
    where post is the norm after the MLP (Gemma 2/3; none elsewhere: x'_t = x_t + d_t w). Both norms are affine
    once their scale is known per token (AffineNorm: gain g, center c, scale, bias), so with W = W_U diag(g_final)
    and c the final norm's centering, the logits W_U final(x'_t) + b_U are
        (W c(rest_t) + (W c(u_t) + d_t W c(z)) / s2_t) / S'_t + U(final bias)
    with rest_t = x_t - post(m_t) + post's bias, u_t = g2 c2(m_t), z = g2 c2(w), s2_t = post's scale of
    m_t + d_t w and S'_t the final norm's scale of x'_t, both computed in d_model space. The two vocab vectors of a
    position are unembedded once; W c(z) once per neuron. The direct logits (the final norm's scale frozen at its
    clean value S_t) are the same with S'_t replaced by S_t. Then the model's softcap, if any."""

    def __init__(self, view: ModelView, layer: int, x: torch.Tensor, acts: torch.Tensor, chunk: int):
        post_module = view.mlp_post_norm(layer)
        self.view, self.chunk = view, chunk
        self.final = AffineNorm(view, view.final_norm)
        self.post = None if post_module is None else AffineNorm(view, post_module)
        self.weight = view.unembedding_weight().to(x.device)  # [vocab, d_model] float32
        self.w_out = view.mlp_output_weight(layer).to(x.device)  # [d_model, d_mlp]
        self.acts, self.x = acts.float(), x.float()
        down = view.mlp_down(layer)
        self.mlp = down(acts.to(next(down.parameters()).dtype)).float()  # [T, d_model]: m_t
        self.clean_scale = self.final.scale(self.x)
        bias = self.final.bias.to(x.device, view.unembedding.weight.dtype)
        self.offset = view.unembedding(bias[None]).float()[0]  # U(final bias), the unembedding's own bias included
        if self.post is None:
            parts = [self.x]
        else:
            clean_post = post_module(self.mlp.to(next(post_module.parameters()).dtype)).float()
            self.rest = self.x - clean_post + self.post.bias.to(x.device)
            parts = [self.rest, self.post.gain.to(x.device) * self.post.center(self.mlp)]
        self.vocab = torch.stack([self._unembed(p) for p in parts], 1)  # [T, 1 or 2, vocab]

    @classmethod
    @torch.no_grad()
    def build(cls, view: ModelView, layer: int, x: torch.Tensor, acts: torch.Tensor,
              chunk: int | None = None) -> "LastLayerAblation | None":
        """The basis for the positions of x [T, d_model] (final-norm inputs) and acts [T, d_mlp] (the layer's
        activations), or None where `layer` is not the last or the algebra does not reproduce the model (its norms'
        formulas, or the clean logits of a few positions)."""
        if layer != view.n_layers - 1 or not AffineNorm(view, view.final_norm).matches(x):
            return None
        post = view.mlp_post_norm(layer)
        if post is not None:
            down = view.mlp_down(layer)
            if not AffineNorm(view, post).matches(down(acts.to(next(down.parameters()).dtype)).float()):
                return None
        vocab = view.unembedding.weight.shape[0]
        basis = cls(view, layer, x, acts, chunk or max(1, (1 << 19) // vocab))  # a few rows: cache-sized
        return basis if basis._reproduces_clean_logits() else None

    def _unembed(self, h: torch.Tensor) -> torch.Tensor:
        """[T, vocab] W c(h), the final norm's gain folded in, chunked over positions."""
        h = self.final.gain.to(h.device) * self.final.center(h)
        return torch.cat([h[i:i + 256] @ self.weight.T for i in range(0, len(h), 256)])

    @property
    def plain(self) -> bool:
        """No softcap and no offset: the direct logits are then the total ones times the ratio of scales."""
        cap = getattr(self.view.model.config, "final_logit_softcapping", None)
        return not cap and not bool(self.offset.any())

    def _coefficients(self, neuron: int, value: torch.Tensor):
        """Per position: the vocab vectors' weights [T, 1 or 2] and the neuron vector's [T, 1] in the total
        logits, the ratio S'_t / S_t [T, 1] that turns them into the direct ones, and the neuron's vector W c(z)."""
        delta = (value.to(self.acts.device).float() - self.acts[:, neuron])[:, None]  # [T, 1]
        w = self.w_out[:, neuron]
        if self.post is None:
            x_new, s2, z = self.x + delta * w, torch.ones_like(delta), w
        else:
            v = self.mlp + delta * w
            s2 = self.post.scale(v)
            gain = self.post.gain.to(w.device)
            x_new, z = self.rest + gain * self.post.center(v) / s2, gain * self.post.center(w)
        scale = self.final.scale(x_new)
        weights = torch.cat([1 / scale, 1 / (s2 * scale)], 1)[:, :self.vocab.shape[1]]
        return weights, delta / (s2 * scale), scale / self.clean_scale, self._unembed(z[None])[0]

    def raw_chunks(self, neuron: int, value: torch.Tensor):
        """Yields (positions slice, raw total logits [n, vocab] before any softcap, ratio [n, 1]), chunk by chunk:
        the total logits are softcap(raw), the direct ones softcap((raw - offset) * ratio + offset)."""
        weights, along, ratio, vector = self._coefficients(neuron, value)
        for start in range(0, len(self.x), self.chunk):
            rows = slice(start, start + self.chunk)
            yield rows, self._combine(rows, weights, along, vector), ratio[rows]

    def logit_chunks(self, neuron: int, value: torch.Tensor):
        """Yields (positions slice, total logits, direct logits), [n, vocab] float32 each, chunk by chunk."""
        for rows, raw, ratio in self.raw_chunks(neuron, value):
            direct = (raw - self.offset) * ratio + self.offset
            yield rows, self.view.softcap(raw), self.view.softcap(direct)

    def _combine(self, rows: slice, weights: torch.Tensor, along: torch.Tensor, vector: torch.Tensor):
        """[n, vocab] raw logits: the positions' vocab vectors and the neuron's, weighted, plus the offset."""
        vocab = self.vocab[rows]
        out = torch.addcmul(self.offset, vocab[:, 0], weights[rows, :1])
        if vocab.shape[1] > 1:
            out.addcmul_(vocab[:, 1], weights[rows, 1:])
        return out.addcmul_(vector[None], along[rows])

    def _reproduces_clean_logits(self, n: int = 4) -> bool:
        """With the neuron at its clean activation, the logits of the first positions are the model's own."""
        weights, along, _, vector = self._coefficients(0, self.acts[:, 0])  # zero change at every position
        rows = slice(0, n)
        ours = self.view.softcap(self._combine(rows, weights, along, vector))
        real = self.view.logits(self.view.final_norm(self.x[rows].to(self.view.unembedding.weight.dtype))).float()
        return bool((ours - real).abs().max() <= 1e-4 * (1 + real.abs().max()))
