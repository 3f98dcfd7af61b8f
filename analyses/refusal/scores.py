"""The refusal study's measurements: which token positions to read, the two refusal scores, and the KL divergence
an intervention causes. Plain tensor code on top of steering's primitives; no Streamlit.

Refusal score (fast, no generation; Arditi et al. 2024): at the first generated position,
    score = log(p_refusal / (1 - p_refusal)),   p_refusal = sum of the probabilities of the refusal tokens.
The refusal tokens are the first tokens of the phrases in assets/refusal/refusal_phrases.txt written with a
capital first letter ("I can't" -> "I", "Sorry, but" -> "Sorry", "As an AI" -> "As", "Unfortunately, ..." ->
"Unfortunately" on Gemma's tokenizer), so the fast score and the phrase judge read the same list. "I" also starts
some compliant answers ("I'd be happy to..."): the score is a proxy to compare conditions, the generation-based
refusal rate is what a reader checks.

Refusal rate (slow, what the paper reports): the share of greedy generations that start with a refusal phrase.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from steering.errors import InvalidInputError
from steering.generation import DecodingSettings
from steering.judging import is_refusal, refusal_phrases
from steering.model_view import ModelView
from steering.tokens import chat_prompt, encode

Intervention = Callable[[], AbstractContextManager]  # a fresh context manager around each forward pass
BatchProgress = Callable[[int, int], None]
_MARK = "XQZJ"


def post_instruction_positions(tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """Offsets from the prompt's end of the chat template's tokens after the instruction, e.g. Gemma's
    '<end_of_turn>', '\\n', '<start_of_turn>', 'model', '\\n' -> (-5, -4, -3, -2, -1)."""
    text = chat_prompt(tokenizer, _MARK)
    suffix = text[text.rindex(_MARK) + len(_MARK):]
    n = len(tokenizer(suffix, add_special_tokens=False).input_ids) if suffix else 0
    return tuple(range(-max(n, 1), 0))


def refusal_token_ids(tokenizer: PreTrainedTokenizerBase, tokens: Sequence[str] = (),
                      phrases: Sequence[str] | None = None) -> list[int]:
    """Token ids whose probability at the first generated position makes up p_refusal: `tokens` as given, or the
    first token of each refusal phrase written with a capital letter. Unknown tokens are left out."""
    unk = tokenizer.unk_token_id

    def first(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids[:1]

    if tokens:
        candidates = [first(t) for t in tokens]
    else:  # capitalised as a reply starts; the phrase as written when the capitalised form is unknown
        phrases = refusal_phrases() if phrases is None else phrases
        candidates = [c if c and c[0] != unk else first(p) for p in phrases for c in [first(p[:1].upper() + p[1:])]]
    ids = sorted({c[0] for c in candidates if c and c[0] != unk})
    if not ids:
        raise InvalidInputError("None of the refusal tokens is in this tokenizer's vocabulary: set the refusal "
                                "tokens (e.g. 'I', 'Sorry') to words the tokenizer knows.")
    return ids


def token_names(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> list[str]:
    return [tokenizer.decode([i]) for i in ids]


@torch.no_grad()
def last_logits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *,
                intervention: Intervention | None = None, batch_size: int = 16,
                progress: BatchProgress | None = None) -> torch.Tensor:
    """[n, vocab] float32 log-probabilities of the first generated token: the decoder stack on the whole prompt,
    the unembedding on its last position only."""
    view = ModelView.of(model)
    out = []
    for start in range(0, len(texts), batch_size):
        batch = encode(tokenizer, texts[start:start + batch_size], view.device)
        with (intervention() if intervention else nullcontext()):
            hidden = view.decoder_stack(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                        use_cache=False).last_hidden_state[:, -1]
        out.append(torch.log_softmax(view.logits(hidden).float(), dim=-1).cpu())
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))
    return torch.cat(out)


def refusal_log_odds(logprobs: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """[n] log(p / (1 - p)) with p the total probability of the refusal tokens."""
    log_p = torch.logsumexp(logprobs[:, list(ids)], dim=-1).clamp(max=-1e-6)
    return log_p - torch.log(-torch.expm1(log_p))


def kl_divergence(reference: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
    """[n] KL(reference || changed) of next-token distributions given as log-probabilities."""
    return (reference.exp() * (reference - changed)).sum(dim=-1)


@torch.no_grad()
def generate_scored(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                    token_ids: Sequence[int], *, intervention: Intervention | None = None, max_new_tokens: int = 8,
                    batch_size: int = 16, progress: BatchProgress | None = None) -> tuple[list[str], list[float]]:
    """Greedy continuations of formatted prompts under an optional intervention, in batches, with each prompt's
    refusal log-odds read from the first generation step's logits (both scores from one generate call)."""
    view = ModelView.of(model)
    kwargs = DecodingSettings(max_new_tokens=max_new_tokens).generate_kwargs()
    replies: list[str] = []
    scores: list[float] = []
    for start in range(0, len(texts), batch_size):
        batch = encode(tokenizer, texts[start:start + batch_size], view.device)
        with (intervention() if intervention else nullcontext()):
            out = model.generate(**batch, **kwargs, return_dict_in_generate=True, output_logits=True)
        first = torch.log_softmax(out.logits[0].float(), dim=-1).cpu()
        scores += refusal_log_odds(first, token_ids).tolist()
        replies += tokenizer.batch_decode(out.sequences[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))
    return replies, scores


