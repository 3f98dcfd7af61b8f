"""Reading the residual stream for many prompts, and difference-in-means directions.

Only the decoder stack runs, and it stops at the last layer that is needed: the unembedding (262k tokens on
the demo base, most of a forward pass) is never computed."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from .directions import Direction, DirectionInfo
from .errors import InvalidInputError
from .interventions import record, run_until
from .model_view import ModelView
from .tokens import dataset_hash, encode

Progress = Callable[[int, int], None]  # (done, total)


@torch.no_grad()
def collect_residuals(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] = (-1,),
    batch_size: int = 16,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Residual stream entering each layer: [n_prompts, n_layers, n_positions, d_model], float32 on the CPU."""
    view = ModelView.of(model)
    layers = list(range(view.n_layers)) if layers is None else [view.check_layer(layer) for layer in layers]
    if not prompts:
        raise InvalidInputError("No prompts to read activations from.")
    points = [f"resid_pre.{layer}" for layer in layers]
    chunks = []
    for start in range(0, len(prompts), batch_size):
        batch = encode(tokenizer, prompts[start:start + batch_size], view.device)
        with record(model, points, positions) as rec:
            run_until(model, f"resid_pre.{max(layers)}", input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        chunks.append(torch.stack([rec.get(p) for p in points], dim=1).cpu())
        if progress:
            progress(min(start + batch_size, len(prompts)), len(prompts))
    return torch.cat(chunks)


def diff_in_means(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    positive: Sequence[str],
    negative: Sequence[str],
    *,
    position: int = -1,
    dataset: str = "custom",
    model_name: str | None = None,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> Direction:
    """mean(positive) - mean(negative) of the residual stream entering every layer, at one token position."""
    if not positive or not negative:
        raise InvalidInputError("Both prompt lists need at least one prompt to compute a difference in means.")
    total = len(positive) + len(negative)

    def part(prompts: Sequence[str], offset: int) -> torch.Tensor:
        report = (lambda done, _: progress(offset + done, total)) if progress else None
        return collect_residuals(model, tokenizer, prompts, positions=(position,), batch_size=batch_size,
                                 progress=report)[:, :, 0]

    pos_acts, neg_acts = part(positive, 0), part(negative, len(positive))
    resid_norms = torch.cat([pos_acts, neg_acts]).norm(dim=-1).mean(dim=0)
    name = model_name or getattr(model, "name_or_path", None) or model.config.name_or_path or "model"
    info = DirectionInfo(model=str(name), dataset=dataset, dataset_hash=dataset_hash(positive, negative),
                         position=position)
    return Direction(pos_acts.mean(0) - neg_acts.mean(0), info, resid_norms)
