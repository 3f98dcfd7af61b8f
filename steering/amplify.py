"""Amplified differences between two models (Goodfire's model-diff amplification): generate from

    logits_B + alpha * (logits_B - logits_A),    alpha >= 0

so that what B does more than A (a refusal the SFT added, a change the DPO made) shows up more often than at
alpha = 0, where it is B's own generation. A and B are any two models with one vocabulary: two stages of a road
(`stage_model`) or a pair's base and post-trained model.

    replies = amplified_generate(sft, dpo, tokenizer, texts, alpha=2.0)
    rates = amplification_rates(base, sft, tokenizer, prompts, alphas=(0, 1, 2, 4))   # refusal rate per alpha

One step is one batched forward of each model, each with its own KV cache: B runs inside its own `generate` (its
cache, positions, stopping and padding as always), and A is run by a logits processor on the step's new tokens
beside it. Every alpha of a sweep is a batch row of the same call (one alpha per row)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd
import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from .errors import InvalidInputError, SettingError
from .generation import DecodingSettings, check_fits_context
from .judging import is_refusal
from .model_view import ModelView
from .tokens import encode

MAX_AMPLIFICATION = 100.0
Progress = Callable[[int, int], None]


def check_amplification(alphas: Sequence[float]) -> list[float]:
    """Alphas as floats, each finite and between 0 and MAX_AMPLIFICATION."""
    out = []
    for alpha in alphas:
        try:
            value = float(alpha)
        except (TypeError, ValueError):
            raise SettingError(f"An amplification alpha must be a number from 0 to {MAX_AMPLIFICATION:g}, not "
                               f"{alpha!r}.") from None
        if not 0 <= value <= MAX_AMPLIFICATION:  # NaN fails it too
            raise SettingError(f"An amplification alpha must be a finite number from 0 to {MAX_AMPLIFICATION:g}, "
                               f"not {alpha}.")
        out.append(value)
    if not out:
        raise InvalidInputError("Give at least one amplification alpha.")
    return out


class _Amplifier(LogitsProcessor):
    """Inside B's generate: runs A on the tokens B has not yet shown it (the prompt at the first step, then each
    new token) with A's own KV cache, and returns logits_B + alpha * (logits_B - logits_A) per row. A row of alpha
    0 gets B's logits untouched (no 0 x inf)."""

    def __init__(self, model_a: PreTrainedModel, attention_mask: torch.Tensor, alphas: torch.Tensor,
                 temperature: float = 1.0, top_p: float = 1.0, progress: Progress | None = None, total: int = 0):
        self.model_a, self.mask, self.alphas = model_a, attention_mask, alphas.reshape(-1, 1)
        self.cache, self.seen = None, 0
        self.temperature, self.top_p = temperature, top_p
        self.progress, self.total, self.steps = progress, total, 0

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.seen:  # every row's mask grows by one per step, as generate's does (finished rows get padding)
            self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], input_ids.shape[1] - self.seen)],
                                  dim=1)
        positions = self.mask.long().cumsum(-1) - 1
        positions = positions.masked_fill(self.mask == 0, 0)
        out = self.model_a(input_ids=input_ids[:, self.seen:], attention_mask=self.mask,
                           position_ids=positions[:, self.seen:], cache=self.cache, use_cache=True,
                           logits_to_keep=1)
        self.cache, self.seen = out.cache, input_ids.shape[1]
        logits_a = out.logits[:, -1].float().to(scores.device)
        if logits_a.shape != scores.shape:
            raise InvalidInputError(f"The two models have vocabularies of {logits_a.shape[-1]} and "
                                    f"{scores.shape[-1]} tokens: amplification needs one vocabulary.")
        alphas = self.alphas.to(scores.device, scores.dtype)
        mixed = torch.where(alphas == 0, scores, scores + alphas * (scores - logits_a))
        self.steps += 1
        if self.progress:
            self.progress(min(self.steps, self.total), self.total)
        return self._warp(mixed) if self.temperature != 1.0 or self.top_p < 1.0 else mixed

    def _warp(self, logits: torch.Tensor) -> torch.Tensor:
        """Temperature, then top-p, applied to the amplified logits (not to B's alone, as generate's would be)."""
        logits = logits / self.temperature
        if self.top_p < 1.0:
            ordered, index = torch.sort(logits, descending=True, dim=-1)
            cumulative = ordered.softmax(-1).cumsum(-1)
            drop = cumulative - ordered.softmax(-1) > self.top_p  # keep the smallest set that reaches top_p
            logits = logits.masked_fill(drop.scatter(-1, index, drop), -math.inf)
        return logits


