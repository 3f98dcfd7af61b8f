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
from steering.neurons import LastLayerAblation, final_norm_input, mean_ablate, mlp_output_from_neurons, norm_scale
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


def predicted(batch: BatchEncoding, device) -> tuple[torch.Tensor, torch.Tensor]:
    """[b, s] bool: the positions whose next token is read (both it and the next are real tokens, the last
    position never), and [n] the tokens they predict, in token_stats' order."""
    mask = batch["attention_mask"].to(device).bool()
    valid = torch.zeros_like(mask)
    valid[:, :-1] = mask[:, :-1] & mask[:, 1:]
    return valid, batch["input_ids"].to(device)[:, 1:][valid[:, :-1]]


def _stats(model, batches: list[BatchEncoding], hidden: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """token_stats of the clean run, unembedding only the positions whose prediction is read."""
    view = ModelView.of(model)
    parts = []
    for h, batch in zip(hidden, batches):
        valid, targets = predicted(batch, h.device)
        logits = view.logits(h[valid].to(view.unembedding.weight.dtype))
        parts.append(row_stats(logits, targets))
    return {k: torch.cat([p[k].cpu() for p in parts]) for k in parts[0]}


def row_stats(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """token_stats for logits [n, vocab] already at the predicted positions, and their targets [n]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return {**entropy_and_loss(logits, targets, logp), "max_prob": logp.max(-1).values.exp()}


def entropy_and_loss(logits: torch.Tensor, targets: torch.Tensor, logp: torch.Tensor | None = None):
    """Entropy and loss of each row of logits [n, vocab] (float32) against targets [n] (as token_stats)."""
    logp = torch.log_softmax(logits, dim=-1) if logp is None else logp
    loss = -logp.gather(-1, targets[:, None])[:, 0]
    return {"entropy": -logp.exp().mul_(logp).sum(-1), "loss": loss}


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
    return effects({name: {m: torch.cat([s[m].cpu() for s in stats]) for m in ("entropy", "loss")}
                    for name, stats in parts.items()}, clean.stats)


def ablation_table(model, batches: list[BatchEncoding], layer: int, groups: dict[str, list[int]],
                   clean: CleanRun, report: Callable[[int, int], None],
                   rows_done: Callable[[pd.DataFrame], None] | None = None, fast: bool = True) -> pd.DataFrame:
    """One row per (group, neuron): the effects of ablate_one. `groups` maps a label (candidate, random) to
    neuron indices. At the last layer (and `fast`) each neuron's logits come from the LastLayerBasis, without an
    unembedding per neuron; elsewhere, or where its algebra is not exact for the architecture, from ablate_one
    (the reference). `rows_done` receives the rows so far after each neuron."""
    fast_path = _last_layer(model, batches, layer, clean) if fast else None
    jobs = [(group, n) for group, neurons in groups.items() for n in neurons]
    rows = []
    for i, (group, neuron) in enumerate(jobs):
        row = (_ablate_fast(*fast_path, neuron, clean) if fast_path is not None
               else ablate_one(model, batches, layer, neuron, clean))
        rows.append({"group": group, "neuron": neuron, **row})
        report(i + 1, len(jobs))
        if rows_done is not None:
            rows_done(pd.DataFrame(rows))
    return pd.DataFrame(rows)


def effects(ablated: dict[str, dict[str, torch.Tensor]], clean: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean change (ablated - clean) in entropy and loss, total and direct, and via the norm (their difference)."""
    row = {f"d_{metric}_{name}": float((stats[metric] - clean[metric]).mean())
           for name, stats in ablated.items() for metric in ("entropy", "loss")}
    for metric in ("entropy", "loss"):
        row[f"d_{metric}_via_norm"] = row[f"d_{metric}_total"] - row[f"d_{metric}_direct"]
    return row



def _last_layer(model, batches: list[BatchEncoding], layer: int, clean: CleanRun):
    """The LastLayerAblation over the predicted positions of all batches and their targets, or None where the
    layer is not the last or its algebra does not reproduce this architecture's norms."""
    view = ModelView.of(model)
    if layer != view.n_layers - 1:
        return None
    picked = [predicted(b, x.device) for b, x in zip(batches, clean.final_inputs)]
    x = torch.cat([x[valid] for x, (valid, _) in zip(clean.final_inputs, picked)])
    acts = torch.cat([a[valid.to(a.device)] for a, (valid, _) in zip(clean.acts, picked)])
    basis = LastLayerAblation.build(view, layer, x, acts)
    return None if basis is None else (basis, torch.cat([t for _, t in picked]))


@torch.no_grad()
def _ablate_fast(basis: LastLayerAblation, targets: torch.Tensor, neuron: int, clean: CleanRun) -> dict[str, float]:
    """ablate_one's effects from the basis: the same statistics, token chunk by token chunk."""
    parts: dict[str, list] = {"total": [], "direct": []}
    if basis.plain:
        for rows, raw, ratio in basis.raw_chunks(neuron, clean.means[neuron]):
            for name, stats in zip(parts, _scaled_pair_stats(raw, ratio, targets[rows].to(raw.device))):
                parts[name].append(stats)
    else:
        for rows, total, direct in basis.logit_chunks(neuron, clean.means[neuron]):
            parts["total"].append(row_stats(total, targets[rows].to(total.device)))
            parts["direct"].append(row_stats(direct, targets[rows].to(direct.device)))
    return effects({name: {m: torch.cat([s[m].cpu() for s in stats]) for m in ("entropy", "loss")}
                    for name, stats in parts.items()}, clean.stats)


def _scaled_pair_stats(logits: torch.Tensor, ratio: torch.Tensor, targets: torch.Tensor):
    """Entropy and loss (as row_stats, with the same kernels and so the same float32 roundings) of the logits
    [n, vocab] and of ratio * logits (ratio [n, 1]): the second without a second combination. `logits` is
    overwritten."""
    first = entropy_and_loss(logits, targets)
    return first, entropy_and_loss(logits.mul_(ratio), targets)
