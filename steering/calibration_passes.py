"""The passes a calibration measures with (steering/calibration.py holds the records and the rule).

A setting is (layer, strength) of a `Family`: `Addition` (strength x a unit vector added entering the layer) or
`AffineFromLayer` (the affine ablation with that strength at every layer from the layer on). Either leaves the
layers below `layer` as they are.
- `screen`: every setting of a sweep in single forwards. The unsteered pass over the held-out prompts and the
  neutral texts runs once and keeps the residual stream entering every layer; each layer then resumes there
  (steering.resume) with all its strengths as batch rows and is unembedded at the last token only. That reads the
  behaviour's score (the first generated token's distribution) and the KL on neutral text for the whole grid at
  about half the cost of full passes.
- `generate_settings`: the greedy replies of chosen settings, all in one batched generate call (each row steered
  by its own setting, `Family.per_row`), with their perplexity under the unsteered model and their repetition.
  These are the costly measures, so the calibration takes them only where the rule needs them
  (`calibrate(..., generate="frontier")`).
- `measure_rows`: one intervention measured whole: one generate call for the prompts, one forward for the neutral
  texts (`calibration.measure`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from .generation import DecodingSettings
from .interventions import Positions, add, affine_ablate, record
from .model_view import ModelView
from .resume import resume_at
from .tokens import encode

if TYPE_CHECKING:
    from .calibration import Behaviour

Progress = Callable[[int, int], None]


class FirstStepScore(LogitsProcessor):
    """Reads the behaviour's score off the first generated token's logits (the last prompt position), inside the
    same generate call that writes the replies; changes nothing."""

    def __init__(self, behaviour: "Behaviour"):
        self.behaviour, self.scores = behaviour, None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.scores is None:
            self.scores = self.behaviour.score(torch.log_softmax(scores.float(), dim=-1)).cpu()
        return scores


def stop_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    eos = model.generation_config.eos_token_id
    stops = {eos} if isinstance(eos, int) else set(eos or [])
    return stops | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())


def reply_lengths(new_ids: torch.Tensor, stops: set[int]) -> list[int]:
    """Each reply's token count up to its first stop token (not counted)."""
    out = []
    for row in new_ids.tolist():
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        out.append(cut)
    return out


def repetition(tokens: Sequence[int]) -> float:
    """Share of the token pairs that repeat an earlier pair: 0 for text without repeats, towards 1 for a loop
    (a perplexity cannot see this: a loop is very predictable). nan below two pairs."""
    pairs = list(zip(tokens, tokens[1:]))
    return 1.0 - len(set(pairs)) / len(pairs) if len(pairs) >= 2 else math.nan


@torch.no_grad()
def reply_perplexities(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       new_ids: torch.Tensor, lengths: Sequence[int]) -> list[float]:
    """Each reply's perplexity under `model` (run as it is: call it outside any steering), from the token ids (no
    round trip through text); nan for an empty reply. Only the reply's positions are unembedded."""
    view = ModelView.of(model)
    steps = new_ids.shape[1]
    keep = torch.arange(steps, device=new_ids.device)[None, :] < torch.as_tensor(lengths, device=new_ids.device)[:, None]
    ids = torch.cat([input_ids, new_ids], dim=1)
    mask = torch.cat([attention_mask, keep.long()], dim=1)
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    hidden = view.decoder_stack(input_ids=ids, attention_mask=mask, position_ids=positions,
                                use_cache=False).last_hidden_state[:, -steps - 1:-1]
    token_lp = torch.cat([  # [rows, steps]; 16 rows at a time, so a 262k-token vocabulary stays ~270 MB at once
        torch.log_softmax(view.logits(hidden[i:i + 16]).float(), dim=-1).gather(-1, new_ids[i:i + 16, :, None])
        .squeeze(-1) for i in range(0, hidden.shape[0], 16)])
    out = []
    for row, n in enumerate(lengths):
        out.append(math.exp(-float(token_lp[row, :n].mean())) if n > 0 else math.nan)
    return out