@torch.no_grad()
def amplified_generate(model_a: PreTrainedModel, model_b: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                       texts: Sequence[str], alpha: float | Sequence[float] = 1.0, *,
                       decoding: DecodingSettings = DecodingSettings(),
                       progress: Progress | None = None) -> list[str]:
    """Continue formatted texts from logits_B + alpha (logits_B - logits_A); one alpha for all rows or one per row.
    Greedy by default; sampling applies its temperature and top-p to the amplified logits."""
    texts = list(texts)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InvalidInputError("Give at least one prompt, none of them empty.")
    alphas = check_amplification([alpha] * len(texts) if isinstance(alpha, (int, float)) else alpha)
    if len(alphas) != len(texts):
        raise InvalidInputError(f"{len(alphas)} alphas for {len(texts)} prompts: give one alpha, or one per prompt.")
    view_a, view_b = ModelView.of(model_a), ModelView.of(model_b)
    if view_a.device != view_b.device:
        raise InvalidInputError(f"The two models are on {view_a.device} and {view_b.device}: load them on one device.")
    kwargs = decoding.generate_kwargs()  # checks max_new_tokens, temperature and top_p
    batch = encode(tokenizer, texts, view_b.device)
    check_fits_context(model_b, tokenizer, texts, decoding.max_new_tokens, batch.input_ids.shape[1])
    amplifier = _Amplifier(model_a, batch.attention_mask, torch.tensor(alphas, dtype=torch.float32),
                           1.0 if decoding.greedy else decoding.temperature, 1.0 if decoding.greedy else decoding.top_p,
                           progress, decoding.max_new_tokens)
    if not decoding.greedy:  # temperature and top-p are the amplifier's: generate only samples
        kwargs = {**kwargs, "temperature": 1.0, "top_p": None}
    torch.manual_seed(decoding.seed)
    out = model_b.generate(**batch, **kwargs, logits_processor=LogitsProcessorList([amplifier]))
    return tokenizer.batch_decode(out[:, batch.input_ids.shape[1]:], skip_special_tokens=True)


def amplification_rates(model_a: PreTrainedModel, model_b: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                        texts: Sequence[str], alphas: Sequence[float], *,
                        judge: Callable[[str], bool] = is_refusal, decoding: DecodingSettings = DecodingSettings(),
                        batch_rows: int = 64, progress: Progress | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How often the judge (a refusal, by default) fires on the replies at each alpha: (rates: alpha, rate, hits,
    n; replies: alpha, prompt, reply, hit). Every alpha x prompt is a row of one generate call, `batch_rows` rows
    at a time."""
    alphas = check_amplification(alphas)
    texts = list(texts)
    if not texts:
        raise InvalidInputError("Give at least one prompt.")
    if batch_rows < 1:
        raise SettingError(f"batch_rows must be at least 1, not {batch_rows}.")
    grid = [(a, t) for a in alphas for t in texts]
    replies: list[str] = []
    for start in range(0, len(grid), batch_rows):
        part = grid[start:start + batch_rows]
        replies += amplified_generate(model_a, model_b, tokenizer, [t for _, t in part], [a for a, _ in part],
                                      decoding=decoding)
        if progress:
            progress(min(start + batch_rows, len(grid)), len(grid))
    table = pd.DataFrame({"alpha": [a for a, _ in grid], "prompt": [t for _, t in grid], "reply": replies})
    table["hit"] = table.reply.map(judge)
    rates = table.groupby("alpha", sort=False).hit.agg(["mean", "sum", "size"]).reset_index()
    rates.columns = ["alpha", "rate", "hits", "n"]
    return rates, table


def stage_model(pair, stage: str) -> PreTrainedModel:
    """The model of one stage of the loaded pair's road ('base', 'step36', 'sft', 'dpo', ...), loaded beside the
    pair's base (the base stage is the base itself)."""
    from .pairs import load_beside
    from .stages import pick_stages

    chosen = pick_stages(pair.name, [stage])[0]
    return load_beside(pair, chosen.pair).post