def refusal_flags(texts: Sequence[str], phrases: Sequence[str] | None = None) -> list[bool]:
    return [is_refusal(t, phrases) for t in texts]


def log_probs_of(model: PreTrainedModel, final_hidden: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """[n, vocab] float32 log-probabilities of the rows' final hidden states [n, d], unembedded `chunk` rows at a
    time (the demo's 262k-token unembedding: never more logits at once than one chunk's)."""
    view = ModelView.of(model)
    return torch.cat([torch.log_softmax(view.logits(final_hidden[i:i + chunk]).float(), dim=-1).cpu()
                      for i in range(0, final_hidden.shape[0], chunk)])


@torch.no_grad()
def clean_prefix(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, suffix: int):
    """The KV cache of a clean pass over every column before the last `suffix` ones (None when nothing precedes
    them). With left padding the last `suffix` columns are the same offsets from every prompt's end."""
    if input_ids.shape[1] <= suffix:
        return None
    view = ModelView.of(model)
    return view.decoder_stack(input_ids=input_ids[:, :-suffix], attention_mask=attention_mask[:, :-suffix],
                              use_cache=True).cache


@torch.no_grad()
def suffix_final_hidden(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, cache,
                        suffix: int, repeats: int) -> torch.Tensor:
    """[repeats * batch, d]: the last position's final hidden state of the batch repeated `repeats` times
    (row k * batch + b is prompt b), running only the last `suffix` tokens on top of the clean prefix's cache
    (a copy; the stored one stays clean). Hooks around the call see the suffix's offsets when given the full
    prompt length (`prompt_length=input_ids.shape[1]`)."""
    view = ModelView.of(model)
    ids, mask = input_ids.repeat(repeats, 1), attention_mask.repeat(repeats, 1)
    if cache is None:  # no prefix: the whole prompt
        return view.decoder_stack(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[:, -1]
    past = _repeated(cache, input_ids.shape[0], repeats)
    return view.decoder_stack(input_ids=ids[:, -suffix:], attention_mask=mask, cache=past,
                              use_cache=True).last_hidden_state[:, -1]


RowsIntervention = Callable[[Sequence[int], int], AbstractContextManager]  # (rows, prompt length) -> on those rows


@torch.no_grad()
def generation_prefix(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, suffix: int):
    """clean_prefix as `generate` would have cached it: its position ids count real tokens only (left padding
    skipped), as generate's do. None when nothing precedes the last `suffix` columns."""
    if input_ids.shape[1] <= suffix:
        return None
    positions = attention_mask.long().cumsum(-1) - 1
    positions.masked_fill_(attention_mask == 0, 1)
    stack = ModelView.of(model).decoder_stack
    return stack(input_ids=input_ids[:, :-suffix], attention_mask=attention_mask[:, :-suffix],
                 position_ids=positions[:, :-suffix], use_cache=True).cache


def _repeated(cache, rows: int, repeats: int):
    """A copy of `cache` with its `rows` batch rows repeated `repeats` times (row k * rows + b is row b)."""
    past = copy.deepcopy(cache)
    past.batch_select_indices(torch.arange(rows).repeat(repeats))
    return past


@torch.no_grad()
def generate_conditions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                        token_ids: Sequence[int], interventions: Sequence[RowsIntervention | None], *,
                        max_new_tokens: int = 8, batch_size: int = 16, shared_suffix: int = 0,
                        progress: BatchProgress | None = None) -> list[tuple[list[str], list[float]]]:
    """generate_scored under each intervention (None: none), every condition in one generate call per batch of
    prompts: condition i gets batch rows i * b .. (i + 1) * b - 1, the same prompts with the same padding.
    shared_suffix k > 0: the interventions change only the last k prompt tokens and what follows, so the prompt
    before them is run once, clean, and every condition generates from that cache."""
    view = ModelView.of(model)
    kwargs = DecodingSettings(max_new_tokens=max_new_tokens).generate_kwargs()
    found: list[tuple[list[str], list[float]]] = [([], []) for _ in interventions]
    for start in range(0, len(texts), batch_size):
        batch = encode(tokenizer, texts[start:start + batch_size], view.device)
        (b, seq), n = batch.input_ids.shape, len(interventions)
        prefix = generation_prefix(model, batch.input_ids, batch.attention_mask, shared_suffix) if shared_suffix \
            else None
        cached = {} if prefix is None else {"cache": _repeated(prefix, b, n)}
        with ExitStack() as stack:
            for i, make in enumerate(interventions):
                if make is not None:
                    stack.enter_context(make(list(range(i * b, (i + 1) * b)), seq))
            out = model.generate(input_ids=batch.input_ids.repeat(n, 1), attention_mask=batch.attention_mask.repeat(
                n, 1), **cached, **kwargs, return_dict_in_generate=True, output_logits=True)
        scores = refusal_log_odds(torch.log_softmax(out.logits[0].float(), dim=-1).cpu(), token_ids).tolist()
        replies = tokenizer.batch_decode(out.sequences[:, seq:], skip_special_tokens=True)
        for i, (texts_i, scores_i) in enumerate(found):
            texts_i += replies[i * b:(i + 1) * b]
            scores_i += scores[i * b:(i + 1) * b]
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))
    return found