def neutral_log_probs(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[rows, vocab] float32 next-token log-probabilities at the end of each neutral text."""
    with torch.no_grad():
        return _last_log_probs(ModelView.of(model), input_ids, attention_mask)


def kl_from(reference: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
    """[n] KL(reference || changed) of distributions given as log-probabilities."""
    return (reference.exp() * (reference - changed)).sum(dim=-1)


def kl_repeated(reference: torch.Tensor, reference_probs: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
    """[r * n] KL(reference || changed) where `changed` [r * n, vocab] holds r repeats of the n rows of `reference`
    [n, vocab] (row k * n + j against row j), as kl_from of the reference repeated r times, without making the r
    copies or exponentiating them again (`reference_probs` = reference.exp()): one product-sum per row."""
    n, vocab = reference.shape
    return torch.einsum("nv,rnv->rn", reference_probs, reference - changed.view(-1, n, vocab)).reshape(-1)


def nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


@dataclass
class Rows:
    """Measurements per batch row of one pass: scores, replies, and what is derived from them."""

    scores: list[float]
    texts: list[str]
    kl: list[float]
    perplexity: list[float]
    repetition: list[float]



Steer = Callable[[Sequence[float]], AbstractContextManager]  # one alpha per batch row -> the steering


@torch.no_grad()
def measure_rows(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, behaviour: "Behaviour", prompts: list[str],
             neutral: list[str], alphas: Sequence[float], steer: Steer | None, reference_neutral: torch.Tensor | None,
             max_new_tokens: int) -> tuple[Rows, torch.Tensor]:
    """One batched pass per kind of text: the prompts (one generate call) and the neutral texts (one forward), each
    repeated once per alpha (row k * n + j is text j under alphas[k]), under `steer(row_alphas)` (None:
    unsteered). Returns the rows' measurements and the neutral log-probs (the baseline's, for the steered KL)."""
    view = ModelView.of(model)
    repeats = len(alphas)
    batch, plain = encode(tokenizer, prompts, view.device), encode(tokenizer, neutral, view.device)
    ids, mask = batch.input_ids.repeat(repeats, 1), batch.attention_mask.repeat(repeats, 1)
    reader = FirstStepScore(behaviour)
    kwargs = DecodingSettings(max_new_tokens=max_new_tokens).generate_kwargs()
    with steer([a for a in alphas for _ in prompts]) if steer else nullcontext():
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs,
                             logits_processor=LogitsProcessorList([reader]))
    with steer([a for a in alphas for _ in neutral]) if steer else nullcontext():
        steered_neutral = neutral_log_probs(model, plain.input_ids.repeat(repeats, 1),
                                            plain.attention_mask.repeat(repeats, 1))
    new_ids = out[:, ids.shape[1]:]
    lengths = reply_lengths(new_ids, stop_ids(model, tokenizer))
    perplexity = reply_perplexities(model, ids, mask, new_ids, lengths)  # unsteered: outside the steering
    kl = kl_from(reference_neutral, steered_neutral).tolist() if reference_neutral is not None \
        else [0.0] * steered_neutral.shape[0]
    return Rows(reader.scores.tolist(), tokenizer.batch_decode(new_ids, skip_special_tokens=True), kl, perplexity,
                 [repetition(r[:n]) for r, n in zip(new_ids.tolist(), lengths)]), steered_neutral




class Family(Protocol):
    """A family of steerings with a setting (layer, strength) each, where the layers below `layer` are untouched
    (so the screen can resume there)."""

    def at_layer(self, model: PreTrainedModel, layer: int, strengths: Sequence[float]) -> AbstractContextManager:
        """Every batch row steered at `layer` with its own strength."""

    def per_row(self, model: PreTrainedModel, settings: Sequence[tuple[int, float]]) -> AbstractContextManager:
        """Batch row r steered by settings[r] (layer -1: not at all)."""


@dataclass(frozen=True)
class Addition:
    """(layer, alpha): alpha x units[layer] added to the stream entering the layer, at `positions`."""

    units: Mapping[int, torch.Tensor]
    positions: Positions = "all"

    def at_layer(self, model: PreTrainedModel, layer: int, strengths: Sequence[float]) -> AbstractContextManager:
        return add(model, {layer: self.units[layer]}, list(strengths), positions=self.positions)

    def per_row(self, model: PreTrainedModel, settings: Sequence[tuple[int, float]]) -> AbstractContextManager:
        vectors = {}  # a zero row leaves its row exactly as it is
        for layer in sorted({layer for layer, _ in settings if layer >= 0}):
            rows = torch.zeros(len(settings), self.units[layer].shape[-1], dtype=self.units[layer].dtype)
            for r, (at, alpha) in enumerate(settings):
                if at == layer:
                    rows[r] = alpha * self.units[layer]
            vectors[layer] = rows
        return add(model, vectors, positions=self.positions) if vectors else nullcontext()


@dataclass(frozen=True)
class AffineFromLayer:
    """(layer, beta): at every layer from `layer` on, the component along `vector` moved beta of the way to its
    reference c_l (affine_ablate's strength), at `positions`. Layer 0 with beta 1 is the whole affine ablation
    (Marshall et al.; the refusal study's)."""

    vector: torch.Tensor
    reference: Mapping[int, float]  # c_l for every layer
    n_layers: int
    positions: Positions = "all"

    def at_layer(self, model: PreTrainedModel, layer: int, strengths: Sequence[float]) -> AbstractContextManager:
        return affine_ablate(model, self.vector, self.reference, layers=range(layer, self.n_layers),
                             positions=self.positions, strength=list(strengths))

    def per_row(self, model: PreTrainedModel, settings: Sequence[tuple[int, float]]) -> AbstractContextManager:
        stack = ExitStack()  # per layer, each row's strength there (0 before its first layer: exactly unchanged)
        starts = [layer for layer, _ in settings if layer >= 0]
        try:
            for layer in range(min(starts, default=self.n_layers), self.n_layers):
                strengths = [beta if 0 <= start <= layer else 0.0 for start, beta in settings]
                stack.enter_context(affine_ablate(model, self.vector, self.reference, layers=[layer],
                                                  positions=self.positions, strength=strengths))
        except BaseException:  # no hook left behind by a half-built stack
            stack.close()
            raise
        return stack


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids from a left-padded mask, as generate makes them (so a forward reads what its first step does)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _last_log_probs(view: ModelView, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[rows, vocab] float32 next-token log-probabilities after each row's last token."""
    hidden = view.decoder_stack(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                                use_cache=False).last_hidden_state[:, -1]
    return torch.log_softmax(view.logits(hidden).float(), dim=-1)


def alpha_groups(n_alphas: int, n_texts: int, max_rows: int) -> list[slice]:
    """The strengths split into groups of at most max_rows rows (n_texts rows each), at least one strength each."""
    per = max(1, max_rows // max(1, n_texts))
    return [slice(i, min(i + per, n_alphas)) for i in range(0, n_alphas, per)]


@dataclass
class Screen:
    """A sweep's single-forward measures: the unsteered scores, and per layer the scores and the neutral KLs of
    every strength (row k: alphas[k])."""

    baseline_scores: torch.Tensor  # [n_prompts]
    scores: dict[int, torch.Tensor]  # layer -> [n_alphas, n_prompts]
    kl: dict[int, torch.Tensor]  # layer -> [n_alphas, n_neutral], KL(unsteered || steered) at the text's end


@torch.no_grad()
def screen(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, behaviour: "Behaviour",
           prompts: Sequence[str], neutral: Sequence[str], family: Family, layers: Sequence[int],
           alphas: Sequence[float], *, max_rows: int = 128, progress: Progress | None = None) -> Screen:
    """For every layer and every alpha, steered by `family` at (layer, alpha): the behaviour's score at the end of
    each prompt and the KL at the end of each neutral text, the layers below the steered one run once for all
    (see the module's docstring). `progress(done, total)` hears of each layer."""
    view = ModelView.of(model)
    layers = sorted(layers)
    points = [f"resid_pre.{layer}" for layer in layers]
    batches = {"prompts": encode(tokenizer, list(prompts), view.device),
               "neutral": encode(tokenizer, list(neutral), view.device)}
    plain, streams = {}, {}
    for kind, batch in batches.items():
        with record(model, points, positions="all") as rec:
            plain[kind] = _last_log_probs(view, batch.input_ids, batch.attention_mask)
        streams[kind] = {layer: rec.get(f"resid_pre.{layer}") for layer in layers}
    scores, kl = {}, {}
    reference_probs = plain["neutral"].exp()  # once, not once per layer and strength
    for done, layer in enumerate(layers):
        for kind, batch in batches.items():
            n = batch.input_ids.shape[0]
            parts = []
            for group in alpha_groups(len(alphas), n, max_rows):
                repeats = len(alphas[group])
                row_alphas = [a for a in alphas[group] for _ in range(n)]  # row k * n + j: text j, alphas[k]
                with resume_at(model, layer, streams[kind][layer].repeat(repeats, 1, 1)), \
                        family.at_layer(model, layer, row_alphas):
                    steered = _last_log_probs(view, batch.input_ids.repeat(repeats, 1),
                                              batch.attention_mask.repeat(repeats, 1))
                parts.append(behaviour.score(steered) if kind == "prompts"
                             else kl_repeated(plain[kind], reference_probs, steered))
            (scores if kind == "prompts" else kl)[layer] = torch.cat(parts).reshape(len(alphas), n).cpu()
        if progress:
            progress(done + 1, len(layers))
    return Screen(behaviour.score(plain["prompts"]).cpu(), scores, kl)


@dataclass
class Replies:
    """Greedy replies, one per row, and what is measured on them."""

    texts: list[str]
    perplexity: list[float]  # under the unsteered model; nan for an empty reply
    repetition: list[float]


@torch.no_grad()
def generate_settings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                      chosen: Sequence[tuple[int, float]], family: Family, *, max_new_tokens: int = 8) -> Replies:
    """The replies of every prompt under every chosen (layer, alpha) (layer -1: unsteered) in one generate call:
    row k * n + j is prompt j under chosen[k] (`family.per_row`)."""
    view = ModelView.of(model)
    batch = encode(tokenizer, list(prompts), view.device)
    n, repeats = batch.input_ids.shape[0], len(chosen)
    ids, mask = batch.input_ids.repeat(repeats, 1), batch.attention_mask.repeat(repeats, 1)
    kwargs = DecodingSettings(max_new_tokens=max_new_tokens).generate_kwargs()
    with family.per_row(model, [setting for setting in chosen for _ in range(n)]):
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    new_ids = out[:, ids.shape[1]:]
    lengths = reply_lengths(new_ids, stop_ids(model, tokenizer))
    return Replies(tokenizer.batch_decode(new_ids, skip_special_tokens=True),
                   reply_perplexities(model, ids, mask, new_ids, lengths),  # unsteered: outside the steering
                   [repetition(r[:k]) for r, k in zip(new_ids.tolist(), lengths)])
