"""The 2 x 2 (x alphas) intervention table in few passes: every direction source and alpha steered at once, and
only the tokens and layers the intervention can change recomputed.

The addition touches the statement's last token and its period (offsets -k..) at layers layer_start.. only, so
per batch of statements and steered model:
1. the prompt up to its last k tokens runs once, keeping its KV cache (steering.suffix), and the unsteered
   suffix once, recording the stream entering the first steered layer;
2. the suffix alone runs for every (source, alpha) at once, one row per statement and variant, resuming at the
   first steered layer (steering.resume) with each row's signed alpha, and is unembedded at its last token only.
Same numbers as `steer.transfer_table_reference` (one full pass per job) within float rounding; the test checks."""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from analyses.truth_score import answer_token_ids, statement_offsets, truth_prompts
from steering.interventions import add, record
from steering.model_view import ModelView
from steering.resume import resume_at
from steering.suffix import run_prefix, run_suffix
from steering.tokens import encode

from .steer import Report, effect_row


def _scores(view: ModelView, hidden: torch.Tensor, answer_ids: tuple[int, int]) -> torch.Tensor:
    probs = torch.softmax(view.logits(hidden[:, -1]).float(), dim=-1)
    return probs[:, answer_ids[0]] - probs[:, answer_ids[1]]


@torch.no_grad()
def variant_scores(model: nn.Module, tokenizer: PreTrainedTokenizerBase, statements: Sequence[str],
                   signs: np.ndarray, variants: Sequence[tuple[dict[int, torch.Tensor], float]], *,
                   prefix: str | Sequence[str],
                   answers: tuple[str, str], batch_size: int = 16) -> np.ndarray:
    """[len(variants), n] P(TRUE) - P(FALSE) of each statement with signs[i] * alpha * vectors added (one variant
    = (vectors, alpha)), and [n] unsteered as row -1 of the result ([len(variants) + 1, n]). prefix: one few-shot
    prefix for all statements, or one per statement."""
    view = ModelView.of(model)
    offsets = list(statement_offsets(tokenizer))
    k, first = -min(offsets), min(min(v) for v, _ in variants)
    answer_ids = answer_token_ids(tokenizer, answers)
    prompts, out = truth_prompts(statements, prefix), []
    for start in range(0, len(prompts), batch_size):
        batch = encode(tokenizer, prompts[start:start + batch_size], view.device)
        cached = run_prefix(model, batch.input_ids, batch.attention_mask, k)
        with record(model, [f"resid_pre.{first}"], positions="all", prompt_length=cached.length) as rec:
            clean = _scores(view, run_suffix(model, cached), answer_ids)
        n, r = batch.input_ids.shape[0], len(variants)
        stream = rec.get(f"resid_pre.{first}").repeat_interleave(r, 0)
        sign = torch.as_tensor(signs[start:start + n], dtype=torch.float32).repeat_interleave(r)
        with ExitStack() as stack:  # resume first: its hook replaces the stream the additions then add to
            stack.enter_context(resume_at(model, first, stream))
            for v, (vectors, alpha) in enumerate(variants):
                row_alpha = (sign * alpha * (torch.arange(n * r) % r == v)).tolist()
                stack.enter_context(add(model, vectors, alpha=row_alpha, positions=offsets,
                                        prompt_length=cached.length))
            steered = _scores(view, run_suffix(model, cached, repeats=r), answer_ids).reshape(n, r)
        out.append(torch.cat([steered.T, clean[None]]))
    return torch.cat(out, dim=1).numpy()


def transfer_table(models: dict[str, nn.Module], tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame,
                   vectors: dict[str, dict[int, torch.Tensor]], thresholds: dict[str, float],
                   alphas: Sequence[float], *, prefix: str | Sequence[str], answers: tuple[str, str],
                   batch_size: int = 16,
                   report: Report | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """As steer.transfer_table_reference (same rows, same order): every (direction source, steered model, alpha),
    the effect row and every statement's score; also each model's unsteered scores of `frame` (the baselines the
    effects are measured from, read from the same passes)."""
    labels, statements = frame["label"].to_numpy(), frame["statement"].to_numpy()
    signs = np.where(labels == 1, -1.0, 1.0)
    jobs = [(s, float(a)) for s in vectors for a in alphas]
    after, baselines = {}, {}
    for done, (role, model) in enumerate(models.items()):
        scores = variant_scores(model, tokenizer, list(statements), signs, [(vectors[s], a) for s, a in jobs],
                                prefix=prefix, answers=answers, batch_size=batch_size)
        baselines[role] = scores[-1]
        after.update({(source, role, alpha): row for (source, alpha), row in zip(jobs, scores)})
        if report:
            report(done + 1, len(models))
    rows, per_statement = [], []
    for source, role, alpha in ((s, m, float(a)) for s in vectors for m in models for a in alphas):
        steered = after[source, role, alpha]
        rows.append({"direction": source, "model": role, "alpha": alpha,
                     **effect_row(baselines[role], steered, labels, thresholds[role])})
        per_statement.append(pd.DataFrame({"direction": source, "model": role, "alpha": alpha, "statement": statements,
                                           "label": labels, "score_before": baselines[role], "score_after": steered}))
    return pd.DataFrame(rows), pd.concat(per_statement, ignore_index=True), baselines
