"""Where, on one text, the post-trained model parts from the base: per-token divergence, and the logit lens and the
tokens that rose and fell at one position.

One decoder-stack pass per model over the text gives both: its output is unembedded in position chunks (so no
[positions x vocab] float32 tensor over CHUNK_BYTES is held), and the stream recorded at every lens point in the
same pass gives the lens at the chosen position, found once the divergence is known (no second pass).

At position i both models predict token i + 1 from tokens 0..i:
    kl_post_base = KL(post || base) = sum_v p_post(v) (log p_post(v) - log p_base(v)),  kl_base_post the reverse,
    tv = 1/2 sum_v |p_post(v) - p_base(v)|,   rank_<model> = 1 + #tokens with a larger logit than token i + 1
(the last position has no next token: its ranks are missing).

Each of these is a sum over the whole vocabulary (262,144 terms for Gemma 3) of products that are large where the
models part. One float32 `einsum` per row accumulated them one after another, and KL at high-KL positions came out
up to 0.02 nats low against a float64 reference; torch's `sum` adds float32 terms pairwise (its error grows with
log2 of the count, not the count), which is as close to that reference as a float64 sum here, and faster than the
einsum."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from steering.lens import check_position, first_layer_in_top, lens_log_probs, stack_pass, token_ids, top_rows
from steering.model_view import ModelView

CHUNK_BYTES = 64 * 2**20  # the largest [positions x vocab] float32 tensor held at once


@dataclass
class TextDiff:
    """One text's per-token table, and its lens and changes at `position`."""

    tokens: pd.DataFrame  # position, token, next_token, kl_post_base, kl_base_post, tv, rank_base, rank_post
    lens: pd.DataFrame  # layer, model, rank, token, token_id, prob
    changes: pd.DataFrame  # change (rose / fell), rank, token, token_id, p_base, p_post, delta
    answer_layers: pd.DataFrame  # model, answer, first_top5_layer
    position: int


def chunk_size(vocab: int) -> int:
    return max(1, CHUNK_BYTES // (4 * vocab))


@torch.no_grad()
def divergence(models: dict, hidden: dict[str, torch.Tensor], ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per position: KL both ways, TV and the next token's rank under each model, unembedding chunk by chunk."""
    views = {role: ModelView.of(m) for role, m in models.items()}
    seq, targets = ids.shape[-1], ids[0, 1:]
    step = chunk_size(views["base"].unembedding.weight.shape[0])
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("kl_post_base", "kl_base_post", "tv", "rank_base",
                                                            "rank_post")}
    for start in range(0, seq, step):
        logp = {}
        for role, view in views.items():
            known = targets[start:start + step].to(view.device)  # the chunk's positions that have a next token
            x = view.logits(hidden[role][start:start + step].to(view.unembedding.weight.dtype)).float()
            mine = x[:len(known)].gather(-1, known[:, None])
            parts[f"rank_{role}"].append((1 + (x[:len(known)] > mine).sum(-1)).cpu())
            logp[role] = x.sub_(x.logsumexp(-1, keepdim=True))  # log-softmax in place: one tensor per model
        for name, value in _measures(logp["post"], logp["base"]).items():
            parts[name].append(value.cpu())
        del logp
    return {k: torch.cat(v) for k, v in parts.items()}


def _measures(logp_post: torch.Tensor, logp_base: torch.Tensor) -> dict[str, torch.Tensor]:
    """KL both ways and TV of [n, vocab] log-probabilities, with as few [n, vocab] temporaries as it takes
    (the inputs are consumed); each sum over the vocabulary is a pairwise `sum`, never an `einsum`."""
    p_post, p_base = logp_post.exp(), logp_base.exp()
    gap = logp_post.sub_(logp_base)  # log p_post - log p_base
    kl_base_post = p_base.mul(gap).sum(-1).neg_()  # its product: one temporary, freed at once
    kl_post_base = gap.mul_(p_post).sum(-1)  # the last use of gap: its product in place
    tv = 0.5 * p_post.sub_(p_base).abs_().sum(-1)
    return {"kl_post_base": kl_post_base, "kl_base_post": kl_base_post, "tv": tv}


def token_table(tokenizer, ids: torch.Tensor, measures: dict[str, torch.Tensor]) -> pd.DataFrame:
    seq = ids.shape[-1]
    words = [tokenizer.decode([int(i)]) for i in ids[0]]
    table = pd.DataFrame({"position": range(seq), "token": words, "next_token": words[1:] + [None]})
    for name in ("kl_post_base", "kl_base_post", "tv"):
        table[name] = measures[name].numpy().astype(float)
    for name in ("rank_base", "rank_post"):
        table[name] = pd.array(measures[name].tolist() + [None], dtype="Int64")
    return table


def changes_at(tokenizer, logp: dict[str, torch.Tensor], top_n: int) -> pd.DataFrame:
    """The tokens whose next-token probability rose most and fell most from base to post, at one position."""
    p_base, p_post = logp["base"].exp(), logp["post"].exp()
    delta = p_post - p_base
    rows = []
    for change, largest in (("rose", True), ("fell", False)):
        values, ids = delta.topk(top_n, largest=largest)
        rows += [{"change": change, "rank": r + 1, "token": tokenizer.decode([int(i)]), "token_id": int(i),
                  "p_base": float(p_base[i]), "p_post": float(p_post[i]), "delta": float(v)}
                 for r, (v, i) in enumerate(zip(values, ids))]
    return pd.DataFrame(rows)


def at_position(tokenizer, models: dict, resid: dict[str, torch.Tensor], top_n: int) -> tuple:
    """The lens (both models), the answer layers and the changes at one position, from each model's stream there
    ([layers + 1, d]); the last lens layer is the model's own output, so the changes need no other unembedding."""
    logp = {role: lens_log_probs(model, resid[role]) for role, model in models.items()}
    lens = pd.concat([pd.DataFrame(top_rows(lp, tokenizer, top_n)).assign(model=role) for role, lp in logp.items()],
                     ignore_index=True)[["layer", "model", "rank", "token", "token_id", "prob"]]
    answers = pd.DataFrame([{"model": role, "answer": tokenizer.decode([int(lp[-1].argmax())]),
                             "first_top5_layer": first_layer_in_top(lp, 5)} for role, lp in logp.items()])
    changes = changes_at(tokenizer, {role: lp[-1] for role, lp in logp.items()}, top_n)
    return lens, changes, answers


def diff_text(tokenizer, models: dict, ids: torch.Tensor, position: int, top_n: int) -> TextDiff:
    """The whole per-token view of one text [1, seq]: one pass per model. position -1 = the peak of KL(post||base)."""
    hidden, resid = {}, {}
    for role, model in models.items():
        hidden[role], resid[role] = stack_pass(model, ids, "all")
    table = token_table(tokenizer, ids, divergence(models, hidden, ids))
    chosen = int(table["kl_post_base"].idxmax()) if position == -1 else check_position(position, ids.shape[-1])
    lens, changes, answers = at_position(tokenizer, models, {r: x[:, chosen] for r, x in resid.items()}, top_n)
    return TextDiff(table, lens, changes, answers, chosen)


def position_view(pair, text: str, position: int, top_n: int):
    """The lens, changes and answer layers at another position of a text, live for the page's slider: one
    decoder-stack pass per model, one position unembedded per layer (no per-token table)."""
    models = pair.models()
    ids = token_ids(pair.tokenizer, text, list(models.values()))
    position = check_position(position, ids.shape[-1])
    resid = {role: stack_pass(model, ids, [position])[1][:, 0] for role, model in models.items()}
    return at_position(pair.tokenizer, models, resid, top_n)
