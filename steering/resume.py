"""Resume a forward pass at a layer from a stored residual stream: the layers before it are not run.

Studies that change the residual stream at layer l only (an addition at l, a patched state, an ablated neuron)
run layers 0..l-1 once, keep the stream entering l, and resume there for every variant, instead of paying for the
unchanged early layers again per variant.

    with record(model, ["resid_pre.6"], positions="all") as rec:      # once
        view.decoder_stack(input_ids=ids, attention_mask=mask)
    with resume_at(model, 6, rec.get("resid_pre.6")):                  # per variant, with its own hooks
        hidden = view.decoder_stack(input_ids=ids, attention_mask=mask).last_hidden_state

Inside the block the decoder stack still embeds its input (cheap) and builds its masks and position encodings
from the same input_ids and attention_mask, so the stored stream must come from a pass with the same tokens and
padding; layers 0..l-1 hand their input on unchanged and layer l-1 hands on the stored stream. Hook points at or
after resid_pre.l see what a full pass would; those before it see placeholders. Works for every architecture in
architectures.py: each decoder layer there returns its hidden states as one tensor."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .errors import InvalidInputError
from .interventions import hooks
from .model_view import ModelView


@contextmanager
def resume_at(model: nn.Module, layer: int, resid_pre: torch.Tensor) -> Iterator[None]:
    """Inside the block, decoder-stack passes skip layers 0..layer-1 and feed `resid_pre` ([batch, seq, d_model]:
    the residual stream entering `layer`, for the pass's batch and sequence) to layer `layer`."""
    view = ModelView.of(model)
    view.check_layer(layer)

    def stored(hidden: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        if hidden.shape[:2] != resid_pre.shape[:2]:
            raise InvalidInputError(f"resume_at: the stored stream is {tuple(resid_pre.shape[:2])} (batch, seq) "
                                    f"but the pass is {tuple(hidden.shape[:2])}.")
        return resid_pre.to(device=hidden.device, dtype=hidden.dtype)

    skipped = [view.layer(i) for i in range(layer)]
    originals = [m.forward for m in skipped]
    try:
        for module in skipped:
            module.forward = _hand_on
        # the hook ignores token offsets, so any prompt length will do (also for a pass that starts with a cache)
        with hooks(model, [(f"resid_pre.{layer}", stored)], prompt_length=0):
            yield
    finally:
        for module, forward in zip(skipped, originals):
            module.forward = forward


def _hand_on(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """A skipped layer: its input, unchanged."""
    return hidden_states
