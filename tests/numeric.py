"""Tolerances for comparisons that must hold on any processor and at any thread count, written from float32
arithmetic rather than fitted to one machine's run.

A float32 sum of n terms of size |x| is off by up to n·ε·|x|, and typically by √n·ε·|x| (ε = 2⁻²³ ≈ 1.19e-7). The
order of a reduction, and so its rounding, depends on the processor's vector width, the BLAS kernel it picks and the
number of threads: two machines (or one machine at two thread counts) each round, so they can disagree by twice that.

A forward pass chains such sums. Each of its L blocks adds to the residual stream an output that is a sum over at
most K products (K the widest inner dimension, the MLP's), and the blocks' errors add up along the stream. So a
value of size |x| read after l blocks is trusted to

    forward_tolerance = 2 · l · √K · ε · |x|        (both sides rounded; typical per sum, added over blocks)

Quantities read from the logits (log-probabilities, log-odds, KL, probabilities) move by at most about twice the
logits' own error, whose size is the logits' magnitude (`logit_tolerance`).

Integers derived from floats (a rank, an argmax, a top-k list, a greedy token) are never compared exactly across
machines: two results agree when they are equal or when the difference is a near tie, two candidates whose scores
lie within the tolerance of each other (`assert_top_k_agree`, `assert_argmax_agrees`, `rank_slack`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

EPS = float(torch.finfo(torch.float32).eps)  # 1.19e-7


def sum_tolerance(n: int, magnitude: float, worst: bool = False) -> float:
    """How far one float32 sum of n terms of size `magnitude` may be from the exact sum (typically, or at worst)."""
    return (n if worst else math.sqrt(n)) * EPS * float(magnitude)


def depth_and_width(model) -> tuple[int, int]:
    """(L, K): the model's number of blocks, and the widest sum inside one (the MLP's hidden size, or d_model)."""
    from steering.model_view import ModelView

    view = ModelView.of(model)
    config = getattr(model.config, "text_config", model.config)
    mlp = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * view.d_model
    return view.n_layers, max(int(mlp), view.d_model)


def forward_tolerance(model, magnitude: float, blocks: int | None = None) -> float:
    """How far two machines' values of size `magnitude`, read after `blocks` blocks of `model` (all by default), may
    be apart: 2 · blocks · √K · ε · magnitude (see the module docstring)."""
    n_layers, width = depth_and_width(model)
    return 2 * (n_layers if blocks is None else blocks) * sum_tolerance(width, magnitude)


def logit_scale(model, tokenizer, texts: Sequence[str] = ("The capital of France is", "How do I bake bread?")) -> float:
    """The size of the model's raw logits (their largest magnitude at the last position of a few ordinary texts)."""
    from steering.model_view import ModelView

    view = ModelView.of(model)
    batch = tokenizer(list(texts), return_tensors="pt", padding=True).to(view.device)
    with torch.no_grad():
        hidden = view.decoder_stack(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        return float(view.logits(hidden[:, -1]).float().abs().max())


def logit_tolerance(model, tokenizer) -> float:
    """How far two machines' logits of this model may be apart; a log-probability or a log-odds (a difference of two
    log-sum-exps of logits) moves by at most twice that, a probability p by p times that."""
    return forward_tolerance(model, logit_scale(model, tokenizer))


def assert_close(actual, expected, tol: float, what: str = "") -> None:
    """|actual - expected| <= tol everywhere, saying by how much it is off when not."""
    a, b = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    worst = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert worst <= tol, f"{what}: off by {worst:.3g}, tolerance {tol:.3g}"


def assert_top_k_agree(ours_ids: Sequence, ours_scores: Sequence[float], theirs_ids: Sequence,
                       theirs_scores: Sequence[float], tol: float) -> None:
    """Two lists ranked best first agree up to near ties: the score at every rank agrees within tol, and where the
    ids at a rank differ, their id scores (here) within 2·tol of ours at that rank, or, not in our list, within
    2·tol of our last (it fell off the end in a near tie)."""
    assert len(ours_ids) == len(theirs_ids)
    assert_close(ours_scores, theirs_scores, tol, "scores by rank")
    ours = dict(zip(ours_ids, ours_scores))
    for rank, (mine, theirs) in enumerate(zip(ours_ids, theirs_ids)):
        if mine != theirs:
            here = ours.get(theirs, ours_scores[-1])
            assert abs(here - ours_scores[rank]) <= 2 * tol, (
                f"rank {rank + 1}: {theirs!r} (score {here:.6g} here) is not a near tie with {mine!r} "
                f"({ours_scores[rank]:.6g}), tolerance {tol:.3g}")


def assert_argmax_agrees(values: Sequence[float], theirs: int, tol: float) -> None:
    """Their argmax index is ours, or a near tie: its value here is within 2·tol of our maximum."""
    values = np.asarray(values, dtype=float)
    ours = int(np.argmax(values))
    assert ours == theirs or values[ours] - values[theirs] <= 2 * tol, (
        f"their argmax {theirs} ({values[theirs]:.6g}) is not a near tie with ours {ours} ({values[ours]:.6g}), "
        f"tolerance {tol:.3g}")


def rank_slack(scores: torch.Tensor, index: int, tol: float) -> int:
    """How far the rank of scores[index] (1 + #larger scores) may move when every score moves by up to tol: the
    number of other scores within 2·tol of it."""
    return int(((scores - scores[index]).abs() <= 2 * tol).sum()) - 1


def logprob_tolerance(model, log_probs: torch.Tensor) -> float:
    """Δz for logits given as log-probabilities [n, vocab]: log-softmax shifts each row, so the logits' size is at
    most a row's span (largest minus smallest), whatever the steering did to them."""
    span = (log_probs.max(-1).values - log_probs.min(-1).values).max()
    return forward_tolerance(model, float(span))


@torch.no_grad()
def greedy_parting(model, tokenizer, prompt: str, theirs: str, intervention=None,
                   max_new_tokens: int = 8) -> tuple[int, float, float] | None:
    """Where our greedy reply to one formatted prompt first parts from their reply text (decoded without special
    tokens), as (step, logit gap there between our token and theirs, Δz of that step's logits); None when it never
    parts. Their path is a greedy path of the same model computed elsewhere, so it may part from ours only at a near
    tie: a gap within 2Δz."""
    from contextlib import nullcontext

    from steering.generation import DecodingSettings
    from steering.model_view import ModelView
    from steering.tokens import encode

    batch = encode(tokenizer, [prompt], ModelView.of(model).device)
    with (intervention() if intervention else nullcontext()):
        out = model.generate(**batch, **DecodingSettings(max_new_tokens=max_new_tokens).generate_kwargs(),
                             return_dict_in_generate=True, output_logits=True)
    ours = out.sequences[0, batch.input_ids.shape[1]:].tolist()
    wanted = tokenizer(theirs, add_special_tokens=False).input_ids
    ends = set(tokenizer.all_special_ids)
    for step, token in enumerate(ours):
        want = wanted[step] if step < len(wanted) else None
        if token == want or (want is None and token in ends):
            if token in ends:
                return None  # both stopped here
            continue
        logits = out.logits[step][0].float()
        other = logits[list(ends)].max() if want is None else logits[want]  # theirs stopped, or took another token
        return step, float(logits[token] - other), forward_tolerance(model, float(logits.abs().max()))
    return None


def assert_replies_agree(model, tokenizer, prompts: Sequence[str], ours: Sequence[str], theirs: Sequence[str],
                         intervention=None, max_new_tokens: int = 8) -> None:
    """Greedy replies computed on two machines agree: equal, or parting at a near tie (`greedy_parting`)."""
    assert len(ours) == len(theirs) == len(prompts)
    for prompt, mine, other in zip(prompts, ours, theirs):
        if mine != other:
            parting = greedy_parting(model, tokenizer, prompt, other, intervention, max_new_tokens)
            assert parting is None or parting[1] <= 2 * parting[2], (
                f"{other!r} parts from our greedy {mine!r} at step {parting[0]} by a logit gap of {parting[1]:.4g}, "
                f"more than a near tie (2Δz = {2 * parting[2]:.3g})")
