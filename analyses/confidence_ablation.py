"""Mean ablation of single neurons over a text set: change in next-token entropy and loss, total and direct.

Total effect: the neuron's activation is set to its mean over the same text at every position and the model runs
as usual. Direct effect: the same run, but the final norm divides by its clean scale (the RMS of the clean final
residual at each token), so only what the neuron writes along the unembedding's read-out counts. Their difference
is the effect that passes through the final norm's rescaling, which is how entropy neurons act (Stolfo et al.)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from transformers import BatchEncoding

from steering.model_view import ModelView
from steering.neurons import final_norm_input, frozen_scale_output, mean_ablate, norm_scale
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
    """What the ablations compare against, for one model."""

    means: torch.Tensor  # [d_mlp] mean activation of each neuron over the text's real tokens
    scales: list[torch.Tensor]  # per batch [b, s, 1]: the final norm's clean denominator
    stats: dict[str, torch.Tensor]  # token_stats of the clean run over all batches


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
    from steering.interventions import record

    total, count, scales, hidden = None, 0, [], []
    for batch in batches:
        with record(model, [f"neurons.{layer}"], positions="all") as rec:
            y, x = _forward(model, batch)
        acts = rec.get(f"neurons.{layer}")[batch["attention_mask"].bool().to(y.device)]  # [tokens, d_mlp]
        total = acts.sum(0) if total is None else total + acts.sum(0)
        count += acts.shape[0]
        scales.append(norm_scale(view.final_norm, x))
        hidden.append(y)
    return CleanRun(total.cpu() / count, scales, _stats(model, batches, hidden))


@torch.no_grad()
def ablate_one(model, batches: list[BatchEncoding], layer: int, neuron: int, clean: CleanRun) -> dict[str, float]:
    """Mean change (ablated - clean) in entropy and loss over the text's tokens, total and direct."""
    view = ModelView.of(model)
    total, direct = [], []
    with mean_ablate(model, layer, [neuron], clean.means):
        for batch, scale in zip(batches, clean.scales):
            y, x = _forward(model, batch)
            total.append(y)
            direct.append(frozen_scale_output(view.final_norm, y, x, scale))
    row = {}
    for name, hidden in (("total", total), ("direct", direct)):
        stats = _stats(model, batches, hidden)
        for metric in ("entropy", "loss"):
            row[f"d_{metric}_{name}"] = float((stats[metric] - clean.stats[metric]).mean())
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
