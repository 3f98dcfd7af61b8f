"""Mean ablation of single neurons over a text set: change in next-token entropy and loss, total and direct.

Total effect: the neuron's activation is set to its mean over the same text at every position and the model runs
as usual. Direct effect: the same run, but the final norm divides by its clean scale (the RMS of the clean final
residual at each token), so only what the neuron writes along the unembedding's read-out counts. Their difference
is the effect that passes through the final norm's rescaling, which is how entropy neurons act (Stolfo et al.)."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from transformers import BatchEncoding

from steering.model_view import ModelView
from steering.interventions import record
from steering.neurons import final_norm_input, mean_ablate, mlp_output_from_neurons, norm_scale
from steering.tokens import encode


def text_batches(tokenizer, texts: Sequence[str], max_tokens: int, batch_size: int) -> list[BatchEncoding]:
    """The texts in order, as many whole texts as fit in `max_tokens` tokens (at least one), batched."""
    kept, used = [], 0
    for text in texts:
        n = len(tokenizer(text)["input_ids"])
        if kept and used + n > max_tokens:
            break
        kept.append(text)
        used += n
    return [encode(tokenizer, kept[i:i + batch_size]) for i in range(0, len(kept), batch_size)]


def token_stats(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per predicted token (both it and the one before are real tokens): entropy and loss of the next-token
    distribution, and its maximum probability, as flat float32 tensors."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    valid = (mask[:, :-1] & mask[:, 1:]).bool()
    logp = logp[valid]
    target = input_ids[:, 1:][valid]
    entropy = -(logp.exp() * logp).sum(-1)
    loss = -logp.gather(-1, target[:, None])[:, 0]
    return {"entropy": entropy, "loss": loss, "max_prob": logp.max(-1).values.exp()}


@dataclass
class CleanRun:
    """What the ablations compare against, for one model, with per-batch tensors for the last-layer shortcut."""

    means: torch.Tensor  # [d_mlp] mean activation of each neuron over the text's real tokens
    scales: list[torch.Tensor]  # per batch [b, s, 1]: the final norm's clean denominator
    stats: dict[str, torch.Tensor]  # token_stats of the clean run over all batches
    final_inputs: list[torch.Tensor]  # per batch [b, s, d_model]: the final norm's clean input
    acts: list[torch.Tensor]  # per batch [b, s, d_mlp]: the layer's clean neuron activations
    mlp_out: list[torch.Tensor]  # per batch [b, s, d_model]: what the layer's MLP adds to the residual


@torch.no_grad()
def _forward(model, batch: BatchEncoding) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder stack's output (after the final norm) and the final norm's input."""
    view = ModelView.of(model)
    with final_norm_input(model) as store:
        out = view.decoder_stack(input_ids=batch["input_ids"].to(view.device),
                                 attention_mask=batch["attention_mask"].to(view.device))
    return out.last_hidden_state, store[-1]


