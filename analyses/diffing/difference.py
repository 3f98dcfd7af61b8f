"""What post-training added, read from the mean activation difference on plain text (Minder et al. 2025,
"Narrow finetuning leaves clearly readable traces in activation differences", arXiv:2510.13900).

    delta_l = mean over texts t and positions i < k of (resid_post_l(t, i) - resid_base_l(t, i))

at every lens point l (resid_pre.0 .. resid_pre.{L-1}, then the final norm's input), over the first k tokens after
BOS of each plain text: only those k tokens are run (the models are causal, so the rest cannot matter), and since
every text is cut to the same length no padding is needed. Two readings of delta_l:

- logit_lens: the post-trained model's final norm and unembedding applied to delta_l; score = that logit.
- patchscope: delta_l / ||delta_l|| * (the post model's typical residual norm at l) added at layer l to the last
  token of an identity prompt in the post-trained model, one batch row per layer (and one unpatched row); score =
  the rise of each next token's probability over the unpatched prompt.

Either way the lists keep only tokens text can produce (`steering.lens.is_text_token`): read naively, Gemma's
never-trained <unused…> tokens top them."""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import pandas as pd
import torch

from steering.directions import Direction, DirectionInfo
from steering.errors import InvalidInputError
from steering.interventions import add, record
from steering.lens import lens_logits, lens_points, top_text_tokens
from steering.model_view import ModelView
from steering.tokens import encode

IDENTITY_PROMPT = "cat -> cat\n1135 -> 1135\nhello -> hello\n?"


def first_tokens(tokenizer, texts, k: int) -> tuple[torch.Tensor, int]:
    """[n, start + k] each text's BOS (where the tokenizer adds one: start = 1, else 0) and first k tokens; a text
    shorter than k tokens is refused, naming the shortest."""
    rows = [tokenizer(text)["input_ids"] for text in texts]
    if not rows:
        raise InvalidInputError("The plain-text set is empty.")
    start = 1 if tokenizer.bos_token_id is not None and rows[0][0] == tokenizer.bos_token_id else 0
    shortest = min(len(r) - start for r in rows)
    if k > shortest:
        raise InvalidInputError(f"k = {k} is more than the shortest plain text's {shortest} tokens: choose k of at "
                                f"most {shortest}.")
    return torch.tensor([r[:start + k] for r in rows]), start


@torch.no_grad()
def stream(model, ids: torch.Tensor, start: int, batch_size: int) -> torch.Tensor:
    """[layers + 1, n * k, d] the stream at every lens point over the texts' first k tokens (BOS left out)."""
    view, points, parts = ModelView.of(model), lens_points(model), []
    for i in range(0, len(ids), batch_size):
        batch = ids[i:i + batch_size].to(view.device)
        with record(model, points, positions="all") as rec:
            view.decoder_stack(input_ids=batch, attention_mask=torch.ones_like(batch), use_cache=False)
        parts.append(torch.stack([rec.get(p)[:, start:].flatten(0, 1) for p in points]))
    return torch.cat(parts, dim=1)


def activation_difference(pair, texts, k: int, batch_size: int, data_hash: str,
                          report: Callable[[int, int], None]) -> tuple[Direction, torch.Tensor, pd.DataFrame]:
    """The difference as a Direction (rows = decoder layers, with the post model's typical residual norms), the
    [layers + 1, d] difference at every lens point, and the norms table (layer, norm, resid_norm, relative)."""
    ids, start = first_tokens(pair.tokenizer, texts, k)
    base = stream(pair.base, ids, start, batch_size)
    report(1, 2)
    post = stream(pair.post, ids, start, batch_size)
    report(2, 2)
    delta, resid_norms = (post - base).mean(dim=1), post.norm(dim=-1).mean(dim=1)
    norms = pd.DataFrame({"layer": range(len(delta)), "norm": delta.norm(dim=-1).numpy(),
                          "resid_norm": resid_norms.numpy()})
    norms["relative"] = norms["norm"] / norms["resid_norm"]
    layers = ModelView.of(pair.post).n_layers
    info = DirectionInfo(model=pair.model_id("post"), dataset="diffing plain text", dataset_hash=data_hash,
                         method=f"mean activation difference post - base, first {k} tokens", position=f"first {k}",
                         use="add")
    return Direction(delta[:layers].contiguous(), info, resid_norms[:layers].contiguous()), delta, norms


def read_difference(pair, delta: torch.Tensor, resid_norms: torch.Tensor, reading: str, top_n: int) -> pd.DataFrame:
    """layer, kind (promoted / demoted), rank, token, token_id, score: the difference's reading at every layer
    where it is not zero (a layer post-training left alone, such as the embedding under LoRA, has no reading)."""
    moved = (delta.norm(dim=-1) > 1e-6 * resid_norms).tolist()
    scores = logit_lens_scores(pair.post, delta) if reading == "logit_lens" else \
        patchscope_scores(pair.post, pair.tokenizer, delta[:-1], resid_norms)
    rows = []
    for layer, row in enumerate(scores):
        if not moved[layer]:
            continue
        for kind, largest in (("promoted", True), ("demoted", False)):
            rows += [{"layer": layer, "kind": kind, "rank": r + 1, "token": pair.tokenizer.decode([token]),
                      "token_id": token, "score": score}
                     for r, (token, score) in enumerate(top_text_tokens(row, pair.tokenizer, top_n, largest))]
    return pd.DataFrame(rows)


def logit_lens_scores(model, delta: torch.Tensor) -> torch.Tensor:
    """[layers + 1, vocab] the logits of each layer's difference through the final norm and unembedding."""
    return lens_logits(model, delta).cpu()


@torch.no_grad()
def patchscope_scores(model, tokenizer, delta: torch.Tensor, resid_norms: torch.Tensor) -> torch.Tensor:
    """[layers, vocab] the rise of the next-token probability when row l's layer-l difference (scaled to the
    layer's typical residual norm) is added at the identity prompt's last token; all layers in one batch."""
    view = ModelView.of(model)
    layers = len(delta)
    ids = encode(tokenizer, [IDENTITY_PROMPT])["input_ids"].repeat(layers + 1, 1).to(view.device)
    lengths = delta.norm(dim=-1, keepdim=True)
    vectors = torch.where(lengths > 1e-6 * resid_norms[:layers, None], delta / lengths.clamp(min=1e-30)
                          * resid_norms[:layers, None], torch.zeros_like(delta))
    with contextlib.ExitStack() as stack:
        for layer in range(layers):  # row `layer` gets layer `layer`'s vector; the last row stays unpatched
            stack.enter_context(add(model, {layer: vectors[layer]}, positions=[-1], rows=[layer]))
        hidden = view.decoder_stack(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    probs = torch.softmax(view.logits(hidden.last_hidden_state[:, -1]).float(), dim=-1)
    return (probs[:layers] - probs[layers]).cpu()


def cosines(difference: Direction, found: list[tuple[str, Direction]]) -> pd.DataFrame:
    """layer, direction, cosine: the difference against each study direction of the same shape."""
    rows = []
    for label, direction in found:
        if (direction.n_layers, direction.d_model) != (difference.n_layers, difference.d_model):
            continue
        rows += [{"layer": layer, "direction": label, "cosine": float(c)}
                 for layer, c in enumerate(difference.cosine(direction))]
    return pd.DataFrame(rows, columns=["layer", "direction", "cosine"])