def _stats(model, batches: list[BatchEncoding], hidden: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    view = ModelView.of(model)
    parts = [token_stats(view.logits(h.to(view.unembedding.weight.dtype)), b["input_ids"].to(h.device),
                         b["attention_mask"].to(h.device)) for h, b in zip(hidden, batches)]
    return {k: torch.cat([p[k].cpu() for p in parts]) for k in parts[0]}


@torch.no_grad()
def clean_run(model, batches: list[BatchEncoding], layer: int) -> CleanRun:
    view = ModelView.of(model)
    total, count, hidden = None, 0, []
    run = CleanRun(torch.empty(0), [], {}, [], [], [])
    for batch in batches:
        with record(model, [f"neurons.{layer}"], positions="all") as rec:
            y, x = _forward(model, batch)
        acts = rec.get(f"neurons.{layer}")
        real = acts[batch["attention_mask"].bool().to(acts.device)]  # [tokens, d_mlp]
        total = real.sum(0) if total is None else total + real.sum(0)
        count += real.shape[0]
        run.scales.append(norm_scale(view.final_norm, x))
        run.final_inputs.append(x)
        run.acts.append(acts)
        run.mlp_out.append(mlp_output_from_neurons(view, layer, acts).float())
        hidden.append(y)
    run.means, run.stats = total.cpu() / count, _stats(model, batches, hidden)
    return run


@torch.no_grad()
def _ablated_last_layer(view: ModelView, layer: int, neuron: int, clean: CleanRun, k: int):
    """The last layer's shortcut, exact because its MLP output goes straight into the final norm: the final norm's
    input is the clean one plus the change in what the MLP adds, recomputed from the ablated activations."""
    acts = clean.acts[k].clone()
    acts[..., neuron] = clean.means[neuron].to(acts.device)
    x = clean.final_inputs[k] + mlp_output_from_neurons(view, layer, acts).float() - clean.mlp_out[k]
    return view.final_norm(x.to(next(view.final_norm.parameters()).dtype)), x


@torch.no_grad()
def _total_and_direct(view: ModelView, y: torch.Tensor, x: torch.Tensor, scale: torch.Tensor):
    """Logits of the ablated run and of the same run with the final norm's scale frozen, from one unembedding:
    the frozen output is the affine combination b + r (y - b) with r = scale(x) / clean scale, so its logits are
    r * U(y) + (1 - r) * U(b) for the unembedding U (exact, also with a bias)."""
    raw = view.unembedding(y.to(view.unembedding.weight.dtype)).float()
    bias = getattr(view.final_norm, "bias", None)
    bias = bias.detach() if isinstance(bias, torch.Tensor) else torch.zeros(y.shape[-1], device=y.device)
    at_bias = view.unembedding(bias.to(view.unembedding.weight.dtype)[None]).float()[0]
    ratio = norm_scale(view.final_norm, x) / scale
    return view.softcap(raw), view.softcap(ratio * raw + (1 - ratio) * at_bias)


@torch.no_grad()
def ablate_one(model, batches: list[BatchEncoding], layer: int, neuron: int, clean: CleanRun,
               shortcut: bool = True) -> dict[str, float]:
    """Mean change (ablated - clean) in entropy and loss over the text's tokens, total and direct. At the last
    layer (and `shortcut`) no forward pass is needed: see _ablated_last_layer."""
    view = ModelView.of(model)
    last = shortcut and layer == view.n_layers - 1
    parts: dict[str, list] = {"total": [], "direct": []}
    with contextlib.nullcontext() if last else mean_ablate(model, layer, [neuron], clean.means):
        for k, (batch, scale) in enumerate(zip(batches, clean.scales)):
            y, x = _ablated_last_layer(view, layer, neuron, clean, k) if last else _forward(model, batch)
            ids, mask = batch["input_ids"].to(y.device), batch["attention_mask"].to(y.device)
            for name, logits in zip(("total", "direct"), _total_and_direct(view, y, x, scale)):
                parts[name].append(token_stats(logits, ids, mask))
                del logits
    row = {}
    for name, stats in parts.items():
        for metric in ("entropy", "loss"):
            ablated = torch.cat([s[metric].cpu() for s in stats])
            row[f"d_{metric}_{name}"] = float((ablated - clean.stats[metric]).mean())
    for metric in ("entropy", "loss"):
        row[f"d_{metric}_via_norm"] = row[f"d_{metric}_total"] - row[f"d_{metric}_direct"]
    return row


def ablation_table(model, batches: list[BatchEncoding], layer: int, groups: dict[str, list[int]],
                   clean: CleanRun, report: Callable[[int, int], None]) -> pd.DataFrame:
    """One row per (group, neuron): the effects of ablate_one. `groups` maps a label (candidate, random) to
    neuron indices."""
    jobs = [(group, n) for group, neurons in groups.items() for n in neurons]
    rows = []
    for i, (group, neuron) in enumerate(jobs):
        rows.append({"group": group, "neuron": neuron, **ablate_one(model, batches, layer, neuron, clean)})
        report(i + 1, len(jobs))
    return pd.DataFrame(rows)
